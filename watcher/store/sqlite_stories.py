"""The SQLite side of stories: signatures, members and story rows (dedupe, issue 4).

A mixin of ``SqliteStore``, kept apart so the article and source-state code stays short.
``save_stories`` writes one batch of decisions in one transaction: the signatures, the
members, each article's ``story_id``, and each touched story's row (canonical member,
outlets in order of first publication, size), recomputed from its members.

Does not: decide which story an article belongs to (the dedupe stage does).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from watcher.errors import StoreError
from watcher.models import Story, StoryMember
from watcher.store.rows import MemberRow, SignatureRow, time_from_key, time_key

_PUT_SIGNATURE: Final = (
    "INSERT INTO signatures (article_id, scheme, size, minhash, published_key) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET scheme = excluded.scheme, "
    "size = excluded.size, minhash = excluded.minhash, published_key = excluded.published_key"
)
_PUT_MEMBER: Final = (
    "INSERT INTO story_members (article_id, story_id, matched_id, similarity, published_key, "
    "assigned_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
    "story_id = excluded.story_id, matched_id = excluded.matched_id, "
    "similarity = excluded.similarity, published_key = excluded.published_key"
)
_PUT_STORY: Final = (
    "INSERT INTO stories (id, canonical_id, first_published_key, outlets, size, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "canonical_id = excluded.canonical_id, first_published_key = excluded.first_published_key, "
    "outlets = excluded.outlets, size = excluded.size, updated_at = excluded.updated_at"
)
_MEMBERS_OF: Final = (
    "SELECT m.article_id, a.outlet, a.title, a.link, a.published_at, a.origin, m.similarity, "
    "m.matched_id, m.published_key FROM story_members m JOIN articles a ON a.id = m.article_id "
    "WHERE m.story_id = ? ORDER BY m.published_key = '', m.published_key, m.assigned_at, "
    "m.article_id"
)
_SIGNATURES: Final = (
    "SELECT s.article_id, s.scheme, s.size, s.minhash, s.published_key, m.story_id "
    "FROM signatures s JOIN story_members m ON m.article_id = s.article_id "
    "WHERE s.scheme = ? AND s.published_key >= ? AND s.published_key < ? "
    "ORDER BY s.published_key, s.article_id"
)
_UNASSIGNED: Final = (
    "SELECT id FROM articles a WHERE NOT EXISTS "
    "(SELECT 1 FROM story_members m WHERE m.article_id = a.id) ORDER BY published_key, id"
)
_END_OF_TIME: Final = "\uffff"  # sorts after every published_key


class SqliteStoriesMixin:
    """Story methods of ``SqliteStore``; they use its connection, lock and error translation."""

    path: Path

    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _transaction(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def save_stories(
        self, signatures: Sequence[SignatureRow], members: Sequence[MemberRow]
    ) -> None:
        """Store signatures and story decisions, and refresh each touched story, at once."""
        now = datetime.now(UTC).isoformat()
        with self._transaction("save stories") as conn:
            conn.executemany(_PUT_SIGNATURE, [s[:5] for s in signatures])
            touched = list(dict.fromkeys(m.story_id for m in members))
            for story_id in touched:  # the story row first: members refer to it
                conn.execute(_PUT_STORY, (story_id, story_id, "", "[]", 0, now, now))
            conn.executemany(_PUT_MEMBER, [(*m, now) for m in members])
            conn.executemany(
                "UPDATE articles SET story_id = ? WHERE id = ?",
                [(m.story_id, m.article_id) for m in members],
            )
            for story_id in touched:
                _refresh_story(conn, story_id, now)

    def iter_signatures(
        self, scheme: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[SignatureRow]:
        """Stored signatures of ``scheme`` of assigned articles published in [since, until)."""
        low = time_key(since) if since is not None else ""
        high = time_key(until) if until is not None else _END_OF_TIME
        with self._read("read signatures") as conn:
            rows = conn.execute(_SIGNATURES, (scheme, low, high)).fetchall()
        return (SignatureRow(*row) for row in rows)

    def unassigned_article_ids(self) -> list[str]:
        """Ids of stored articles in no story yet, oldest first (undated ones first)."""
        with self._read("list articles with no story") as conn:
            return [row[0] for row in conn.execute(_UNASSIGNED).fetchall()]

    def clear_stories(self) -> int:
        """Forget every story, member and signature (before ``restory``); return stories gone."""
        with self._transaction("clear stories") as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM stories").fetchone()
            conn.execute("UPDATE articles SET story_id = NULL WHERE story_id IS NOT NULL")
            for table in ("story_members", "stories", "signatures"):
                conn.execute(f"DELETE FROM {table}")
        return int(count)

    def count_stories(self) -> int:
        """Return how many stories are stored."""
        with self._read("count stories") as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM stories").fetchone()
        return int(count)

    def get_story(self, story_id: str) -> Story | None:
        """The story with this id and its members, or None."""
        with self._read(f"read story {story_id!r}") as conn:
            row = conn.execute(f"{_STORY_COLUMNS} WHERE id = ?", (story_id,)).fetchone()
            return None if row is None else _story(conn, row)

    def iter_stories(
        self, *, since: datetime | None = None, min_outlets: int = 1
    ) -> Iterator[Story]:
        """Stories first published at or after ``since``, with at least ``min_outlets`` outlets.

        Oldest first; undated single-article stories only when ``since`` is None.
        """
        where = "WHERE first_published_key >= ?" if since is not None else ""
        params: tuple[Any, ...] = (time_key(since),) if since is not None else ()
        query = f"{_STORY_COLUMNS} {where} ORDER BY first_published_key, id"
        with self._read("list stories") as conn:
            ids = conn.execute(query, params).fetchall()
        for row in ids:
            if len(json.loads(row[2])) < min_outlets:
                continue
            with self._read("read a story") as conn:
                yield _story(conn, row)

    def latest_stories(self, *, limit: int, min_outlets: int = 1) -> list[Story]:
        """The newest ``limit`` stories with at least ``min_outlets`` outlets, newest first."""
        query = f"{_STORY_COLUMNS} ORDER BY first_published_key DESC, id DESC"
        found: list[Story] = []
        with self._read("list the latest stories") as conn:
            for row in conn.execute(query):
                if len(json.loads(row[2])) >= min_outlets:
                    found.append(_story(conn, row))
                    if len(found) >= limit:
                        break
        return found


_STORY_COLUMNS: Final = (
    "SELECT id, canonical_id, outlets, first_published_key, updated_at FROM stories"
)


def _refresh_story(conn: sqlite3.Connection, story_id: str, now: str) -> None:
    rows = conn.execute(_MEMBERS_OF, (story_id,)).fetchall()
    if not rows:
        raise StoreError(f"story {story_id!r} has no members")
    outlets = list(dict.fromkeys(row[1] for row in rows))
    first = rows[0]
    conn.execute(
        "UPDATE stories SET canonical_id = ?, first_published_key = ?, outlets = ?, size = ?, "
        "updated_at = ? WHERE id = ?",
        (first[0], first[8], json.dumps(outlets, ensure_ascii=False), len(rows), now, story_id),
    )


def _story(conn: sqlite3.Connection, row: Sequence[Any]) -> Story:
    story_id, canonical_id, outlets, first_key, updated_at = row
    members = [
        StoryMember(
            article_id=m[0],
            outlet=m[1],
            title=m[2],
            link=m[3],
            published_at=datetime.fromisoformat(m[4]) if m[4] else None,
            origin=m[5],
            similarity=m[6],
            matched_id=m[7],
        )
        for m in conn.execute(_MEMBERS_OF, (story_id,)).fetchall()
    ]
    return Story(
        id=story_id,
        canonical_id=canonical_id,
        outlets=json.loads(outlets),
        first_published_at=time_from_key(first_key),
        updated_at=datetime.fromisoformat(updated_at),
        members=members,
    )
