"""The stories as feeds: Atom 1.0 and JSON Feed 1.1, each entry listing every outlet's copy.

    atom_feed(stories, self_url=..., now=...)  -> bytes (UTF-8 XML)
    json_feed(stories, feed_url=...)           -> dict (serialize with json.dumps)

Pure: stories in, document out, in the order given (``newest_first`` sorts and cuts). An entry
is one story: its title is the canonical member's, its link that member's, its content an HTML
list of every copy (outlet linked, time, title); Atom adds a ``related`` link and a category
per outlet, JSON Feed a ``_watcher`` extension with every article. Only http(s) links are
written, and text is stripped of what XML cannot hold.

Does not: read the store or serve HTTP (``watcher.server`` does), or escape for a reader's
screen beyond HTML escaping of the copied titles.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from lxml import etree

from watcher import __version__
from watcher.models import Story, StoryMember

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_TYPE = "application/feed+json; charset=utf-8"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
FEED_TITLE = "watcher: stories"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def newest_first(stories: Iterable[Story], limit: int) -> list[Story]:
    """The ``limit`` newest stories by first publication (then last update), newest first."""
    return sorted(stories, key=_story_time, reverse=True)[:limit]


def _story_time(story: Story) -> tuple[datetime, datetime, str]:
    return (story.first_published_at or story.updated_at, story.updated_at, story.id)


def rfc3339(at: datetime) -> str:
    """A time as RFC 3339 in UTC, ``2026-11-03T05:20:20Z``."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (control characters, surrogates)."""
    return _NOT_XML.sub("", text)


def safe_link(link: str | None) -> str | None:
    """``link`` if it is an http(s) URL, else None (no javascript: in a feed reader)."""
    if link and urlsplit(link).scheme.lower() in ("http", "https"):
        return link
    return None


def story_uuid(story_id: str) -> str:
    """A stable ``urn:uuid:`` for a story (Atom ids must be IRIs)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'watcher:story:{story_id}')}"


def headline(story: Story) -> str:
    """The story's title: its canonical member's, else its first member's."""
    canonical = _canonical(story)
    return canonical.title if canonical is not None and canonical.title else "(untitled)"


def _canonical(story: Story) -> StoryMember | None:
    first = story.members[0] if story.members else None
    return next((m for m in story.members if m.article_id == story.canonical_id), first)


def members_html(story: Story) -> str:
    """An HTML list of every copy of the story: outlet (linked), time, title."""
    n = len(story.outlets)
    items = []
    for m in story.members:
        link = safe_link(m.link)
        outlet = html.escape(m.outlet)
        name = f'<a href="{html.escape(link)}">{outlet}</a>' if link else outlet
        when = (
            m.published_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            if m.published_at
            else "undated"
        )
        items.append(f"<li>{name} · {when} · {html.escape(m.title)}</li>")
    lead = f"<p>{n} outlet{'s' if n != 1 else ''} carried this story:</p>"
    return xml_text(f"{lead}<ul>{''.join(items)}</ul>")


def _atom(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> None:
    child = etree.SubElement(
        parent, f"{{{ATOM_NS}}}{tag}", {k: xml_text(v) for k, v in attrs.items()}
    )
    if text is not None:
        child.text = xml_text(text)


def atom_feed(
    stories: Sequence[Story], *, self_url: str, now: datetime, title: str = FEED_TITLE
) -> bytes:
    """Atom 1.0 of these stories, in the given order; ``now`` dates an empty feed."""
    # lxml-stubs type nsmap keys as str, but None is how lxml names the default namespace
    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})  # type: ignore[dict-item]
    _atom(feed, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self_url)}")
    _atom(feed, "title", title)
    _atom(feed, "updated", rfc3339(max((s.updated_at for s in stories), default=now)))
    _atom(feed, "link", rel="self", href=self_url, type="application/atom+xml")
    author = etree.SubElement(feed, f"{{{ATOM_NS}}}author")
    _atom(author, "name", "watcher")
    _atom(feed, "generator", "watcher", version=__version__)
    for story in stories:
        _atom_entry(feed, story)
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="utf-8"))


def _atom_entry(feed: etree._Element, story: Story) -> None:
    entry = etree.SubElement(feed, f"{{{ATOM_NS}}}entry")
    _atom(entry, "id", story_uuid(story.id))
    _atom(entry, "title", headline(story))
    _atom(entry, "updated", rfc3339(story.updated_at))
    if story.first_published_at is not None:
        _atom(entry, "published", rfc3339(story.first_published_at))
    canonical = _canonical(story)
    main = safe_link(canonical.link) if canonical else None
    if main:
        _atom(entry, "link", rel="alternate", type="text/html", href=main)
    seen = {main}
    for m in story.members:
        link = safe_link(m.link)
        if link is not None and link not in seen:
            seen.add(link)
            _atom(entry, "link", rel="related", type="text/html", href=link, title=m.outlet)
    for outlet in story.outlets:
        _atom(entry, "category", term=outlet)
    _atom(entry, "content", members_html(story), type="html")


def json_feed(
    stories: Sequence[Story], *, feed_url: str, title: str = FEED_TITLE
) -> dict[str, object]:
    """JSON Feed 1.1 of these stories, in the given order; ``_watcher`` lists every copy."""
    return {
        "version": JSON_FEED_VERSION,
        "title": title,
        "feed_url": feed_url,
        "description": "Stories followed by watcher: each item is one story and every outlet "
        "that carried it.",
        "authors": [{"name": "watcher"}],
        "items": [_json_item(story) for story in stories],
    }


def _json_item(story: Story) -> dict[str, object]:
    canonical = _canonical(story)
    item: dict[str, object] = {
        "id": story.id,
        "title": headline(story),
        "content_html": members_html(story),
        "date_modified": rfc3339(story.updated_at),
        "tags": list(story.outlets),
        "authors": [{"name": outlet} for outlet in story.outlets],
        "_watcher": {
            "outlets": list(story.outlets),
            "articles": [
                {
                    "id": m.article_id,
                    "outlet": m.outlet,
                    "title": m.title,
                    "url": safe_link(m.link),
                    "date_published": rfc3339(m.published_at) if m.published_at else None,
                }
                for m in story.members
            ],
        },
    }
    if canonical is not None and safe_link(canonical.link):
        item["url"] = safe_link(canonical.link)
    if story.first_published_at is not None:
        item["date_published"] = rfc3339(story.first_published_at)
    return item
