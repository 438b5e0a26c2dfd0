"""The SQLite store: one file, one connection, one writer.

The connection runs in WAL mode with ``synchronous=NORMAL`` (readers never block the writer;
a power cut can lose the last commits but never corrupts the file), foreign keys on and a busy
timeout. Writes take the write lock up front (``BEGIN IMMEDIATE``); a process-wide lock lets
any thread use the store, one call at a time. Every driver error becomes a ``StoreError``
naming the file, with the driver's error chained.

Does not: pool connections, retry past the busy timeout, or decide what is a duplicate story
(the dedupe stage does; its decisions are only stored here).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from watcher.errors import StoreError
from watcher.models import Article, SourceState
from watcher.store.migrations import (
    CREATE_SCHEMA_MIGRATIONS,
    MIGRATIONS,
    Migration,
    pending_migrations,
)
from watcher.store.rows import (
    ARTICLE_COLUMNS,
    SOURCE_STATE_COLUMNS,
    Row,
    article_from_row,
    article_row,
    source_state_from_row,
    source_state_row,
    time_key,
)
from watcher.store.sqlite_alerts import SqliteAlertsMixin
from watcher.store.sqlite_stories import ReachCache, SqliteStoriesMixin

PAGE_SIZE: Final = 500
"""Rows per page when streaming, and ids per IN list (old SQLite allows 999 variables)."""

_COLUMNS = ", ".join(ARTICLE_COLUMNS)
_INSERT_ARTICLE = (
    f"INSERT INTO articles ({_COLUMNS}, published_key, inserted_at) "
    f"VALUES ({', '.join(':' + c for c in ARTICLE_COLUMNS)}, :published_key, :inserted_at) "
)
_ADD_ARTICLE = _INSERT_ARTICLE + "ON CONFLICT (id) DO NOTHING"
_UPSERT_ARTICLE = (
    _INSERT_ARTICLE
    + "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*ARTICLE_COLUMNS[1:], "published_key"))
)  # inserted_at stays as it was
_SELECT_ARTICLES = f"SELECT {_COLUMNS}, published_key FROM articles"
_FIRST_PAGE = (
    f"{_SELECT_ARTICLES} WHERE published_key >= :floor ORDER BY published_key, id LIMIT {PAGE_SIZE}"
)
_NEXT_PAGE = (
    f"{_SELECT_ARTICLES} WHERE published_key >= :floor AND (published_key, id) > (:key, :id) "
    f"ORDER BY published_key, id LIMIT {PAGE_SIZE}"
)
_STATE_COLUMNS = ", ".join(SOURCE_STATE_COLUMNS)
_PUT_STATE = (
    f"INSERT INTO source_state ({_STATE_COLUMNS}) "
    f"VALUES ({', '.join(':' + c for c in SOURCE_STATE_COLUMNS)}) "
    "ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SOURCE_STATE_COLUMNS[1:])
)


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class SqliteStore(SqliteStoriesMixin, SqliteAlertsMixin):
    """A ``Store`` in one SQLite file; safe to share between threads, one call at a time."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._reaches = ReachCache()
        self._conn = self._connect(busy_timeout_s)
        try:
            with self._guard("open the store"):
                for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                    self._conn.execute(f"PRAGMA {pragma}").fetchall()
            self._migrate(migrations)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # self._lock serialises every use
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.path}: cannot open the store: {e}") from e

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn driver errors into a StoreError naming the file and the action."""
        try:
            yield
        except (sqlite3.Error, UnicodeEncodeError) as e:  # lone surrogates cannot be stored
            raise StoreError(f"{self.path}: cannot {action}: {e}") from e

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the connection for one read."""
        with self._lock, self._guard(action):
            yield self._conn

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction; roll back on any error.

        Inside ``batch`` (this thread holds the lock and a transaction is open) the block is a
        savepoint of that transaction instead: its error undoes the block alone, and nothing
        is committed before the batch is.
        """
        with self._lock, self._guard(action):
            nested = self._conn.in_transaction
            self._conn.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("RELEASE nested" if nested else "COMMIT")
            except BaseException:
                if nested:
                    self._conn.execute("ROLLBACK TO nested")
                    self._conn.execute("RELEASE nested")
                elif self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def batch(self, action: str = "save a batch") -> Iterator[None]:
        """Make every write in the block one transaction: all of it is stored, or none.

        A poll pass's articles, stories, alerts and source state cost one commit, not eight.
        """
        with self._transaction(action):
            yield

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply the pending migrations, all in one transaction, recording each version."""
        with self._transaction("migrate the schema") as conn:
            conn.execute(CREATE_SCHEMA_MIGRATIONS)
            applied = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
            for version, migration in pending_migrations(applied, migrations, where=str(self.path)):
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, migration.name, _now_text()),
                )

    def _article(self, values: Sequence[Any]) -> Article:
        """Decode one row of ``_SELECT_ARTICLES``."""
        row = dict(zip(ARTICLE_COLUMNS, values[: len(ARTICLE_COLUMNS)], strict=True))
        try:
            return article_from_row(row)
        except ValueError as e:  # includes pydantic's ValidationError and bad JSON
            raise StoreError(f"{self.path}: article {row['id']!r} cannot be read: {e}") from e

    def add_articles(self, articles: Iterable[Article]) -> int:
        """Insert the articles not stored yet, in one transaction; return how many were new."""
        return self.add_article_rows(article_row(a) for a in articles)

    def add_article_rows(self, rows: Iterable[Row]) -> int:
        """``add_articles`` for rows already made by ``rows.article_row`` (in another process)."""
        inserted_at = _now_text()
        stamped = ({**row, "inserted_at": inserted_at} for row in rows)
        with self._transaction("add articles") as conn:
            return max(conn.executemany(_ADD_ARTICLE, stamped).rowcount, 0)

    def all_ids(self) -> frozenset[str]:
        """The id of every stored article (a bulk import checks files against it)."""
        with self._read("list article ids") as conn:
            return frozenset(row[0] for row in conn.execute("SELECT id FROM articles"))

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Return which of these article ids are stored."""
        found: set[str] = set()
        for chunk in _chunks(ids, PAGE_SIZE):
            marks = ", ".join("?" * len(chunk))
            with self._read("look up article ids") as conn:
                rows = conn.execute(f"SELECT id FROM articles WHERE id IN ({marks})", chunk)
                found.update(row[0] for row in rows.fetchall())
        return found

    def get_article(self, id: str) -> Article | None:
        """Return the stored article with this id, or None."""
        with self._read(f"read article {id!r}") as conn:
            rows = conn.execute(f"{_SELECT_ARTICLES} WHERE id = ?", (id,)).fetchall()
        return self._article(rows[0]) if rows else None

    def iter_articles(self, *, since: datetime | None = None) -> Iterator[Article]:
        """Stream articles by published_at then id; ``since`` keeps dated ones at or after it."""
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        return self._pages(time_key(since))

    def _pages(self, floor: str) -> Iterator[Article]:
        """Yield page after page, holding the connection only while a page is read."""
        query, params = _FIRST_PAGE, {"floor": floor}
        while True:
            with self._read("read articles") as conn:
                rows = conn.execute(query, params).fetchall()
            yield from (self._article(row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            query, params = _NEXT_PAGE, {"floor": floor, "key": rows[-1][-1], "id": rows[-1][0]}

    def count_articles(self) -> int:
        """Return how many articles are stored."""
        with self._read("count articles") as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM articles").fetchone()
        return int(count)

    def count_articles_by_source(self) -> dict[str, int]:
        """Return how many stored articles came from each configured source."""
        query = "SELECT source, COUNT(*) FROM articles WHERE source IS NOT NULL GROUP BY source"
        with self._read("count articles by source") as conn:
            return {str(name): int(count) for name, count in conn.execute(query)}

    def recent_published_at(self, source: str, *, limit: int) -> list[datetime]:
        """When a source's latest ``limit`` articles were published, newest first."""
        query = (
            "SELECT published_key FROM articles WHERE source = ? AND published_key != '' "
            "ORDER BY published_key DESC LIMIT ?"
        )
        with self._read("read a source's recent times") as conn:
            return [datetime.fromisoformat(k) for (k,) in conn.execute(query, (source, limit))]

    def add_archive_pending(self, ids: Iterable[str]) -> None:
        """Note that these articles' archive files are written but maybe not yet on disk."""
        with self._transaction("note archive files to flush") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO archive_pending (article_id) VALUES (?)",
                [(i,) for i in ids],
            )

    def archive_pending_ids(self) -> list[str]:
        """Articles whose archive files may not be on disk yet."""
        with self._read("list archive files to flush") as conn:
            return [row[0] for row in conn.execute("SELECT article_id FROM archive_pending")]

    def clear_archive_pending(self, ids: Iterable[str]) -> None:
        """Forget these articles' pending flush: their files are on disk."""
        with self._transaction("forget flushed archive files") as conn:
            conn.executemany(
                "DELETE FROM archive_pending WHERE article_id = ?", [(i,) for i in ids]
            )

    def is_writable(self) -> bool:
        """Whether a write transaction can start now (for the health check)."""
        try:
            with self._transaction("check the store is writable"):
                return True
        except StoreError:
            return False

    def upsert_article(self, article: Article) -> bool:
        """Insert the article or replace the content stored under its id; True if it was new."""
        row = {**article_row(article), "inserted_at": _now_text()}
        with self._transaction(f"upsert article {article.id!r}") as conn:
            existed = conn.execute("SELECT 1 FROM articles WHERE id = ?", (article.id,)).fetchall()
            conn.execute(_UPSERT_ARTICLE, row)
        return not existed

    def get_source_state(self, name: str) -> SourceState | None:
        """Return the stored state of the named source, or None."""
        with self._read(f"read the state of source {name!r}") as conn:
            rows = conn.execute(
                f"SELECT {_STATE_COLUMNS} FROM source_state WHERE name = ?", (name,)
            ).fetchall()
        if not rows:
            return None
        return source_state_from_row(dict(zip(SOURCE_STATE_COLUMNS, rows[0], strict=True)))

    def put_source_state(self, state: SourceState) -> None:
        """Store a source's state, replacing what was stored under its name."""
        with self._transaction(f"store the state of source {state.name!r}") as conn:
            conn.execute(_PUT_STATE, source_state_row(state))

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock, self._guard("close the store"):
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
