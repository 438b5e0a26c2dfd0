"""Hexo posts (the RSSHUB-PAGE archives): YAML front matter, then the item's HTML in a div.

    <empty line>
    ---
    title: '<title>'                 ' or " (when the title holds '), never escaped; or bare
    categories: <space>
     - <category>                    1 space (4 in the old 2-level variant)
     - <outlet>
     - <channel>
    headimg: '<image>'               or '' or absent
    author: <outlet>
    comments: false
    date: Mon, 03 Jan 2022 05:20:20 GMT      or naive UTC, or Invalid Date
    thumbnail: '<image>'             or bare
    ---
    <empty line>
    <div>   <newline><html>  <newline></div><newline><12 spaces>

``{`` and ``}`` are written as ``&#123;`` and ``&#125;`` in the whole file. Titles have
``:/\\?*“”<>|[]`` replaced by ``_``. Does not clean HTML or fetch anything.
"""

from __future__ import annotations

import re

from watcher.archive.common import Draft, Lines
from watcher.archive.dates import write_date
from watcher.errors import ArchiveError
from watcher.models import Article

OPENING = "\n---\n"
_BODY_OPEN = "\n<div>   \n"
_BODY_CLOSE = "  \n</div>\n            "
_UNSAFE_TITLE = re.compile(r"[:/\\?*“”<>|\[\]]")
_CATEGORY = re.compile(r"( +)- (.*)")


def sanitize_title(title: str) -> str:
    """The title as the Hexo generator writes it: ``:/\\?*“”<>|[]`` become ``_``."""
    return _UNSAFE_TITLE.sub("_", title)


def parse(text: str, path: str | None, article_id: str) -> Article:
    """Read a Hexo post; raises ArchiveError naming the path and line on malformed input."""
    braces_escaped = "{" not in text and "}" not in text
    if braces_escaped:
        text = text.replace("&#123;", "{").replace("&#125;", "}")
    lines = Lines(text, path, start=len(OPENING))
    draft = Draft(path)
    draft.layout["braces_escaped"] = braces_escaped
    _read_title(lines.expect_key("title"), draft)
    _read_categories(lines, draft)
    key, value = lines.key_value()
    if key == "headimg":
        draft.layout["head_image_key"] = "empty" if value == "''" else "quoted"
        key, value = lines.key_value()
    else:
        draft.layout["head_image_key"] = "absent"
    draft.fields["author"] = lines.check_key(key, "author", value)
    lines.expect_exact("comments: false")
    draft.read_date(lines.expect_key("date"), lines.line_no)
    _read_thumbnail(lines.expect_key("thumbnail"), draft, lines.line_no)
    lines.expect_exact("---")
    draft.fields["body_html"] = _read_body(lines)
    categories: list[str] = draft.fields["categories"]
    draft.fields["outlet"] = _outlet(categories, draft.fields["author"])
    return draft.build("hexo", article_id)


def _read_title(value: str, draft: Draft) -> None:
    quote = value[0] if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0] else ""
    title = value[1:-1] if quote else value
    draft.layout["title_quote"] = quote
    draft.fields["title"] = title
    if sanitize_title(title) != title:
        draft.fields["title_written"] = title


def _read_categories(lines: Lines, draft: Draft) -> None:
    lines.expect_exact("categories: ")
    categories: list[str] = []
    indents: set[int] = set()
    while (m := _CATEGORY.fullmatch(lines.peek())) is not None:
        lines.next()
        indents.add(len(m[1]))
        categories.append(m[2])
    if len(indents) != 1:
        lines.fail("expected categories as ' - name' lines with one indent")
    draft.layout["category_indent"] = indents.pop()
    draft.fields["categories"] = categories


def _read_thumbnail(value: str, draft: Draft, line: int) -> None:
    bare = not (len(value) >= 2 and value[0] == value[-1] == "'")
    draft.layout["thumbnail_bare"] = bare
    image = value if bare else value[1:-1]
    draft.fields["head_image"] = image or None
    if draft.layout["head_image_key"] == "empty" and image:
        raise ArchiveError(draft.path, "headimg is '' but thumbnail is not", line=line)


def _read_body(lines: Lines) -> str:
    rest = lines.rest()
    if not rest.startswith(_BODY_OPEN):
        lines.line_no += 2  # the '<div>' line, after the empty one
        lines.fail("expected an empty line and '<div>   ' after the front matter")
    if not rest.endswith(_BODY_CLOSE) or len(rest) < len(_BODY_OPEN) + len(_BODY_CLOSE):
        lines.fail("expected the body to end with '  \\n</div>\\n' and 12 spaces", at_end=True)
    return rest[len(_BODY_OPEN) : len(rest) - len(_BODY_CLOSE)]


def _outlet(categories: list[str], author: str) -> str:
    if len(categories) >= 3:
        return categories[1]
    if len(categories) == 2:  # the old variant: "ZAKER - channel"
        return categories[1].split(" - ", 1)[0]
    return author


def render(article: Article) -> str:
    """Write an article as a Hexo post, byte for byte as the generator did."""
    layout = article.layout
    title = article.title_written or sanitize_title(article.title)
    quote = layout.title_quote
    if quote is None:
        quote = '"' if "'" in title else "'"
    indent = " " * layout.category_indent
    image = article.head_image or ""
    head_key = layout.head_image_key or ("quoted" if image else "empty")
    parts = [OPENING, f"title: {quote}{title}{quote}\n", "categories: \n"]
    parts += [f"{indent}- {category}\n" for category in article.categories]
    if head_key != "absent":
        parts.append(f"headimg: '{image}'\n")
    parts.append(f"author: {article.author or article.outlet}\n")
    parts.append("comments: false\n")
    date = layout.date_text or write_date(article.published_at, layout.date_style)
    parts.append(f"date: {date}\n")
    parts.append(f"thumbnail: {image}\n" if layout.thumbnail_bare else f"thumbnail: '{image}'\n")
    parts += ["---\n", _BODY_OPEN, article.body_html, _BODY_CLOSE]
    text = "".join(parts)
    if layout.braces_escaped:
        text = text.replace("{", "&#123;").replace("}", "&#125;")
    return text


def relative_path(article: Article) -> str:
    """Where the Hexo archive keeps this post: ``source/_posts/<categories>/<title>.md``."""
    title = article.title_written or sanitize_title(article.title)
    name = title.replace(".", "").replace("/", "_") or article.id
    root = "post" if article.layout.category_indent == 4 else "source/_posts"
    folders = [c.replace("/", "_") for c in article.categories]
    return "/".join([root, *folders, f"{name}.md"])
