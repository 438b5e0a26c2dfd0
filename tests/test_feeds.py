"""Feeds: stories as Atom 1.0 and JSON Feed 1.1, every outlet's copy in each entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from watcher.feeds import (
    ATOM_NS,
    JSON_FEED_VERSION,
    atom_feed,
    headline,
    json_feed,
    members_html,
    newest_first,
    safe_link,
    story_uuid,
    xml_text,
)
from watcher.models import Story, StoryMember

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
A = f"{{{ATOM_NS}}}"


def member(
    article_id: str, outlet: str, title: str, link: str | None, hours_ago: float
) -> StoryMember:
    """A story member published ``hours_ago`` before NOW."""
    return StoryMember(
        article_id=article_id,
        outlet=outlet,
        title=title,
        link=link,
        published_at=NOW - timedelta(hours=hours_ago),
    )


def story(story_id: str, *members: StoryMember, updated_hours_ago: float = 0) -> Story:
    """A story of these members; the first is canonical and the earliest."""
    return Story(
        id=story_id,
        canonical_id=members[0].article_id,
        outlets=list(dict.fromkeys(m.outlet for m in members)),
        first_published_at=members[0].published_at,
        updated_at=NOW - timedelta(hours=updated_hours_ago),
        members=list(members),
    )


WIRE = story(
    "s1",
    member("a1", "中央社", "美國宣布新關稅", "https://cna.example.org/1", 5),
    member("a2", "联合早报", "美国宣布新关税", "https://zaobao.example.org/2", 4),
    member("a3", "RFI", "美国宣布新关税措施", "https://rfi.example.org/3", 3),
    updated_hours_ago=3,
)
SOLO = story("s2", member("b1", "DW", "Solo item", "https://dw.example.org/b", 1))


def test_newest_first_sorts_by_first_publication_and_cuts() -> None:
    """newest_first orders by first publication, newest first, and keeps ``limit``."""
    older = story("s0", member("c1", "VOA", "Old", None, 50))
    expected = [["s2", "s1", "s0"], ["s2"]]
    actual = [[s.id for s in newest_first([WIRE, older, SOLO], n)] for n in (10, 1)]
    assert expected == actual


def test_atom_has_required_elements_and_every_outlet() -> None:
    """The Atom feed parses; feed and entries have id, title, updated; each outlet is listed."""
    root = etree.fromstring(
        atom_feed([WIRE, SOLO], self_url="http://127.0.0.1:1/stories.atom", now=NOW)
    )
    required = [root.find(f"{A}{tag}") is not None for tag in ("id", "title", "updated", "author")]
    entry = root.findall(f"{A}entry")[0]
    actual = (
        root.tag,
        required,
        [e.findtext(f"{A}id") for e in root.findall(f"{A}entry")],
        entry.findtext(f"{A}title"),
        entry.findtext(f"{A}updated"),
        entry.findtext(f"{A}published"),
        [c.get("term") for c in entry.findall(f"{A}category")],
        [(li.get("rel"), li.get("href")) for li in entry.findall(f"{A}link")],
    )
    expected = (
        f"{A}feed",
        [True] * 4,
        [story_uuid("s1"), story_uuid("s2")],
        "美國宣布新關稅",
        "2026-11-03T09:00:00Z",
        "2026-11-03T07:00:00Z",
        ["中央社", "联合早报", "RFI"],
        [
            ("alternate", "https://cna.example.org/1"),
            ("related", "https://zaobao.example.org/2"),
            ("related", "https://rfi.example.org/3"),
        ],
    )
    assert expected == actual


def test_atom_content_lists_each_copy_with_its_link() -> None:
    """The entry content is HTML naming every outlet, linked, with its title."""
    html_text = members_html(WIRE)
    expected = [True] * 6
    actual = [f'href="{m.link}"' in html_text for m in WIRE.members] + [
        m.title in html_text for m in WIRE.members
    ]
    assert expected == actual
    assert html_text.startswith("<p>3 outlets carried this story:</p><ul><li>")


def test_empty_atom_feed_is_dated_now() -> None:
    """With no stories the feed is still valid Atom, updated at ``now``."""
    root = etree.fromstring(atom_feed([], self_url="http://127.0.0.1:1/stories.atom", now=NOW))
    assert ("2026-11-03T12:00:00Z", []) == (root.findtext(f"{A}updated"), root.findall(f"{A}entry"))


def test_hostile_text_and_links_stay_harmless() -> None:
    """Markup in titles is escaped, control characters dropped, javascript: links left out."""
    bad = story(
        "s3",
        member("x1", "Evil<b>", "<script>alert(1)</script>\x00\x1b end", "javascript:alert(1)", 2),
    )
    xml = atom_feed([bad], self_url="http://127.0.0.1:1/stories.atom", now=NOW)
    entry = etree.fromstring(xml).find(f"{A}entry")
    assert entry is not None
    content = entry.findtext(f"{A}content") or ""
    expected = ("<script>alert(1)</script> end", [], False, True)
    actual = (
        entry.findtext(f"{A}title"),
        entry.findall(f"{A}link"),
        "<script>" in content,
        "&lt;script&gt;" in content,
    )
    assert expected == actual


def test_json_feed_fields() -> None:
    """JSON Feed 1.1: version, title, feed_url; items with id, url, title, content, dates."""
    feed = json_feed([WIRE], feed_url="http://127.0.0.1:1/stories.json")
    items = feed["items"]
    assert isinstance(items, list)
    item = items[0]
    expected = (
        JSON_FEED_VERSION,
        "http://127.0.0.1:1/stories.json",
        "s1",
        "https://cna.example.org/1",
        "美國宣布新關稅",
        "2026-11-03T07:00:00Z",
        "2026-11-03T09:00:00Z",
        ["中央社", "联合早报", "RFI"],
        ["a1", "a2", "a3"],
        True,
    )
    actual = (
        feed["version"],
        feed["feed_url"],
        item["id"],
        item["url"],
        item["title"],
        item["date_published"],
        item["date_modified"],
        item["tags"],
        [a["id"] for a in item["_watcher"]["articles"]],
        item["content_html"] == members_html(WIRE),
    )
    assert expected == actual


def test_headline_falls_back_to_first_member() -> None:
    """A story whose canonical member is missing takes its first member's title."""
    odd = WIRE.model_copy(update={"canonical_id": "nobody"})
    assert "美國宣布新關稅" == headline(odd)


def test_safe_link_and_xml_text() -> None:
    """Only http(s) links pass; XML-illegal characters are removed."""
    links = [safe_link(u) for u in ("https://a.example.org/", "ftp://x", "javascript:x", None)]
    assert (["https://a.example.org/", None, None, None], "ab") == (links, xml_text("a\x0bb"))
