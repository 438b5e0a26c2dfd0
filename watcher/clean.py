"""Make a feed item's HTML safe and self-contained in one lxml pass.

    clean_html(html, base_url, image_proxy=...) -> Cleaned(html, first_image)

One walk over the tree does three things: it sanitizes (scripts, styles, embedded objects, form
controls and their content are dropped; unknown tags are unwrapped to their content; ``on*``
handlers, namespaced or odd attribute names and dangerous CSS go; a URL attribute survives only
with an http(s), mailto, ftp or tel URL, or ``data:image/`` on an image), it makes relative URLs
absolute against the base, and it writes images the way the RSSHUB-PAGE archives have them: ``src``
through the source's image proxy prefix, a lazy ``data-original``/``data-src`` promoted to ``src``
when the image has none, and ``referrerpolicy="no-referrer"``.

An allow-list of tags, not a deny-list, so that an element nobody thought of keeps its text but
loses its behaviour. Does not fetch anything, does not pretty-print, and does not decide which
image heads the article (normalize does, from ``first_image``).
"""

from __future__ import annotations

import re
from typing import NamedTuple, cast
from urllib.parse import urljoin

import lxml.etree

__all__ = ["TAG_LIKE", "Cleaned", "clean_html", "proxy_image", "safe_url"]

TAG_LIKE = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>")
"""A complete tag: "<b>" and "<script src=x>" are markup, "1 < 2" and "a<b" are text."""

# Dropped with everything inside them: code, styles, embedded documents, forms' controls, and the
# raw-text elements whose content a browser would read differently from libxml2.
_DROP = (
    "script", "style", "noscript", "template", "object", "embed", "applet", "param", "frame",
    "frameset", "noframes", "base", "basefont", "meta", "link", "head", "title", "svg", "math",
    "textarea", "select", "option", "optgroup", "button", "input", "datalist", "keygen", "output",
    "canvas", "xmp", "plaintext", "listing", "noembed", "dialog", "portal",
)  # fmt: skip
# Kept with their (checked) attributes; any other element is unwrapped to its content.
_ALLOWED = frozenset((
    "a", "abbr", "acronym", "address", "area", "article", "aside", "audio", "b", "bdi", "bdo",
    "big", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "data",
    "dd", "del", "details", "dfn", "dir", "div", "dl", "dt", "em", "figcaption", "figure", "font",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "i", "iframe", "img",
    "ins", "kbd", "li", "main", "map", "mark", "menu", "nav", "ol", "p", "picture", "pre", "q",
    "rp", "rt", "rtc", "ruby", "s", "samp", "section", "small", "source", "span", "strike",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time",
    "tr", "track", "tt", "u", "ul", "var", "video", "wbr",
))  # fmt: skip
_URL_ATTRS = frozenset((
    "href", "src", "action", "formaction", "poster", "background", "cite", "longdesc", "lowsrc",
    "dynsrc", "usemap", "ping", "data", "codebase", "manifest", "icon", "profile",
    "data-original", "data-src",
))  # fmt: skip
_DENIED_ATTRS = frozenset({"srcdoc", "formaction", "action", "http-equiv", "is"})
_ATTR_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_LAZY_SRC = ("data-original", "data-src")
_MEDIA = frozenset({"img", "video", "audio", "source", "track", "iframe"})
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "ftp", "tel"})
_MEDIA_SCHEMES = frozenset({"http", "https"})
# What a browser drops from a URL before reading it: C0 controls and spaces at either end, tab
# and newlines anywhere (so "java\tscript:" is javascript:).
_URL_EDGES = "".join(map(chr, range(0x21)))
_URL_INVISIBLE = re.compile(r"[\t\n\r]")
# C0 controls but tab, newline and carriage return (libxml2 keeps them, no HTML needs them) and
# lone surrogates (a JSON "\ud800" escape; lxml cannot encode them). A regex: str.translate
# with a table costs 40 times more on CJK text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_STYLE_UNSAFE = re.compile(
    r"expression|script|behavio|binding|url\s*\(|image-set|@import|\\|/\*|&|<", re.IGNORECASE
)
_STYLE_PROPERTY = re.compile(r"\s*([a-zA-Z-]+)\s*:(.*)", re.DOTALL)
_STYLE_DENIED = frozenset({"position", "z-index"})  # no page-covering overlays
_PARSER = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
_CLOSE = "</html>"


class Cleaned(NamedTuple):
    """Sanitized HTML and the ``src`` of its first image (after proxying), if any."""

    html: str
    first_image: str | None


def clean_html(html: str, base_url: str | None, *, image_proxy: str | None = None) -> Cleaned:
    """Sanitize ``html``, resolve its URLs against ``base_url``, proxy its images."""
    text = _CONTROLS.sub("", html) if _CONTROLS.search(html) else html
    if not text.strip():
        return Cleaned("", None)
    root = lxml.etree.fromstring(f"<html><body>{text}</body></html>", _PARSER)
    if root is None:
        return Cleaned("", None)
    lxml.etree.strip_elements(root, *_DROP, with_tail=False)
    walk = _Walk(base_url, image_proxy)
    for element in root.iter():
        walk.visit(element)
    for element in walk.dropped:
        _drop(element)
    if walk.unwrap:
        lxml.etree.strip_tags(root, *walk.unwrap)
    root.attrib.clear()
    out = lxml.etree.tostring(root, method="html", encoding="unicode")
    # <html> and its </html>: what is left of the wrapper once body and the like are unwrapped.
    return Cleaned(out[len("<html>") : -len(_CLOSE)], walk.first_image)


class _Walk:
    """The state of one pass: where URLs resolve, the image proxy, what to unwrap afterwards."""

    def __init__(self, base_url: str | None, image_proxy: str | None) -> None:
        self.base_url = base_url
        self.image_proxy = image_proxy
        self.unwrap: set[str] = set()
        self.dropped: list[lxml.etree._Element] = []
        self.first_image: str | None = None

    def visit(self, element: lxml.etree._Element) -> None:
        """Clean one element's attributes; note it for unwrapping when its tag is not allowed."""
        tag = element.tag
        if not isinstance(tag, str) or tag not in _ALLOWED:
            if isinstance(tag, str):
                self.unwrap.add(tag)
            element.attrib.clear()
            return
        # A tree parsed from a str has str names and values (the stubs also allow bytes).
        attrib = cast("dict[str, str]", element.attrib)
        for name, value in list(attrib.items()):
            cleaned = self._attribute(tag, name, value)
            if cleaned is None:
                del attrib[name]
            elif cleaned != value:
                attrib[name] = cleaned
        if tag == "img":
            self._image(element)
        elif tag == "iframe":
            _empty(element)
            if "src" not in attrib:  # nothing safe to show
                self.dropped.append(element)

    def _attribute(self, tag: str, name: str, value: str) -> str | None:
        if name.startswith("on") or name in _DENIED_ATTRS or not _ATTR_NAME.fullmatch(name):
            return None
        if name in _URL_ATTRS:
            media = tag in _MEDIA and name == "src"
            return safe_url(value, self.base_url, media=media, image=tag == "img")
        if name == "srcset":
            return self._srcset(value)
        if name == "style":
            return _clean_style(value)
        return value

    def _srcset(self, value: str) -> str | None:
        candidates = []
        for candidate in value.split(","):
            url, _, size = candidate.strip().partition(" ")
            safe = safe_url(url, self.base_url, media=True, image=True) if url else None
            if safe is not None:
                safe = proxy_image(safe, self.image_proxy)
                candidates.append(f"{safe} {size.strip()}".rstrip())
        return ", ".join(candidates) or None

    def _image(self, img: lxml.etree._Element) -> None:
        """Lazy source promoted, source proxied, no referrer; dropped with no safe source."""
        attrib = cast("dict[str, str]", img.attrib)
        src = attrib.get("src")
        if src is None or src.startswith("data:"):
            lazy = next((attrib[a] for a in _LAZY_SRC if a in attrib), None)
            src = lazy or src
        if src is None and "srcset" in attrib:  # already proxied
            src = attrib["srcset"].split(",", 1)[0].split(" ", 1)[0]
        elif src is not None:
            src = proxy_image(src, self.image_proxy)
        if src is None:  # nothing safe to show
            self.dropped.append(img)
            return
        attrib["src"] = src
        attrib["referrerpolicy"] = "no-referrer"
        if self.first_image is None and not src.startswith("data:"):
            self.first_image = src


def _empty(element: lxml.etree._Element) -> None:
    for child in list(element):
        element.remove(child)
    element.text = None


def _drop(element: lxml.etree._Element) -> None:
    """Remove ``element`` and its content, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def safe_url(
    value: str, base_url: str | None, *, media: bool = False, image: bool = False
) -> str | None:
    """``value`` made absolute against ``base_url``, or None when its scheme is not safe.

    Links may be http(s), mailto, ftp or tel (or ``#fragment``); media sources only http(s),
    and an image may also be a ``data:image/`` URL. Whitespace and control characters are
    dropped first, as a browser does, so ``java\\tscript:`` is caught.
    """
    url = value.strip(_URL_EDGES)
    if _URL_INVISIBLE.search(url):
        url = _URL_INVISIBLE.sub("", url)
    if not url:
        return None
    scheme = _SCHEME.match(url)
    if scheme is None:
        if url.startswith("#") and not media:
            return url
        if base_url is None:
            return url
        try:
            url = urljoin(base_url, url)
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            return None
        scheme = _SCHEME.match(url)
        if scheme is None:
            return url
    name = scheme[1].lower()
    if name == "data":
        return url if image and url[5:11].lower() == "image/" else None
    allowed = _MEDIA_SCHEMES if media else _LINK_SCHEMES
    return url if name in allowed else None


def proxy_image(url: str, image_proxy: str | None) -> str:
    """``url`` behind the image proxy prefix (once), as the archives write image sources."""
    if not image_proxy or url.startswith((image_proxy, "data:")):
        return url
    if not url.lower().startswith(("http://", "https://")):
        return url
    return image_proxy + url


def _clean_style(value: str) -> str | None:
    """The style with its unsafe declarations left out (unchanged when all are safe)."""
    declarations = [d for d in value.split(";") if d.strip()]
    kept = [d.strip() for d in declarations if _is_safe_declaration(d)]
    if len(kept) == len(declarations):
        return value
    return "; ".join(kept) + ";" if kept else None


def _is_safe_declaration(declaration: str) -> bool:
    m = _STYLE_PROPERTY.fullmatch(declaration)
    return (
        m is not None
        and m[1].lower() not in _STYLE_DENIED
        and _STYLE_UNSAFE.search(declaration) is None
    )
