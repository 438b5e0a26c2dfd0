"""UTF-8 XML bytes -> the ParsedFeed feedparser would give, read with lxml; or None to decline.

    parse_fast(data, url, note) -> ParsedFeed | None
        "xml:base", a DOCTYPE, a BOM        -> None (feedparser's resolver or entities needed)
        lxml (no entities, no network, no DTD, no huge tree) reports anything -> None
        root not <rss>, Atom 1.0 <feed> or <rdf:RDF>                            -> None
        elements.FeedWalk (walk.Walk + feedparser's handlers): the tree in document order,
        doing what feedparser's SAX handlers do for each element it knows (namespace prefixes,
        depths, "title_depth", the summary/content hand-over, guid as link, relative URLs, the
        Latin-1 and Windows-1252 repairs); an element it does not emulate exactly -> None
        the feedparser-shaped dicts -> convert.to_entry, as on the feedparser path

feedparser (6.0) spends most of its time in expat's callbacks, its mixin's bookkeeping and a
``str.translate`` of every text; lxml builds the tree in C and this walk touches each element
once. Anything the walk is unsure of (Atom xhtml, base64 or other content types, markup inside a
text element, an unknown element whose name would collide with a field we read, nested items,
iTunes, GeoRSS ...) declines, and parse_feed asks feedparser. tests/test_parse_fast.py holds the
two paths equal on feedparser's own fixtures.

Does not decode bytes, expand entities, fetch anything, or decide what is not a feed.
"""

from __future__ import annotations

import re

from lxml import etree

from watcher.models import ParsedFeed
from watcher.parse.convert import skip_days, skip_hours, text_of, to_entry, ttl
from watcher.parse.elements import FeedWalk
from watcher.parse.walk import Decline

__all__ = ["parse_fast"]

# U+0080-U+009F in UTF-8, or as a character reference: without either in the document no text
# holds a C1 control, and the Windows-1252 mapping (feedparser's costliest step) has no work.
_C1_BYTES = re.compile(rb"\xc2[\x80-\x9f]")
_C1_REFERENCE = re.compile(rb"&#(?:[xX]0*[89][0-9a-fA-F]|0*1(?:2[89]|[3-5][0-9]));")
_XML_DECLARATION = re.compile(rb"^<\?xml[^>]*?>")
_NEW_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>"
_ROOT_START = re.compile(rb"<\w")


def parse_fast(data: bytes, url: str, note: str | None) -> ParsedFeed | None:
    """The ParsedFeed feedparser would make of ``data``, or None when unsure (or no feed)."""
    root = _parse_xml(data)
    if root is None:
        return None
    try:
        walk = FeedWalk(url, bool(_C1_BYTES.search(data) or _C1_REFERENCE.search(data)))
        walk.run(root)
    except (Decline, LookupError, TypeError, AttributeError, ValueError):
        return None  # where feedparser itself would trip, let it trip (or cope) on its own path
    if not walk.entries and not walk.version:
        return None  # feedparser's path words the "not a feed" error
    feed = walk.feed
    return ParsedFeed(
        title=text_of(feed.get("title_detail")),
        link=feed.get("link") or None,
        base_url=url,
        entries=[to_entry(entry, url) for entry in walk.entries],
        ttl_minutes=ttl(feed.get("ttl")),
        skip_hours=skip_hours(data),
        skip_days=skip_days(data),
        warning=note,
    )


def _parse_xml(data: bytes) -> etree._Element | None:
    """The document as feedparser's expat sees it, parsed by lxml; None on any complaint."""
    root_at = _ROOT_START.search(data)
    head = data[: root_at.start() if root_at else len(data)]
    if b"xml:base" in data or b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        return None
    # feedparser rewrites the XML declaration (or adds one): parse the same bytes
    declared = _XML_DECLARATION.match(data)
    data = _NEW_DECLARATION + (data[declared.end() :] if declared else b"\n" + data)
    parser = etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    return None if len(parser.error_log) else root
