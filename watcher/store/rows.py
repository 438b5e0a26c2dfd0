"""Models to portable column values and back: JSON as TEXT, times as ISO-8601 TEXT.

Shared by every backend, so a row written by one reads back equal (``==``) in another.
Does not touch a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

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
