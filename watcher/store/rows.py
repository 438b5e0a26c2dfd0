"""Models to portable column values and back: JSON as TEXT, times as ISO-8601 TEXT.

Shared by every backend, so a row written by one reads back equal (``==``) in another.
Does not touch a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from watcher.models import Article, Layout, SourceState

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
