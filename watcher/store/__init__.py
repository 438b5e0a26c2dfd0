"""Where articles and per-source state live: the ``Store`` protocol and ``open_store``.

Backends: SQLite (``sqlite.py``, one writer); PostgreSQL later, behind the same protocol and
the same contract tests. Every backend stores JSON and times as TEXT (``rows.py``) and runs the
same append-only migrations (``migrations.py``).

Does not: decide what is new to the user, decide which articles are one story (it stores
the dedupe stage's decisions), or hold settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from watcher.errors import StoreError
from watcher.models import Alert, Article, Match, SourceState, Story
from watcher.store.rows import (
    MemberRow,
    OutboxEntry,
    OutboxState,
    Row,
    SignatureRow,
    StoryReach,
)
from watcher.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]

SUPPORTED = "sqlite:///relative/path.db, sqlite:////absolute/path.db or a plain path"


@runtime_checkable
class Store(Protocol):
    """Articles and per-source state, kept across runs; every error is a StoreError."""

    def batch(self, action: str = "save a batch") -> AbstractContextManager[None]:
        """Make every write in the block one transaction: all of it is stored, or none."""
        ...

    def add_articles(self, articles: Iterable[Article]) -> int:
        """Insert the articles not stored yet, in one transaction; return how many were new."""
        ...

    def add_article_rows(self, rows: Iterable[Row]) -> int:
        """``add_articles`` for rows already made by ``rows.article_row`` (in another process)."""
        ...

    def all_ids(self) -> frozenset[str]:
        """The id of every stored article (a bulk import checks files against it)."""
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

    def recent_published_at(self, source: str, *, limit: int) -> list[datetime]:
        """When a source's latest ``limit`` articles were published, newest first."""
        ...

    def add_archive_pending(self, ids: Iterable[str]) -> None:
        """Note that these articles' archive files are written but maybe not yet on disk."""
        ...

    def archive_pending_ids(self) -> list[str]:
        """Articles whose archive files may not be on disk yet."""
        ...

    def clear_archive_pending(self, ids: Iterable[str]) -> None:
        """Forget these articles' pending flush: their files are on disk."""
        ...

    def is_writable(self) -> bool:
        """Whether a write transaction can start now (for the health check)."""
        ...

    def latest_stories(self, *, limit: int, min_outlets: int = 1) -> list[Story]:
        """The newest ``limit`` stories with at least ``min_outlets`` outlets, newest first."""
        ...

    def count_alerts_by_channel(self) -> dict[tuple[str, OutboxState], int]:
        """How many alerts each channel has in each state (for the metrics)."""
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

    # --- alerts: matches, the outbox, articles the rules have seen (sqlite_alerts.py) ---

    def enqueue_alerts(
        self, matches: Sequence[tuple[Match, Sequence[Alert]]], checked: Iterable[str] = ()
    ) -> list[Alert]:
        """Record first matches, queue their alerts, mark ``checked`` articles seen: at once."""
        ...

    def matched_rules(self, story_ids: Iterable[str]) -> set[tuple[str, str]]:
        """The (story_id, rule) pairs already matched among these stories."""
        ...

    def article_story_ids(self, article_ids: Iterable[str]) -> dict[str, str]:
        """The story of each of these articles that is in one."""
        ...

    def story_reach(self, story_ids: Iterable[str]) -> dict[str, StoryReach]:
        """Each story's outlets (in order of publication), categories and sources."""
        ...

    def unchecked_article_ids(self) -> list[str]:
        """Polled articles in a story that the rules have not seen (a kill came between)."""
        ...

    def list_alerts(
        self,
        *,
        state: OutboxState | None = None,
        channel: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[OutboxEntry]:
        """Queued alerts, oldest first; filters combine; ``limit`` keeps the newest N."""
        ...

    def count_alerts(self) -> dict[OutboxState, int]:
        """How many alerts are in each state (states with none are left out)."""
        ...

    def claim_alerts(
        self, keys: Sequence[str], *, message_key: str, owner: str, now: datetime
    ) -> bool:
        """Mark these pending alerts as being sent in one message, all or none; True if claimed."""
        ...

    def mark_alerts_sent(self, keys: Sequence[str], *, now: datetime) -> None:
        """The message holding these alerts was delivered."""
        ...

    def release_alerts(
        self, keys: Sequence[str], *, error: str, next_attempt_at: datetime, failed: bool = False
    ) -> None:
        """An attempt ended without delivery (or unknown): back to pending, or failed."""
        ...

    def retry_alerts(self, keys: Sequence[str] | None, *, now: datetime) -> int:
        """Make failed (or backed-off pending) alerts due now; None: every failed one."""
        ...

    def messages_sent(self, channel: str, *, since: datetime) -> list[datetime]:
        """When each message sent on ``channel`` at or after ``since`` went, oldest first."""
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
