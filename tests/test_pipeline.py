"""One pass over a source, with real stages: a local feed server, real SQLite, a real archive."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from watcher import archive
from watcher.dedupe import Signed
from watcher.fetch import Fetcher
from watcher.models import Article
from watcher.pipeline import (
    PassContext,
    PassResult,
    flush_archive,
    poll_source,
    repair_archive,
    write_archive_files,
)
from watcher.polling import PollPolicy
from watcher.rules import fold_article
from watcher.settings import DedupSettings, HttpSettings, RsshubSettings, SourceSettings
from watcher.store import Store, open_store
from watcher.stories import StoryAssigner

from .feedserver import FeedServer, Reply

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(interval=timedelta(minutes=10), jitter=0.0)


def rss(items: list[tuple[str, str, str]], *, ttl: int | None = None) -> bytes:
    """An RSS 2.0 feed of (guid, title, html) items, one minute apart."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
             'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
             "<title>Test</title><link>http://127.0.0.1/</link>"]  # fmt: skip
    if ttl is not None:
        parts.append(f"<ttl>{ttl}</ttl>")
    for n, (guid, title, html) in enumerate(items):
        date = (NOW - timedelta(minutes=n)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        parts.append(
            f"<item><guid>{guid}</guid><title>{escape(title)}</title>"
            f"<link>http://127.0.0.1/a/{guid}</link><pubDate>{date}</pubDate>"
            f"<content:encoded>{escape(html)}</content:encoded></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


ITEMS = [
    ("g1", "俄美总统通话", "<p>克里姆林宫透露，双方同意举行会谈。</p>"),
    ("g2", "欧盟峰会开幕", "<p>欧盟领导人在布鲁塞尔开会。</p><script>alert(1)</script>"),
    ("g3", "Wall Street rises", '<p>Stocks <a href="/markets">rose</a>.</p>'),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store."""
    with open_store(tmp_path / "watcher.db") as opened:
        yield opened


def source(url: str, **fields: object) -> SourceSettings:
    """A Hexo source for ``url``."""
    base = {
        "name": "test",
        "url": url,
        "outlet": "测试网",
        "categories": ["新媒体", "测试网", "头条"],
    }
    return SourceSettings.model_validate({**base, **fields})


def run_pass(
    src: SourceSettings, store: Store, root: Path | None, now: datetime = NOW
) -> PassResult:
    """One pass with a real Fetcher."""

    async def go() -> PassResult:
        async with Fetcher(HttpSettings(), RsshubSettings()) as fetcher:
            ctx = PassContext(store, fetcher, root, now, random.Random(1))
            return await poll_source(src, POLICY, ctx)

    return asyncio.run(go())


def test_first_pass_stores_and_archives(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """New items are stored, written as Hexo files, and the state records the validators."""
    feed_server.feed("/feed.xml", rss(ITEMS), etag='"v1"')
    result = run_pass(source(feed_server.url("/feed.xml")), store, tmp_path / "archive")
    state = store.get_source_state("test")
    assert ("updated", 3, 0) == (result.outcome, len(result.new), len(result.changed))
    assert 3 == store.count_articles()
    assert state is not None and result.state == state  # the result reports what was stored
    assert {("g1", "俄美总统通话")} <= {(s.link.rsplit("/", 1)[-1], s.title) for s in result.new
                                     if s.link}  # fmt: skip
    assert ('"v1"', 0, NOW + timedelta(minutes=10), 200) == (
        state.etag,
        state.consecutive_failures,
        state.next_check_at,
        state.last_status,
    )
    files = sorted((tmp_path / "archive").rglob("*.md"))
    assert 3 == len(files)
    parsed = archive.read_file(
        tmp_path / "archive/source/_posts/新媒体/测试网/头条/俄美总统通话.md"
    )
    # Hexo posts carry no link (the RSSHUB-PAGE archives have none); the store keeps it.
    assert ("hexo", "测试网", "俄美总统通话", NOW) == (
        parsed.format,
        parsed.outlet,
        parsed.title,
        parsed.published_at,
    )


def test_stored_html_is_safe(feed_server: FeedServer, store: Store) -> None:
    """No script survives into the stored article; relative links are made absolute."""
    feed_server.feed("/feed.xml", rss(ITEMS))
    result = run_pass(source(feed_server.url("/feed.xml")), store, None)
    stored = [store.get_article(saved.id) for saved in result.new]
    bodies = {a.title: a.body_html for a in stored if a is not None}
    assert "<script" not in bodies["欧盟峰会开幕"]
    # Relative links resolve against the item's own link (http://127.0.0.1/a/g3).
    assert 'href="http://127.0.0.1/markets"' in bodies["Wall Street rises"]


def test_not_modified_then_unchanged(feed_server: FeedServer, store: Store) -> None:
    """A 304 and a same-body 200 are normal results that store nothing new."""
    feed_server.feed("/etag.xml", rss(ITEMS), etag='"v1"')
    feed_server.route("/plain.xml", Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}))
    run_pass(source(feed_server.url("/etag.xml")), store, None)
    again = run_pass(source(feed_server.url("/etag.xml")), store, None)
    assert ("not_modified", []) == (again.outcome, again.new)
    assert '"v1"' == feed_server.requests_to("/etag.xml")[-1].headers.get("if-none-match")
    plain = source(feed_server.url("/plain.xml"), name="plain")
    run_pass(plain, store, None)
    assert "unchanged" == run_pass(plain, store, None).outcome


def test_changed_item_updates_not_duplicates(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """An item seen again with new content updates its article; no second article appears."""
    edited = [("g1", "俄美总统通话（更新）", "<p>新的内容。</p>"), *ITEMS[1:]]
    feed_server.route(
        "/feed.xml",
        Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}),
        Reply(200, rss(edited), {"Content-Type": "application/rss+xml"}),
    )
    src = source(feed_server.url("/feed.xml"))
    first = run_pass(src, store, tmp_path / "archive")
    second = run_pass(src, store, tmp_path / "archive", NOW + timedelta(minutes=10))
    assert (0, 1, 3) == (len(second.new), len(second.changed), store.count_articles())
    stored = store.get_article(first.new[0].id)
    assert stored is not None
    assert "俄美总统通话（更新）" == stored.title


def test_failure_is_recorded_and_nothing_lost(feed_server: FeedServer, store: Store) -> None:
    """A 500 after a good pass counts a failure, keeps the error and loses no article."""
    feed_server.route(
        "/feed.xml",
        Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}),
        Reply(500, b"oops"),
    )
    src = source(feed_server.url("/feed.xml"))
    run_pass(src, store, None)
    failed = run_pass(src, store, None, NOW + timedelta(minutes=10))
    state = store.get_source_state("test")
    assert state is not None
    assert ("failed", 1, 500, 3) == (
        failed.outcome,
        state.consecutive_failures,
        state.last_status,
        store.count_articles(),
    )
    assert "500" in (state.last_error or "")


def test_html_page_is_an_error_not_an_empty_feed(feed_server: FeedServer, store: Store) -> None:
    """An HTML page where a feed should be fails the pass with a clear error."""
    page = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>hi</body></html>"
    feed_server.route("/feed.xml", Reply(200, page, {"Content-Type": "text/html"}))
    result = run_pass(source(feed_server.url("/feed.xml")), store, None)
    assert "failed" == result.outcome
    assert "HTML" in (result.error or "")


def test_ttl_pushes_next_check(feed_server: FeedServer, store: Store) -> None:
    """A feed's ttl longer than the interval pushes the next check later."""
    feed_server.feed("/feed.xml", rss(ITEMS, ttl=60))
    run_pass(source(feed_server.url("/feed.xml")), store, None)
    state = store.get_source_state("test")
    assert state is not None
    assert NOW + timedelta(minutes=60) == state.next_check_at


def test_archive_written_before_store(
    feed_server: FeedServer, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the archive write and the store commit loses nothing on the next pass."""
    feed_server.route("/feed.xml", Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}))
    src = source(feed_server.url("/feed.xml"))

    def crash(articles: object) -> int:
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(store, "add_articles", crash)
        with pytest.raises(RuntimeError):
            run_pass(src, store, tmp_path / "archive")
    assert (3, 0) == (len(list((tmp_path / "archive").rglob("*.md"))), store.count_articles())
    again = run_pass(src, store, tmp_path / "archive")
    assert (3, 3) == (len(again.new), store.count_articles())
    assert 3 == len(list((tmp_path / "archive").rglob("*.md")))


def test_files_written_apart_are_noted_and_a_folder_at_fault_fails_the_pass(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """With write_files (a pool's), the parse renders the files and they are written before
    the commit; an archive folder linked outside fails the pass, nothing written or stored."""
    feed_server.feed("/feed.xml", rss(ITEMS))
    src = source(feed_server.url("/feed.xml"))
    root = tmp_path / "archive"
    handed: list[int] = []

    async def write_files(at: Path, planned: list[tuple[Path, bytes]]) -> None:
        handed.append(len(planned))
        write_archive_files(at, planned)

    async def go(at: Path) -> PassResult:
        async with Fetcher(HttpSettings(), RsshubSettings()) as fetcher:
            ctx = PassContext(store, fetcher, at, NOW, random.Random(1), write_files=write_files)
            return await poll_source(src, POLICY, ctx)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root.mkdir()
    (root / "source").symlink_to(outside)  # where every Hexo post of the source goes
    failed = asyncio.run(go(root))
    assert ("failed", [], 0) == (failed.outcome, handed, store.count_articles())
    assert failed.error is not None and "leaves the archive folder" in failed.error
    assert [] == list(outside.rglob("*"))
    (root / "source").unlink()
    done = asyncio.run(go(root))
    stored = list(store.iter_articles())
    files = {p.relative_to(root).as_posix(): p.read_text("utf-8") for p in root.rglob("*.md")}
    assert ("updated", [3], 3) == (done.outcome, handed, len(stored))
    assert files == {archive.relative_path(a): archive.render(a) for a in stored}
    assert sorted(a.id for a in stored) == sorted(store.archive_pending_ids())


@pytest.mark.parametrize("fold", [True, False])
def test_the_parse_folds_for_the_rules_when_asked(
    feed_server: FeedServer, store: Store, fold: bool
) -> None:
    """With fold_for_rules, the rules stage gets each new article's fold_article beside it."""
    feed_server.feed("/feed.xml", rss(ITEMS))
    src = source(feed_server.url("/feed.xml"))
    given: list[tuple[list[str], dict[str, tuple[str, str]]]] = []

    def assign(articles: list[Article], signed: Signed | None) -> set[str]:
        return {a.id for a in articles}

    def enqueue(articles: list[Article], folded: Mapping[str, tuple[str, str]]) -> int:
        given.append(([a.id for a in articles], dict(folded)))
        return 0

    async def go() -> PassResult:
        async with Fetcher(HttpSettings(), RsshubSettings()) as fetcher:
            ctx = PassContext(store, fetcher, None, NOW, random.Random(1), assign_stories=assign,
                              enqueue_alerts=enqueue, fold_for_rules=fold)  # fmt: skip
            return await poll_source(src, POLICY, ctx)

    assert "updated" == asyncio.run(go()).outcome
    stored = {a.id: a for a in store.iter_articles()}
    expected = {i: fold_article(a) for i, a in stored.items()} if fold else {}
    assert [(sorted(stored), expected)] == [(sorted(ids), folded) for ids, folded in given]


def test_undated_item_is_not_a_change_on_every_pass(feed_server: FeedServer, store: Store) -> None:
    """An item with no date keeps its first-seen time; the next pass changes nothing."""
    body = rss(ITEMS).replace(b"<pubDate>", b"<!--").replace(b"</pubDate>", b"-->")
    feed_server.route("/undated.xml", Reply(200, body, {"Content-Type": "application/rss+xml"}))
    feed_server.route("/undated2.xml", Reply(200, body + b" ", {"Content-Type": "text/xml"}))
    src = source(feed_server.url("/undated.xml"), name="undated")
    first = run_pass(src, store, None)
    moved = source(feed_server.url("/undated2.xml"), name="undated")  # same items, new body
    second = run_pass(moved, store, None, NOW + timedelta(minutes=10))
    assert (3, "updated", [], []) == (len(first.new), second.outcome, second.new, second.changed)
    stored = store.get_article(first.new[0].id)
    assert stored is not None
    assert (NOW, "missing") == (stored.published_at, stored.published_confidence)


def test_permanent_redirect_moves_the_source(feed_server: FeedServer, store: Store) -> None:
    """After a 301 the source is fetched at its new URL; the config URL is remembered."""
    feed_server.route("/old.xml", Reply(301, b"", {"Location": feed_server.url("/new.xml")}))
    feed_server.feed("/new.xml", rss(ITEMS))
    src = source(feed_server.url("/old.xml"))
    run_pass(src, store, None)
    run_pass(src, store, None, NOW + timedelta(minutes=10))
    state = store.get_source_state("test")
    assert state is not None
    assert (feed_server.url("/new.xml"), src.url) == (state.url, state.redirected_from)
    assert ["/old.xml", "/new.xml", "/new.xml"] == [r.path for r in feed_server.requests]


def test_failed_pass_stores_nothing_and_the_next_assigns_every_story(
    feed_server: FeedServer, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure at a pass's end rolls back its articles and stories; the next pass redoes both."""
    feed_server.route("/feed.xml", Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}))
    src = source(feed_server.url("/feed.xml"))
    assigner = StoryAssigner(store, DedupSettings())

    def assign(articles: list[Article], signed: Signed | None) -> set[str]:
        return {a.article_id for a in assigner.assign(articles, signed) if a.starts_story}

    def pass_with_stories() -> PassResult:
        async def go() -> PassResult:
            async with Fetcher(HttpSettings(), RsshubSettings()) as fetcher:
                ctx = PassContext(
                    store, fetcher, tmp_path / "archive", NOW, random.Random(1),
                    assign_stories=assign, forget_stories=assigner.forget,
                )  # fmt: skip
                return await poll_source(src, POLICY, ctx)

        return asyncio.run(go())

    def crash(state: object) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(store, "put_source_state", crash)
        with pytest.raises(RuntimeError):
            pass_with_stories()
    assert (0, 0, None) == (store.count_articles(), store.count_stories(),
                            store.get_source_state("test"))  # fmt: skip
    again = pass_with_stories()
    assert (3, 3, 3) == (len(again.new), store.count_articles(), store.count_stories())
    assert store.unassigned_article_ids() == []


def test_pass_leaves_its_files_pending_until_a_flush(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A pass notes its unflushed files with its articles; flush_archive clears them."""
    feed_server.feed("/feed.xml", rss(ITEMS))
    root = tmp_path / "archive"
    result = run_pass(source(feed_server.url("/feed.xml")), store, root)
    assert sorted(store.archive_pending_ids()) == sorted(a.id for a in result.new)
    assert flush_archive(store, root) == 3
    assert (store.archive_pending_ids(), flush_archive(store, root)) == ([], 0)


def test_repair_rewrites_the_files_a_crash_left_unflushed(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A file still pending at start-up is written again exactly; flushed ones are left alone."""
    feed_server.feed("/feed.xml", rss(ITEMS))
    root = tmp_path / "archive"
    result = run_pass(source(feed_server.url("/feed.xml")), store, root)
    files = sorted(root.rglob("*.md"))
    for path in files:  # what a power loss can leave of an unflushed file
        path.write_bytes(b"")
    assert repair_archive(store, root) == 3
    articles = [store.get_article(s.id) for s in result.new]
    written = {archive.render(a) for a in articles if a is not None}
    assert written == {p.read_text(encoding="utf-8") for p in files}
    assert (store.archive_pending_ids(), repair_archive(store, root)) == ([], 0)
