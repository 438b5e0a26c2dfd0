"""clean_html: nothing dangerous survives, URLs made absolute, images proxied as the archives do."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.etree
import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DATA, corpus_files
from tests.test_parse import feedparser_fixtures, golden_cases, golden_run
from watcher import clean, plaintext
from watcher.archive import read_file
from watcher.clean import Cleaned, clean_html, proxy_image, safe_url
from watcher.errors import ParseError, WatcherError
from watcher.parse import parse_feed
from watcher.plaintext import html_to_text

BASE = "http://127.0.0.1:8080/news/feed.xml"
PROXY = "https://cors.zfour.workers.dev/?"
SEEDS = sorted((DATA / "seeds").iterdir())
_DANGEROUS_TAGS = {"script", "style", "object", "embed", "applet", "base", "meta", "link"}
_DANGEROUS_TAGS |= {"frame", "frameset", "svg", "math", "form", "noscript", "template"}
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "poster", "background", "srcset"}
_URL_ATTRIBUTES |= {"data", "codebase", "cite", "longdesc", "lowsrc", "dynsrc", "xlink:href"}
_LXML_PARSER = lxml.etree.HTMLParser()


def dangers(html: str) -> list[str]:
    """What could run in ``html``, read by two parsers (libxml2 and Python's html.parser)."""
    found: list[str] = []
    if "<" not in html:  # no element, and bs4 warns when such text looks like a URL ("http:")
        return found
    root = lxml.etree.fromstring(f"<html><body>{html}</body></html>", _LXML_PARSER)
    for element in root.iter():
        if isinstance(element.tag, str):
            found += _element_dangers(element.tag, dict(element.attrib))
    for tag in BeautifulSoup(html, "html.parser").find_all(True):
        attributes = {k: v if isinstance(v, str) else " ".join(v) for k, v in tag.attrs.items()}
        found += _element_dangers(tag.name, attributes)
    return found


def _element_dangers(tag: str, attributes: dict[str, str]) -> list[str]:
    found = [f"<{tag}>"] if tag.lower() in _DANGEROUS_TAGS else []
    for name, value in attributes.items():
        lowered = name.lower()
        squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
        if lowered.startswith("on") or lowered == "srcdoc":
            found.append(f"{tag} {name}=")
        elif lowered in _URL_ATTRIBUTES and re.match(r"(javascript|vbscript|data):", squeezed):
            if not (tag == "img" and squeezed.startswith("data:image/")):
                found.append(f"{tag} {name}={value[:40]}")
        elif lowered == "style" and re.search(r"expression|javascript|url\(|behavior", squeezed):
            found.append(f"{tag} style={value[:40]}")
    return found


def _fixture_html(path: Path) -> list[str]:
    """Every HTML value feedparser reads from a fixture, unsanitized."""
    feed = parse_feed(path.read_bytes(), {}, BASE)
    values = [feed.title]
    for entry in feed.entries:
        values += [entry.title, entry.content_html or "", entry.summary_html or ""]
    return [v for v in values if v]


# --- nothing dangerous survives -------------------------------------------------------------------


def test_feedparser_sanitizer_fixtures_leave_nothing_dangerous() -> None:
    """Every sanitizer fixture of feedparser comes out with no script, handler or bad URL."""
    fixtures = [p for p in feedparser_fixtures() if p.parent.name == "sanitize"]
    survived: dict[str, list[str]] = {}
    dangerous_inputs = 0
    for path in fixtures:
        for html in _fixture_html(path):
            dangerous_inputs += bool(dangers(html))
            left = dangers(clean_html(html, BASE).html)
            if left:
                survived[path.name] = left
    assert {} == survived
    assert (745, True) == (len(fixtures), dangerous_inputs > 200)


def test_script_laden_golden_item_is_safe() -> None:
    """The golden script-laden item loses every trick and keeps its text and safe links."""
    _, feed, articles = golden_run(DATA / "feeds" / "script.expected.json")
    raw = feed.entries[0].summary_html or ""
    body = articles[0].body_html
    assert (True, []) == (len(dangers(raw)) > 20, dangers(body))
    assert "正文结束。" in body
    assert '<a href="https://www.solidot.org/story?sid=70023">原文</a>' in body


_PIECES = [
    "<script>alert(1)</script>", "<SCRIPT SRC=//x.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">a</a>', '<a href=" &#14;  javascript:alert(1)">b</a>',
    '<a href="jav&#x09;ascript:alert(1)">c</a>', "<iframe src=javascript:alert(1)></iframe>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>', "<svg/onload=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>m</mi></math>", "<object data=x.swf></object>",
    '<div style="background:url(javascript:alert(1))">d</div>', "<style>*{x:expression(1)}</style>",
    '<img src="data:text/html,<script>alert(1)</script>">', "<body onload=alert(1)>",
    "<!--<script>alert(1)</script>-->", "<![CDATA[<script>alert(1)</script>]]>", "</p>", "<p>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">", "<form action=javascript:x>",
    '<a href="https://example.org/">ok</a>', "<img src=/a.jpg>", "中文", "&lt;script&gt;", "<",
    "<table><td>", "<textarea><script>alert(1)</script>", "<video poster=javascript:x>",
    "<base href=javascript:/>", '<meta http-equiv="refresh" content="0;url=javascript:x">',
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12), st.text(max_size=20))
def test_no_mix_of_dangerous_pieces_survives(pieces: list[str], noise: str) -> None:
    """Any concatenation of known attack fragments (and noise) is clean after one pass."""
    html = noise.join(pieces)
    assert [] == dangers(clean_html(html, BASE, image_proxy=PROXY).html)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_cleans_without_error(html: str) -> None:
    """Any string (controls, lone surrogates, stray brackets) cleans to safe, writable HTML."""
    cleaned = clean_html(html, BASE).html
    assert ([], True) == (dangers(cleaned), cleaned == cleaned.encode("utf-8").decode("utf-8"))


# --- URLs -----------------------------------------------------------------------------------------

SAFE_URL_CASES = [
    # value, media, image, expected
    ("/a/b.html", False, False, "http://127.0.0.1:8080/a/b.html"),
    ("../c.html", False, False, "http://127.0.0.1:8080/c.html"),
    ("//cdn.example.org/x.jpg", True, True, "http://cdn.example.org/x.jpg"),
    ("#note", False, False, "#note"),
    ("  https://example.org/x \n", False, False, "https://example.org/x"),
    ("mailto:tips@example.org", False, False, "mailto:tips@example.org"),
    ("mailto:tips@example.org", True, False, None),
    ("javascript:alert(1)", False, False, None),
    ("JaVaScRiPt:alert(1)", False, False, None),
    ("java\tscript:alert(1)", False, False, None),
    ("\x01javascript:alert(1)", False, False, None),
    ("vbscript:msgbox(1)", False, False, None),
    ("data:text/html,<script>", False, False, None),
    ("data:image/png;base64,iVBO", True, True, "data:image/png;base64,iVBO"),
    ("data:image/png;base64,iVBO", True, False, None),
    ("", False, False, None),
]


@pytest.mark.parametrize(("value", "media", "image", "expected"), SAFE_URL_CASES)
def test_safe_url(value: str, media: bool, image: bool, expected: str | None) -> None:
    """URLs resolve against the base; only http(s) (links: mailto, ftp, tel too) survive."""
    assert expected == safe_url(value, BASE, media=media, image=image)


def test_url_against_a_broken_base_is_dropped() -> None:
    """A relative URL that cannot be joined to the base (a bad IPv6 host) is left out."""
    assert None is safe_url("/x.jpg", "http://[::1/feed.xml")


def test_relative_urls_become_absolute() -> None:
    """href, src and srcset resolve against the base; a fragment-only link stays in the page."""
    html = (
        '<a href="../x.html">x</a><a href="#n">n</a><img src="i.jpg" srcset="s.jpg 1x, /l.jpg 2x">'
    )
    expected = (
        '<a href="http://127.0.0.1:8080/x.html">x</a><a href="#n">n</a>'
        '<img src="http://127.0.0.1:8080/news/i.jpg" srcset="http://127.0.0.1:8080/news/s.jpg 1x,'
        ' http://127.0.0.1:8080/l.jpg 2x" referrerpolicy="no-referrer">'
    )
    assert expected == clean_html(html, BASE).html


# --- images ---------------------------------------------------------------------------------------


def test_images_are_written_as_the_rsshub_page_archive_has_them() -> None:
    """Lazy source promoted, src proxied, data-original kept original, no referrer (seed 000)."""
    html = (
        '<img class="lazy opacity_0 " id="img_0" data-original="http://zkres2.myzaker.com/a.jpg"'
        ' data-height="400" data-width="640">'
    )
    expected = (
        '<img class="lazy opacity_0 " id="img_0" data-original="http://zkres2.myzaker.com/a.jpg"'
        ' data-height="400" data-width="640" src="https://cors.zfour.workers.dev/?http://zkres2.'
        'myzaker.com/a.jpg" referrerpolicy="no-referrer">'
    )
    cleaned = clean_html(html, BASE, image_proxy=PROXY)
    assert (expected, PROXY + "http://zkres2.myzaker.com/a.jpg") == cleaned[:2]
    assert cleaned == clean_html(cleaned.html, BASE, image_proxy=PROXY)  # proxied once


def test_placeholder_source_gives_way_to_the_lazy_one() -> None:
    """A data: placeholder in src is replaced by data-src; an image with no safe source goes."""
    html = '<img src="data:image/gif;base64,R0l" data-src="/real.jpg"><img src="javascript:x">t'
    expected = '<img src="http://127.0.0.1:8080/real.jpg" data-src="http://127.0.0.1:8080/real.jpg"'
    expected += ' referrerpolicy="no-referrer">t'
    assert expected == clean_html(html, BASE).html


def test_proxy_image_only_wraps_http_urls() -> None:
    """The proxy prefix goes before an http(s) URL once, never before data: or relative ones."""
    actual = [
        proxy_image(u, PROXY)
        for u in ("http://a/x.jpg", PROXY + "http://a/x.jpg", "data:image/png;,", "/x")
    ]
    assert [PROXY + "http://a/x.jpg", PROXY + "http://a/x.jpg", "data:image/png;,", "/x"] == actual


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name[:3])
def test_seed_bodies_keep_their_text_and_first_image(seed: Path) -> None:
    """A seed body cleans to the same visible text, and its first image is its head image."""
    article = read_file(seed)
    proxy = PROXY if PROXY in article.body_html else None
    cleaned = clean_html(article.body_html, BASE, image_proxy=proxy)
    first = re.search(r'<img[^>]*?\ssrc="([^"]+)"', article.body_html)
    head = article.head_image if article.format == "hexo" else (first[1] if first else None)
    assert (article.text, head) == (html_to_text(cleaned.html), cleaned.first_image)


# --- what is kept ---------------------------------------------------------------------------------


def test_style_keeps_safe_declarations_only() -> None:
    """Safe styles stay as written; url(), expression() and positioning are dropped."""
    html = (
        '<p style="color: #999;">a</p><p style="color:red; position:fixed; background:url(x)">b</p>'
    )
    expected = '<p style="color: #999;">a</p><p style="color:red;">b</p>'
    assert expected == clean_html(html, BASE).html


def test_unknown_tags_are_unwrapped_and_dangerous_ones_dropped_with_content() -> None:
    """An unknown element keeps its text; a script, a form control or an object loses it all."""
    html = "<blink>闪</blink><o:p>段</o:p><form><input value=x><button>按</button>表</form>"
    html += "<object>o</object><script>s</script>"
    assert "闪段表" == clean_html(html, BASE).html


def test_formatting_tables_and_media_are_kept() -> None:
    """Figures, tables, lists, headings, quotes and http(s) video sources survive unchanged."""
    html = (
        '<figure><img src="https://a.example/x.jpg" alt="图" referrerpolicy="no-referrer">'
        "<figcaption>说明</figcaption></figure><h2>标题</h2><ul><li><b>粗</b><i>斜</i></li></ul>"
        "<blockquote>引</blockquote><table><tr><td>格</td></tr></table>"
        '<video controls src="https://a.example/v.mp4"><source src="https://a.example/v.webm"></source>'
        '</video><audio src="https://a.example/a.mp3"></audio>'
    )
    assert html == clean_html(html, BASE).html


CONTROL_REFERENCE_CASES = [
    ("<p>&#1;<iframe></iframe>b</p>", "<p>b</p>"),  # the dropped iframe's tail moves
    ("<div>&#x1F;<img>z</div>", "<div>z</div>"),  # an image with no source is dropped
    ("<p>a&#01;<img src=x.png>b</p>",
     '<p>a<img src="http://127.0.0.1:8080/news/x.png" referrerpolicy="no-referrer">b</p>'),
    ("<p>&#10;&#100;&#x1F600;&#9;x&#0031;y&#32;z&#31</p>", "<p>\nd\U0001f600\txy z</p>"),
    ("&#1;&#x8;", ""),
]  # fmt: skip


@pytest.mark.parametrize(("html", "expected"), CONTROL_REFERENCE_CASES)
def test_references_to_control_characters_go_like_the_controls(html: str, expected: str) -> None:
    """ "&#1;" and the like are removed before parsing, as raw controls are (lxml refused to
    move one beside a dropped element); other references, newline and tab included, stay."""
    assert expected == clean_html(html, BASE).html


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["&#1;", "&#x1f;", "&#0", "&#9;", "&#10;", "<img>", "<iframe></iframe>",
                         "<img src=a.png>", "<script>x</script>", "<p>", "</p>", "t", " "]),
        max_size=12,
    )
)  # fmt: skip
def test_control_references_beside_dropped_elements_never_fail(pieces: list[str]) -> None:
    """Any mix of control references and dropped elements cleans, with no control left."""
    cleaned = clean_html("".join(pieces), BASE)
    controls = {chr(c) for c in range(0x20)} - set("\t\n\r")
    assert controls.isdisjoint(cleaned.html + cleaned.text)


def test_empty_and_blank_input() -> None:
    """Nothing in, nothing out."""
    assert [("", None, "")] * 3 == [clean_html(h, BASE) for h in ("", "  \n", "\x00\x01")]


@pytest.mark.parametrize("expected", golden_cases(), ids=lambda p: p.name.split(".")[0])
def test_cleaning_twice_changes_nothing(expected: Path) -> None:
    """Cleaning is idempotent on every golden article body (so an update re-cleans safely)."""
    _, _, articles = golden_run(expected)
    bodies = [a.body_html for a in articles]
    assert bodies == [clean_html(b, BASE).html for b in bodies]


# --- visible text -------------------------------------------------------------------------------
# clean_html reads the text off the tree it cleaned; it must be what html_to_text reads from the
# cleaned HTML, character for character, or the stored text would depend on the path taken.

_IMAGE_PROXY = "https://imageproxy.pimg.tw/resize?url="
_VARIANTS = [(BASE, None), ("https://www.example.com/a/b.html?x=1", _IMAGE_PROXY), (None, PROXY)]


def _text_mismatches(html: str) -> list[str]:
    """How the cleaned ``html`` fails (its text, or something that could run), per variant."""
    found = []
    for base, proxy in _VARIANTS:
        cleaned = clean_html(html, base, image_proxy=proxy)
        if cleaned.text != html_to_text(cleaned.html):
            found.append(f"text differs ({base}, {proxy}): {html[:80]!r}")
        found += dangers(cleaned.html)
    return found


def _data_bodies() -> list[str]:
    """Every HTML body under tests/data: golden feed entries, seed and dump files."""
    bodies: list[str] = []
    for path in sorted((DATA / "feeds").iterdir()):
        if path.name.endswith(".expected.json"):
            continue
        feed = parse_feed(path.read_bytes(), {}, BASE)
        bodies += [v for e in feed.entries for v in (e.content_html, e.summary_html) if v]
    for path in [*SEEDS, *sorted((DATA / "dumps").rglob("*.md"))]:
        try:
            bodies.append(read_file(path).body_html)
        except WatcherError:  # an index or notes file, not an article
            continue
    return bodies


def test_text_is_what_html_to_text_reads_from_the_cleaned_html_of_the_test_data() -> None:
    """Every body under tests/data: the text read off the tree is html_to_text's, nothing runs."""
    bodies = _data_bodies()
    assert (True, []) == (len(bodies) > 30, [m for b in bodies for m in _text_mismatches(b)])


def test_text_is_what_html_to_text_reads_from_the_cleaned_html_of_the_corpus() -> None:
    """Every article of the shared corpus (skipped without it), with three bases and proxies."""
    files = corpus_files()
    mismatches = [m for path in files for m in _text_mismatches(read_file(path).body_html)]
    assert (True, []) == (len(files) > 1000, mismatches)


def test_text_is_what_html_to_text_reads_from_every_feedparser_fixture() -> None:
    """Every HTML value feedparser reads from its fixtures (sanitizer tests too), unsanitized."""
    htmls: list[str] = []
    for path in feedparser_fixtures():
        try:
            htmls += _fixture_html(path)
        except ParseError:
            continue
    assert (True, []) == (len(htmls) > 1000, [m for h in htmls for m in _text_mismatches(h)])


TEXT_CASES = [
    # html, the text
    ("<p>一</p><p>二</p><div>三<div>四</div></div>五<br>六", "一 二 三 四 五 六"),
    ("<b>粗</b><i>斜</i><span>连</span>", "粗斜连"),
    ("<ul><li></li>后<li>项</li></ul>", "后项"),  # an empty <li> is written without </li>
    ("<li><img src=javascript:x></li>尾", "尾"),  # nor one emptied by the cleaning
    ("<table><tr><td>甲</td><td>乙</td></tr></table>丙", "甲 乙 丙"),
    ("<h2>题</h2><header>头</header><blockquote>引</blockquote>文", "题 头 引 文"),
    ("\ufeff<p>x</p>", "x"),  # a byte order mark at the start is skipped ...
    ("\ufeff", "\ufeff"),  # ... unless nothing follows it
    ("a\ufeff<p>b</p>", "a\ufeffb"),
    ("<p>甲</p>&#1;乙<div>&#xFFFE;丙</div>", "甲 乙 \ufffe丙"),  # text lxml will not take back
    ("<noscript><p>不</p><img src=n.jpg></noscript><p>见</p>", "见"),
    ("<p>a &amp; b &lt;c&gt;</p>&nbsp;d", "a & b <c> d"),
]


@pytest.mark.parametrize(("html", "expected"), TEXT_CASES)
def test_visible_text(html: str, expected: str) -> None:
    """Block ends and starts separate words as html_to_text's marks do; inline tags do not."""
    cleaned = clean_html(html, BASE)
    assert (expected, expected) == (cleaned.text, html_to_text(cleaned.html))


def test_images_inside_dropped_elements_never_head_the_article() -> None:
    """An image in a <noscript> or <svg> goes with it, and the first image is the next one."""
    html = '<noscript><img src="/n.jpg"></noscript><svg><img src="/s.jpg"></svg><img src="/a.jpg">'
    cleaned = clean_html(html, BASE, image_proxy=PROXY)
    expected = Cleaned(
        f'<img src="{PROXY}http://127.0.0.1:8080/a.jpg" referrerpolicy="no-referrer">',
        f"{PROXY}http://127.0.0.1:8080/a.jpg",
        "",
    )
    assert expected == cleaned


# Elements dropped with their tail kept (an image or a frame with no safe source) included.
_BLOCK_PIECES = [
    "<p>", "</p>", "<div>", "</div>", "<br>", "<li>", "</li>", "<ul>", "<td>", "<tr>", "<h3>",
    "</h3>", "<blockquote>", "<b>", "</b>", "<o:p>", "<span>", "&#1;", "&#xFFFE;", "\ufeff", "x",
    "中", " ", "\n", "<img src=/i.jpg>", "<iframe src=/f>i</iframe>", "<script>s</script>",
    "<noscript><p>n</p><img src=/n.jpg></noscript>", "&amp;", "&lt;b&gt;", "\u3000", "<img>",
    "<iframe>f</iframe>",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_BLOCK_PIECES), max_size=16), st.text(max_size=10))
def test_any_mix_reads_the_same_text_as_html_to_text(pieces: list[str], noise: str) -> None:
    """Block marks, empty items, control references, byte order marks: the same text."""
    html = noise.join(pieces)
    cleaned = clean_html(html, BASE, image_proxy=PROXY)
    assert html_to_text(cleaned.html) == cleaned.text


def test_block_marks_match_html_to_text() -> None:
    """The tags clean spaces out are those whose tags html_to_text's marks find in the HTML."""
    allowed = clean._ALLOWED - {"area", "br", "col", "hr", "img"}  # these have no end tag
    ends = {t for t in allowed if any(f"</{t}>".startswith(m) for m in plaintext._BLOCK_MARKS)}
    starts = {
        t for t in clean._ALLOWED if any(f"<{t}>".startswith(m) for m in plaintext._BLOCK_MARKS)
    }
    marked = {n: {t for t, m in clean._PLAIN.items() if m in n} for n in ((1, 3, 4), (1, 2))}
    assert (ends, starts) == (clean._SPACE_AFTER, clean._SPACE_BEFORE)
    assert (ends, starts) == (marked[1, 3, 4], marked[1, 2])


def test_libxml2_leaves_out_the_end_tags_clean_expects() -> None:
    """Only void elements and an empty <li> are written without an end tag (clean relies on it)."""
    missing = set()
    for tag in clean._ALLOWED:
        root = lxml.etree.Element("html")
        lxml.etree.SubElement(root, tag)
        if f"</{tag}>" not in lxml.etree.tostring(root, method="html", encoding="unicode"):
            missing.add(tag)
    assert {"area", "br", "col", "hr", "img", "li"} == missing
