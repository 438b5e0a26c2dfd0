"""normalize_entry: golden articles, stable ids, dates, head images, the archive round trip."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DATA
from tests.test_parse import (
    FEEDPARSER_TESTS,
    feedparser_fixtures,
    fixture_headers,
    golden_cases,
    golden_run,
)
from watcher import archive
from watcher.archive.hexo import sanitize_title
from watcher.clean import TAG_LIKE
from watcher.errors import ParseError
from watcher.models import Article, ParsedEntry, ParsedFeed
from watcher.normalize import entry_identity, normalize_entry
from watcher.parse import parse_feed
from watcher.plaintext import html_to_text
from watcher.settings import SourceSettings

NOW = datetime(2026, 11, 1, 8, 0, 0, 123456, tzinfo=UTC)
FEED_URL = "http://127.0.0.1:1200/guancha/headline"
PROXY = "https://cors.zfour.workers.dev/?"
FORMATS = ("hexo", "link", "jekyll")


def source(**changes: Any) -> SourceSettings:
    """A hexo source like the RSSHUB-PAGE ones, with ``changes``."""
    fields: dict[str, Any] = {"name": "guancha-headline", "route": "/guancha/headline"}
    fields |= {"outlet": "观察者网", "categories": ("新媒体", "观察者网", "头条"), "format": "hexo"}
    return SourceSettings(**(fields | changes))


def entry(**changes: Any) -> ParsedEntry:
    """A parsed entry with a guid, a link, a date and a small body, with ``changes``."""
    fields: dict[str, Any] = {
        "guid": "https://www.guancha.cn/internation/2022_01_28_623764.shtml",
        "link": "https://www.guancha.cn/internation/2022_01_28_623764.shtml",
        "title": "美方书面回复未解决安全诉求，俄罗斯警告",
        "published_at": datetime(2022, 1, 28, 10, 30, 43, tzinfo=UTC),
        "content_html": "<p>俄外长拉夫罗夫对此批评说，西方国家正试图回避自己做出过的承诺。</p>",
    }
    return ParsedEntry(**(fields | changes))


def normalize(parsed: ParsedEntry, src: SourceSettings | None = None, **feed: Any) -> Article:
    """normalize_entry of one entry in a feed at FEED_URL, at NOW."""
    parsed_feed = ParsedFeed(base_url=FEED_URL, entries=[parsed], **feed)
    return normalize_entry(parsed, parsed_feed, src or source(), now=NOW)


# --- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("expected", golden_cases(), ids=lambda p: p.name.split(".")[0])
def test_golden_articles(expected: Path) -> None:
    """Each golden feed's entries normalize to the Articles recorded beside it."""
    spec, _, articles = golden_run(expected)
    assert spec["articles"] == [a.model_dump(mode="json") for a in articles]


def test_article_text_is_the_visible_text_of_its_body() -> None:
    """An Article's text is html_to_text of its body, for every golden entry and the seeds."""
    articles = [a for expected in golden_cases() for a in golden_run(expected)[2]]
    seeds = [archive.read_file(p).body_html for p in sorted((DATA / "seeds").iterdir())]
    articles += [normalize(entry(content_html=body), source(image_proxy=PROXY)) for body in seeds]
    actual = [(a.text, html_to_text(a.body_html)) for a in articles]
    assert (True, [(t, t) for t, _ in actual]) == (len(articles) > 20, actual)


# --- identity -------------------------------------------------------------------------------------


def test_same_item_seen_again_keeps_its_id() -> None:
    """An item fetched again later, with a new title and body, has the same id (an update)."""
    first = normalize(entry())
    later = normalize_entry(
        entry(title="美方回复未解决安全诉求（更新）", content_html="<p>更新后的正文。</p>"),
        ParsedFeed(base_url=FEED_URL),
        source(),
        now=NOW + timedelta(hours=3),
    )
    assert (first.id, 32) == (later.id, len(later.id))


LINK = "https://www.guancha.cn/internation/2022_01_28_623764.shtml"
NO_ID = {"guid": None, "link": None}
IDENTITY_CASES = [
    ({}, f"guid:{LINK}"),
    ({"guid": None}, f"link:{LINK}"),
    ({"guid": "  "}, f"link:{LINK}"),
    (NO_ID, "title:美方书面回复未解决安全诉求，俄罗斯警告\n2022-01-28T10:30:43+00:00"),
    (NO_ID | {"published_at": None, "title": " A &amp; B "}, "title:A & B\n"),
    (NO_ID | {"published_at": None, "title": "", "content_html": "<p>快讯</p>"},
     "title:\n\n<p>快讯</p>"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "identity"), IDENTITY_CASES)
def test_identity_is_guid_then_link_then_title_and_date(
    changes: dict[str, Any], identity: str
) -> None:
    """guid, else link, else title + date; with neither title nor date, the body too."""
    assert identity == entry_identity(entry(**changes))


def test_ids_differ_between_sources_and_items() -> None:
    """The same guid from two sources, or two guids from one source, are different articles."""
    ids = {
        normalize(entry()).id,
        normalize(entry(), source(name="other")).id,
        normalize(entry(guid="another")).id,
    }
    assert 3 == len(ids)


# --- fields ---------------------------------------------------------------------------------------


def test_published_falls_back_to_updated_then_to_now_marked_missing() -> None:
    """published, else updated (exact); neither: the fetch time, whole seconds, "missing"."""
    updated = datetime(2022, 1, 28, 11, 0, tzinfo=UTC)
    actual = [
        (a.published_at, a.published_confidence)
        for a in (
            normalize(entry(updated_at=updated)),
            normalize(entry(published_at=None, updated_at=updated)),
            normalize(entry(published_at=None)),
        )
    ]
    expected = [
        (datetime(2022, 1, 28, 10, 30, 43, tzinfo=UTC), "exact"),
        (updated, "exact"),
        (NOW.replace(microsecond=0), "missing"),
    ]
    assert expected == actual


TITLE_CASES = [
    ("  普京拜登月内二度\n通话，互抛&quot;警告&quot;  ", '普京拜登月内二度 通话，互抛"警告"'),
    ("AT&T 与 Tom & Jerry", "AT&T 与 Tom & Jerry"),
    ("1 < 2，a<b", "1 < 2，a<b"),
    ("研究人员发现<script>alert(1)</script>漏洞 <b onclick=x>紧急</b>", "研究人员发现漏洞 紧急"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;标题", "标题"),
    ("标题\x00\x08\ud800", "标题"),
]  # fmt: skip


@pytest.mark.parametrize(("title", "expected"), TITLE_CASES)
def test_title_is_one_line_of_plain_text(title: str, expected: str) -> None:
    """Entities decoded (twice-escaped ones too), whitespace folded, no tags, no controls."""
    assert expected == normalize(entry(title=title)).title


def test_archive_fields_come_from_the_source() -> None:
    """Outlet, categories, format and source name are the source's; author is left to the outlet."""
    article = normalize(
        entry(author="熊超然", categories=["国际", "a, [b]", "C#: {x}", "国际"]),
        source(format="link"),
    )
    actual = (article.outlet, article.categories, article.format, article.source)
    assert ("观察者网", ["新媒体", "观察者网", "头条"], "link", "guancha-headline") == actual
    assert (None, ["国际", "a b", "C x"]) == (article.author, article.tags)


LINK_CASES = [
    ("javascript:alert(1)", None),
    ("/a/1.html", "http://127.0.0.1:1200/a/1.html"),
    ("https://x.example/a b/[1](2)", "https://x.example/a%20b/%5B1%5D(2)"),
    ("http://[::1]/a[1]", "http://[::1]/a%5B1%5D"),
    ("http://[::1/a]", "http://%5B::1/a%5D"),
]


@pytest.mark.parametrize(("link", "expected"), LINK_CASES)
def test_links_are_safe_absolute_and_fit_a_link_line(link: str, expected: str | None) -> None:
    """javascript: links go; relative ones resolve; brackets and spaces are percent-encoded."""
    assert expected == normalize(entry(link=link)).link


def test_relative_body_urls_resolve_against_the_entry_link() -> None:
    """Relative URLs in the body resolve against the article's link, not the RSSHub instance."""
    body = '<p><a href="/internation/x.shtml">x</a><img src="img/a.jpg"></p>'
    article = normalize(entry(content_html=body, link="https://www.guancha.cn/news/1.shtml"))
    expected = '<p><a href="https://www.guancha.cn/internation/x.shtml">x</a>'
    expected += '<img src="https://www.guancha.cn/news/img/a.jpg" referrerpolicy="no-referrer"></p>'
    assert expected == article.body_html


def test_body_is_content_else_summary() -> None:
    """content:encoded wins over the summary; with no content the summary is the body."""
    both = normalize(entry(content_html="<p>全文</p>", summary_html="<p>摘要</p>"))
    summary_only = normalize(entry(content_html=None, summary_html="<p>摘要</p>"))
    assert [("<p>全文</p>", "全文"), ("<p>摘要</p>", "摘要")] == [
        (a.body_html, a.text) for a in (both, summary_only)
    ]


# --- head image -----------------------------------------------------------------------------------


def test_head_image_is_the_first_body_image_else_the_entry_image() -> None:
    """First image of the body (proxied), else the enclosure/thumbnail image (proxied too)."""
    proxied = source(image_proxy=PROXY)
    body = '<p>x</p><img src="http://a.example/1.jpg"><img src="http://a.example/2.jpg">'
    with_body = normalize(entry(content_html=body, image="http://a.example/e.jpg"), proxied)
    entry_only = normalize(entry(image="/e.jpg"), proxied)
    plain = normalize(entry(image="http://a.example/e.jpg"))
    expected = [PROXY + "http://a.example/1.jpg", PROXY + "https://www.guancha.cn/e.jpg"]
    expected.append("http://a.example/e.jpg")
    assert expected == [a.head_image for a in (with_body, entry_only, plain)]


SEED_FILES = {
    "000_8e2f3cb45f1e72f0.txt": PROXY,  # ZAKER through the image proxy
    "001_fd9e98214ec16f9b.txt": None,
    "003_14e2fef68ff6de96.txt": None,
    "004_d544787e24fc0d6f.txt": None,
}


@pytest.mark.parametrize(("name", "proxy"), SEED_FILES.items(), ids=lambda v: str(v)[:3])
def test_feed_item_renders_as_the_rsshub_page_archive_did(name: str, proxy: str | None) -> None:
    """A feed item with a seed's unproxied body renders as the seed (but on* and bare &)."""
    text = (DATA / "seeds" / name).read_text("utf-8")
    seed = archive.parse(text)
    body = seed.body_html.replace(proxy, "") if proxy else seed.body_html
    parsed = ParsedEntry(title=seed.title, published_at=seed.published_at, content_html=body)
    src = source(outlet=seed.outlet, categories=tuple(seed.categories), image_proxy=proxy)
    rendered = archive.render(normalize(parsed, src))
    expected = re.sub(r" on\w+(?=[ >])", "", text)
    assert expected == rendered.replace("&amp;", "&")


def test_lone_surrogates_from_json_never_reach_an_article() -> None:
    """JSON escapes like \\ud800 (lone surrogates) are dropped from every field of a file."""
    body = (
        rb'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "x\udc00",'
        rb' "url": "http://x.example/\ud800", "title": "a\ud800b", "tags": ["t\ud800"],'
        rb' "content_html": "<p>c\ud800d</p>", "image": "http://x.example/i\ud800.jpg"}]}'
    )
    feed = parse_feed(body, {}, FEED_URL)
    article = normalize_entry(feed.entries[0], feed, source(), now=NOW)
    archive.render(article).encode("utf-8")  # no UnicodeEncodeError
    actual = (article.title, article.link, article.tags, article.body_html, article.head_image)
    assert ("ab", "http://x.example/", ["t"], "<p>cd</p>", "http://x.example/i.jpg") == actual


def test_hexo_source_without_categories_files_under_the_outlet() -> None:
    """A Hexo post needs a category line to be read back: the outlet stands in for none."""
    article = normalize(entry(), source(categories=()))
    back = archive.parse(archive.render(article))
    assert (["观察者网"], ["观察者网"]) == (article.categories, back.categories)


# --- the archive round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_rendered_article_reads_back_the_same(fmt: str) -> None:
    """render then parse gives back title, link, date and body, as far as the format keeps them."""
    _, feed, _ = golden_run(DATA / "feeds" / "rss20.expected.json")
    articles = [normalize_entry(e, feed, source(format=fmt), now=NOW) for e in feed.entries]
    back = [archive.parse(archive.render(a)) for a in articles]
    expected = [_round_trip_fields(a, fmt) for a in articles]
    assert expected == [(b.title, b.link, b.published_at, b.body_html) for b in back]


def _round_trip_fields(article: Article, fmt: str) -> tuple[Any, ...]:
    if fmt == "hexo":
        return (sanitize_title(article.title), None, article.published_at, article.body_html)
    return (article.title, article.link, article.published_at, article.body_html)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=80),
    st.text(max_size=200),
    st.sampled_from(FORMATS),
    st.one_of(st.none(), st.text(max_size=40), st.text(alphabet="ab/:?#[]() \\", max_size=20)),
)
def test_any_entry_renders_and_reads_back(
    title: str, body: str, fmt: str, link: str | None
) -> None:
    """Whatever an entry holds, its article renders to a dump file that reads back the same."""
    parsed = entry(title=title, content_html=body, link=link, guid="g")
    article = normalize(parsed, source(format=fmt))
    back = archive.parse(archive.render(article))
    assert _round_trip_fields(article, fmt) == (
        back.title,
        back.link,
        back.published_at,
        back.body_html,
    )
    assert (None, False) == (TAG_LIKE.search(article.title), "\n" in article.title)


# --- robustness -----------------------------------------------------------------------------------


def test_every_feedparser_fixture_parses_normalizes_and_archives() -> None:
    """Every feedparser fixture: parse, normalize, render, parse raise nothing but ParseError."""
    fixtures = feedparser_fixtures()
    sources = [source(format=fmt, image_proxy=PROXY) for fmt in FORMATS]
    failures: dict[str, str] = {}
    counts = {"feeds": 0, "not a feed": 0, "articles": 0}
    started = time.monotonic()
    for i, path in enumerate(fixtures):
        body = path.read_bytes()
        try:
            feed = parse_feed(body, fixture_headers(body), f"http://127.0.0.1:8080/{path.name}")
            counts["feeds"] += 1
            for parsed in feed.entries:
                article = normalize_entry(parsed, feed, sources[i % 3], now=NOW)
                archive.parse(archive.render(article))
                counts["articles"] += 1
        except ParseError:
            counts["not a feed"] += 1
        except Exception as e:  # the test collects every other exception
            failures[str(path.relative_to(FEEDPARSER_TESTS))] = f"{type(e).__name__}: {e}"
        assert time.monotonic() - started < 120, f"stopped at {path.name}: too slow"
    assert {} == failures
    assert (True, True) == (len(fixtures) > 2000, counts["not a feed"] < 20)
