"""UTF-8 XML bytes -> a ParsedFeed through feedparser: every XML document the fast path declines.

    parse_with_feedparser(data, text, content_type, url, name, note) -> ParsedFeed
        feedparser(UTF-8 bytes, content-location = url, no sanitizing, no URI rewriting)
        no entries and no feed version   -> ParseError "not a feed: ..." (an HTML page, a text
                                            notice, a challenge page, XML broken before its root)
        a feed despite malformed XML     -> ParsedFeed.warning says what was wrong (an RSS or Atom
                                            document with no items is an empty feed, not an error)

feedparser is handed bytes and headers only, never a URL or a str (it would open either).
Its HTML sanitizer and relative-URI resolver are off: clean.py does both in one faster pass
(../shared/LIBRARIES.md). The resolver is turned on for a document with ``xml:base`` only,
where each element may have its own base and a ParsedEntry has no field to carry it.

Does not decode bytes (the caller hands UTF-8) or defuse entities (the caller did).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import feedparser

from watcher.errors import ParseError
from watcher.models import ParsedFeed
from watcher.parse.convert import skip_days, skip_hours, text_of, to_entry, ttl

__all__ = ["parse_with_feedparser"]


def parse_with_feedparser(
    data: bytes,
    text: str,
    content_type: str,
    url: str,
    name: str,
    note: str | None,
    headers: Mapping[str, str],
) -> ParsedFeed:
    """Read UTF-8 feed bytes with feedparser; ParseError (naming ``name``) if they are no feed."""
    result = feedparser.parse(
        data,
        response_headers=_feedparser_headers(url, headers),
        sanitize_html=False,
        resolve_relative_uris=b"xml:base" in data,
    )
    entries = result.get("entries", [])
    if not entries and not result.get("version"):
        raise ParseError(name, _not_a_feed(text, content_type, result))
    return ParsedFeed(
        title=text_of(result.feed.get("title_detail")),
        link=result.feed.get("link") or None,
        base_url=url,
        entries=[to_entry(entry, url) for entry in entries],
        ttl_minutes=ttl(result.feed.get("ttl")),
        skip_hours=skip_hours(data),
        skip_days=skip_days(data),
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
