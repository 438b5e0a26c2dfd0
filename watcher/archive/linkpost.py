"""Link posts (duty-machine, NodeBE4): an epoch comment and a Markdown link over the HTML.

    link    <!--1638995943000-->             jekyll  ---
            [title](url)                             layout: post
            ------                                   title: "ti\\"tle"
            <empty line>                             date: 2020-12-01T04:17:00.000Z
            <html on one line>                       author: 联合早报
                                                     from: <url>
    early   [title](url)                             tags: [ 联合早报 ]
            ------                                   comments: True          (sometimes)
            日期：Tue, 30 Jun 2020 15:04:14 +0000      categories: [ 联合早报 ]
            <empty line>                             ---
            <html>                                   <a link post, or bare HTML>

Link posts carry no outlet: it comes from the folder (``articles/<abbr>/``), the Jekyll
categories, or the link's host. Does not clean HTML or fetch anything.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from watcher.archive.common import Draft, Lines
from watcher.archive.dates import epoch_ms, from_epoch_ms, write_date
from watcher.archive.outlets import outlet_for_host
from watcher.errors import ArchiveError
from watcher.models import Article

_EPOCH = re.compile(r"<!--(\d{1,15})-->")
_LINK = re.compile(r"\[(.*)\]\((.*)\)")
_RULE = "------"
_EARLY_DATE = "日期："
_JEKYLL_FILE_UNSAFE = re.compile(r"[?]")


def parse_link(text: str, path: str | None, article_id: str) -> Article:
    """Read a plain link post (``<!--epoch-->``, ``[title](url)``, ``------``, HTML)."""
    lines = Lines(text, path)
    draft = Draft(path)
    ms = _read_epoch(lines)
    draft.fields["published_at"] = from_epoch_ms(ms)
    draft.layout["date_style"] = "epoch"
    _read_link_line(lines, draft)
    lines.expect_exact(_RULE)
    lines.expect_exact("")
    draft.fields["body_html"] = lines.rest()
    draft.fields["outlet"] = _outlet_from_path(path) or _outlet_from_link(draft.fields["link"])
    return draft.build("link", article_id)


def parse_early(text: str, path: str | None, article_id: str) -> Article:
    """Read an early link post (``[title](url)``, ``------``, ``日期：<RFC 822>``, HTML)."""
    lines = Lines(text, path)
    draft = Draft(path)
    _read_link_line(lines, draft)
    lines.expect_exact(_RULE)
    line = lines.next()
    if not line.startswith(_EARLY_DATE):
        lines.fail(f"expected '{_EARLY_DATE}<date>', found {line[:60]!r}")
    draft.read_date(line.removeprefix(_EARLY_DATE), lines.line_no)
    lines.expect_exact("")
    draft.fields["body_html"] = lines.rest()
    draft.fields["outlet"] = _outlet_from_link(draft.fields["link"])
    return draft.build("early", article_id)


def parse_jekyll(text: str, path: str | None, article_id: str) -> Article:
    """Read a Jekyll link post: a Jekyll header, then a link post or bare HTML."""
    lines = Lines(text, path)
    draft = Draft(path)
    lines.expect_exact("---")
    draft.layout["jekyll_layout"] = lines.expect_key("layout")
    header_title = _unquote(lines.expect_key("title"), lines)
    draft.read_date(lines.expect_key("date"), lines.line_no)
    draft.fields["author"] = lines.expect_key("author")
    draft.fields["link"] = lines.expect_key("from") or None
    draft.fields["tags"] = _read_list(lines.expect_key("tags"), lines)
    key, value = lines.key_value()
    if key == "comments":
        draft.layout["comments"] = _read_bool(value, lines)
        key, value = lines.key_value()
    categories = _read_list(lines.check_key(key, "categories", value), lines)
    draft.fields["categories"] = categories
    lines.expect_exact("---")
    _read_jekyll_body(lines, draft, header_title)
    draft.fields["outlet"] = categories[0] if categories else draft.fields["author"]
    return draft.build("jekyll", article_id)


def _read_jekyll_body(lines: Lines, draft: Draft, header_title: str) -> None:
    if _EPOCH.fullmatch(lines.peek()) is None:
        draft.layout["link_lines"] = False
        draft.fields["title"] = header_title
        draft.fields["body_html"] = lines.rest()
        return
    ms = _read_epoch(lines)
    published = draft.fields.get("published_at")
    if published is None or epoch_ms(published) != ms:
        draft.layout["epoch_ms"] = ms
    header_link = draft.fields["link"]
    _read_link_line(lines, draft)
    if draft.fields["link"] != header_link:
        lines.fail("the link line's URL differs from the header's 'from'")
    if header_title != draft.fields["title"]:
        draft.fields["title_written"] = header_title
    lines.expect_exact(_RULE)
    lines.expect_exact("")
    draft.fields["body_html"] = lines.rest()


def _read_epoch(lines: Lines) -> int:
    line = lines.next()
    m = _EPOCH.fullmatch(line)
    if m is None:
        lines.fail(f"expected '<!--epoch-ms-->', found {line[:60]!r}")
    return int(m[1])


def _read_link_line(lines: Lines, draft: Draft) -> None:
    line = lines.next()
    m = _LINK.fullmatch(line)
    if m is None:
        lines.fail(f"expected '[title](url)', found {line[:60]!r}")
    # The title may hold "](", the URL never does: split at the last one.
    title, _, link = line[1:-1].rpartition("](")
    draft.fields["title"] = title
    draft.fields["link"] = link or None


def _unquote(value: str, lines: Lines) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        lines.fail(f"expected a double-quoted title, found {value[:60]!r}")
    inner = value[1:-1]
    title = re.sub(r'\\([\\"])', r"\1", inner)
    if _quote(title) != value:
        lines.fail('the title uses an escape other than \\" or \\\\')
    return title


def _quote(title: str) -> str:
    return '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_list(value: str, lines: Lines) -> list[str]:
    if not (value.startswith("[ ") and value.endswith(" ]")):
        lines.fail(f"expected '[ name ]', found {value[:60]!r}")
    return value[2:-2].split(", ")


def _read_bool(value: str, lines: Lines) -> bool:
    if value not in ("True", "False"):
        lines.fail(f"expected True or False, found {value[:20]!r}")
    return value == "True"


def _outlet_from_path(path: str | None) -> str | None:
    if path is None:
        return None
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if len(parts) >= 3 and parts[-3] == "articles":
        return parts[-2]
    return None


def _outlet_from_link(link: str) -> str:
    host = urlsplit(link).hostname or ""
    return outlet_for_host(host) or host or "unknown"


def _link_lines(article: Article, ms: int) -> str:
    title = article.title
    return f"<!--{ms}-->\n[{title}]({article.link or ''})\n{_RULE}\n\n"


def _epoch_of(article: Article) -> int:
    if article.layout.epoch_ms is not None:
        return article.layout.epoch_ms
    if article.published_at is None:
        where = article.origin or f"article {article.id} ({article.title[:40]!r})"
        raise ArchiveError(where, "a link post needs a published time or an epoch")
    return epoch_ms(article.published_at)


def render_link(article: Article) -> str:
    """Write a plain link post."""
    return _link_lines(article, _epoch_of(article)) + article.body_html


def render_early(article: Article) -> str:
    """Write an early link post."""
    layout = article.layout
    date = layout.date_text or write_date(article.published_at, layout.date_style)
    head = f"[{article.title}]({article.link or ''})\n{_RULE}\n{_EARLY_DATE}{date}\n\n"
    return head + article.body_html


def render_jekyll(article: Article) -> str:
    """Write a Jekyll link post."""
    layout = article.layout
    date = layout.date_text or write_date(article.published_at, layout.date_style)
    categories = article.categories or [article.outlet]
    parts = [
        "---\n",
        f"layout: {layout.jekyll_layout}\n",
        f"title: {_quote(article.title_written or article.title)}\n",
        f"date: {date}\n",
        f"author: {article.author or article.outlet}\n",
        f"from: {article.link or ''}\n",
        f"tags: [ {', '.join(article.tags or categories)} ]\n",
    ]
    if layout.comments is not None:
        parts.append(f"comments: {layout.comments}\n")
    parts += [f"categories: [ {', '.join(categories)} ]\n", "---\n"]
    if layout.link_lines:
        parts.append(_link_lines(article, _epoch_of(article)))
    parts.append(article.body_html)
    return "".join(parts)


def link_path(article: Article) -> str:
    """Where a duty-machine archive keeps a link post: ``articles/<outlet>/<id>.md``."""
    return f"articles/{article.outlet.replace('/', '_')}/{article.id}.md"


def early_path(article: Article) -> str:
    """Where the early duty-machine archive keeps a post: ``articles/<id>_<title>.md``."""
    return f"articles/{article.id}_{article.title.replace('/', '_')[:80]}.md"


def jekyll_path(article: Article) -> str:
    """Where a NodeBE4 archive keeps a post: ``_posts/<date>-<title, 50 chars>.md``."""
    day = article.published_at.strftime("%Y-%m-%d") if article.published_at else "0000-00-00"
    title = _JEKYLL_FILE_UNSAFE.sub("", article.title.replace("/", "--"))[:50]
    return f"_posts/{day}-{title}.md"
