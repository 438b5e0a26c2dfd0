"""JSON text -> a ParsedFeed: JSON Feed 1.0 and 1.1 (feedparser cannot read them).

    parse_json_feed(text, url, name, note) -> ParsedFeed
        malformed JSON, or nested past the recursion limit -> ParseError "not a feed: ..."
        no "https://jsonfeed.org/version/..." version       -> ParseError
        no items list                                       -> ParseError
        each item dict -> ParsedEntry (content_html, else content_text as paragraphs)

Does not decode bytes (the caller hands text) or fetch anything an item points to.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from watcher.errors import ParseError
from watcher.models import ParsedEntry, ParsedFeed
from watcher.parse.convert import categories, clean, is_image, join, text_to_html

__all__ = ["is_json", "parse_json_feed"]

_JSON_FEED = "https://jsonfeed.org/version/"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def is_json(text: str, content_type: str) -> bool:
    """Whether a body is JSON: it opens with '{', or it is no XML and served as JSON."""
    first = re.match(r"\s*(\S)", text)
    start = first[1] if first else ""
    return start == "{" or (start != "<" and "json" in content_type.lower())


def parse_json_feed(text: str, url: str, name: str, note: str | None) -> ParsedFeed:
    """Read a JSON Feed document; ParseError (naming ``name``) if it is none."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ParseError(name, f"not a feed: malformed JSON: {e}") from e
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
        _JSON_FEED
    ):
        raise ParseError(name, "not a feed: JSON without a JSON Feed version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError(name, "not a feed: JSON Feed without an items list")
    home = _json_str(document, "home_page_url")
    return ParsedFeed(
        title=_json_title(document.get("title")),
        link=join(url, home) if home else None,
        base_url=url,
        entries=[_json_entry(item, url) for item in items if isinstance(item, dict)],
        warning=note,
    )


def _json_entry(item: Mapping[str, Any], base: str) -> ParsedEntry:
    link = _json_str(item, "url") or _json_str(item, "external_url")
    guid = item.get("id")
    content = _json_str(item, "content_html")
    text = _json_str(item, "content_text")
    summary = _json_str(item, "summary")
    tags = item.get("tags")
    return ParsedEntry(
        guid=clean(_SURROGATE.sub("", str(guid))) if isinstance(guid, str | int) else None,
        link=join(base, link) if link else None,
        title=_json_title(item.get("title")),
        author=_json_author(item),
        categories=categories(tags if isinstance(tags, list) else []),
        published_at=_iso(item.get("date_published")),
        updated_at=_iso(item.get("date_modified")),
        content_html=content or (text_to_html(text) if text else None),
        summary_html=text_to_html(summary) if summary else None,
        image=_json_image(item, base),
    )


def _json_str(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    # A "\ud800" escape gives a lone surrogate, which no file or database can hold.
    return _SURROGATE.sub("", value) if _SURROGATE.search(value) else value


def _json_title(value: object) -> str:
    return (
        " ".join(html.unescape(_SURROGATE.sub("", value)).split()) if isinstance(value, str) else ""
    )


def _json_author(item: Mapping[str, Any]) -> str | None:
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) else [item.get("author")]
    names = [clean(_json_str(a, "name")) for a in candidates if isinstance(a, dict)]
    return ", ".join(n for n in names if n) or None


def _json_image(item: Mapping[str, Any], base: str) -> str | None:
    image = _json_str(item, "image") or _json_str(item, "banner_image")
    if image is None:
        attachments = item.get("attachments")
        for attachment in attachments if isinstance(attachments, list) else []:
            if isinstance(attachment, dict) and is_image(
                attachment.get("mime_type"), _json_str(attachment, "url") or ""
            ):
                image = _json_str(attachment, "url")
                break
    return join(base, image) if image else None


def _iso(value: object) -> datetime | None:
    """An RFC 3339 date as aware UTC (a date with no zone is taken as UTC)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
