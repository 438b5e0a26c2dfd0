"""The SQLite side of stories: signatures, members and story rows (dedupe, issue 4).

A mixin of ``SqliteStore``, kept apart so the article and source-state code stays short.
``save_stories`` writes one batch of decisions in one transaction, and reads no member of a
story but the new ones::

    facts = outlet, categories, source (and story, if any) of the batch's articles  one query
    story rows (placeholders for new stories), members (each article's story)
    each touched story's row                                                    one query
    reach.add(new member) for each: the names it brings first placed among the row's by
        the keys of their first members, which the row keeps (reach.py)
    canonical, first key, size, outlets, categories, sources, firsts written back
    an article assigned again (rare): its old and new stories rebuilt from every member

A story row keeps its canonical member, first published key, size, and its outlets (in
order of first publication), categories and sources (in member order, as ``story_reach``
returns them), so readers never join members with articles.

Does not: decide which story an article belongs to (the dedupe stage does), or notice an
article changed by ``upsert_article`` after it joined a story (its story keeps what it had).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Final, NamedTuple

from watcher.errors import StoreError
from watcher.models import Story, StoryMember
from watcher.store.reach import Reach, member_key
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
_PLACE_STORY: Final = (  # members refer to it; its values come once they are in
    "INSERT INTO stories (id, canonical_id, first_published_key, outlets, size, created_at, "
    "updated_at) VALUES (?, ?, '', '[]', 0, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_FACTS: Final = (
    "SELECT a.id, a.outlet, a.categories, a.source, m.story_id FROM articles a "
    "LEFT JOIN story_members m ON m.article_id = a.id WHERE a.id IN ({marks})"
)
_MEMBER_FACTS: Final = (
    "SELECT m.story_id, m.article_id, m.published_key, m.assigned_at, a.outlet, a.categories, "
    "a.source FROM story_members m JOIN articles a ON a.id = m.article_id WHERE m.story_id = ?"
)
_ROWS: Final = (
    "SELECT id, outlets, categories, sources, firsts, size FROM stories WHERE id IN ({marks})"
)
_PUT_ROW: Final = (
    "UPDATE stories SET canonical_id = ?, first_published_key = ?, outlets = ?, categories = ?, "
    "sources = ?, firsts = ?, size = ?, updated_at = ? WHERE id = ?"
)
_IDS_PER_QUERY: Final = 500  # old SQLite allows 999 variables in one statement
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


class ReachCache:
    """The story rows' reaches last written, kept to skip decoding a row's JSON again.

    The stories joined lately are few (a pass touches at most its articles' stories), and a
    big story's entry is tens of KB: ``size`` entries at most.

    An entry is used only while the row still holds exactly the columns it was made from
    (compared as text: a rolled-back pass, or another process, leaves other columns and the
    row is decoded), and is taken out while in use, so a failure half-way leaves none behind.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple[str, ...], Reach]] = OrderedDict()

    def take(self, story_id: str, columns: tuple[str, ...]) -> Reach:
        """The reach of a row read now: the cached one if the row is unchanged, else decoded."""
        cached = self._entries.pop(story_id, None)
        if cached is not None and cached[0] == columns:
            return cached[1]
        return Reach.from_columns(*columns)

    def put(self, story_id: str, columns: tuple[str, ...], reach: Reach) -> None:
        """Remember the reach just written as these columns (the least recent goes past size)."""
        self._entries[story_id] = (columns, reach)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


class SqliteStoriesMixin:
    """Story methods of ``SqliteStore``; they use its connection, lock and error translation."""

    path: Path
    _reaches: ReachCache

    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _transaction(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def save_stories(
        self, signatures: Sequence[SignatureRow], members: Sequence[MemberRow]
    ) -> None:
        """Store signatures and story decisions, and update each touched story, at once."""
        now = datetime.now(UTC).isoformat()
        with self._transaction("save stories") as conn:
            conn.executemany(_PUT_SIGNATURE, [s[:5] for s in signatures])
            facts = _article_facts(conn, [m.article_id for m in members])
            if missing := [m.article_id for m in members if m.article_id not in facts]:
                raise StoreError(f"{self.path}: cannot save stories: {missing[0]!r} is not stored")
            redo = _stories_to_recompute(members, facts)
            touched = dict.fromkeys(m.story_id for m in members)
            conn.executemany(_PLACE_STORY, [(s, s, now, now) for s in touched])
            conn.executemany(_PUT_MEMBER, [(*m, now) for m in members])
            joining = [_Joining(m.story_id, m.article_id, m.published_key, now,
                                *facts[m.article_id][:3])
                       for m in members if m.story_id not in redo]  # fmt: skip
            grown = [*joining, *_reset_stories(conn, sorted(redo))]
            _grow_stories(conn, grown, now, self._reaches)

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


class _Facts(NamedTuple):
    """What a story row needs of an article, and the story it is in already (if any)."""

    outlet: str
    categories: list[str]
    source: str | None
    story_id: str | None


def _chunks(items: Iterable[str], size: int = _IDS_PER_QUERY) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _article_facts(conn: sqlite3.Connection, article_ids: Sequence[str]) -> dict[str, _Facts]:
    """The facts of those of these articles that are stored."""
    facts: dict[str, _Facts] = {}
    for chunk in _chunks(dict.fromkeys(article_ids)):
        query = _FACTS.format(marks=", ".join("?" * len(chunk)))
        for id_, outlet, categories, source, story_id in conn.execute(query, chunk):
            facts[id_] = _Facts(outlet, json.loads(categories), source, story_id)
    return facts


def _stories_to_recompute(members: Sequence[MemberRow], facts: dict[str, _Facts]) -> set[str]:
    """Stories an article leaves or joins again (in a story already, or twice in the batch)."""
    twice = {a for a, n in Counter(m.article_id for m in members).items() if n > 1}
    redo: set[str] = set()
    for m in members:
        before = facts[m.article_id].story_id
        if before is not None or m.article_id in twice:
            redo.update(s for s in (before, m.story_id) if s is not None)
    return redo


class _Joining(NamedTuple):
    """A member joining its story, with what the story's row needs of it."""

    story_id: str
    article_id: str
    published_key: str
    assigned_at: str
    outlet: str
    categories: list[str]
    source: str | None


def _grow_stories(
    conn: sqlite3.Connection, joining: Sequence[_Joining], now: str, reaches: ReachCache
) -> None:
    """Add members to their stories' rows: size, canonical, and the names each brings first."""
    by_story: dict[str, list[_Joining]] = {}
    for m in joining:
        by_story.setdefault(m.story_id, []).append(m)
    values: list[tuple[Any, ...]] = []
    for chunk in _chunks(by_story):
        query = _ROWS.format(marks=", ".join("?" * len(chunk)))
        for story_id, *columns, size in conn.execute(query, chunk).fetchall():
            reach = reaches.take(story_id, tuple(columns))
            for m in by_story[story_id]:
                key = member_key(m.published_key, m.assigned_at, m.article_id)
                reach.add(key, m.outlet, m.categories, m.source)
            size += len(by_story[story_id])
            written = reach.columns()
            values.append((*reach.canonical(), *written, size, now, story_id))
            reaches.put(story_id, written, reach)
    conn.executemany(_PUT_ROW, values)


def _reset_stories(conn: sqlite3.Connection, story_ids: Sequence[str]) -> list[_Joining]:
    """Empty these stories' rows (size, lists) and return every member to add again.

    A story left with no member is deleted.
    """
    joining: list[_Joining] = []
    for story_id in story_ids:
        conn.execute(
            "UPDATE stories SET size = 0, outlets = '[]', categories = '[]', sources = '[]', "
            "firsts = '{}' WHERE id = ?",
            (story_id,),
        )
        rows = conn.execute(_MEMBER_FACTS, (story_id,)).fetchall()
        if not rows:
            conn.execute("DELETE FROM stories WHERE id = ?", (story_id,))
        joining += [_Joining(s, a, key, at, outlet, json.loads(categories), source)
                    for s, a, key, at, outlet, categories, source in rows]  # fmt: skip
    return joining


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
