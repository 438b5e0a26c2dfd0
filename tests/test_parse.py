"""parse_feed: golden feeds, encodings, bodies that are no feed, entity bombs, hypothesis.

Golden files live in tests/data/feeds: ``x.xml`` (or ``x.json``) beside ``x.expected.json``, which
holds the inputs (url, headers, the source, ``now``) and the outputs (the ParsedFeed and the
normalized Articles). After a deliberate change, rewrite the outputs with
``WATCHER_REGOLD=1 .venv/bin/pytest tests/test_parse.py -k golden`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DATA, ROOT
from watcher.archive import read_file
from watcher.encoding import decode_body
from watcher.errors import ParseError
from watcher.models import Article, ParsedFeed
from watcher.normalize import normalize_entry
from watcher.parse import parse_feed
from watcher.plaintext import html_to_text
from watcher.settings import SourceSettings

GOLDEN = DATA / "feeds"
SHARED_FEEDS = Path(os.environ.get("WATCHER_FEEDS", ROOT.parent / "shared" / "feeds"))
FEEDPARSER_TESTS = SHARED_FEEDS / "feedparser-tests"
URL = "http://127.0.0.1:8080/feed.xml"
SEED_TEXT = read_file(DATA / "seeds" / "001_fd9e98214ec16f9b.txt").text
# Traditional Chinese from the corpus (NodeBE4/oped2, 2022-01-22), for Big5 bodies.
TRADITIONAL = (
    "在思考一些事情的時候，如果有個核心精神，通常都能讓自己更聚焦，也更明確知道自己要做的是什麼。"
    "像是我以前就寫過一個核心精神是：「幫助以前的自己」，例如說 onboarding guide，如果我進公司的"
    "時候沒有這個東西，那我就會想寫一份，因為我要幫助以前的自己，幫助「進公司以後不知道如何開始」"
    "的那個我；雖然說我沒辦法重新再 on board 一次，但至少之後的新人可以參考我寫的指南。"
)


# --- helpers shared with test_normalize and test_clean ------------------------------------------


def golden_cases() -> list[Path]:
    """Every ``*.expected.json`` golden file."""
    return sorted(GOLDEN.glob("*.expected.json"))


def golden_run(expected: Path) -> tuple[dict[str, Any], ParsedFeed, list[Article]]:
    """The golden spec, and what parse_feed and normalize_entry make of its feed today."""
    spec = json.loads(expected.read_text("utf-8"))
    stem = expected.name.removesuffix(".expected.json")
    (body_file,) = [p for p in GOLDEN.glob(f"{stem}.*") if p != expected]
    feed = parse_feed(body_file.read_bytes(), spec["headers"], spec["url"])
    source = SourceSettings(**spec["source"])
    now = datetime.fromisoformat(spec["now"])
    articles = [normalize_entry(e, feed, source, now=now) for e in feed.entries]
    if os.environ.get("WATCHER_REGOLD") == "1":
        spec["feed"] = feed.model_dump(mode="json")
        spec["articles"] = [a.model_dump(mode="json") for a in articles]
        text = json.dumps(spec, ensure_ascii=False, indent=2) + "\n"
        expected.write_text(text, "utf-8")
    return spec, feed, articles


def feedparser_fixtures() -> list[Path]:
    """Every feed file of feedparser's test suite in the shared folder; skips when it is absent."""
    if not FEEDPARSER_TESTS.is_dir():
        pytest.skip(f"feed fixtures not found at {FEEDPARSER_TESTS} (set WATCHER_FEEDS)")
    suffixes = {".xml", ".json", ".rdf"}
    return sorted(p for p in FEEDPARSER_TESTS.rglob("*") if p.suffix in suffixes and p.is_file())


def fixture_headers(body: bytes) -> dict[str, str]:
    """The simulated HTTP headers of a feedparser fixture (its ``Header:`` comment lines)."""
    found = re.finditer(rb"^Header:\s*([\w-]+):\s*(.*?)\s*$", body[:4000], re.MULTILINE)
    return {m[1].decode("ascii"): m[2].decode("latin-1") for m in found}


def rss(items: str, *, declaration: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    """A small RSS 2.0 document around ``items``."""
    return f'{declaration}\n<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'


def item(title: str, description: str) -> str:
    """One RSS item with an escaped HTML description."""
    escaped = description.replace("&", "&amp;").replace("<", "&lt;")
    return f"<item><title>{title}</title><description>{escaped}</description></item>"


# --- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("expected", golden_cases(), ids=lambda p: p.name.split(".")[0])
def test_golden_feed(expected: Path) -> None:
    """Each golden feed parses to the ParsedFeed recorded beside it."""
    spec, feed, _ = golden_run(expected)
    assert spec["feed"] == feed.model_dump(mode="json")


def test_golden_set_covers_the_formats() -> None:
    """The golden files hold RSS 2.0, Atom, RDF, JSON Feed, GBK and a mislabelled Big5 feed."""
    names = {p.name.split(".")[0] for p in golden_cases()}
    wanted = {"rss20", "atom", "rdf", "jsonfeed", "gbk", "big5-declared-gb2312", "relative"}
    assert wanted == wanted & names


def test_polling_hints_are_read() -> None:
    """ttl, skipHours (24 is midnight) and skipDays (any case) come out of an RSS channel."""
    _, feed, _ = golden_run(GOLDEN / "rss20.expected.json")
    expected = (5, [0, 1, 3], ["Saturday", "Sunday"])
    assert expected == (feed.ttl_minutes, feed.skip_hours, feed.skip_days)


def test_xml_base_resolves_each_entry() -> None:
    """An Atom entry's xml:base resolves its link and the links inside its content."""
    _, feed, _ = golden_run(GOLDEN / "atom.expected.json")
    entry = feed.entries[0]
    base = "https://chinese.aljazeera.net/news/2022/1/27/"
    assert base + "russia-disappointed" == entry.link
    assert f'href="{base}mediation.html"' in (entry.content_html or "")


# --- bodies that are no feed ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b" \r\n\t "])
def test_empty_body_is_not_a_feed(body: bytes) -> None:
    """An empty 200 is a ParseError naming the source, never an empty feed."""
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {}, URL, source="guancha")
    assert "source 'guancha': not a feed: the body is empty" == str(caught.value)


def test_html_page_is_not_a_feed() -> None:
    """A challenge page served as HTML is a ParseError that names it, though feedparser is calm."""
    page = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>x</body></html>"
    with pytest.raises(ParseError) as caught:
        parse_feed(page, {"Content-Type": "text/html; charset=UTF-8"}, URL)
    expected = "an HTML page titled 'Just a moment...' (served as text/html; charset=UTF-8)"
    assert expected == str(caught.value).split("not a feed: ")[1]


def test_text_notice_is_not_a_feed() -> None:
    """A plain-text notice (a public RSSHub instance refusing feed readers) is a ParseError."""
    notice = b"This RSSHub instance is for personal use only."
    with pytest.raises(ParseError) as caught:
        parse_feed(notice, {"content-type": "text/plain"}, URL)
    expected = "not a feed: no RSS, Atom, RDF or JSON Feed in 'This RSSHub instance is for"
    assert expected == str(caught.value).split(": ", 1)[1][: len(expected)]


@pytest.mark.parametrize("body", [b"http://127.0.0.1:9/feed.xml", b"/etc/hostname", b"feed.xml"])
def test_body_is_never_opened_as_url_or_file(body: bytes) -> None:
    """A body that reads like a URL or a path is text, not something feedparser goes to fetch."""
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {}, URL)
    assert body.decode() in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [b'{"version": "1", "items": []}', b"{not json", b"[" * 100_000, b'{"version": 5}'],
    ids=["no-jsonfeed-version", "malformed", "deeply-nested", "version-not-text"],
)
def test_json_that_is_no_json_feed(body: bytes) -> None:
    """JSON that is not a JSON Feed (or not JSON, or nested past the recursion limit) fails."""
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {"content-type": "application/json"}, URL)
    assert "not a feed: " in str(caught.value)


def test_truncated_feed_keeps_its_entries_with_a_warning() -> None:
    """Broken XML with an item in it is read, and the warning says what was wrong."""
    body = rss(item("一", "<p>完整</p>") + "<item><title>二</title><description>cut").encode()
    body = body[: body.index(b"</channel>")]
    feed = parse_feed(body, {}, URL)
    titles = [e.title for e in feed.entries]
    assert (["一", "二"], True) == (titles, "SAXParseException" in str(feed.warning))


def test_empty_channel_is_an_empty_feed() -> None:
    """An RSS channel with no items is a feed with no entries, not an error."""
    feed = parse_feed(rss("").encode(), {"content-type": "application/rss+xml"}, URL)
    assert ("t", [], None) == (feed.title, feed.entries, feed.warning)


# --- encodings ------------------------------------------------------------------------------------

ENCODING_CASES = [
    # id, text, bytes encoding, XML declaration, HTTP content type, (label declared, read as)
    ("gbk-declared-big5", SEED_TEXT, "gbk", "big5", "", ("big5", "gb18030")),
    ("big5-declared-gb2312", TRADITIONAL, "big5", "gb2312", "", ("gb2312", "big5hkscs")),
    ("gbk-declared-utf-8", SEED_TEXT, "gbk", "utf-8", "", ("utf-8", "gb18030")),
    ("gbk-http-latin-1", SEED_TEXT, "gbk", None, "text/xml; charset=ISO-8859-1",
     ("ISO-8859-1", "gb18030")),
    ("gbk-http-utf-8-xml-gbk", SEED_TEXT, "gbk", "gbk", "text/xml; charset=utf-8",
     ("utf-8", "gb18030")),
    ("utf-8-declared-gbk", SEED_TEXT, "utf-8", "gbk", "", ("gbk", "utf-8")),
    ("utf-8-declared-big5", TRADITIONAL, "utf-8", "big5", "", ("big5", "utf-8")),
    ("gbk-undeclared", SEED_TEXT, "gbk", None, "", None),
    ("gbk-declared-gb2312-text-xml", SEED_TEXT, "gbk", "gb2312", "text/xml", None),
    ("big5-undeclared", TRADITIONAL, "big5", None, "", None),
    ("short-big5-declared-gbk", TRADITIONAL[:40], "big5", "gbk", "", ("gbk", "big5hkscs")),
    ("gb18030-http-quoted", SEED_TEXT, "gb18030", None, "text/xml; charset='gb2312'", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "encoding", "declared", "content_type", "mislabel"),
    [pytest.param(*case[1:], id=case[0]) for case in ENCODING_CASES],
)
def test_encodings_come_out_right(
    text: str,
    encoding: str,
    declared: str | None,
    content_type: str,
    mislabel: tuple[str, str] | None,
) -> None:
    """A feed decodes to its real text whatever it declares; the warning names a wrong label."""
    title = text[:24]
    declaration = f'<?xml version="1.0" encoding="{declared}"?>' if declared else ""
    body = rss(item(title, f"<p>{text}</p>"), declaration=declaration).encode(encoding)
    feed = parse_feed(body, {"Content-Type": content_type} if content_type else {}, URL)
    entry = feed.entries[0]
    note = f"declared {mislabel[0]}, read as {mislabel[1]}" if mislabel else None
    actual = (entry.title, html_to_text(entry.summary_html or ""), feed.warning)
    assert (" ".join(title.split()), " ".join(text.split()), note) == actual


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_unicode_encodings_with_and_without_bom(encoding: str) -> None:
    """UTF-8 with a BOM and UTF-16/32 with or without one decode to the same text."""
    body = rss(item("普京", "<p>普京说</p>"), declaration="").encode(encoding)
    text, _, _ = decode_body(body)
    assert "<item><title>普京</title>" in text
    assert ["普京"] == [e.title for e in parse_feed(body, {}, URL).entries]


def test_a_few_bad_bytes_in_utf8_are_replaced() -> None:
    """Valid UTF-8 with one cut character stays UTF-8 (not Windows-1252 mojibake)."""
    body = rss(item("普京", "<p>" + SEED_TEXT[:200] + "</p>")).encode() + b"\xe6\x99"
    text, encoding, note = decode_body(body)
    assert ("utf-8", "invalid UTF-8 bytes replaced") == (encoding, note)
    assert SEED_TEXT[:200] in text


def test_undeclared_legacy_encodings_of_feedparser_fixtures() -> None:
    """feedparser's chardet samples (no encoding declared anywhere) decode to their real text."""
    fixtures = {p.name: p for p in feedparser_fixtures() if p.parent.name == "chardet"}
    codecs = {"big5": "big5", "eucjp": "euc_jp", "euckr": "euc_kr", "gb2312": "gb18030"}
    codecs |= {"koi8r": "koi8_r", "shiftjis": "shift_jis"}
    actual, expected = {}, {}
    for stem, codec in codecs.items():
        body = fixtures[f"{stem}.xml"].read_bytes()
        feed = parse_feed(body, {}, URL)
        actual[stem] = feed.title or feed.entries[0].title
        raw = re.search(rb"<title>(.*?)</title>", body, re.DOTALL)
        expected[stem] = " ".join(raw[1].decode(codec).split()) if raw else ""
    assert expected == actual


# --- entity expansion -----------------------------------------------------------------------------


def _billion_laughs(separator: bytes) -> bytes:
    def references(i: int) -> bytes:
        return (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10

    entities = [b'<!ENTITY lol "lol">']
    entities += [b'<!ENTITY lol%d "%s">' % (i, references(i)) for i in range(1, 10)]
    doctype = b"<!DOCTYPE rss [" + separator + separator.join(entities) + separator + b"]>"
    return b'<?xml version="1.0"?>\n' + doctype + rss(item("x", "&lol9;"), declaration="").encode()


def _quadratic_blowup() -> bytes:
    entity = b'<!ENTITY a "' + b"A" * 10_000 + b'">'
    items = "<item><title>x</title><description>" + "&a;" * 10_000 + "</description></item>"
    doctype = b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + entity + b"\n]>"
    return doctype + rss(items, declaration="").encode()


@pytest.mark.parametrize(
    "body",
    [_billion_laughs(b"\n"), _billion_laughs(b""), _quadratic_blowup()],
    ids=["billion-laughs", "billion-laughs-one-line", "quadratic-blowup"],
)
def test_entity_bombs_are_not_expanded(body: bytes) -> None:
    """Entity expansion attacks come out as short text (expanded they are 3 GB and 100 MB)."""
    feed = parse_feed(body, {"content-type": "application/rss+xml"}, URL)
    sizes = [len(e.title) + len(e.summary_html or "") for e in feed.entries]
    assert [True] == [size < 50_000 for size in sizes]


def test_small_internal_entities_still_work() -> None:
    """A short plain entity or a character reference declared in the DOCTYPE still expands."""
    doctype = '<!DOCTYPE rss [\n<!ENTITY co "(C)">\n<!ENTITY nb "&#160;">\n]>\n'
    body = '<?xml version="1.0"?>\n' + doctype + rss(item("a &co; b&nb;c", "d"), declaration="")
    assert "a (C) b c" == parse_feed(body.encode(), {}, URL).entries[0].title


def test_external_entities_are_not_read() -> None:
    """An external entity (a file on this machine) is never read into the feed."""
    doctype = '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/hostname">\n]>\n'
    body = '<?xml version="1.0"?>\n' + doctype + rss(item("a &xxe; b", "d"), declaration="")
    title = parse_feed(body.encode(), {}, URL).entries[0].title
    assert "a &xxe; b" == title


# --- invariants -----------------------------------------------------------------------------------

_NOW = datetime(2026, 11, 1, tzinfo=UTC)
_SOURCE = SourceSettings(name="h", url=URL, outlet="h", image_proxy="https://proxy.example/?")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_parse_error(body: bytes) -> None:
    """Arbitrary bytes give a ParsedFeed or a ParseError, never another exception."""
    try:
        feed = parse_feed(b"<rss version='2.0'><channel><item><title>" + body, {}, URL)
    except ParseError:
        return
    assert [True] * len(feed.entries) == [isinstance(e.title, str) for e in feed.entries]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_item_text_parses_and_normalizes(title: str, description: str) -> None:
    """Any title and description text survive parse and normalize as one-line, clean text."""
    escape = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
    body = rss(item(title.translate(escape), description)).encode()
    try:
        feed = parse_feed(body, {}, URL)
    except ParseError:
        return
    articles = [normalize_entry(e, feed, _SOURCE, now=_NOW) for e in feed.entries]
    assert [True] * len(articles) == ["\n" not in a.title for a in articles]
