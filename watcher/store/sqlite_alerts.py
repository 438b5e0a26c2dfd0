"""The SQLite side of alerts: matches, the outbox and which articles the rules have seen (issue 5).

A mixin of ``SqliteStore``, like ``sqlite_stories.py``. ``enqueue_alerts`` is the one write of
the rules stage: in one transaction it records each story x rule's first match, the alerts that
match owes its channels (one row per idempotency key, ``INSERT ... ON CONFLICT DO NOTHING``) and
the articles it evaluated. So a kill leaves either all of that or none of it, and an alert is
queued once however many copies of its story arrive.

The outbox's life of a row::

    pending --claim_alerts--> sending (sending_at set, attempts + 1, message_key fixed)
    sending --mark_alerts_sent--> sent
    sending --release_alerts--> pending (back-off)  or  failed (gave up, or held after a crash)
    failed  --retry_alerts--> pending                (by hand: `watcher alerts --retry`)

Times are stored as ``time_key`` text (UTC, fixed width), so SQL compares them by instant.

Does not: decide what matches, when to send, or how long to back off (the outbox does).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Final

from watcher.errors import StoreError
from watcher.models import Alert, Match
from watcher.store.rows import (
    ALERT_COLUMNS,
    OutboxEntry,
    OutboxState,
    StoryReach,
    alert_row,
    match_row,
    outbox_entry_from_row,
    time_key,
)

_IDS_PER_QUERY: Final = 500  # old SQLite allows 999 variables in one statement
_INSERT_MATCH: Final = (
    "INSERT INTO matches (story_id, rule, article_id, terms, outlet_count, matched_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (story_id, rule) DO NOTHING"
)
_INSERT_ALERT: Final = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in ALERT_COLUMNS)}) ON CONFLICT (key) DO NOTHING"
)
_INSERT_CHECK: Final = (
    "INSERT INTO rule_checks (article_id, checked_at) VALUES (?, ?) "
    "ON CONFLICT (article_id) DO NOTHING"
)
_SELECT_ALERTS: Final = f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts"
_REACH: Final = "SELECT id, outlets, categories, sources FROM stories WHERE id IN ({marks})"
_UNCHECKED: Final = (
    "SELECT a.id FROM articles a JOIN story_members m ON m.article_id = a.id "
    "WHERE a.source IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM rule_checks c WHERE c.article_id = a.id) ORDER BY a.published_key, a.id"
)
_STATES: Final = {
    "pending": "status = 'pending' AND sending_at IS NULL",
    "sending": "status = 'pending' AND sending_at IS NOT NULL",
    "sent": "status = 'sent'",
    "failed": "status = 'failed'",
}


def _chunks(items: Iterable[str], size: int = _IDS_PER_QUERY) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _marks(items: Sequence[object]) -> str:
    return ", ".join("?" * len(items))


class SqliteAlertsMixin:
    """Alert and outbox methods of ``SqliteStore``; they use its connection, lock and errors."""

    path: Path

    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _transaction(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    # --- the rules' side ---

    def enqueue_alerts(
        self, matches: Sequence[tuple[Match, Sequence[Alert]]], checked: Iterable[str] = ()
    ) -> list[Alert]:
        """Record first matches, queue their alerts, mark ``checked`` articles seen: at once.

        An alert is queued only with a match recorded now (a story x rule matches once) and
        only under a key not queued before. Returns the alerts queued.
        """
        now = time_key(datetime.now(UTC))
        queued: list[Alert] = []
        with self._transaction("queue alerts") as conn:
            for match, alerts in matches:
                if conn.execute(_INSERT_MATCH, match_row(match)).rowcount != 1:
                    continue
                for alert in alerts:
                    row = alert_row(alert, alert.created_at)
                    if conn.execute(_INSERT_ALERT, row).rowcount == 1:
                        queued.append(alert)
            conn.executemany(_INSERT_CHECK, ((article_id, now) for article_id in checked))
        return queued

    def matched_rules(self, story_ids: Iterable[str]) -> set[tuple[str, str]]:
        """The (story_id, rule) pairs already matched among these stories."""
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(story_ids):
            query = f"SELECT story_id, rule FROM matches WHERE story_id IN ({_marks(chunk)})"
            with self._read("read matches") as conn:
                found.update((row[0], row[1]) for row in conn.execute(query, chunk))
        return found

    def article_story_ids(self, article_ids: Iterable[str]) -> dict[str, str]:
        """The story of each of these articles that is in one."""
        found: dict[str, str] = {}
        for chunk in _chunks(article_ids):
            query = (
                f"SELECT article_id, story_id FROM story_members "
                f"WHERE article_id IN ({_marks(chunk)})"
            )
            with self._read("read story members") as conn:
                found.update((row[0], row[1]) for row in conn.execute(query, chunk))
        return found

    def story_reach(self, story_ids: Iterable[str]) -> dict[str, StoryReach]:
        """Each story's outlets (in order of publication), categories and sources.

        Read from the story rows, which ``save_stories`` keeps up to date: no member is read.
        """
        reach: dict[str, StoryReach] = {}
        for chunk in _chunks(dict.fromkeys(story_ids)):
            with self._read("read the reach of stories") as conn:
                rows = conn.execute(_REACH.format(marks=_marks(chunk)), chunk).fetchall()
            for story_id, outlets, categories, sources in rows:
                reach[story_id] = StoryReach(
                    tuple(json.loads(outlets)), tuple(json.loads(categories)),
                    tuple(json.loads(sources)),
                )  # fmt: skip
        return reach

    def unchecked_article_ids(self) -> list[str]:
        """Polled articles in a story that the rules have not seen (a kill came between)."""
        with self._read("list articles the rules have not seen") as conn:
            return [row[0] for row in conn.execute(_UNCHECKED).fetchall()]

    # --- the outbox's side ---

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
        where, params = _filters(state, channel, rule, since)
        query = f"{_SELECT_ALERTS} {where} ORDER BY created_at DESC, key DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._read("list alerts") as conn:
            rows = conn.execute(query, params).fetchall()
        return [self._entry(row) for row in reversed(rows)]

    def _entry(self, values: Sequence[Any]) -> OutboxEntry:
        row = dict(zip(ALERT_COLUMNS, values, strict=True))
        try:
            return outbox_entry_from_row(row)
        except ValueError as e:
            raise StoreError(f"{self.path}: alert {row['key']!r} cannot be read: {e}") from e

    def count_alerts(self) -> dict[OutboxState, int]:
        """How many alerts are in each state (states with none are left out)."""
        query = (
            "SELECT CASE WHEN status = 'pending' AND sending_at IS NOT NULL THEN 'sending' "
            "ELSE status END AS state, COUNT(*) FROM alerts GROUP BY state"
        )
        with self._read("count alerts") as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def count_alerts_by_channel(self) -> dict[tuple[str, OutboxState], int]:
        """How many alerts each channel has in each state (for the metrics)."""
        query = (
            "SELECT channel, CASE WHEN status = 'pending' AND sending_at IS NOT NULL "
            "THEN 'sending' ELSE status END AS state, COUNT(*) FROM alerts GROUP BY channel, state"
        )
        with self._read("count alerts by channel") as conn:
            return {(row[0], row[1]): int(row[2]) for row in conn.execute(query)}

    def claim_alerts(
        self, keys: Sequence[str], *, message_key: str, owner: str, now: datetime
    ) -> bool:
        """Mark these pending alerts as being sent in one message, all or none; True if claimed.

        Counts the attempt and fixes ``message_key`` before anything leaves, so a kill during
        the send leaves a trace (``sending``) and a resend is the same message.
        """
        if not keys:
            return False
        with self._transaction("claim alerts") as conn:
            marks = _marks(keys)
            free = conn.execute(
                f"SELECT COUNT(*) FROM alerts WHERE key IN ({marks}) "
                "AND status = 'pending' AND sending_at IS NULL",
                list(keys),
            ).fetchone()[0]
            if free != len(set(keys)):
                return False
            conn.execute(
                "UPDATE alerts SET sending_at = ?, claimed_by = ?, message_key = ?, "
                f"attempts = attempts + 1 WHERE key IN ({marks})",
                [time_key(now), owner, message_key, *keys],
            )
        return True

    def mark_alerts_sent(self, keys: Sequence[str], *, now: datetime) -> None:
        """The message holding these alerts was delivered."""
        if not keys:
            return
        with self._transaction("mark alerts sent") as conn:
            conn.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?, sending_at = NULL, "
                f"last_error = NULL WHERE key IN ({_marks(keys)})",
                [time_key(now), *keys],
            )

    def release_alerts(
        self, keys: Sequence[str], *, error: str, next_attempt_at: datetime, failed: bool = False
    ) -> None:
        """An attempt ended without delivery (or unknown): back to pending, or failed."""
        if not keys:
            return
        with self._transaction("release alerts") as conn:
            conn.execute(
                "UPDATE alerts SET status = ?, sending_at = NULL, claimed_by = NULL, "
                f"last_error = ?, next_attempt_at = ? WHERE key IN ({_marks(keys)}) "
                "AND status = 'pending'",
                ["failed" if failed else "pending", error, time_key(next_attempt_at), *keys],
            )

    def retry_alerts(self, keys: Sequence[str] | None, *, now: datetime) -> int:
        """Make failed (or backed-off pending) alerts due now; None: every failed one.

        The other alerts of a digest go with the one named, so the message sent again is the
        same one (same key).
        """
        where = "status = 'failed'"
        params: list[Any] = [time_key(now)]
        if keys is not None:
            if not keys:
                return 0
            marks = _marks(keys)
            where = (
                f"status IN ('failed', 'pending') AND (key IN ({marks}) OR message_key IN "
                f"(SELECT message_key FROM alerts WHERE key IN ({marks})))"
            )
            params += [*keys, *keys]
        with self._transaction("retry alerts") as conn:
            cursor = conn.execute(
                "UPDATE alerts SET status = 'pending', next_attempt_at = ? "
                f"WHERE sending_at IS NULL AND {where}",
                params,
            )
            return max(cursor.rowcount, 0)

    def messages_sent(self, channel: str, *, since: datetime) -> list[datetime]:
        """When each message sent on ``channel`` at or after ``since`` went, oldest first."""
        query = (
            "SELECT MIN(sent_at) AS first FROM alerts WHERE channel = ? AND status = 'sent' "
            "AND sent_at >= ? GROUP BY COALESCE(message_key, key) ORDER BY first"
        )
        with self._read(f"count messages sent on channel {channel!r}") as conn:
            rows = conn.execute(query, (channel, time_key(since))).fetchall()
        return [datetime.fromisoformat(row[0]) for row in rows]


def _filters(
    state: OutboxState | None, channel: str | None, rule: str | None, since: datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if state is not None:
        clauses.append(_STATES[state])
    for column, value in (("channel", channel), ("rule", rule)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(time_key(since))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
