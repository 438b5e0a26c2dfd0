"""Named, append-only schema migrations, shared by every backend.

Migration ``n`` (1-based) is ``MIGRATIONS[n - 1]``; a store records each one it applies in
``schema_migrations(version, name, applied_at)``. Never edit or reorder a migration that has
shipped: append a new one. Later issues (stories, alerts, the outbox) add their own tables in
their own migrations; nothing here reserves room for them.

The SQL stays portable (SQLite and PostgreSQL): TEXT, INTEGER and plain indexes only; JSON,
times and booleans are stored as TEXT, TEXT and INTEGER 0/1. This module holds no I/O: each
backend runs the statements in one transaction of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from watcher.errors import StoreError


class Migration(NamedTuple):
    """One schema step: a name recorded beside its version, and the statements it runs."""

    name: str
    statements: tuple[str, ...]


CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""

_ARTICLES = """
CREATE TABLE articles (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    title TEXT NOT NULL,
    title_written TEXT,
    link TEXT,
    outlet TEXT NOT NULL,
    author TEXT,
    categories TEXT NOT NULL,          -- JSON list of strings
    tags TEXT NOT NULL,                -- JSON list of strings
    published_at TEXT,                 -- ISO-8601 with the original UTC offset
    published_key TEXT NOT NULL,       -- published_at in UTC, fixed width; '' when undated
    published_confidence TEXT NOT NULL,
    head_image TEXT,
    body_html TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT,
    origin TEXT,
    layout TEXT NOT NULL,              -- JSON of Layout
    story_id TEXT,                     -- set by the dedupe issue
    inserted_at TEXT NOT NULL          -- UTC, ISO-8601
)"""
# published_key exists because ISO text with mixed offsets does not sort by instant:
# '10:00+05:00' is earlier than '06:00+00:00'. Order and `since` filters use it.

_SOURCE_STATE = """
CREATE TABLE source_state (
    name TEXT PRIMARY KEY,
    url TEXT,
    etag TEXT,
    last_modified TEXT,
    last_checked_at TEXT,
    next_check_at TEXT,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL,
    paused INTEGER NOT NULL            -- 0 or 1
)"""

# --- dedupe (issue 4): a story per family of copies; signatures to rebuild the LSH index -----
_STORIES = """
CREATE TABLE stories (
    id TEXT PRIMARY KEY,               -- the id of the article that started the story
    canonical_id TEXT NOT NULL,        -- its earliest-published member
    first_published_key TEXT NOT NULL, -- that member's published_key
    outlets TEXT NOT NULL,             -- JSON list, in the order the outlets first published it
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)"""
_STORY_MEMBERS = """
CREATE TABLE story_members (
    article_id TEXT PRIMARY KEY REFERENCES articles (id),
    story_id TEXT NOT NULL REFERENCES stories (id),
    matched_id TEXT,                   -- the member it matched; NULL for the first
    similarity REAL NOT NULL,          -- 1.0 for the first
    published_key TEXT NOT NULL,
    assigned_at TEXT NOT NULL
)"""
_SIGNATURES = """
CREATE TABLE signatures (
    article_id TEXT PRIMARY KEY REFERENCES articles (id),
    scheme TEXT NOT NULL,              -- shingling + MinHash + rules version; others are stale
    size INTEGER NOT NULL,             -- distinct shingles
    minhash BLOB NOT NULL,             -- uint32 little-endian digest, then number hashes (bytea)
    published_key TEXT NOT NULL
)"""
_STORY_INDEXES = (
    "CREATE INDEX story_members_story ON story_members (story_id, published_key)",
    "CREATE INDEX signatures_published ON signatures (published_key)",
    "CREATE INDEX stories_first ON stories (first_published_key)",
)

# --- alerts (issue 5): the first match of each story x rule, and the outbox ---------------------
_MATCHES = """
CREATE TABLE matches (
    story_id TEXT NOT NULL,            -- no foreign key: `restory` clears stories, matches stay
    rule TEXT NOT NULL,
    article_id TEXT,                   -- the article whose arrival made the story match
    terms TEXT NOT NULL,               -- JSON list of the rule's terms found
    outlet_count INTEGER NOT NULL,
    matched_at TEXT NOT NULL,          -- time_key (UTC, fixed width)
    PRIMARY KEY (story_id, rule)       -- a story matches a rule once
)"""
_ALERTS = """
CREATE TABLE alerts (
    key TEXT PRIMARY KEY,              -- idempotency key of story x rule x channel: one alert each
    channel TEXT NOT NULL,
    rule TEXT NOT NULL,
    story_id TEXT NOT NULL,
    status TEXT NOT NULL,              -- pending | sent | failed
    attempts INTEGER NOT NULL,         -- sends begun (counted before each one)
    next_attempt_at TEXT NOT NULL,     -- time_key; a pending alert is not sent before it
    sending_at TEXT,                   -- time_key an attempt began; NULL when none is in flight
    claimed_by TEXT,                   -- the outbox that began it
    message_key TEXT,                  -- the message it goes in (its own key or a digest's),
                                       -- fixed at the first attempt so a resend is the same one
    last_error TEXT,
    payload TEXT NOT NULL,             -- JSON of the Alert: all a notifier needs to send it
    created_at TEXT NOT NULL,          -- time_key
    sent_at TEXT                       -- time_key
)"""
_RULE_CHECKS = """
CREATE TABLE rule_checks (
    article_id TEXT PRIMARY KEY,       -- the rules have seen this article's story
    checked_at TEXT NOT NULL
)"""
_ALERT_INDEXES = (
    "CREATE INDEX alerts_status ON alerts (status, next_attempt_at)",
    "CREATE INDEX alerts_channel_sent ON alerts (channel, sent_at)",
)

# --- stories keep their reach on the row, each name beside the member that brought it first ----
# `firsts` holds, aligned with `outlets`, `categories` and `sources`, each name's first member
# as [article_id, position] (position: a category's index in that member's list, else 0), and
# under "members" those members' [published_key, assigned_at]: a new member places the names it
# brings by comparing keys, and no story's members are re-read (see reach.py).
# The backfill uses SQLite's json_each and json_group_array: no portable SQL unpacks or builds
# a JSON list, so a PostgreSQL backend spells those statements its own way.
_FIRST_ORDER = "undated, published_key, assigned_at, article_id, position"
_STORY_FIRSTS = f"""
CREATE TEMP TABLE story_firsts AS
SELECT story_id, kind, value, undated, published_key, assigned_at, article_id, position
FROM (
    SELECT f.*, ROW_NUMBER() OVER (PARTITION BY story_id, kind, value
                                   ORDER BY {_FIRST_ORDER}) AS nth
    FROM (
        SELECT m.story_id, 'outlet' AS kind, a.outlet AS value, m.published_key = '' AS undated,
               m.published_key, m.assigned_at, m.article_id, 0 AS position
        FROM story_members m JOIN articles a ON a.id = m.article_id
        UNION ALL
        SELECT m.story_id, 'category', c.value, m.published_key = '', m.published_key,
               m.assigned_at, m.article_id, c.key
        FROM story_members m JOIN articles a ON a.id = m.article_id, json_each(a.categories) c
        UNION ALL
        SELECT m.story_id, 'source', a.source, m.published_key = '', m.published_key,
               m.assigned_at, m.article_id, 0
        FROM story_members m JOIN articles a ON a.id = m.article_id WHERE a.source IS NOT NULL
    ) f
) WHERE nth = 1"""


def _listed(kind: str, value: str) -> str:
    return (
        f"COALESCE((SELECT json_group_array(json(x)) FROM (SELECT {value} AS x "
        f"FROM story_firsts f WHERE f.story_id = stories.id AND f.kind = '{kind}' "
        f"ORDER BY {_FIRST_ORDER})), '[]')"
    )


def _first(column: str, fallback: str) -> str:
    return (
        f"COALESCE((SELECT {column} FROM story_firsts f WHERE f.story_id = stories.id "
        f"AND f.kind = 'outlet' ORDER BY {_FIRST_ORDER} LIMIT 1), {fallback})"
    )


_FIRST = "json_array(article_id, position)"
_FIRST_MEMBERS = (
    "COALESCE((SELECT json_group_object(article_id, json_array(published_key, assigned_at)) "
    "FROM (SELECT DISTINCT article_id, published_key, assigned_at FROM story_firsts f "
    "WHERE f.story_id = stories.id)), '{}')"
)
_BACKFILL_STORIES = f"""
UPDATE stories SET
    canonical_id = {_first("article_id", "canonical_id")},
    first_published_key = {_first("published_key", "first_published_key")},
    outlets = {_listed("outlet", "json_quote(value)")},
    categories = {_listed("category", "json_quote(value)")},
    sources = {_listed("source", "json_quote(value)")},
    firsts = json_object('outlet', json({_listed("outlet", _FIRST)}),
                         'category', json({_listed("category", _FIRST)}),
                         'source', json({_listed("source", _FIRST)}),
                         'members', json({_FIRST_MEMBERS})),
    size = (SELECT COUNT(*) FROM story_members m WHERE m.story_id = stories.id)"""

MIGRATIONS: Sequence[Migration] = (
    Migration(
        "create articles and source_state",
        (
            _ARTICLES,
            "CREATE INDEX articles_link ON articles (link)",
            "CREATE INDEX articles_published ON articles (published_key, id)",
            # No index on outlet or source yet: each costs ~20% of backfill's insert time;
            # the issue whose queries need one adds it in a migration of its own.
            _SOURCE_STATE,
        ),
    ),
    Migration(
        "source_state: last success, last status, body hash, redirect; articles by source",
        (
            "ALTER TABLE source_state ADD COLUMN last_success_at TEXT",
            "ALTER TABLE source_state ADD COLUMN last_status INTEGER",
            "ALTER TABLE source_state ADD COLUMN body_hash TEXT",
            "ALTER TABLE source_state ADD COLUMN redirected_from TEXT",
            # `watcher sources` counts items per source, and the pipeline reads a source's
            # stored articles to tell new items from changed ones.
            "CREATE INDEX articles_source ON articles (source)",
        ),
    ),
    Migration(
        "stories, story_members and signatures (dedupe)",
        (_STORIES, _STORY_MEMBERS, _SIGNATURES, *_STORY_INDEXES),
    ),
    Migration(
        "matches, alerts outbox and rule checks (alerts)",
        (
            _MATCHES,
            _ALERTS,
            *_ALERT_INDEXES,
            _RULE_CHECKS,
            # Articles stored before alerts existed are not news to anyone: mark them seen,
            # so the daemon's catch-up never alerts on the whole archive.
            "INSERT INTO rule_checks (article_id, checked_at) SELECT id, inserted_at FROM articles",
        ),
    ),
    Migration(
        "stories keep categories, sources and the first member of each name",
        (
            "ALTER TABLE stories ADD COLUMN categories TEXT NOT NULL DEFAULT '[]'",  # JSON list
            "ALTER TABLE stories ADD COLUMN sources TEXT NOT NULL DEFAULT '[]'",  # JSON list
            "ALTER TABLE stories ADD COLUMN firsts TEXT NOT NULL DEFAULT '{}'",  # JSON object
            _STORY_FIRSTS,
            f"CREATE INDEX story_firsts_order ON story_firsts (story_id, kind, {_FIRST_ORDER})",
            _BACKFILL_STORIES,
            "DROP TABLE story_firsts",
        ),
    ),
    Migration(
        "articles: drop story_id, which story_members records",
        # Written for every assigned article and never read: the update rewrote each whole
        # article row (body and text included) a second time in every pass.
        ("ALTER TABLE articles DROP COLUMN story_id",),
    ),
    Migration(
        "archive files written but not yet known to be on disk",
        (
            # An article's id goes in with the article, in the pass's transaction; it leaves
            # once a flush of the archive's file system has followed the file's write. At
            # start-up the files of the ids still here are written again.
            "CREATE TABLE archive_pending (article_id TEXT PRIMARY KEY) WITHOUT ROWID",
        ),
    ),
)


def pending_migrations(
    applied: Mapping[int, str], migrations: Sequence[Migration], *, where: str
) -> list[tuple[int, Migration]]:
    """Return the (version, migration) pairs still to run; raise StoreError if the db disagrees."""
    known = len(migrations)
    newest = max(applied, default=0)
    if newest > known:
        raise StoreError(
            f"{where}: schema version {newest} is newer than this watcher knows ({known}); "
            "upgrade watcher"
        )
    for version, name in sorted(applied.items()):
        expected = migrations[version - 1].name if version >= 1 else None
        if name != expected:
            raise StoreError(
                f"{where}: schema migration {version} is recorded as {name!r}, "
                f"expected {expected!r}"
            )
    return [(v, m) for v, m in enumerate(migrations, start=1) if v not in applied]
