"""The dump formats: every seed and corpus file reads and writes back byte for byte."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from watcher import archive
from watcher.archive.dates import read_date, write_date
from watcher.archive.hexo import sanitize_title
from watcher.errors import ArchiveError
from watcher.models import Article, Layout

from .conftest import DATA, corpus_files

SEEDS = sorted((DATA / "seeds").iterdir())
DUMPS = sorted(p for p in (DATA / "dumps").rglob("*.md"))


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("path", SEEDS + DUMPS, ids=lambda p: p.name)
def test_fixture_round_trip(path: Path) -> None:
    """Each seed and fixture dump is written back exactly as it was read."""
    text = _text(path)
    assert text == archive.render(archive.parse(text, str(path)))


def test_corpus_round_trip() -> None:
    """Every file of ../shared/corpus is written back byte for byte."""
    files = corpus_files()
    failures = []
    for path in files:
        text = _text(path)
        try:
            if archive.render(archive.parse(text, str(path))) != text:
                failures.append(str(path))
        except ArchiveError as e:
            failures.append(str(e))
    assert [] == failures
    assert len(files) > 3000


def test_seed_hexo_fields() -> None:
    """A Hexo seed gives title, outlet, categories, head image and an aware date."""
    article = archive.parse(_text(DATA / "seeds" / "000_8e2f3cb45f1e72f0.txt"))
    assert "hexo" == article.format
    assert "普京对拜登严厉警告！" == article.title
    assert "ZAKER" == article.outlet
    assert ["新媒体", "ZAKER", "source"] == article.categories
    assert datetime(2022, 1, 3, 5, 20, 20, tzinfo=UTC) == article.published_at
    assert "exact" == article.published_confidence
    assert article.head_image is not None
    assert article.head_image.startswith("https://cors.zfour.workers.dev/?http://")
    assert article.text.startswith("据今日俄罗斯电视台 2 日报道")
    assert "<" not in article.text


def test_seed_link_fields() -> None:
    """The link-post seed takes its time from the epoch and its outlet from the link's host."""
    article = archive.parse(_text(DATA / "seeds" / "002_3b3052345fed2cc9.txt"))
    assert "link" == article.format
    assert "美俄视频峰会后 普京示意未关继续会谈的大门" == article.title
    assert "美国之音" == article.outlet
    assert datetime(2021, 12, 8, 20, 39, 3, tzinfo=UTC) == article.published_at
    assert article.link is not None
    assert article.link.startswith("https://www.voachinese.com/a/")


def test_link_outlet_from_folder() -> None:
    """A link post under articles/<abbr>/ takes its outlet from the folder."""
    text = _text(DATA / "seeds" / "002_3b3052345fed2cc9.txt")
    article = archive.parse(text, "news/articles/voa/12345.md")
    assert "voa" == article.outlet


def test_jekyll_fields_and_written_title() -> None:
    """A Jekyll post keeps the link line's title and the header's written form beside it."""
    path = DATA / "dumps/NodeBE4__oped2/_posts"
    article = archive.read_file(next(p for p in path.iterdir() if "睡眠" in p.name))
    assert ("jekyll", "medium", "Huli", True) == (
        article.format,
        article.outlet,
        article.author,
        article.layout.comments,
    )
    base = DATA / "dumps/zhouxiang93123__waimei/archived/2020-12-01"
    article = archive.read_file(next(base.iterdir()))
    assert "联合早报" == article.outlet
    assert "https://www.zaobao.com/realtime/china/story20201201-1105299" == article.link
    assert datetime(2020, 12, 1, 4, 17, tzinfo=UTC) == article.published_at


def test_jekyll_epoch_kept_when_it_differs_from_date() -> None:
    """A Jekyll file whose epoch is not its date keeps the epoch and writes it back."""
    path = next((DATA / "dumps/zhouxiang93123__waimei/_posts").iterdir())
    article = archive.read_file(path)
    assert 1611265200000 == article.layout.epoch_ms
    assert datetime(2021, 1, 21, 7, 16, 4, 956000, tzinfo=UTC) == article.published_at


def test_jekyll_offset_date_keeps_offset() -> None:
    """An ISO date with an offset keeps it, so it writes back as it was."""
    path = DATA / "dumps/NodeBE4__oped2/_posts"
    article = archive.read_file(next(p for p in path.iterdir() if "iYouPort" in p.name))
    assert False is article.layout.link_lines
    assert "iso_offset" == article.layout.date_style
    assert timedelta(0) == (article.published_at and article.published_at.utcoffset())


def test_early_fields() -> None:
    """An early link post reads its 日期 line as an RFC 822 date."""
    path = next((DATA / "dumps/duty-machine__chinadigitaltimes/articles").iterdir())
    article = archive.read_file(path)
    assert "early" == article.format
    assert "中国数字时代" == article.outlet
    assert datetime(2020, 6, 30, 15, 4, 14, tzinfo=UTC) == article.published_at


def test_hexo_old_variant() -> None:
    """The old Hexo variant: 4-space indent, 2-level categories, no headimg, bare title."""
    article = archive.read_file(DATA / "dumps/index-format-A/ZAKER/1.md")
    assert 4 == article.layout.category_indent
    assert "absent" == article.layout.head_image_key
    assert "" == article.layout.title_quote
    assert True is article.layout.thumbnail_bare
    assert ["新媒体", "ZAKER - channel"] == article.categories
    assert "ZAKER" == article.outlet


def test_hexo_invalid_date_and_empty_body() -> None:
    """`Invalid Date` is no date (confidence missing) and a one-space body survives."""
    path = DATA / "dumps/Rock-Candy-Tea__RSSHUB-PAGE/source/_posts/金融/证券时报网/快讯/ .md"
    article = archive.read_file(path)
    assert None is article.published_at
    assert "missing" == article.published_confidence
    assert " " == article.title
    assert " " == article.body_html
    assert "" == article.text


def test_hexo_naive_date_is_utc_and_low_confidence() -> None:
    """A naive Hexo date is read as UTC and marked naive."""
    path = next((DATA / "dumps/Rock-Candy-Tea__RSSHUB-PAGE/source/_posts/社交媒体").rglob("*.md"))
    article = archive.read_file(path)
    assert "naive" == article.published_confidence
    assert article.published_at is not None
    assert UTC == article.published_at.tzinfo


def test_hexo_braces_unescaped_in_model() -> None:
    """`&#123;`/`&#125;` are braces in the article and escaped again in the file."""
    article = archive.read_file(DATA / "dumps/index-format-A/掘金/1.md")
    assert "{" in article.body_html
    assert "&#123;" not in article.body_html
    assert "{" not in archive.render(article)


def test_hexo_title_quoting() -> None:
    """A title holding ' is double-quoted; the pathological re-quoted title survives."""
    folder = DATA / "dumps/Rock-Candy-Tea__RSSHUB-PAGE/post/新媒体/ZAKER - channel"
    article = archive.read_file(next(folder.iterdir()))
    assert '"' == article.layout.title_quote
    assert article.title.startswith('""""""""\'小米')
    new = article.model_copy(update={"layout": Layout(), "title": "Let's go"})
    assert 'title: "Let\'s go"\n' in archive.render(new)


def test_sanitize_title() -> None:
    """Hexo titles replace :/\\?*“”<>|[] with _."""
    assert "a_b_c_d_e_f_g_h_i_j_k_l_m" == sanitize_title("a:b/c\\d?e*f“g”h<i>j|k[l]m")


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 03 Jan 2022 05:20:20 GMT",
        "2021-08-07 05:06:37",
        "Invalid Date",
        "2020-12-01T04:17:00.000Z",
        "2020-04-12T12:50:01+01:00",
        "Tue, 30 Jun 2020 15:04:14 +0000",
        "Tue, 30 Jun 2020 15:04:14 -0330",
    ],
)
def test_date_styles_round_trip(text: str) -> None:
    """Each header date style reads and writes back exactly."""
    read = read_date(text)
    assert read is not None
    value, style, _ = read
    assert text == write_date(value, style)


def test_offset_preserved_in_rfc822() -> None:
    """An RFC 822 offset is kept on the datetime."""
    read = read_date("Tue, 30 Jun 2020 15:04:14 -0330")
    assert read is not None
    assert timezone(-timedelta(hours=3, minutes=30)) == (read[0] and read[0].tzinfo)


def test_unreadable_date_kept_verbatim() -> None:
    """A date no style reads is kept as text and written back as it was."""
    seed = _text(DATA / "seeds" / "001_fd9e98214ec16f9b.txt")
    text = seed.replace("date: Fri, 31 Dec 2021 09:22:24 GMT", "date: yesterday-ish")
    article = archive.parse(text)
    assert None is article.published_at
    assert "missing" == article.published_confidence
    assert text == archive.render(article)


@pytest.mark.parametrize(
    ("mutate", "line", "message"),
    [
        (lambda t: t.replace("comments: false", "comments: maybe"), 10, "comments: false"),
        (lambda t: t.replace("author: 观察者网\n", ""), 9, "expected key 'author'"),
        (lambda t: t.replace("\n<div>   \n", "\n<section>\n"), 15, "<div>"),
        (lambda t: t[:-5], 88, "</div>"),
        (lambda t: t.split("---\n\n")[0], 13, "end of file"),
    ],
)
def test_malformed_hexo_names_path_and_line(mutate, line: int, message: str) -> None:  # type: ignore[no-untyped-def]
    """A malformed Hexo post raises ArchiveError with the path and the line at fault."""
    seed = _text(DATA / "seeds" / "001_fd9e98214ec16f9b.txt")
    with pytest.raises(ArchiveError) as info:
        archive.parse(mutate(seed), "x/bad.md")
    assert ("x/bad.md", line) == (info.value.path, info.value.line)
    assert message in str(info.value)
    assert str(info.value).startswith(f"x/bad.md:{line}: ")


def test_malformed_jekyll_title_escape() -> None:
    """A Jekyll title with an escape we cannot write back names line 3."""
    text = '---\nlayout: post\ntitle: "a\\tb"\n'
    with pytest.raises(ArchiveError) as info:
        archive.parse(text, "j.md")
    assert 3 == info.value.line


def test_unknown_format_names_line_one() -> None:
    """A file of no known variant is refused at line 1."""
    with pytest.raises(ArchiveError) as info:
        archive.parse("hello\nworld\n", "notes.md")
    assert ("notes.md", 1) == (info.value.path, info.value.line)


def test_non_utf8_names_line(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with the line of the bad byte."""
    path = tmp_path / "gbk.md"
    path.write_bytes("<!--1-->\n[标题](http://a)\n".encode("gbk"))
    with pytest.raises(ArchiveError) as info:
        archive.read_file(path)
    assert (str(path), 2) == (info.value.path, info.value.line)


def test_ids_are_content_hashes() -> None:
    """The id is the file's content hash: the same text gives the same id, other text another."""
    text = _text(DATA / "seeds" / "000_8e2f3cb45f1e72f0.txt")
    assert archive.parse(text).id == archive.parse(text, "elsewhere.md").id
    assert archive.parse(text).id != archive.parse(text.replace("普京", "普京 ")).id


def _new_article(**update: object) -> Article:
    base = Article(
        id="abc123",
        format="hexo",
        title="美国:制裁? 名单<更新>",
        link="https://example.org/a/1",
        outlet="观察者网",
        author="观察者网",
        categories=["新媒体", "观察者网", "头条"],
        published_at=datetime(2022, 1, 28, 10, 30, 43, tzinfo=UTC),
        head_image="https://cors.example.workers.dev/?http://img.example.org/a.jpg",
        body_html="<p>正文 {x}</p>",
    )
    return base.model_copy(update=update)


def test_new_hexo_article_renders_like_the_generator() -> None:
    """A new article is written as the Hexo generator wrote its posts."""
    text = archive.render(_new_article())
    expected = (
        "\n---\ntitle: '美国_制裁_ 名单_更新_'\ncategories: \n - 新媒体\n - 观察者网\n - 头条\n"
        "headimg: 'https://cors.example.workers.dev/?http://img.example.org/a.jpg'\n"
        "author: 观察者网\ncomments: false\ndate: Fri, 28 Jan 2022 10:30:43 GMT\n"
        "thumbnail: 'https://cors.example.workers.dev/?http://img.example.org/a.jpg'\n---\n\n"
        "<div>   \n<p>正文 &#123;x&#125;</p>  \n</div>\n            "
    )
    assert expected == text
    again = archive.parse(text)
    assert ("美国_制裁_ 名单_更新_", "<p>正文 {x}</p>") == (again.title, again.body_html)


@pytest.mark.parametrize("fmt", ["hexo", "link", "jekyll", "early"])
def test_convert_then_parse_keeps_fields(fmt: str) -> None:
    """An article converted to any format reads back with the same link, time and body."""
    article = archive.convert(_new_article(title="Plain title"), fmt)  # type: ignore[arg-type]
    again = archive.parse(archive.render(article))
    assert (fmt, "Plain title", article.published_at, "<p>正文 {x}</p>") == (
        again.format,
        again.title,
        again.published_at,
        again.body_html,
    )


def test_write_article_paths_and_atomicity(tmp_path: Path) -> None:
    """write_article lays files out as the archives do and leaves no temp file behind."""
    hexo = archive.write_article(tmp_path, _new_article())
    jekyll = archive.write_article(tmp_path, archive.convert(_new_article(), "jekyll"))
    link = archive.write_article(tmp_path, archive.convert(_new_article(), "link"))
    assert tmp_path / "source/_posts/新媒体/观察者网/头条/美国_制裁_ 名单_更新_.md" == hexo
    assert tmp_path / "_posts/2022-01-28-美国:制裁 名单<更新>.md" == jekyll
    assert tmp_path / "articles/观察者网/abc123.md" == link
    assert archive.render(_new_article()) == _text(hexo)
    assert [] == [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_write_article_keeps_origin_path(tmp_path: Path) -> None:
    """A backfilled article is exported at its origin path, byte for byte."""
    source = DATA / "dumps/index-format-A/开源中国/1.md"
    article = archive.read_file(source, origin="index-format-A/开源中国/1.md")
    written = archive.write_article(tmp_path, article)
    assert source.read_bytes() == written.read_bytes()
    assert tmp_path / "index-format-A/开源中国/1.md" == written


def test_write_article_refuses_escaping_path(tmp_path: Path) -> None:
    """An origin that climbs out of the archive folder is refused."""
    article = _new_article(origin="../outside.md")
    with pytest.raises(ArchiveError):
        archive.write_article(tmp_path / "archive", article)
    assert not (tmp_path / "outside.md").exists()


def test_write_articles_writes_each_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """write_articles writes every article at its path (folders synced once) with no leftovers."""
    first = _new_article()
    second = _new_article(id="abc124", title="另一条", categories=["新媒体", "观察者网", "首页"])
    paths = archive.write_articles(tmp_path, [first, second])
    assert [archive.render(first), archive.render(second)] == [_text(p) for p in paths]
    assert [] == [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_write_articles_refuses_a_folder_linked_outside(tmp_path: Path) -> None:
    """A folder inside the archive that is a symlink to elsewhere is refused, nothing written."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = tmp_path / "archive"
    root.mkdir()
    article = _new_article(origin="linked/post.md")
    (root / "linked").symlink_to(outside)
    with pytest.raises(ArchiveError, match="leaves the archive folder"):
        archive.write_articles(root, [article])
    assert list(outside.iterdir()) == []


def test_write_articles_failing_batch_names_the_folder_and_leaves_nothing(tmp_path: Path) -> None:
    """A folder that cannot be made fails the batch with its path; no file of the batch lands."""
    (tmp_path / "blocked").write_text("a file where a folder should be", encoding="utf-8")
    good = _new_article(origin="fine/post.md")
    bad = _new_article(id="abc125", origin="blocked/post.md")
    with pytest.raises(ArchiveError, match="blocked"):
        archive.write_articles(tmp_path, [good, bad])
    assert not (tmp_path / "fine" / "post.md").exists()
    assert [] == [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_write_articles_without_syncfs_fsyncs_each_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where syncfs is missing, every temporary file and every folder is fsynced instead."""
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(archive, "_syncfs", lambda root: False)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    first = _new_article(origin="a/one.md")
    second = _new_article(id="abc126", origin="b/two.md")
    third = _new_article(id="abc127", origin="b/three.md")
    paths = archive.write_articles(tmp_path, [first, second, third])
    assert len(synced) == 3 + 2  # three files, two folders
    assert [archive.render(a) for a in (first, second, third)] == [_text(p) for p in paths]
