"""Where articles and per-source state live: the ``Store`` protocol and ``open_store``.

Backends: SQLite (``sqlite.py``, one writer); PostgreSQL later, behind the same protocol and
the same contract tests. Every backend stores JSON and times as TEXT (``rows.py``) and runs the
same append-only migrations (``migrations.py``).

Does not: decide what is new to the user, decide which articles are one story (it stores
the dedupe stage's decisions), or hold settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from watcher.errors import StoreError
from watcher.models import Article, SourceState, Story
from watcher.store.rows import MemberRow, Row, SignatureRow
from watcher.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]

SUPPORTED = "sqlite:///relative/path.db, sqlite:////absolute/path.db or a plain path"


@runtime_checkable
class Store(Protocol):
    """Articles and per-source state, kept across runs; every error is a StoreError."""

    def add_articles(self, articles: Iterable[Article]) -> int:
        """Insert the articles not stored yet, in one transaction; return how many were new."""
        ...

    def add_article_rows(self, rows: Iterable[Row]) -> int:
        """``add_articles`` for rows already made by ``rows.article_row`` (in another process)."""
        ...

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Return which of these article ids are stored."""
        ...

    def get_article(self, id: str) -> Article | None:
        """Return the stored article with this id, or None."""
        ...

    def iter_articles(self, *, since: datetime | None = None) -> Iterator[Article]:
        """Stream articles by published_at then id; ``since`` keeps dated ones at or after it."""
        ...

    def count_articles(self) -> int:
        """Return how many articles are stored."""
        ...

    def count_articles_by_source(self) -> dict[str, int]:
        """Return how many stored articles came from each configured source."""
        ...

    def upsert_article(self, article: Article) -> bool:
        """Insert the article or replace the content stored under its id; True if it was new."""
        ...

    def get_source_state(self, name: str) -> SourceState | None:
        """Return the stored state of the named source, or None."""
        ...

    def put_source_state(self, state: SourceState) -> None:
        """Store a source's state, replacing what was stored under its name."""
        ...

    # --- stories (dedupe) ---

    def save_stories(
        self, signatures: Sequence[SignatureRow], members: Sequence[MemberRow]
    ) -> None:
        """Store signatures and story decisions, and refresh each touched story, at once."""
        ...

    def iter_signatures(
        self, scheme: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[SignatureRow]:
        """Stored signatures of ``scheme`` of assigned articles published in [since, until)."""
        ...

    def unassigned_article_ids(self) -> list[str]:
        """Ids of stored articles in no story yet, oldest first (undated ones first)."""
        ...

    def clear_stories(self) -> int:
        """Forget every story, member and signature (before ``restory``); return stories gone."""
        ...

    def count_stories(self) -> int:
        """Return how many stories are stored."""
        ...

    def get_story(self, story_id: str) -> Story | None:
        """The story with this id and its members, or None."""
        ...

    def iter_stories(
        self, *, since: datetime | None = None, min_outlets: int = 1
    ) -> Iterator[Story]:
        """Stories first published at or after ``since``, with at least ``min_outlets`` outlets."""
        ...

    def close(self) -> None:
        """Release the connection; closing twice is harmless."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_store(url_or_path: str | Path) -> Store:
    """Open (creating and migrating) the store at a path or URL; see ``SUPPORTED``."""
    if isinstance(url_or_path, Path) or "://" not in url_or_path:
        return SqliteStore(url_or_path)
    scheme, _, rest = url_or_path.partition("://")
    if scheme.lower() != "sqlite":
        # name only the scheme: the rest of a database URL may hold a password
        raise StoreError(f"unsupported store scheme {scheme!r}; use {SUPPORTED}")
    path = rest.removeprefix("/")
    if not rest.startswith("/") or not path:
        raise StoreError(f"store URL {url_or_path!r} names no file; use {SUPPORTED}")
    return SqliteStore(path)
