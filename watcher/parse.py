"""Fetched bytes -> a ParsedFeed: RSS 0.9x/1.0/2.0, Atom, RDF (feedparser) and JSON Feed (json).

    parse_feed(body, headers, url) -> ParsedFeed
        empty body                       -> ParseError "not a feed: the body is empty"
        '{' first, or a JSON content type -> JSON Feed 1.0/1.1, read here (feedparser cannot)
        else  decode_body                -> str: BOM, UTF-8, HTTP charset, XML declaration, chardet
              drop unsafe <!ENTITY>s     -> no entity expansion bomb reaches feedparser
              feedparser(UTF-8 bytes, content-location = url, no sanitizing, no URI rewriting)
        no entries and no feed version   -> ParseError "not a feed: ..." (an HTML page, a text
                                            notice, a challenge page, XML broken before its root)
        a feed despite malformed XML     -> ParsedFeed.warning says what was wrong (an RSS or Atom
                                            document with no items is an empty feed, not an error)

feedparser is handed bytes and headers only, never a URL or a str (it would open either).
Its HTML sanitizer and relative-URI resolver are off: clean.py does both in one faster pass
(../shared/LIBRARIES.md). The resolver is turned on for a document with ``xml:base`` only,
where each element may have its own base and a ParsedEntry has no field to carry it.

Encodings are watcher.encoding's work (decode_body): the body reaches feedparser as UTF-8.

What this module does not do: fetch, clean or rewrite HTML, compute ids, decide what is new.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from watcher.clean import TAG_LIKE
from watcher.encoding import decode_body
from watcher.errors import ParseError
from watcher.models import ParsedEntry, ParsedFeed
from watcher.plaintext import html_to_text

__all__ = ["parse_feed"]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_IMAGE_EXTENSION = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp)(?:[?#]|$)", re.IGNORECASE)
_JSON_FEED = "https://jsonfeed.org/version/"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def parse_feed(
    body: bytes, headers: Mapping[str, str], url: str, *, source: str | None = None
) -> ParsedFeed:
    """Read a fetched feed body; ParseError (naming ``source`` or ``url``) if it is none."""
    name = source or url
    lower = {k.lower(): v for k, v in headers.items()}
    content_type = lower.get("content-type", "")
    if not body.strip():
        raise ParseError(name, "not a feed: the body is empty")
    text, _, note = decode_body(body, content_type)
    if _is_json(text, content_type):
        return _parse_json_feed(text, url, name, note)
    data = _defuse_entities(text.encode("utf-8", "replace"))
    result = feedparser.parse(
        data,
        response_headers=_feedparser_headers(url, lower),
        sanitize_html=False,
        resolve_relative_uris=b"xml:base" in data,
    )
    entries = result.get("entries", [])
    if not entries and not result.get("version"):
        raise ParseError(name, _not_a_feed(text, content_type, result))
    return ParsedFeed(
        title=_text(result.feed.get("title_detail")),
        link=result.feed.get("link") or None,
        base_url=url,
        entries=[_entry(entry, url) for entry in entries],
        ttl_minutes=_ttl(result.feed.get("ttl")),
        skip_hours=_skip_hours(data),
        skip_days=_skip_days(data),
        warning=_warning(result, note),
    )


def _feedparser_headers(url: str, headers: Mapping[str, str]) -> dict[str, str]:
    # The body is UTF-8 by now, whatever the server said: say so, so that feedparser neither
    # re-guesses nor flags a text/html or text/plain content type as bozo.
    given = {"content-type": "application/xml; charset=utf-8", "content-location": url}
    if "content-language" in headers:
        given["content-language"] = headers["content-language"]
    return given


def _not_a_feed(text: str, content_type: str, result: Mapping[str, Any]) -> str:
    head = text[:4096]
    lowered = head.lower()
    served = f" (served as {content_type})" if content_type else ""
    if "<html" in lowered or "<!doctype html" in lowered:
        title = re.search(r"<title[^>]*>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        named = f" titled {' '.join(title[1].split())[:80]!r}" if title else ""
        return f"not a feed: an HTML page{named}{served}"
    if result.get("bozo") and head.lstrip().startswith("<"):
        return f"not a feed: malformed XML: {_bozo(result)}{served}"
    start = " ".join(re.sub(r"<!--.*?-->", " ", head, flags=re.DOTALL).split())[:80]
    return f"not a feed: no RSS, Atom, RDF or JSON Feed in {start!r}{served}"


def _bozo(result: Mapping[str, Any]) -> str:
    error = result.get("bozo_exception")
    return f"{type(error).__name__}: {error}" if error is not None else "malformed"


def _warning(result: Mapping[str, Any], note: str | None) -> str | None:
    parts = [note] if note else []
    if result.get("bozo"):
        parts.append(_bozo(result))
    return "; ".join(parts) or None


# --- entries --------------------------------------------------------------------------------------


def _entry(entry: dict[str, Any], base: str) -> ParsedEntry:
    return ParsedEntry(
        guid=_clean(entry.get("id")),
        link=_clean(entry.get("link")),
        title=_text(entry.get("title_detail")),
        author=_clean(entry.get("author")),
        categories=_categories(t.get("term") or t.get("label") for t in entry.get("tags", [])),
        published_at=_utc(entry.get("published_parsed")),
        # dict.get: FeedParserDict.get("updated_parsed") falls back to published (with a warning)
        updated_at=_utc(dict.get(entry, "updated_parsed")),
        content_html=_content(entry.get("content", [])),
        summary_html=_as_html(entry.get("summary_detail")),
        image=_image(entry, base),
    )


def _clean(value: object) -> str | None:
    """A one-line string with whitespace folded, or None when there is nothing."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def _text(detail: Mapping[str, Any] | None) -> str:
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
    return value if detail.get("type") in _HTML_TYPES else _text_to_html(value)


def _content(contents: Iterable[Mapping[str, Any]]) -> str | None:
    details = [c for c in contents if isinstance(c.get("value"), str) and c["value"].strip()]
    chosen = next((c for c in details if c.get("type") in _HTML_TYPES), None)
    return _as_html(chosen or (details[0] if details else None))


def _text_to_html(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def _categories(terms: Iterable[object]) -> list[str]:
    seen: dict[str, None] = {}
    for term in terms:
        cleaned = _clean(term)
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
        if link.get("rel") == "enclosure" and href and _is_image(link.get("type"), href):
            return _join(base, href)
    for thumbnail in entry.get("media_thumbnail", []):
        if thumbnail.get("url"):
            return _join(base, thumbnail["url"])
    for media in entry.get("media_content", []):
        url = media.get("url") or ""
        if url and (media.get("medium") == "image" or _is_image(media.get("type"), url)):
            return _join(base, url)
    return None


def _is_image(mime: object, url: str) -> bool:
    if isinstance(mime, str) and mime:
        return mime.lower().startswith("image/")
    return _IMAGE_EXTENSION.search(url) is not None


def _join(base: str, url: str) -> str | None:
    try:
        return urljoin(base, url.strip())
    except ValueError:
        return None


# --- polling hints --------------------------------------------------------------------------------


def _ttl(value: object) -> int | None:
    text = _clean(value)
    return int(text) if text and text.isdigit() and 0 < int(text) < 10**6 else None


def _channel_head(data: bytes) -> bytes:
    """The part of an RSS document before its first item, where the polling hints live."""
    end = data.find(b"<item")
    return data[: end if end >= 0 else 65536]


def _skip_hours(data: bytes) -> list[int]:
    block = re.search(rb"<skipHours\b[^>]*>(.*?)</skipHours>", _channel_head(data), re.DOTALL)
    if block is None:
        return []
    hours = {int(h) for h in re.findall(rb"<hour>\s*(\d{1,2})\s*</hour>", block[1])}
    return sorted({0 if h == 24 else h for h in hours if h <= 24})  # some feeds count 1-24


def _skip_days(data: bytes) -> list[str]:
    block = re.search(rb"<skipDays\b[^>]*>(.*?)</skipDays>", _channel_head(data), re.DOTALL)
    if block is None:
        return []
    named = {
        d.decode("ascii").lower() for d in re.findall(rb"<day>\s*([A-Za-z]+)\s*</day>", block[1])
    }
    return [day for day in _DAYS if day.lower() in named]


# --- entity bombs ---------------------------------------------------------------------------------

_ROOT_START = re.compile(rb"<\w")
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY[^>]*>")
# A named entity whose value is one character reference or a few plain characters: expanding it
# costs at most ~5x the reference. Nested, parameter, external and long entities are dropped.
_SAFE_ENTITY = re.compile(rb'<!ENTITY\s+\w+\s+"(?:&#\w+;|[^&%"<>]{0,16})"\s*>')


def _defuse_entities(data: bytes) -> bytes:
    """Drop every unsafe ``<!ENTITY>`` before the root element (a "billion laughs" or a
    quadratic blow-up: feedparser's loose parser would expand a long entity without limit)."""
    root = _ROOT_START.search(data)
    end = root.start() if root else len(data)
    if data.find(b"<!ENTITY", 0, end) < 0:
        return data
    head = _ENTITY_DECLARATION.sub(
        lambda m: m[0] if _SAFE_ENTITY.fullmatch(m[0]) else b"", data[:end]
    )
    return head + data[end:]


# --- JSON Feed ------------------------------------------------------------------------------------


def _is_json(text: str, content_type: str) -> bool:
    first = re.match(r"\s*(\S)", text)
    start = first[1] if first else ""
    return start == "{" or (start != "<" and "json" in content_type.lower())


def _parse_json_feed(text: str, url: str, name: str, note: str | None) -> ParsedFeed:
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
        link=_join(url, home) if home else None,
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
        guid=_clean(_SURROGATE.sub("", str(guid))) if isinstance(guid, str | int) else None,
        link=_join(base, link) if link else None,
        title=_json_title(item.get("title")),
        author=_json_author(item),
        categories=_categories(tags if isinstance(tags, list) else []),
        published_at=_iso(item.get("date_published")),
        updated_at=_iso(item.get("date_modified")),
        content_html=content or (_text_to_html(text) if text else None),
        summary_html=_text_to_html(summary) if summary else None,
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
    names = [_clean(_json_str(a, "name")) for a in candidates if isinstance(a, dict)]
    return ", ".join(n for n in names if n) or None


def _json_image(item: Mapping[str, Any], base: str) -> str | None:
    image = _json_str(item, "image") or _json_str(item, "banner_image")
    if image is None:
        attachments = item.get("attachments")
        for attachment in attachments if isinstance(attachments, list) else []:
            if isinstance(attachment, dict) and _is_image(
                attachment.get("mime_type"), _json_str(attachment, "url") or ""
            ):
                image = _json_str(attachment, "url")
                break
    return _join(base, image) if image else None


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
