"""feedparser's element handlers, one by one, for the elements the fast path emulates exactly.

    FeedWalk.starts / FeedWalk.ends: handler key (feedparser's method name less _start_/_end_)
        -> what feedparser's _start_X / _end_X does to the feed and entry dicts
    rss channel feed item entry image textinput source | title link guid id description
    summary content content:encoded | author contributor name email uri | dates | categories
    enclosure media:content media:thumbnail media:group | inert leaves (language, rights ...)

A key missing here that feedparser handles (iTunes, GeoRSS, CDF, Atom 0.3 ...) makes Walk
decline. Dates: the two common forms are computed here, every other string goes to feedparser's
own ``_parse_date``. Does not parse XML or build models.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.urls import _urljoin
from lxml import etree

from watcher.parse.walk import (
    Attrs,
    Decline,
    End,
    Start,
    Walk,
    leaf_text,
    map_content_type,
    must_be_leaf,
)

__all__ = ["FeedWalk", "parse_date"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    r"Nov|Dec) (\d{4}) (\d\d):(\d\d):(\d\d) (GMT|UTC|UT|Z|[+-]\d{4})"
)
_W3CDTF = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def parse_date(value: str) -> Any:
    """feedparser's ``_parse_date``, with its two common forms computed directly."""
    rfc = _RFC822.fullmatch(value)
    iso = None if rfc else _W3CDTF.fullmatch(value)
    try:
        if rfc:
            day, month, year, hour, minute, second, zone = rfc.groups()
            numbers = (int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
        elif iso:
            *fields, zone = iso.groups()
            numbers = tuple(int(f) for f in fields)  # type: ignore[assignment]
        else:
            return _parse_date(value)
        offset = 0 if zone[0] not in "+-" else int(zone[1:3]) * 60 + int(zone[-2:])
        stamp = datetime(*numbers) - timedelta(minutes=-offset if zone[0] == "-" else offset)
        return stamp.utctimetuple()
    except (ValueError, OverflowError):
        return _parse_date(value)


class FeedWalk(Walk):
    """Walk with feedparser's handlers for the elements emulated exactly."""

    def _start_rss(self, element: etree._Element, attrs: Attrs) -> None:
        if not self.version.startswith("rss"):
            given = attrs.get("version", "")
            versions = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
            self.version = versions.get(given) or ("rss20" if given.startswith("2.") else "rss")

    def _start_channel(self, element: etree._Element, attrs: Attrs) -> None:
        if "lastmod" in attrs or "href" in attrs:
            raise Decline("a CDF channel")
        self.infeed = 1

    def _start_feed(self, element: etree._Element, attrs: Attrs) -> None:
        self.infeed = 1
        if not self.version:
            given = attrs.get("version")
            self.version = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}.get(
                given or "", "atom"
            )

    def _end_feed(self, element: etree._Element) -> None:
        self.infeed = 0

    def _start_item(self, element: etree._Element, attrs: Attrs) -> None:
        if self.inentry or self.insource or "lastmod" in attrs or "href" in attrs:
            raise Decline("a nested or CDF item")
        self.entries.append({})
        self.depths.append({})
        self.inentry = 1
        self.guidislink = 0
        self.title_depth = -1
        about = attrs.get(self.prefixes.get("rdf", "rdf") + ":about")
        if about:
            self.context()["id"] = about

    def _end_item(self, element: etree._Element) -> None:
        self.inentry = 0
        self.has_content = 0

    def _start_image(self, element: etree._Element, attrs: Attrs) -> None:
        if self.inentry:
            raise Decline("an image in an item")
        self.context().setdefault("image", {})
        self.inimage = 1
        self.title_depth = -1

    def _end_image(self, element: etree._Element) -> None:
        self.inimage = 0

    def _start_textinput(self, element: etree._Element, attrs: Attrs) -> None:
        if self.inentry:
            raise Decline("a text input in an item")
        self.context().setdefault("textinput", {})
        self.intextinput = 1
        self.title_depth = -1

    def _end_textinput(self, element: etree._Element) -> None:
        self.intextinput = 0

    def _start_source(self, element: etree._Element, attrs: Attrs) -> None:
        if self.insource:
            raise Decline("a nested source")
        if "url" in attrs:
            self.source["href"] = attrs["url"]
        self.insource = 1
        self.title_depth = -1

    def _end_source(self, element: etree._Element) -> None:
        self.insource = 0
        raw = (element.text or "") + "".join(child.tail or "" for child in element)
        value = self.pop("source", raw)
        if value:
            self.source["title"] = value
        self.context()["source"] = dict(self.source)
        self.source.clear()

    def _start_title(self, element: etree._Element, attrs: Attrs) -> None:
        self.push_content(attrs, "text/plain", self.infeed or self.inentry or self.insource)

    def _end_title(self, element: etree._Element) -> None:
        if self.pop_content(element, "title"):
            self.title_depth = self.depth

    def _end_media_title(self, element: etree._Element) -> None:
        depth = self.title_depth
        self._end_title(element)
        self.title_depth = depth

    def _start_link(self, element: etree._Element, attrs: Attrs) -> None:
        attrs = dict(attrs)
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        attrs = _enforce_href(attrs)
        if "href" in attrs:
            attrs["href"] = _urljoin(self.base, attrs["href"])
        context = self.context()
        links = context.setdefault("links", [])
        if not (self.inentry and self.inimage):
            links.append(attrs)
        if "href" not in attrs:
            self.expecting = self.infeed or self.inentry or self.insource
            self.keys[-1] = "link:text"
            must_be_leaf(element)
        elif attrs["rel"] == "alternate" and map_content_type(attrs["type"]) in _HTML_TYPES:
            context["link"] = attrs["href"]

    def _end_link_text(self, element: etree._Element) -> None:
        self.pop("link", leaf_text(element), self.expecting)
        self.expecting = 1

    def _start_guid(self, element: etree._Element, attrs: Attrs) -> None:
        self.guidislink = attrs.get("ispermalink", "true") == "true"
        must_be_leaf(element)

    def _end_guid(self, element: etree._Element) -> None:
        value = self.pop("id", leaf_text(element))
        context = self.context()
        context.setdefault("guidislink", self.guidislink and "link" not in context)
        if self.guidislink:
            context.setdefault("link", value)

    def _start_description(self, element: etree._Element, attrs: Attrs) -> None:
        if "summary" in self.context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(element, attrs)
        else:
            self.push_content(attrs, "text/html", self.infeed or self.inentry or self.insource)

    def _start_abstract(self, element: etree._Element, attrs: Attrs) -> None:
        self.push_content(attrs, "text/plain", self.infeed or self.inentry or self.insource)

    def _end_description(self, element: etree._Element) -> None:
        if self.summary_key == "content":
            self._end_content(element)
        else:
            self.pop_content(element, "description")
        self.summary_key = None

    def _start_summary(self, element: etree._Element, attrs: Attrs) -> None:
        if "summary" in self.context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(element, attrs)
        else:
            self.summary_key = "summary"
            self.push_content(attrs, "text/plain", 1)

    def _end_summary(self, element: etree._Element) -> None:
        if self.summary_key == "content":
            self._end_content(element)
        else:
            self.pop_content(element, self.summary_key or "summary")
        self.summary_key = None

    def _start_content(self, element: etree._Element, attrs: Attrs) -> None:
        self.has_content = 1
        self.push_content(attrs, "text/plain", 1)

    def _start_content_encoded(self, element: etree._Element, attrs: Attrs) -> None:
        self.has_content = 1
        self.push_content(attrs, "text/html", 1)

    def _end_content(self, element: etree._Element) -> None:
        value = self.pop_content(element, "content")
        self.context().setdefault("summary", value)  # text/plain and text/html are copied

    def _start_author(self, element: etree._Element, attrs: Attrs) -> None:
        self.inauthor = 1
        self.context().setdefault("authors", []).append({})

    def _end_author(self, element: etree._Element) -> None:
        raw = (element.text or "") + "".join(child.tail or "" for child in element)
        self.pop("author", raw)
        self.inauthor = 0
        self._sync_author()

    def _sync_author(self) -> None:
        context = self.context()
        detail = context.get("authors", [{}])[-1]
        name, email = detail.get("name"), detail.get("email")
        if name and email:
            context["author"] = f"{name} ({email})"
        elif name or email:
            context["author"] = name or email

    def _save_author(self, key: str, value: str) -> None:
        context = self.context()
        self._sync_author()
        context.setdefault("authors", [{}])[-1][key] = value

    def _start_contributor(self, element: etree._Element, attrs: Attrs) -> None:
        self.incontributor = 1
        self.context().setdefault("contributors", []).append({})

    def _end_contributor(self, element: etree._Element) -> None:
        self.incontributor = 0

    def _save_person(self, key: str, value: str) -> None:
        if self.inauthor:
            self._save_author(key, value)
        elif self.incontributor:
            self.context().setdefault("contributors", [{}])[-1][key] = value

    def _end_name(self, element: etree._Element) -> None:
        value = leaf_text(element).strip()
        if self.inauthor or self.incontributor:
            self._save_person("name", value)
        elif self.intextinput:
            self.context()["name"] = value

    def _end_email(self, element: etree._Element) -> None:
        self._save_person("email", leaf_text(element).strip())

    def _end_url(self, element: etree._Element) -> None:
        self._save_person("href", self.pop("href", leaf_text(element)))

    def _end_published(self, element: etree._Element) -> None:
        value = self.pop("published", leaf_text(element))
        self.context()["published_parsed"] = parse_date(value)

    def _end_updated(self, element: etree._Element) -> None:
        value = self.pop("updated", leaf_text(element))
        self.context()["updated_parsed"] = parse_date(value)

    def _start_category(self, element: etree._Element, attrs: Attrs) -> None:
        scheme = attrs.get("scheme", attrs.get("domain"))
        self._add_tag(attrs.get("term"), scheme, attrs.get("label"))
        must_be_leaf(element)

    def _start_media_category(self, element: etree._Element, attrs: Attrs) -> None:
        attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
        self._start_category(element, attrs)

    def _end_category(self, element: etree._Element) -> None:
        value = self.pop("category", leaf_text(element))
        if not value:
            return
        tags = self.context()["tags"]
        if tags and not tags[-1]["term"]:
            tags[-1]["term"] = value
        else:
            self._add_tag(value, None, None)

    def _add_tag(self, term: str | None, scheme: str | None, label: str | None) -> None:
        tags = self.context().setdefault("tags", [])
        if not term and not scheme and not label:
            return
        value = {"term": term, "scheme": scheme, "label": label}
        if value not in tags:
            tags.append(value)

    def _start_enclosure(self, element: etree._Element, attrs: Attrs) -> None:
        attrs = _enforce_href(dict(attrs))
        attrs["rel"] = "enclosure"
        self.context().setdefault("links", []).append(attrs)

    def _start_media_content(self, element: etree._Element, attrs: Attrs) -> None:
        self.context().setdefault("media_content", []).append(attrs)

    def _start_media_thumbnail(self, element: etree._Element, attrs: Attrs) -> None:
        self.context().setdefault("media_thumbnail", []).append(attrs)
        must_be_leaf(element)

    def _end_media_thumbnail(self, element: etree._Element) -> None:
        url = self.pop("url", leaf_text(element))
        thumbnail = self.context()["media_thumbnail"][-1]
        if url.strip() and "url" not in thumbnail:
            thumbnail["url"] = url

    def _inert_leaf(self, element: etree._Element, attrs: Attrs) -> None:
        """An element whose value no field reads (language, generator, rights, ...)."""
        must_be_leaf(element)

    def _inert(self, element: etree._Element, attrs: Attrs) -> None:
        """An element that only groups others (media:group) or sets nothing we read (cloud)."""

    def _leaf(self, element: etree._Element, attrs: Attrs) -> None:
        """An element whose text is read when it ends."""
        must_be_leaf(element)


def _enforce_href(attrs: Attrs) -> Attrs:
    href = attrs.get("url", attrs.get("uri", attrs.get("href", None)))
    if href:
        attrs.pop("url", None)
        attrs.pop("uri", None)
        attrs["href"] = href
    return attrs


def _table() -> tuple[dict[str, Start], dict[str, End]]:
    w = FeedWalk
    starts: dict[str, Start] = {
        "rss": w._start_rss, "channel": w._start_channel, "feed": w._start_feed,
        "item": w._start_item, "entry": w._start_item, "image": w._start_image,
        "textinput": w._start_textinput, "source": w._start_source,
        "link": w._start_link, "guid": w._start_guid, "id": w._start_guid,
        "description": w._start_description, "dc_description": w._start_description,
        "media_description": w._start_description, "summary": w._start_summary,
        "content": w._start_content, "content_encoded": w._start_content_encoded,
        "fullitem": w._start_content_encoded, "abstract": w._start_abstract,
        "itunes_summary": w._start_summary, "itunes_author": w._start_author,
        "author": w._start_author, "managingeditor": w._start_author,
        "dc_author": w._start_author, "dc_creator": w._start_author,
        "contributor": w._start_contributor,
        "category": w._start_category, "keywords": w._start_category,
        "dc_subject": w._start_category, "media_category": w._start_media_category,
        "enclosure": w._start_enclosure, "media_content": w._start_media_content,
        "media_thumbnail": w._start_media_thumbnail, "media_group": w._inert, "cloud": w._inert,
    }  # fmt: skip
    for key in ("title", "dc_title", "media_title"):
        starts[key] = w._start_title
    for key in ("name", "email", "url", "uri", "homepage", "pubdate", "published", "issued",
                "dcterms_issued", "updated", "modified", "lastbuilddate", "dc_date",
                "dcterms_modified"):  # fmt: skip
        starts[key] = w._leaf
    for key in ("language", "dc_language", "webmaster", "dc_publisher", "generator", "rights",
                "copyright", "dc_rights", "subtitle", "tagline", "width", "height", "created",
                "dcterms_created", "expirationdate", "info", "feedburner_browserfriendly",
                "itunes_subtitle", "itunes_block", "itunes_explicit", "dc_contributor",
                "newlocation", "dcterms_valid", "media_credit", "media_player", "media_rating",
                "media_restriction", "media_license"):  # fmt: skip
        starts[key] = w._inert_leaf
    ends: dict[str, End] = {
        "channel": w._end_feed, "feed": w._end_feed, "item": w._end_item, "entry": w._end_item,
        "image": w._end_image, "textinput": w._end_textinput, "source": w._end_source,
        "title": w._end_title, "dc_title": w._end_title, "media_title": w._end_media_title,
        "link:text": w._end_link_text, "guid": w._end_guid, "id": w._end_guid,
        "description": w._end_description, "dc_description": w._end_description,
        "media_description": w._end_description, "summary": w._end_summary,
        "content": w._end_content, "content_encoded": w._end_content,
        "fullitem": w._end_content, "abstract": w._end_description,
        "itunes_summary": w._end_summary, "itunes_author": w._end_author,
        "author": w._end_author, "managingeditor": w._end_author, "dc_author": w._end_author,
        "dc_creator": w._end_author, "contributor": w._end_contributor,
        "name": w._end_name, "email": w._end_email,
        "url": w._end_url, "uri": w._end_url, "homepage": w._end_url,
        "category": w._end_category, "keywords": w._end_category, "dc_subject": w._end_category,
        "media_category": w._end_category, "media_thumbnail": w._end_media_thumbnail,
    }  # fmt: skip
    for key in ("pubdate", "published", "issued", "dcterms_issued"):
        ends[key] = w._end_published
    for key in ("updated", "modified", "lastbuilddate", "dc_date", "dcterms_modified"):
        ends[key] = w._end_updated
    return starts, ends


FeedWalk.starts, FeedWalk.ends = _table()
