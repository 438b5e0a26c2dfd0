"""The lxml fast path of parse_feed: it gives feedparser's exact ParsedFeed, or declines.

Differential: every feed file in the shared folder (feedparser's ~2,100 fixtures and an RSSHub
response) and feeds built from corpus articles go through the fast path alone
(``fast_result``) and the feedparser path alone (``parse_feed(..., fast=False)``); where the fast
path answers, both ParsedFeeds must be equal. Counts assert that it does answer: every
corpus-built feed, and most well-formed RSS/Atom fixtures.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from feedparser.datetimes import _parse_date
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, DATA
from tests.test_parse import SHARED_FEEDS, URL, fixture_headers, item, rss
from watcher.archive import read_file
from watcher.errors import ArchiveError, ParseError
from watcher.models import Article, ParsedEntry, ParsedFeed
from watcher.parse import fast_result, parse_feed
from watcher.parse.elements import parse_date as _date

RSS_HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}
NEWEST = datetime(2026, 11, 20, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))
# The fast path must answer for at least this many of the shared fixtures (993 when written:
# RSS 0.9x/2.0, Atom 1.0 and RDF without xml:base, DOCTYPE, xhtml, base64, GeoRSS ...).
MIN_FIXTURES_TAKEN = 950


def _slow(body: bytes, headers: dict[str, str], url: str = URL) -> ParsedFeed | str:
    """The feedparser path's ParsedFeed, or the ParseError's text."""
    try:
        return parse_feed(body, headers, url, fast=False)
    except ParseError as e:
        return str(e)


def _differences(expected: ParsedFeed | str, actual: ParsedFeed) -> list[str]:
    """The fields where two results differ, named for a readable failure."""
    if isinstance(expected, str):
        return [f"feedparser path raised {expected!r}"]
    found = [k for k in ParsedFeed.model_fields if k != "entries" and
             getattr(expected, k) != getattr(actual, k)]  # fmt: skip
    if len(expected.entries) != len(actual.entries):
        return [*found, f"{len(expected.entries)} vs {len(actual.entries)} entries"]
    for number, (one, other) in enumerate(zip(expected.entries, actual.entries, strict=True)):
        found += [f"entry {number} {k}" for k in ParsedEntry.model_fields
                  if getattr(one, k) != getattr(other, k)]  # fmt: skip
    return found


def _compare(body: bytes, headers: dict[str, str], url: str = URL) -> tuple[bool, list[str]]:
    """(whether the fast path answered, how its answer differs from the feedparser path's)."""
    fast = fast_result(body, headers, url)
    if fast is None:
        return False, []
    return True, _differences(_slow(body, headers, url), fast)


# --- feedparser's fixtures and the real RSSHub response -------------------------------------------


def shared_feed_files() -> list[Path]:
    """Every feed file in the shared folder; skips when the folder is absent."""
    if not SHARED_FEEDS.is_dir():
        pytest.skip(f"shared feeds not found at {SHARED_FEEDS} (set WATCHER_FEEDS)")
    suffixes = {".xml", ".rdf", ".json", ".atom", ".rss"}
    return sorted(p for p in SHARED_FEEDS.rglob("*") if p.suffix in suffixes and p.is_file())


def test_fast_path_equals_feedparser_on_shared_feeds(capsys: pytest.CaptureFixture[str]) -> None:
    """On every shared feed file the fast path declines or gives feedparser's ParsedFeed."""
    files = shared_feed_files()
    taken, wrong = 0, {}
    for path in files:
        body = path.read_bytes()
        answered, differences = _compare(body, fixture_headers(body))
        taken += answered
        if differences:
            wrong[str(path.relative_to(SHARED_FEEDS))] = differences
    with capsys.disabled():
        print(f"\nfast path taken for {taken} of {len(files)} shared feed files")
    assert {} == wrong
    assert taken >= MIN_FIXTURES_TAKEN


def test_fast_path_reads_the_rsshub_response() -> None:
    """The saved RSSHub response (CDATA, isPermaLink="false") takes the fast path, all 20 items."""
    path = SHARED_FEEDS / "real" / "rsshub-3dm-news.xml"
    if not path.is_file():
        pytest.skip(f"{path} not found (set WATCHER_FEEDS)")
    body = path.read_bytes()
    fast = fast_result(body, RSS_HEADERS, URL)
    assert (20, []) == (len(fast.entries) if fast else 0, _compare(body, RSS_HEADERS)[1])


# --- feeds built from corpus articles -------------------------------------------------------------


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _when(number: int) -> datetime:
    return NEWEST - timedelta(minutes=7 * number, seconds=number)


def rsshub_feed(articles: list[Article]) -> bytes:
    """RSS 2.0 as RSSHub (and bench/poll.py) write it: CDATA descriptions, non-permalink guids."""
    items = "".join(
        f"<item><title>{html.escape(a.title)}</title>"
        + (f"<link>{html.escape(a.link)}</link>" if a.link else "")
        + f"<description>{_cdata(a.body_html)}</description>"
        f"<pubDate>{format_datetime(_when(n))}</pubDate>"
        f'<guid isPermaLink="false">bench-{n}</guid></item>\n'
        for n, a in enumerate(articles)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n<title>bench</title>\n'
        "<link>https://bench.invalid/</link>\n"
        '<atom:link href="http://127.0.0.1:8080/feed.xml" rel="self" type="application/rss+xml"/>'
        "<description>bench - Made with love by RSSHub</description>\n<generator>RSSHub</generator>"
        "<webMaster>i@diygod.me (DIYgod)</webMaster><language>zh-cn</language>"
        "<image><url>https://bench.invalid/logo.png</url><title>bench</title>"
        "<link>https://bench.invalid/</link></image>"
        f"<lastBuildDate>{format_datetime(NEWEST)}</lastBuildDate><ttl>5</ttl>\n"
        f"{items}</channel>\n</rss>\n"
    ).encode()


def rich_rss_feed(articles: list[Article]) -> bytes:
    """RSS 2.0 with the modules news sites add: content:encoded, dc, media, enclosures."""
    items = "".join(
        f"<item><title><![CDATA[{a.title}]]></title>"
        f"<guid>{html.escape(a.link or f'https://bench.invalid/{n}')}</guid>"
        f"<description>{html.escape(a.text[:120])}</description>"
        f"<content:encoded>{_cdata(a.body_html)}</content:encoded>"
        f"<dc:creator>{html.escape(a.author or a.outlet)}</dc:creator>"
        + "".join(f"<category>{html.escape(c)}</category>" for c in [*a.categories, *a.tags])
        + (f'<enclosure url="{html.escape(a.head_image)}" type="image/jpeg" length="1"/>'
           if a.head_image else
           f'<media:thumbnail url="/thumbs/{n}.jpg"/><media:content url="/v/{n}.mp4"/>')
        + f"<pubDate>{format_datetime(_when(n).astimezone(BEIJING))}</pubDate>"
        "</item>"
        for n, a in enumerate(articles)
    )  # fmt: skip
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>rich &amp; full</title>'
        f"<link>https://bench.invalid/</link>{items}</channel></rss>"
    ).encode()


def atom_feed(articles: list[Article]) -> bytes:
    """Atom 1.0: html content, text summaries, authors, categories, alternate links, W3CDTF."""
    entries = "".join(
        f"<entry><title type='html'>{html.escape(html.escape(a.title))}</title>"
        f"<id>tag:bench.invalid,2026:{n}</id>"
        + (f'<link rel="alternate" type="text/html" href="{html.escape(a.link)}"/>'
           if a.link else "")
        + f"<published>{_when(n).isoformat()}</published>"
        f"<updated>{_when(n).strftime('%Y-%m-%dT%H:%M:%S.123Z')}</updated>"
        f"<author><name>{html.escape(a.outlet)}</name><email>news@bench.invalid</email></author>"
        + "".join(f'<category term="{html.escape(c)}"/>' for c in a.categories)
        + f"<summary>{html.escape(a.text[:200])}</summary>"
        f'<content type="html">{html.escape(a.body_html)}</content></entry>'
        for n, a in enumerate(articles)
    )  # fmt: skip
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        '<title type="text">bench atom</title><id>urn:uuid:60a76c80</id>'
        '<link rel="self" href="/feed.atom"/><link href="https://bench.invalid/"/>'
        f"<updated>{NEWEST.isoformat()}</updated>{entries}</feed>"
    ).encode()


def rdf_feed(articles: list[Article]) -> bytes:
    """RSS 1.0 (RDF): items beside the channel, rdf:about ids, dc:date."""
    items = "".join(
        f'<item rdf:about="https://bench.invalid/{n}"><title>{html.escape(a.title)}</title>'
        f"<link>https://bench.invalid/{n}?a=1&amp;b=2</link>"
        f"<description>{html.escape(a.body_html)}</description>"
        f"<dc:date>{_when(n).isoformat()}</dc:date><dc:subject>{html.escape(a.outlet)}</dc:subject>"
        "</item>"
        for n, a in enumerate(articles)
    )
    return (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<channel rdf:about="https://bench.invalid/"><title>bench rdf</title>'
        f"<link>https://bench.invalid/</link><description>d</description></channel>{items}"
        "</rdf:RDF>"
    ).encode()


BUILDERS: dict[str, Callable[[list[Article]], bytes]] = {
    "rsshub": rsshub_feed, "rich-rss": rich_rss_feed, "atom": atom_feed, "rdf": rdf_feed,
}  # fmt: skip


def seed_articles() -> list[Article]:
    """The five seed articles of tests/data/seeds."""
    return [read_file(p) for p in sorted((DATA / "seeds").glob("*.txt"))]


def corpus_articles(count: int = 60) -> list[Article]:
    """Up to ``count`` articles spread over the shared corpus; skips when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHER_CORPUS to its folder)")
    files = sorted(p for p in CORPUS.rglob("*.md") if p.name != "SOURCES.md")
    articles = []
    for path in files[:: max(1, len(files) // count)][:count]:
        try:
            articles.append(read_file(path))
        except ArchiveError:
            continue
    return articles


@pytest.mark.parametrize("shape", sorted(BUILDERS))
def test_fast_path_equals_feedparser_on_seed_feeds(shape: str) -> None:
    """A feed of the seed articles, in each shape, takes the fast path and matches feedparser."""
    body = BUILDERS[shape](seed_articles())
    assert (True, []) == _compare(body, RSS_HEADERS)


@pytest.mark.parametrize("shape", sorted(BUILDERS))
def test_fast_path_equals_feedparser_on_corpus_feeds(shape: str) -> None:
    """Feeds of 20 corpus articles each, in each shape, take the fast path and match feedparser."""
    articles = corpus_articles()
    results = [_compare(BUILDERS[shape](articles[i : i + 20]), RSS_HEADERS)
               for i in range(0, len(articles), 20)]  # fmt: skip
    assert [(True, [])] * len(results) == results


# --- what the fast path declines ----------------------------------------------------------------

DECLINED = {
    "doctype": '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY co "(C)">]>'
    + rss(item("a &co;", "d")).split("?>", 1)[1],
    "xml-base": rss('<item xml:base="http://x.invalid/"><title>t</title><link>l</link></item>'),
    "malformed": rss(item("a", "b")).replace("</channel>", ""),
    "html-page": "<html><head><title>x</title></head><body>x</body></html>",
    "atom-0.3": '<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>t</title></feed>',
    "xhtml-content": '<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="xhtml">'
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content></entry></feed>',
    "markup-in-title": rss("<item><title>a <b>b</b></title></item>"),
    "name-5th-edition": rss("<item><a\u2070>x</a\u2070><title>t</title></item>"),  # expat: bozo
    "georss": rss('<item xmlns:georss="http://www.georss.org/georss">'
                  "<title>t</title><georss:point>45 -71</georss:point></item>"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_fast_path_declines_what_it_does_not_emulate(name: str) -> None:
    """DOCTYPEs, xml:base, broken XML, non-feeds, Atom 0.3, xhtml, markup, GeoRSS: feedparser's."""
    assert fast_result(DECLINED[name].encode(), {}, URL) is None


def test_parse_feed_takes_the_fast_path() -> None:
    """parse_feed answers with the fast path's result when it has one (same, and faster)."""
    body = (DATA / "feeds" / "rss20.xml").read_bytes()
    fast = fast_result(body, RSS_HEADERS, URL)
    assert fast is not None
    assert (
        fast == parse_feed(body, RSS_HEADERS, URL) == parse_feed(body, RSS_HEADERS, URL, fast=False)
    )


@pytest.mark.parametrize(
    "items",
    [
        item("Caf\u00c3\u00a9 \u0080 &#150;", "\u0093quoted\u0094"),  # UTF-8 read as Latin-1, C1
        "<item><title>x</title><guid>/relative/1</guid></item>",  # a permalink guid is the link
        "<item><guid isPermaLink='false'>a</guid><link>/l?a=1&amp;amp;b=2&amp;c;=3</link></item>",
        "<item><description>one</description><dc:description>two</dc:description></item>",
        "<item><content:encoded>&lt;p&gt;c&lt;/p&gt;</content:encoded><description>d</description>"
        "</item>",
        "<item><title></title><dc:title>second</dc:title><media:title>m</media:title></item>",
        "<item><category domain='d'>a</category><category>a</category><dc:subject>b</dc:subject>"
        "<media:category>c</media:category></item>",
        "<item><pubDate>Sat, 21 Nov 2026 25:00:00 GMT</pubDate><dc:date>2026-11-20</dc:date>"
        "</item>",
        "<item><title>A &lt;b&gt;bold&lt;/b&gt; title</title><author>a@b.invalid (A)</author>"
        "</item>",
        "<item><media:group><media:thumbnail url=''/><media:thumbnail>/t.png</media:thumbnail>"
        "</media:group><enclosure url='/a.mp3' type='audio/mpeg'/></item>",
    ],
    ids=["latin1-and-c1", "permalink-guid", "link-refs", "two-descriptions", "content-first",
         "title-precedence", "categories", "odd-dates", "html-title", "thumbnails"],
)  # fmt: skip
def test_fast_path_quirks_match_feedparser(items: str) -> None:
    """feedparser's quirks (guid as link, summary/content hand-over, title depth ...) carry over."""
    namespaces = (
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/"'
    )
    body = rss(items).replace("<rss ", f"<rss {namespaces} ").encode()
    assert (True, []) == _compare(body, {})


# --- dates ----------------------------------------------------------------------------------------

_stamps = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
_offsets = st.sampled_from(["GMT", "UTC", "UT", "Z", "+0000", "+0800", "-0530", "+1400", "-1200"])


@settings(max_examples=300, deadline=None)
@given(_stamps, _offsets, st.booleans())
def test_rfc822_dates_match_feedparser(stamp: datetime, zone: str, weekday: bool) -> None:
    """The fast RFC 822 reading gives feedparser's UTC tuple (or its fallback) for any date."""
    text = stamp.strftime(("%a, " if weekday else "") + "%d %b %Y %H:%M:%S ") + zone
    text = text.replace(f" {stamp.year} ", f" {stamp.year:04d} ")
    assert _parse_date(text) == _date(text)


@settings(max_examples=300, deadline=None)
@given(_stamps, st.sampled_from(["Z", "+00:00", "+08:00", "-05:30", "+14:00"]), st.booleans())
def test_w3cdtf_dates_match_feedparser(stamp: datetime, zone: str, fraction: bool) -> None:
    """The fast W3CDTF reading gives feedparser's UTC tuple (or its fallback) for any date."""
    text = f"{stamp.year:04d}" + stamp.strftime("-%m-%dT%H:%M:%S")
    text += f".{stamp.microsecond:06d}" if fraction else ""
    assert _parse_date(text + zone) == _date(text + zone)


@pytest.mark.parametrize(
    "text",
    ["", "Sat, 31 Feb 2026 10:00:00 GMT", "Sat, 21 Nov 2026 24:00:00 GMT", "2026-02-30T00:00:00Z",
     "21 Nov 26 10:00 EST", "2026-11-20", "Sat, 01 Jan 0001 00:00:00 +0100", "not a date"],
)  # fmt: skip
def test_odd_dates_fall_back_to_feedparser(text: str) -> None:
    """Dates outside the two fast forms, or impossible ones, are feedparser's to read."""
    assert _parse_date(text) == _date(text)


# --- random items ---------------------------------------------------------------------------------

_ELEMENTS = [
    "title", "link", "description", "guid", "guid isPermaLink='false'", "category",
    "category domain='d'", "dc:creator", "content:encoded", "media:thumbnail url='/t.jpg'",
    "media:thumbnail", "enclosure url='/i.png' type='image/png'", "pubDate", "dc:date", "author",
    "source url='/s'", "comments", "dc:subject", "media:title", "media:description", "dc:title",
    "atom:link href='/a'", "atom:link rel='enclosure' href='/b.jpg'", "ttl", "x:extra",
    "itunes:author", "itunes:summary", "media:credit", "abstract", "info",
]  # fmt: skip
_PIECES = [*"ab <>&;/é\u0080\u0093中\n", "&amp;", "</p>", "Â©", "http://x/", "Sat, 21 Nov 2026"]
_TEXTS = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join)


def _element(spec: str, text: str) -> str:
    name = spec.split()[0]
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{spec}>{escaped}</{name}>"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(_ELEMENTS), _TEXTS), max_size=8), max_size=3))
def test_random_items_match_feedparser(items: list[list[tuple[str, str]]]) -> None:
    """Items of random elements and text: the fast path declines or matches feedparser."""
    namespaces = (
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:x="urn:x" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'
    )
    body = "".join("<item>" + "".join(_element(*e) for e in i) + "</item>" for i in items)
    document = rss(body).replace("<rss ", f"<rss {namespaces} ").encode()
    assert [] == _compare(document, {})[1]


_ATOM_ELEMENTS = [
    "title", "title type='html'", "link href='/a'", "link rel='related' href='/r'",
    "link rel='enclosure' type='image/png' href='/e.png'", "link type='text/html' href='/h'",
    "id", "summary", "summary type='html'", "content", "content type='html'", "published",
    "updated", "rights", "category term='t'", "category label='l'", "category", "x:extra",
]  # fmt: skip
_AUTHORS = st.sampled_from(
    ["", "<author><name>n</name></author>", "<author><name>n</name><email>e</email></author>",
     "<author><email>e</email><uri>/u</uri></author>",
     "<source><title>s</title><id>/s</id></source>"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.sampled_from(_ATOM_ELEMENTS), _TEXTS), max_size=8),
                          _AUTHORS), max_size=3))  # fmt: skip
def test_random_atom_entries_match_feedparser(
    entries: list[tuple[list[tuple[str, str]], str]],
) -> None:
    """Atom entries of random elements and text: the fast path declines or matches feedparser."""
    body = "".join(
        "<entry>" + person + "".join(_element(*e) for e in elements) + "</entry>"
        for elements, person in entries
    )
    document = f'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:x="urn:x">{body}</feed>'
    assert [] == _compare(document.encode(), {})[1]
