"""Make a feed item's HTML safe and self-contained in one lxml pass, and read its text.

    clean_html(html, base_url, image_proxy=...) -> Cleaned(html, first_image, text)
        UTF-8 bytes -> libxml2 tree -> one walk (attributes, images, what to unwrap or drop)
        -> drop, unwrap -> serialize -> the same tree, spaced at block marks -> visible text

One walk over the tree does three things: it sanitizes (scripts, styles, embedded objects, form
controls and their content are dropped; unknown tags are unwrapped to their content; ``on*``
handlers, namespaced or odd attribute names and dangerous CSS go; a URL attribute survives only
with an http(s), mailto, ftp or tel URL, or ``data:image/`` on an image), it makes relative URLs
absolute against the base, and it writes images the way the RSSHUB-PAGE archives have them: ``src``
through the source's image proxy prefix, a lazy ``data-original``/``data-src`` promoted to ``src``
when the image has none, and ``referrerpolicy="no-referrer"``.

An allow-list of tags, not a deny-list, so that an element nobody thought of keeps its text but
loses its behaviour. The visible text is what ``plaintext.html_to_text`` reads from the cleaned
HTML, read off the tree already built instead of parsing that HTML again. Does not fetch
anything, does not pretty-print, and does not decide which image heads the article (normalize
does, from ``first_image``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
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
_DROP_TAGS = frozenset(_DROP)
_DROPPED = "watcher-dropped"  # what an element dropped becomes when only unwrapping can drop it
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
# lone surrogates (a JSON "\ud800" escape; lxml cannot encode them). Text is parsed as UTF-8,
# where no byte of a multi-byte character is below 0x80: looking for each control byte there
# costs a fraction of the regex's scan over CJK text, which only the rare text that has one
# needs.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_CONTROL_BYTES = bytes(c for c in range(0x20) if c not in b"\t\n\r")
# Character references to those controls, decimal or hex, the semicolon optional as in HTML.
_CONTROL_REFS = re.compile(
    rb"&#(?:0*(?:[0-8]|1[124-9]|2[0-9]|3[01])(?![0-9])|[xX]0*(?:[0-8bBcCeEfF]|1[0-9a-fA-F])"
    rb"(?![0-9a-fA-F]));?"
)
_STYLE_UNSAFE = re.compile(
    r"expression|script|behavio|binding|url\s*\(|image-set|@import|\\|/\*|&|<", re.IGNORECASE
)
_STYLE_PROPERTY = re.compile(r"\s*([a-zA-Z-]+)\s*:(.*)", re.DOTALL)
_STYLE_DENIED = frozenset({"position", "z-index"})  # no page-covering overlays
# UTF-8 bytes (see _utf8); no index of id attributes, which nothing here looks up.
_PARSER = lxml.etree.HTMLParser(
    remove_comments=True, remove_pis=True, no_network=True, encoding="utf-8", collect_ids=False
)
# plaintext._BLOCK_MARKS on the tree: "</p>", "</div>", "</li>", "</h", "</tr>", "</td>" and
# "</blockquote>" end these allowed elements ("</h": headings, header, hgroup) ...
_SPACE_AFTER = frozenset((
    "p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "tr", "td",
    "blockquote",
))  # fmt: skip
# ... and "<div" and "<br" start these.
_SPACE_BEFORE = frozenset(("div", "br"))
# Every allowed tag but img and iframe, to where _Walk.marked keeps its elements: 1 the <div>s,
# 2 the <br>s, 3 the <li>s, 4 the rest of _SPACE_AFTER; 0 for none (one dict lookup each).
_PLAIN = dict.fromkeys(_ALLOWED - {"img", "iframe"}, 0)
_PLAIN |= dict.fromkeys(_SPACE_AFTER, 4) | {"div": 1, "br": 2, "li": 3}
# What lxml will not write into a text: NUL, C0 controls but tab and newlines, U+FFFE, U+FFFF.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_HTML_SPACES = " \t\n\r\f"


class Cleaned(NamedTuple):
    """Sanitized HTML, the ``src`` of its first image (after proxying), and its visible text.

    ``text`` is what ``plaintext.html_to_text(html)`` returns, read from the tree already built
    instead of parsing ``html`` again.
    """

    html: str
    first_image: str | None
    text: str


def clean_html(html: str, base_url: str | None, *, image_proxy: str | None = None) -> Cleaned:
    """Sanitize ``html``, resolve its URLs against ``base_url``, proxy its images."""
    data = _utf8(html)
    root = None if data is None else _parse(data)
    if data is None or root is None:
        return Cleaned("", None, "")
    try:
        walk = _clean_tree(root, base_url, image_proxy, drop_first=False)
    except ValueError:  # lxml refused a value, maybe inside an element dropped with its content
        root = cast("lxml.etree._Element", _parse(data))
        walk = _clean_tree(root, base_url, image_proxy, drop_first=True)  # raises if it was not
    if walk.body is not None:  # written alone the same way as once unwrapped, for less
        walk.body.attrib.clear()
        out = lxml.etree.tostring(walk.body, method="html", encoding="unicode", with_tail=False)
        html = out[len("<body>") : -len("</body>")]
    else:
        root.attrib.clear()
        out = lxml.etree.tostring(root, method="html", encoding="unicode")
        # <html> and its </html>: what is left of the wrapper once body and the like are gone.
        html = out[len("<html>") : -len("</html>")]
    return Cleaned(html, walk.first_image, _visible_text(root, walk, html))


def _clean_tree(
    root: lxml.etree._Element, base_url: str | None, image_proxy: str | None, *, drop_first: bool
) -> _Walk:
    """Sanitize the tree in place; the walk that did it.

    The elements dropped with their content go first (``drop_first``), or, since few bodies
    have any, after the walk has found them: then what it did inside them goes with them, and
    the first image is looked for again.
    """
    if drop_first:
        lxml.etree.strip_elements(root, *_DROP, with_tail=False)
    walk = _Walk(base_url, image_proxy)
    walk.run(root)
    stripped = walk.unwrap & _DROP_TAGS
    if stripped:
        lxml.etree.strip_elements(root, *stripped, with_tail=False)
        walk.unwrap -= stripped
        walk.dropped = [e for e in walk.dropped if root in e.iterancestors()]
    for element in walk.dropped:
        _drop(element, walk)
    if stripped:
        walk.first_image = _first_image(root)
    body = root[0] if len(root) == 1 and not root.text else None
    if walk.unwrapped == 2 and body is not None and body.tag == "body" and body.tail is None:
        walk.body = body  # the wrapper's two elements are all there is to unwrap
    elif walk.unwrap:
        lxml.etree.strip_tags(root, *walk.unwrap)
    return walk


def _parse(data: bytes) -> lxml.etree._Element | None:
    return lxml.etree.fromstring(b"".join((b"<html><body>", data, b"</body></html>")), _PARSER)


def _utf8(html: str) -> bytes | None:
    """``html`` as UTF-8 without controls, references to them, or lone surrogates; None when
    only spaces are left."""
    if not html or html.isspace():  # as "not html.strip()", without the copy
        return None
    data: bytes | None
    try:
        data = encoded = html.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        data = _utf8_without_controls(html)
    else:
        # one memchr per control: far cheaper than a scan in Python's re
        if any(byte in encoded for byte in _CONTROL_BYTES):
            data = _utf8_without_controls(html)
    if data is not None and b"&#" in data and _CONTROL_REFS.search(data):
        # libxml2 would decode "&#1;" into the tree, where lxml refuses to move it (a dropped
        # element's tail) and would write it out: it goes with the raw controls.
        data = _CONTROL_REFS.sub(b"", data)
        return data if data.strip() else None
    return data


def _utf8_without_controls(html: str) -> bytes | None:
    text = _CONTROLS.sub("", html)
    return text.encode("utf-8") if text.strip() else None


# How an attribute is treated, by its name alone (see _Walk.attributes).
_KEEP, _REMOVE, _URL, _SRCSET, _STYLE = range(5)


@lru_cache(maxsize=1024)
def _attribute_kind(name: str) -> int:
    if name.startswith("on") or name in _DENIED_ATTRS or not _ATTR_NAME.fullmatch(name):
        return _REMOVE
    if name in _URL_ATTRS:
        return _URL
    if name == "srcset":
        return _SRCSET
    return _STYLE if name == "style" else _KEEP


# Names on most elements that are kept whatever their value (checked against _attribute_kind
# here): an element with no other costs one set operation instead of a look at each name.
_COMMON_KEPT = frozenset(
    name
    for name in (
        "class", "id", "dir", "lang", "title", "alt", "width", "height", "rel", "target",
        "role", "align", "name", "sizes", "loading", "tabindex", "datetime", "referrerpolicy",
        "decoding", "colspan", "rowspan", "border", "valign", "color", "face", "size", "type",
        "controls", "start", "span", "headers", "scope", "frameborder", "allowfullscreen",
        "aria-label", "aria-hidden", "aria-describedby", "data-width", "data-height",
    )
    if _attribute_kind(name) == _KEEP
)  # fmt: skip
_HTTP = ("https://", "http://")
# _attribute_kind's answers for the names met most, without the cache's bookkeeping.
_KINDS = {name: _attribute_kind(name) for name in (*_COMMON_KEPT, *_URL_ATTRS, "srcset", "style")}


class _Walk:
    """The state of one pass: where URLs resolve, the image proxy, what to unwrap afterwards."""

    __slots__ = (
        "base_url", "body", "dropped", "first_image", "image_proxy", "marked", "unwrap",
        "unwrapped", "urls",
    )  # fmt: skip

    def __init__(self, base_url: str | None, image_proxy: str | None) -> None:
        self.base_url = base_url
        self.image_proxy = image_proxy
        self.unwrap: set[str] = set()
        self.unwrapped = 0  # elements with those tags
        self.body: lxml.etree._Element | None = None  # the <body> to write, when left in place
        self.dropped: list[lxml.etree._Element] = []
        self.first_image: str | None = None
        self.urls: dict[tuple[str, bool, bool], str | None] = {}  # safe_url's answers, by input
        # For _mark_blocks, by the number _PLAIN gives each tag (0 for none, so unused).
        self.marked: tuple[list[lxml.etree._Element], ...] = ([], [], [], [], [])

    def run(self, root: lxml.etree._Element) -> None:
        """Clean every element's attributes; note the tags to unwrap or drop afterwards.

        One loop with the common case first: an allowed tag costs a dict lookup and the list of
        its attribute names. The attributes of a tag to be unwrapped go with it.
        """
        # Bound methods in locals: this loop runs for every element of every body.
        plain, all_kept, attributes = _PLAIN.get, _COMMON_KEPT.issuperset, self.attributes
        _, divs, brs, items, ends = self.marked
        add_to = (divs.append, divs.append, brs.append, items.append, ends.append)  # 0: unused
        unwrap = self.unwrap
        for element in root.iter():
            tag = element.tag
            mark = plain(tag)
            if mark is not None:
                if mark:
                    add_to[mark](element)
                names = element.keys()
                if names and not all_kept(names):
                    attributes(element, tag, names)
            elif tag == "img":
                self.attributes(element, tag, element.keys())
                self._image(element)
            elif tag == "iframe":
                self.attributes(element, tag, element.keys())
                _empty(element)
                if element.get("src") is None:  # nothing safe to show
                    self.dropped.append(element)
            elif isinstance(tag, str):
                unwrap.add(tag)
                self.unwrapped += 1

    def attributes(self, element: lxml.etree._Element, tag: str, names: Sequence[object]) -> None:
        """Drop or rewrite the attributes of one allowed element, in place and in order.

        Reading a value costs lxml far more than a name, and most attributes (class, dir, alt,
        width ...) are kept whatever their value: only the others are read.
        """
        kinds = _KINDS
        # A tree parsed from a str has str names and values (the stubs also allow bytes).
        for name in cast("list[str]", names):
            kind = kinds.get(name)
            if kind is None:
                kind = _attribute_kind(name)
            if not kind:  # _KEEP
                continue
            if kind == _REMOVE:
                del element.attrib[name]
                continue
            value = element.get(name) or ""  # a name from keys() has a value
            if kind == _URL:
                if _is_plain_http(value):
                    continue
                cleaned = self._url(
                    value, media=tag in _MEDIA and name == "src", image=tag == "img"
                )
            elif kind == _STYLE:
                cleaned = _clean_style(value)
            else:
                cleaned = self._srcset(value)
            if cleaned is None:
                del element.attrib[name]
            elif cleaned != value:
                element.set(name, cleaned)

    def _url(self, value: str, *, media: bool, image: bool) -> str | None:
        key = (value, media, image)
        if key in self.urls:
            return self.urls[key]
        safe = self.urls[key] = safe_url(value, self.base_url, media=media, image=image)
        return safe

    def _srcset(self, value: str) -> str | None:
        proxy = self.image_proxy
        candidates = []
        for candidate in value.split(","):
            url, _, size = candidate.strip().partition(" ")
            if not url:
                continue
            if not _is_plain_http(url):
                safe = self._url(url, media=True, image=True)
                if safe is None:
                    continue
                url = safe
            if proxy:
                url = proxy_image(url, proxy)
            candidates.append(f"{url} {size.strip()}".rstrip())
        return ", ".join(candidates) or None

    def _image(self, img: lxml.etree._Element) -> None:
        """Lazy source promoted, source proxied, no referrer; dropped with no safe source."""
        given = src = img.get("src")
        if src is None or src.startswith("data:"):
            lazy = next((v for a in _LAZY_SRC if (v := img.get(a)) is not None), None)
            src = lazy or src
        srcset = img.get("srcset") if src is None else None
        if srcset is not None:  # already proxied
            src = srcset.split(",", 1)[0].split(" ", 1)[0]
        elif src is not None and self.image_proxy:
            src = proxy_image(src, self.image_proxy)
        if src is None:  # nothing safe to show
            self.dropped.append(img)
            return
        if src != given or _UNWRITABLE.search(src):  # lxml refuses that (as it did before)
            img.set("src", src)
        img.set("referrerpolicy", "no-referrer")
        if self.first_image is None and not src.startswith("data:"):
            self.first_image = src


def _is_plain_http(url: str) -> bool:
    """True for an absolute http(s) URL that ``safe_url`` would return unchanged (nothing to
    strip at its end, as it starts with "h", and no tab or newline): its answer, uncalled."""
    return (
        url.startswith(_HTTP)
        and url[-1] > " "
        and "\t" not in url
        and "\n" not in url
        and "\r" not in url
    )


def _first_image(root: lxml.etree._Element) -> str | None:
    """The ``src`` of the first image left in the tree that is not a ``data:`` URL."""
    for img in root.iter("img"):
        src = img.get("src")
        if src is not None and not src.startswith("data:"):
            return str(src)
    return None


def _visible_text(root: lxml.etree._Element, walk: _Walk, html: str) -> str:
    """What ``plaintext.html_to_text(html)`` reads from ``html``, read from its tree ``root``.

    html_to_text puts a space before each of its block marks in the HTML string and parses it
    again; _mark_blocks puts the same spaces into the tree. Changes the tree: call it after
    serializing.
    """
    _mark_blocks(walk)
    text = lxml.etree.tostring(root, method="text", encoding="unicode")  # as XPath string()
    if html.startswith("\ufeff"):
        # html_to_text's parser reads a leading U+FEFF as a byte order mark and skips it; when
        # only HTML spaces follow, it finds no document and falls back to the markup itself.
        if not html[1:].strip(_HTML_SPACES):
            return "\ufeff"
        text = text[1:]
    return " ".join(text.split())


def _mark_blocks(walk: _Walk) -> None:
    """A space at each block mark of plaintext.html_to_text, as far as folding whitespace goes.

    No character lies between an end tag and the element's tail, nor between a start tag and
    the element's text: a space at the start of the tail of each element in ``_SPACE_AFTER``
    and at the start of the text of each in ``_SPACE_BEFORE`` (a ``<br>`` has none) gives the
    same characters once whitespace is folded. Where a space is there already, none is added;
    none after an empty ``<li>``, which libxml2 writes without its end tag. lxml drops a text
    before it refuses one holding a character XML forbids: a new element holding the space goes
    just before the start tag or just before the end tag instead. Elements since dropped from
    the tree no longer count.
    """
    _, divs, brs, items, ends = walk.marked
    if items:
        ends = [li for li in items if li.text is not None or len(li)] + ends
    for br in brs:
        br.text = " "
    for div in divs:
        text = div.text
        if not text:
            div.text = " "
        elif not text[0].isspace():
            if _UNWRITABLE.search(text):
                div.addprevious(_space(div))
            else:
                div.text = " " + text
    for elements in (divs, ends):
        for element in elements:
            tail = element.tail
            if not tail:
                element.tail = " "
            elif not tail[0].isspace():
                if _UNWRITABLE.search(tail):
                    element.append(_space(element))
                else:
                    element.tail = " " + tail


def _space(element: lxml.etree._Element) -> lxml.etree._Element:
    """A new element holding a space, where no text can take one."""
    space = element.makeelement("span")
    space.text = " "
    return space


def _empty(element: lxml.etree._Element) -> None:
    for child in list(element):
        element.remove(child)
    element.text = None


def _drop(element: lxml.etree._Element, walk: _Walk) -> None:
    """Remove ``element`` and its content, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    try:
        if tail:
            if previous is not None:
                previous.tail = (previous.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
    except ValueError:  # a character lxml will not set again (U+FFFE): libxml2 moves it
        _empty(element)
        element.attrib.clear()
        element.tag = _DROPPED  # unwrapped with the unknown tags: only its tail is left
        walk.unwrap.add(_DROPPED)
        walk.unwrapped += 1
        return
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
    if "\t" in url or "\n" in url or "\r" in url:
        url = _URL_INVISIBLE.sub("", url)
    if url.startswith(("https://", "http://")):  # the common case, allowed everywhere
        return url
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


@lru_cache(maxsize=1024)  # a site writes the same few styles again and again
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
