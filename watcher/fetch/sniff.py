"""Is this body a feed? A look at its first bytes, so an HTML page is never read as an empty feed.

A body looks like a feed when, after a BOM, whitespace, the XML declaration, comments and a
DOCTYPE, it opens with an element that is not HTML (``<rss``, ``<feed``, ``<rdf:RDF`` ...) or
with ``{``/``[`` (JSON Feed). Otherwise ``sniff_non_feed`` says what it is: a Cloudflare challenge
page, an HTML page (with its title, and RSSHub's error message when it is RSSHub's error page), a
plain-text notice, an empty body. What this module does not do: parse or validate the feed.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Mapping

_SNIFF_BYTES = 65536
_BOMS = (  # UTF-32-LE's BOM starts with UTF-16-LE's: longest first
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_NO_BOM = (  # "<" in UTF-32/16 without a BOM
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)
_PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE\s[^\[>]*(?:\[.*?\]\s*)?>)", re.S | re.I)
_HTML_DOCTYPE = re.compile(r"<!DOCTYPE\s+html\b", re.I)
_TAG = re.compile(r"<([A-Za-z][\w:.-]*)")
_HTML_TAGS = frozenset(
    ("html", "head", "body", "meta", "title", "link", "script", "style", "div", "p", "span", "a")
)
_CHALLENGE = re.compile(
    r"_cf_chl_|cf-browser-verification|challenge-platform|<title>\s*(?:Just a moment\.\.\."
    r"|Attention Required! \| Cloudflare)",
    re.I,
)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)
_RSSHUB_MESSAGE = re.compile(r"<code[^>]*\bdetails\b[^>]*>(.*?)</code>", re.S | re.I)


def sniff_non_feed(body: bytes, headers: Mapping[str, str]) -> str | None:
    """What ``body`` is when it is plainly no feed ("an HTML page titled ..."); None otherwise."""
    text = _head_text(body)
    kind = _kind(text)
    challenge = headers.get("cf-mitigated", "").lower() == "challenge"
    if challenge or (kind == "html" and _CHALLENGE.search(text)):
        return "a Cloudflare challenge page"
    if kind == "empty":
        return "an empty body"
    if kind == "html":
        return _describe_html(text)
    if kind == "text":
        return f"a plain-text notice {_excerpt(_skip_prolog(text))!r}"
    return None


def _kind(text: str) -> str:
    """``feed`` (or markup we leave to the parser), ``html``, ``text`` or ``empty``."""
    if not text.strip():
        return "empty"
    rest = _skip_prolog(text)
    if not rest:  # a prolog and nothing else: an HTML DOCTYPE says enough, else the parser decides
        return "html" if _HTML_DOCTYPE.search(text) else "feed"
    if rest.startswith(("{", "[")):
        return "feed"
    if not rest.startswith("<"):
        return "text"
    # the root element decides, not the DOCTYPE: feeds declared as XHTML exist
    tag = _TAG.match(rest)
    return "html" if tag and tag.group(1).lower() in _HTML_TAGS else "feed"


def _head_text(body: bytes) -> str:
    head = body[:_SNIFF_BYTES]
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="replace")
    for start, codec in _NO_BOM:
        if head.startswith(start):
            return head.decode(codec, errors="replace")
    return head.decode("utf-8", errors="replace")


def _skip_prolog(text: str) -> str:
    """``text`` after the XML declaration, processing instructions, comments and a DOCTYPE."""
    position = 0
    while (match := _PROLOG.match(text, position)) is not None:
        position = match.end()
    return text[position:].lstrip()


def _describe_html(text: str) -> str:
    title = _TITLE.search(text)
    what = f"an HTML page titled {_excerpt(title.group(1))!r}" if title else "an HTML page"
    message = _RSSHUB_MESSAGE.search(text)
    if message:  # RSSHub's error page puts its error message in <code class="... details">
        what += f", error message {_excerpt(re.sub(r'<[^>]+>', ' ', message.group(1)))!r}"
    return what


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(html.unescape(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
