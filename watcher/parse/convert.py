"""feedparser-shaped dicts -> ParsedEntry fields; shared by the feedparser path and the fast path.

    entry dict (id, link, title_detail, author, tags, published_parsed, updated_parsed, content,
                summary_detail, links, media_thumbnail, media_content)  -> to_entry -> ParsedEntry
    feed dict  (title_detail, link, ttl) + the body's bytes              -> title, link, ttl,
                                                                            skipHours, skipDays

Both XML paths build the same dicts (feedparser's FeedParserDict, or plain dicts the fast path
fills the way feedparser would), so one set of functions turns them into models and the two
paths cannot drift apart here. Does not parse XML or JSON.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from watcher.clean import TAG_LIKE
from watcher.models import ParsedEntry
from watcher.plaintext import html_to_text

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_IMAGE_EXTENSION = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp)(?:[?#]|$)", re.IGNORECASE)


def to_entry(entry: dict[str, Any], base: str) -> ParsedEntry:
    """One feedparser-shaped entry as a ParsedEntry (HTML not yet cleaned)."""
    return ParsedEntry(
        guid=clean(entry.get("id")),
        link=clean(entry.get("link")),
        title=text_of(entry.get("title_detail")),
        author=clean(entry.get("author")),
        categories=categories(t.get("term") or t.get("label") for t in entry.get("tags", [])),
        published_at=_utc(entry.get("published_parsed")),
        # dict.get: FeedParserDict.get("updated_parsed") falls back to published (with a warning)
        updated_at=_utc(dict.get(entry, "updated_parsed")),
        content_html=_content(entry.get("content", [])),
        summary_html=_as_html(entry.get("summary_detail")),
        image=_image(entry, base),
    )


def clean(value: object) -> str | None:
    """A one-line string with whitespace folded, or None when there is nothing."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def text_of(detail: Mapping[str, Any] | None) -> str:
    """A title-like field as plain text: tags dropped, entities decoded, whitespace folded."""
    if not detail or not isinstance(detail.get("value"), str):
        return ""
    value: str = detail["value"]
    is_html = detail.get("type") in _HTML_TYPES and ("<" in value or "&" in value)
    if is_html or TAG_LIKE.search(value):  # a "plain" title with tags in it is HTML too
        return html_to_text(value)
    return " ".join(value.split())


def _as_html(detail: Mapping[str, Any] | None) -> str | None:
    if not detail or not isinstance(detail.get("value"), str) or not detail["value"].strip():
        return None
    value: str = detail["value"]
    return value if detail.get("type") in _HTML_TYPES else text_to_html(value)


def _content(contents: Iterable[Mapping[str, Any]]) -> str | None:
    details = [c for c in contents if isinstance(c.get("value"), str) and c["value"].strip()]
    chosen = next((c for c in details if c.get("type") in _HTML_TYPES), None)
    return _as_html(chosen or (details[0] if details else None))


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (a blank line starts a new one), escaped."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def categories(terms: Iterable[object]) -> list[str]:
    """The distinct non-empty terms, whitespace folded, in their first order."""
    seen: dict[str, None] = {}
    for term in terms:
        cleaned = clean(term)
        if cleaned:
            seen.setdefault(cleaned)
    return list(seen)


def _utc(parsed: object) -> datetime | None:
    """feedparser's UTC 9-tuple as an aware datetime; None when absent or impossible."""
    if not isinstance(parsed, tuple):  # time.struct_time is a tuple
        return None
    try:
        year, month, day, hour, minute, second = parsed[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _image(entry: Mapping[str, Any], base: str) -> str | None:
    """The entry's own image: an image enclosure, else media:thumbnail, else media:content."""
    for link in entry.get("links", []):
        href = link.get("href") or ""
        if link.get("rel") == "enclosure" and href and is_image(link.get("type"), href):
            return join(base, href)
    for thumbnail in entry.get("media_thumbnail", []):
        if thumbnail.get("url"):
            return join(base, thumbnail["url"])
    for media in entry.get("media_content", []):
        url = media.get("url") or ""
        if url and (media.get("medium") == "image" or is_image(media.get("type"), url)):
            return join(base, url)
    return None


def is_image(mime: object, url: str) -> bool:
    """Whether a MIME type (or, without one, the URL's extension) says image."""
    if isinstance(mime, str) and mime:
        return mime.lower().startswith("image/")
    return _IMAGE_EXTENSION.search(url) is not None


def join(base: str, url: str) -> str | None:
    """``url`` resolved against ``base``; None when it is no URL at all."""
    try:
        return urljoin(base, url.strip())
    except ValueError:
        return None


# --- polling hints --------------------------------------------------------------------------------


def ttl(value: object) -> int | None:
    """An RSS ``<ttl>`` in minutes; None unless it is a sane whole number."""
    text = clean(value)
    return int(text) if text and text.isdigit() and 0 < int(text) < 10**6 else None


def _channel_head(data: bytes) -> bytes:
    """The part of an RSS document before its first item, where the polling hints live."""
    end = data.find(b"<item")
    return data[: end if end >= 0 else 65536]


def skip_hours(data: bytes) -> list[int]:
    """The UTC hours of an RSS ``<skipHours>`` (24 read as 0), sorted."""
    block = re.search(rb"<skipHours\b[^>]*>(.*?)</skipHours>", _channel_head(data), re.DOTALL)
    if block is None:
        return []
    hours = {int(h) for h in re.findall(rb"<hour>\s*(\d{1,2})\s*</hour>", block[1])}
    return sorted({0 if h == 24 else h for h in hours if h <= 24})  # some feeds count 1-24


def skip_days(data: bytes) -> list[str]:
    """The weekdays of an RSS ``<skipDays>`` (any case), Monday first."""
    block = re.search(rb"<skipDays\b[^>]*>(.*?)</skipDays>", _channel_head(data), re.DOTALL)
    if block is None:
        return []
    named = {
        d.decode("ascii").lower() for d in re.findall(rb"<day>\s*([A-Za-z]+)\s*</day>", block[1])
    }
    return [day for day in _DAYS if day.lower() in named]
