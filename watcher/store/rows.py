"""Models to portable column values and back: JSON as TEXT, times as ISO-8601 TEXT.

Shared by every backend, so a row written by one reads back equal (``==``) in another.
Does not touch a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

from watcher.models import Alert, Article, Delivery, Layout, Match, SourceState

ARTICLE_COLUMNS: Final = (
    "id",
    "format",
    "title",
    "title_written",
    "link",
    "outlet",
    "author",
    "categories",
    "tags",
    "published_at",
    "published_confidence",
    "head_image",
    "body_html",
    "text",
    "source",
    "origin",
    "layout",
)
"""The columns holding Article fields, in model order (a test keeps them in step)."""

SOURCE_STATE_COLUMNS: Final = (
    "name",
    "url",
    "etag",
    "last_modified",
    "last_checked_at",
    "next_check_at",
    "last_error",
    "consecutive_failures",
    "paused",
    "last_success_at",
    "last_status",
    "body_hash",
    "redirected_from",
)
"""The columns of ``source_state``, in model order (a test keeps them in step)."""

Row = dict[str, Any]


def time_key(value: datetime | None) -> str:
    """Return a fixed-width UTC text that sorts by instant; '' for no time."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_value(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def article_row(article: Article) -> Row:
    """Return the column values of an article, plus its ``published_key``."""
    row: Row = article.model_dump(exclude={"layout"})
    row["categories"] = json.dumps(article.categories, ensure_ascii=False)
    row["tags"] = json.dumps(article.tags, ensure_ascii=False)
    row["published_at"] = _time_text(article.published_at)
    row["published_key"] = time_key(article.published_at)
    row["layout"] = article.layout.model_dump_json()
    return row


def article_from_row(row: Mapping[str, Any]) -> Article:
    """Return the article stored in ``row``; raise ValueError if it no longer fits the model."""
    fields = {name: row[name] for name in ARTICLE_COLUMNS}
    fields["categories"] = json.loads(row["categories"])
    fields["tags"] = json.loads(row["tags"])
    fields["published_at"] = _time_value(row["published_at"])
    fields["layout"] = Layout.model_validate_json(row["layout"])
    return Article.model_validate(fields)


def source_state_row(state: SourceState) -> Row:
    """Return the column values of a source's state."""
    row: Row = state.model_dump()
    row["last_checked_at"] = _time_text(state.last_checked_at)
    row["next_check_at"] = _time_text(state.next_check_at)
    row["last_success_at"] = _time_text(state.last_success_at)
    row["paused"] = int(state.paused)
    return row


def source_state_from_row(row: Mapping[str, Any]) -> SourceState:
    """Return the source state stored in ``row``."""
    fields = {name: row[name] for name in SOURCE_STATE_COLUMNS}
    fields["last_checked_at"] = _time_value(row["last_checked_at"])
    fields["next_check_at"] = _time_value(row["next_check_at"])
    fields["last_success_at"] = _time_value(row["last_success_at"])
    fields["paused"] = bool(row["paused"])
    return SourceState.model_validate(fields)


class SignatureRow(NamedTuple):
    """An article's stored MinHash signature (dedupe), and its story when it has one."""

    article_id: str
    scheme: str
    size: int
    minhash: bytes
    published_key: str  # ``time_key(published_at)``: '' when undated
    story_id: str | None = None


class MemberRow(NamedTuple):
    """An article's place in a story, as the dedupe stage decided it."""

    article_id: str
    story_id: str
    matched_id: str | None
    similarity: float
    published_key: str


def time_from_key(key: str) -> datetime | None:
    """The UTC time a ``time_key`` wrote; None for ''."""
    return datetime.fromisoformat(key) if key else None


# --- alerts (issue 5) -----------------------------------------------------------------------------

ALERT_COLUMNS: Final = (
    "key",
    "channel",
    "rule",
    "story_id",
    "status",
    "attempts",
    "next_attempt_at",
    "sending_at",
    "claimed_by",
    "message_key",
    "last_error",
    "payload",
    "created_at",
    "sent_at",
)
"""The columns of ``alerts`` (the outbox)."""

OutboxState = Literal["pending", "sending", "sent", "failed"]
"""A delivery's status, with ``sending`` for a pending alert whose attempt is in flight."""


class StoryReach(NamedTuple):
    """What a story's members add up to: outlets (in order of publication), categories, sources."""

    outlets: tuple[str, ...]
    categories: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class OutboxEntry:
    """One alert in the outbox: the alert, its delivery record, and the attempt in flight."""

    alert: Alert
    delivery: Delivery
    created_at: datetime
    sending_at: datetime | None = None
    claimed_by: str | None = None
    message_key: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key of story x rule x channel."""
        return self.alert.key

    @property
    def state(self) -> OutboxState:
        """``sending`` while an attempt is in flight (or was cut off), else the status."""
        if self.delivery.status == "pending" and self.sending_at is not None:
            return "sending"
        return self.delivery.status


def match_row(match: Match) -> tuple[str, str, str | None, str, int, str]:
    """The values of a ``matches`` row, in column order."""
    terms = json.dumps(list(match.terms), ensure_ascii=False)
    return (match.story_id, match.rule, match.article_id, terms, match.outlet_count,
            time_key(match.matched_at))  # fmt: skip


def alert_row(alert: Alert, now: datetime) -> Row:
    """The ``alerts`` row of a newly queued alert: pending, due at once."""
    created = time_key(alert.created_at)
    return {
        "key": alert.key, "channel": alert.channel, "rule": alert.rule,
        "story_id": alert.story_id, "status": "pending", "attempts": 0,
        "next_attempt_at": time_key(now), "sending_at": None, "claimed_by": None,
        "message_key": None, "last_error": None, "payload": alert.model_dump_json(),
        "created_at": created, "sent_at": None,
    }  # fmt: skip


def outbox_entry_from_row(row: Mapping[str, Any]) -> OutboxEntry:
    """The outbox entry stored in ``row``; ValueError if its payload no longer fits Alert."""
    alert = Alert.model_validate_json(row["payload"])
    delivery = Delivery(
        key=row["key"],
        channel=row["channel"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=time_from_key(row["next_attempt_at"]),
        sent_at=time_from_key(row["sent_at"] or ""),
    )
    return OutboxEntry(
        alert=alert,
        delivery=delivery,
        created_at=datetime.fromisoformat(row["created_at"]),
        sending_at=time_from_key(row["sending_at"] or ""),
        claimed_by=row["claimed_by"],
        message_key=row["message_key"],
    )
