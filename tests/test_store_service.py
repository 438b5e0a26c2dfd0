"""Store queries behind the service endpoints: latest stories, recent times, writability."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.models import Article
from watcher.store import Store, open_store
from watcher.store.rows import MemberRow, SignatureRow, time_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store."""
    with open_store(tmp_path / "s.db") as opened:
        yield opened


def article(id: str, hours: int, outlet: str, source: str = "src") -> Article:
    """A link post published ``hours`` after T0."""
    return Article(id=id, format="link", title=id, outlet=outlet, source=source,
                   published_at=T0 + timedelta(hours=hours))  # fmt: skip


def test_latest_stories_newest_first_with_min_outlets(store: Store) -> None:
    """latest_stories gives the newest first, skips stories under min_outlets, stops at limit."""
    items = [article("a", 1, "A"), article("b", 2, "B"), article("c", 3, "C"), article("d", 4, "D")]
    store.add_articles(items)
    members = [
        MemberRow("a", "a", None, 1.0, time_key(items[0].published_at)),
        MemberRow("b", "a", "a", 0.9, time_key(items[1].published_at)),
        MemberRow("c", "c", None, 1.0, time_key(items[2].published_at)),
        MemberRow("d", "d", None, 1.0, time_key(items[3].published_at)),
    ]
    signatures = [SignatureRow(m.article_id, "s", 1, b"", m.published_key) for m in members]
    store.save_stories(signatures, members)
    assert ["d", "c"] == [s.id for s in store.latest_stories(limit=2)]
    assert ["a"] == [s.id for s in store.latest_stories(limit=5, min_outlets=2)]


def test_recent_published_at(store: Store) -> None:
    """A source's latest publication times, newest first, limited; other sources left out."""
    store.add_articles([article(f"x{n}", n, "X") for n in range(5)])
    store.add_articles([article("other", 9, "Y", source="other")])
    expected = [T0 + timedelta(hours=h) for h in (4, 3, 2)]
    assert expected == store.recent_published_at("src", limit=3)


def test_is_writable(tmp_path: Path) -> None:
    """A store is writable, and not while another connection holds the write lock."""
    import sqlite3

    from watcher.store import SqliteStore

    with SqliteStore(tmp_path / "w.db", busy_timeout_s=0.05) as quick:
        assert True is quick.is_writable()
        other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            assert False is quick.is_writable()
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert True is quick.is_writable()
