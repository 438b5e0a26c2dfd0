"""Fetched bytes -> a ParsedFeed: RSS 0.9x/1.0/2.0, Atom, RDF (lxml or feedparser), JSON Feed.

    parse_feed(body, headers, url) -> ParsedFeed
        empty body                       -> ParseError "not a feed: the body is empty"
        '{' first, or a JSON content type -> json_feed: JSON Feed 1.0/1.1 (feedparser cannot)
        else  decode_body                -> str: BOM, UTF-8, HTTP charset, XML declaration, chardet
              drop unsafe <!ENTITY>s     -> no entity expansion bomb reaches either XML parser
              fast.parse_fast            -> lxml + a walk (walk.py, elements.py) that does what
                                            feedparser does, for well-formed RSS, Atom 1.0 and
                                            RDF made of elements it emulates exactly
              None (declined)            -> feedparser_path: feedparser(UTF-8 bytes, content-
                                            location = url, no sanitizing, no URI rewriting)
        no entries and no feed version   -> ParseError "not a feed: ..." (an HTML page, a text
                                            notice, a challenge page, XML broken before its root)
        a feed despite malformed XML     -> ParsedFeed.warning says what was wrong (an RSS or Atom
                                            document with no items is an empty feed, not an error)
    convert: feedparser-shaped dicts -> ParsedEntry, shared by both XML paths

The fast path gives exactly the ParsedFeed the feedparser path gives, or declines: anything it
does not emulate (a DOCTYPE, xml:base, malformed XML, Atom xhtml, base64, iTunes, GeoRSS ...)
goes to feedparser (tests/test_parse_fast.py compares the two on feedparser's fixtures).
``parse_feed(..., fast=False)`` takes the feedparser path alone, for tests and benchmarks.

Encodings are watcher.encoding's work (decode_body): the body reaches either parser as UTF-8.

What this package does not do: fetch, clean or rewrite HTML, compute ids, decide what is new.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from watcher.encoding import decode_body
from watcher.errors import ParseError
from watcher.models import ParsedFeed
from watcher.parse.fast import parse_fast
from watcher.parse.feedparser_path import parse_with_feedparser
from watcher.parse.json_feed import is_json, parse_json_feed

__all__ = ["fast_result", "parse_feed"]


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    *,
    source: str | None = None,
    fast: bool = True,
) -> ParsedFeed:
    """Read a fetched feed body; ParseError (naming ``source`` or ``url``) if it is none."""
    name = source or url
    lower = {k.lower(): v for k, v in headers.items()}
    content_type = lower.get("content-type", "")
    if not body.strip():
        raise ParseError(name, "not a feed: the body is empty")
    text, _, note = decode_body(body, content_type)
    if is_json(text, content_type):
        return parse_json_feed(text, url, name, note)
    data = _defuse_entities(text.encode("utf-8", "replace"))
    feed = parse_fast(data, url, note) if fast else None
    if feed is None:
        feed = parse_with_feedparser(data, text, content_type, url, name, note, lower)
    return feed


def fast_result(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed | None:
    """What the fast path alone makes of a body: None when it declines (or the body is JSON)."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if not body.strip():
        return None
    text, _, note = decode_body(body, content_type)
    if is_json(text, content_type):
        return None
    return parse_fast(_defuse_entities(text.encode("utf-8", "replace")), url, note)


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
