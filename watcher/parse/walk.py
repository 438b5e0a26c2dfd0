"""feedparser's SAX bookkeeping, replayed over an lxml tree: the generic part of the fast path.

    Walk(url, may_hold_c1).run(root)
        start-ns   -> feedparser's track_namespace: version, namespacemap, namespaces_in_use
        start      -> feedparser's tag name and handler key for the element, its attributes as
                      feedparser normalizes them, the image/textinput "hack", then the handler
                      (``starts``), or the unknown-element rule, or Decline
        end        -> the handler (``ends``); depth as feedparser counts it
        pop        -> strip, resolve relative URLs, "looks like HTML", the Latin-1 and cp1252
                      repairs, title_depth, property_depth_map, then store where feedparser would
    the result: ``feed`` and ``entries``, feedparser-shaped dicts (read by convert.to_entry)

The per-element handlers are elements.FeedWalk's. Raises Decline wherever it cannot promise
feedparser's result. Does not parse XML or build models.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar, cast

from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri
from feedparser.util import FeedParserDict
from lxml import etree

__all__ = ["Attrs", "Decline", "Walk", "leaf_text", "map_content_type", "must_be_leaf"]

_MATCH = {k.lower(): v for k, v in _FeedParserMixin.namespaces.items()}
_KEYMAP = {k: v[0] if isinstance(v, list) else v for k, v in FeedParserDict.keymap.items()}
_RELATIVE = _FeedParserMixin.can_be_relative_uri
_LOOKS_LIKE_HTML: Callable[[str], bool] = _FeedParserMixin.looks_like_html
_C1 = re.compile("[" + "".join(chr(c) for c in _cp1252) + "]")
_AMP_REF = re.compile("&([A-Za-z0-9_]+);")
_ACCEPTED_TYPES = frozenset({"text/plain", "text/html"})
# Keys of feedparser's dicts that the walk reads or that steer it: an element feedparser does
# not know, stored under one of these, would change the result.
_STEERING = frozenset(
    {"id", "link", "links", "title", "title_detail", "author", "authors", "author_detail",
     "tags", "published_parsed", "updated_parsed", "content", "summary", "summary_detail",
     "media_thumbnail", "media_content", "image", "textinput", "guidislink", "source"}
)  # fmt: skip
_IMAGE_CHILDREN = frozenset({"title", "link", "url", "width", "height", "description"})
_TEXTINPUT_CHILDREN = frozenset({"title", "link", "description", "name"})
_PERSON_CHILDREN = frozenset({"name", "email", "uri", "url", "homepage"})
_PEOPLE = frozenset(
    {"author", "managingeditor", "dc_author", "dc_creator", "itunes_author", "contributor"}
)


class Decline(Exception):  # noqa: N818 - a signal, not an error
    """The fast path cannot promise feedparser's result for this document."""


# --- text as feedparser's pop() leaves it ---------------------------------------------------------


def _repair(output: str, may_hold_c1: bool) -> str:
    """feedparser's last steps: undo UTF-8 read as Latin-1, then map C1 controls as cp1252."""
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    # (a C1 control after the Latin-1 repair was "\xc2" + a C1 control before it)
    return output.translate(_cp1252) if may_hold_c1 and _C1.search(output) else output


def map_content_type(value: str) -> str:
    """feedparser's map_content_type: text, html, xhtml -> MIME types; lower case."""
    value = value.lower()
    return {"text": "text/plain", "plain": "text/plain", "html": "text/html"}.get(
        value, "application/xhtml+xml" if value == "xhtml" else value
    )


# --- the walk -------------------------------------------------------------------------------------

Attrs = dict[str, str]


Start = Callable[[Any, etree._Element, "Attrs"], None]
End = Callable[[Any, etree._Element], None]


class Walk:
    """feedparser's mixin state machine, for the elements it emulates exactly."""

    starts: ClassVar[dict[str, Start]] = {}  # handler key -> what its start tag does
    ends: ClassVar[dict[str, End]] = {}  # handler key -> what its end tag does

    def __init__(self, url: str, may_hold_c1: bool = True) -> None:
        self.may_hold_c1 = may_hold_c1
        base = make_safe_absolute_uri(url, url) or url
        if (make_safe_absolute_uri(base, base) or base) != base:
            raise Decline("an unsettled base URL")
        self.base = base
        self.version = ""
        self.feed: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.depths: list[dict[str, int]] = []  # feedparser's property_depth_map, per entry
        self.source: dict[str, Any] = {}
        self.in_use: dict[str, str] = {}  # feedparser's namespaces_in_use
        self.prefixes: dict[str | None, str] = {}  # feedparser's namespacemap
        self.names: dict[str, tuple[str, str, bool]] = {}
        self.infeed = self.inentry = self.inimage = self.intextinput = self.insource = 0
        self.inauthor = self.incontributor = self.has_content = self.guidislink = 0
        self.summary_key: str | None = None
        self.title_depth = -1
        self.depth = 0
        self.keys: list[str] = []
        self.ctype: str | None = None  # the content type of the element being read, if any
        self.expecting = 1

    def run(self, root: etree._Element) -> None:
        """Walk every element in document order, as expat's callbacks would."""
        for event, item in etree.iterwalk(root, events=("start-ns", "start", "end")):
            if event == "start-ns":
                self._track_namespace(*item)
            elif event == "start":
                self._start(item)
            else:
                self._end(item)
        if self.keys or not self._known_root(root):
            raise Decline("unknown root")

    def _known_root(self, root: etree._Element) -> bool:
        tag = self._name(root.tag)[0]
        return tag in ("rss", "rdf:rdf") or (tag == "feed" and self.version == "atom10")

    # --- names ----------------------------------------------------------------------------------

    def _track_namespace(self, prefix: str, uri: str) -> None:
        if not uri:
            return
        if not prefix.isascii():
            raise Decline("a prefix outside ASCII")
        given = prefix or None
        lower = uri.lower()
        if not self.version:
            if (given, lower) == (None, "http://my.netscape.com/rdf/simple/0.9/"):
                self.version = "rss090"
            elif lower == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif lower == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in lower:
            uri = lower = "http://backend.userland.com/rss"
        if lower in _MATCH:
            self.prefixes[given] = _MATCH[lower]
            self.in_use[_MATCH[lower]] = uri
        else:
            self.in_use[given or ""] = uri
        if given and uri == "http://www.w3.org/1999/xlink":
            raise Decline("xlink declarations become attributes in feedparser")
        self.names.clear()

    def _name(self, clark: str) -> tuple[str, str, bool]:
        """feedparser's tag for an lxml tag, its handler key, and whether it has no prefix."""
        known = self.names.get(clark)
        if known is None:
            known = self.names[clark] = self._compute_name(clark)
        return known

    def _compute_name(self, clark: str) -> tuple[str, str, bool]:
        if not clark.isascii():  # expat keeps XML 1.0's older name rules, libxml2 the 5th edition's
            raise Decline("a name outside ASCII")
        namespace, _, local = clark[1:].rpartition("}") if clark[0] == "{" else ("", "", clark)
        lower = namespace.lower()
        if "backend.userland.com/rss" in lower:
            namespace = lower = "http://backend.userland.com/rss"
        prefix = _MATCH.get(lower)
        tag = local.lower()
        if prefix:
            tag = prefix.lower() + ":" + tag
        elif namespace:
            given = next((p for p, u in self.in_use.items() if p and u == namespace), None)
            tag = f"{given}:{tag}" if given else tag
        tag = tag.lower()
        head, _, tail = tag.rpartition(":")
        head = self.prefixes.get(head, head)
        return tag, f"{head}_{tail}" if head else tail, not head

    @staticmethod
    def _attrs(element: etree._Element) -> Attrs:
        """The attributes as feedparser's handlers see them (keys lower, rel/type values too)."""
        found: Attrs = {}
        pairs = cast("list[tuple[str, str]]", element.items())
        for clark, value in pairs:
            if not clark.isascii():
                raise Decline("an attribute name outside ASCII")
            if clark[0] == "{":
                namespace, _, local = clark[1:].partition("}")
                if namespace.lower() not in _MATCH:
                    raise Decline("an attribute in an unknown namespace")
                prefix = _MATCH[namespace.lower()]
                found[(f"{prefix}:{local}" if prefix else local).lower()] = value
            else:
                found[clark.lower()] = value
        for clark, value in pairs:  # then each under its local name, as expat's "qnames"
            found[clark.rpartition("}")[2].lower()] = value
        if "base" in found or "xml:base" in found:
            raise Decline("a base attribute")
        for key in ("rel", "type"):
            if key in found:
                found[key] = found[key].lower() or found[key]
        return found

    # --- events ---------------------------------------------------------------------------------

    def _start(self, element: etree._Element) -> None:
        self.depth += 1
        tag, key, bare = self._name(element.tag)
        parent = self.keys[-1] if self.keys else ""
        if (parent == "image" and tag not in _IMAGE_CHILDREN) or (
            parent == "textinput" and tag not in _TEXTINPUT_CHILDREN
        ):
            raise Decline(f"<{tag}> in <{parent}>")
        if parent in _PEOPLE and tag not in _PERSON_CHILDREN:
            raise Decline(f"<{tag}> in <{parent}>")
        if bare and tag not in ("title", "link", "description", "name"):
            self.intextinput = 0
        if bare and tag not in ("title", "link", "description", "url", "href", "width", "height"):
            self.inimage = 0
        self.keys.append(key)
        attrs = self._attrs(element)
        handler = self.starts.get(key)
        if handler is not None:
            handler(self, element, attrs)
        elif key in self.ends or _has_handler(key):
            raise Decline(f"<{tag}> is not emulated")
        else:
            self._start_unknown(element, key, attrs)

    def _end(self, element: etree._Element) -> None:
        key = self.keys.pop()
        handler = self.ends.get(key)
        if handler is not None:
            handler(self, element)
        elif key == "ttl":
            self._end_ttl(element)
        self.depth -= 1

    # --- the generic parts of feedparser's mixin ------------------------------------------------

    def context(self) -> dict[str, Any]:
        """The dict feedparser's _get_context() would write to now."""
        if self.insource:
            return self.source
        if self.inimage and "image" in self.feed:
            image: dict[str, Any] = self.feed["image"]
            return image
        if self.intextinput:
            textinput: dict[str, Any] = self.feed["textinput"]
            return textinput
        if self.inentry:
            return self.entries[-1]
        return self.feed

    def push_content(self, attrs: Attrs, default: str, expecting: int) -> None:
        """feedparser's push_content: the content type (declined unless text or HTML)."""
        if "mode" in attrs:
            raise Decline("a content mode")
        ctype = map_content_type(attrs.get("type", default))
        if ctype not in _ACCEPTED_TYPES:
            raise Decline(f"content type {ctype}")
        self.ctype = ctype
        self.expecting = expecting

    def pop_content(self, element: etree._Element, name: str) -> str:
        """feedparser's pop_content: pop the element's text, then forget its content type."""
        try:
            return self.pop(name, leaf_text(element), self.expecting)
        finally:
            self.ctype = None
            self.expecting = 1

    def pop(self, name: str, raw: str, expecting: int = 1) -> str:
        """What feedparser's pop() returns for element ``name``, storing what it stores."""
        output = raw.strip()
        if not expecting:
            return output
        if name in _RELATIVE and output and (name != "id" or self.guidislink):
            output = _urljoin(self.base, output)
        ctype = self.ctype
        if (
            ctype == "text/plain"
            and not self.version.startswith("atom")
            and _LOOKS_LIKE_HTML(output)
        ):
            ctype = "text/html"
        output = _repair(output, self.may_hold_c1)
        if name == "category" or (name == "title" and -1 < self.title_depth <= self.depth):
            return output
        if self.inentry and not self.insource:
            self._store_entry(name, output, ctype)
        elif self.infeed or self.insource:
            context = self.context()
            name = "subtitle" if name == "description" else name
            context[_KEYMAP.get(name, name)] = output
            if name == "link":
                output = _AMP_REF.sub(r"&\g<1>", output)
                context["link"] = output
                context["links"][-1]["href"] = output
            elif ctype is not None:
                context[name + "_detail"] = {"type": ctype, "value": output}
        return output

    def _store_entry(self, name: str, output: str, ctype: str | None) -> None:
        entry = self.entries[-1]
        if name == "content":
            entry.setdefault("content", []).append({"type": ctype, "value": output})
        elif name == "link":
            if not self.inimage:
                output = _AMP_REF.sub(r"&\g<1>", output.replace("&amp;", "&"))
                entry["link"] = output
                if output:
                    entry["links"][-1]["href"] = output
        else:
            name = "summary" if name == "description" else name
            depths = self.depths[-1]
            old = depths.get(name)
            if old is None or self.depth <= old:
                depths[name] = self.depth
                entry[_KEYMAP.get(name, name)] = output
            if ctype is not None:
                entry[name + "_detail"] = {"type": ctype, "value": output}

    def _start_unknown(self, element: etree._Element, key: str, attrs: Attrs) -> None:
        if _KEYMAP.get(key, key) in _STEERING:
            raise Decline(f"an unknown element stored as {key!r}")
        if key == "ttl":
            if attrs:
                self.context()["ttl"] = attrs
            elif len(element):
                raise Decline("markup in <ttl>")

    def _end_ttl(self, element: etree._Element) -> None:
        if not element.attrib:
            self.pop("ttl", element.text or "")


def must_be_leaf(element: etree._Element) -> None:
    """Decline unless the element holds no markup (its text is read later)."""
    if len(element):
        raise Decline("markup inside a text element")


def leaf_text(element: etree._Element) -> str:
    """The text of an element that must hold no markup (else Decline)."""
    must_be_leaf(element)
    return element.text or ""


@functools.cache
def _has_handler(key: str) -> bool:
    return hasattr(_FeedParserMixin, "_start_" + key) or hasattr(_FeedParserMixin, "_end_" + key)
