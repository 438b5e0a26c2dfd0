"""The news-dump archive formats, read and written byte for byte.

    parse(text, path)  -> Article      detects the variant; ArchiveError names path and line
    render(article)    -> str          the file text, in the variant the article came in
    read_file(path)    -> Article      parse() of a file on disk
    write_article(root, article)       atomic: temp file + rename, at the archive's own path

For every dump file ``render(parse(f)) == f``: ``parse`` checks it and refuses a file it could
not write back, rather than store an article that lost something. Does not touch the store.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from watcher.archive import hexo, linkpost
from watcher.archive.common import content_id
from watcher.errors import ArchiveError, NotADumpError
from watcher.models import ArchiveFormat, Article, DateStyle, Layout

__all__ = [
    "content_id",
    "convert",
    "decode",
    "detect",
    "parse",
    "parse_bytes",
    "read_file",
    "relative_path",
    "render",
    "write_article",
    "write_articles",
]

_PARSERS: dict[ArchiveFormat, Callable[[str, str | None, str], Article]] = {
    "hexo": hexo.parse,
    "link": linkpost.parse_link,
    "jekyll": linkpost.parse_jekyll,
    "early": linkpost.parse_early,
}
_RENDERERS: dict[ArchiveFormat, Callable[[Article], str]] = {
    "hexo": hexo.render,
    "link": linkpost.render_link,
    "jekyll": linkpost.render_jekyll,
    "early": linkpost.render_early,
}
_PATHS: dict[ArchiveFormat, Callable[[Article], str]] = {
    "hexo": hexo.relative_path,
    "link": linkpost.link_path,
    "jekyll": linkpost.jekyll_path,
    "early": linkpost.early_path,
}
_DATE_STYLES: dict[ArchiveFormat, DateStyle] = {
    "hexo": "rfc1123",
    "link": "epoch",
    "jekyll": "iso_ms",
    "early": "rfc822",
}


def detect(text: str, path: str | None = None) -> ArchiveFormat:
    """Which dump variant ``text`` is; ArchiveError when it is none of them."""
    if text.startswith(hexo.OPENING):
        return "hexo"
    if text.startswith("---\n"):
        return "jekyll"
    if text.startswith("<!--"):
        return "link"
    lines = text.split("\n", 3)
    if text.startswith("[") and len(lines) > 2 and lines[1] == "------":
        return "early"
    first = lines[0][:60]
    raise NotADumpError(path, f"not a news-dump file: line 1 is {first!r}", line=1)


def parse(text: str, path: str | None = None, *, article_id: str | None = None) -> Article:
    """Read one dump file's text into an Article; ArchiveError names the path and line.

    ``article_id`` is ``content_id(text)`` when the caller has computed it already.
    """
    fmt = detect(text, path)
    article = _PARSERS[fmt](text, path, article_id or content_id(text))
    written = _RENDERERS[fmt](article)
    if written != text:
        line = _first_difference(written, text)
        raise ArchiveError(path, "cannot be written back byte for byte", line=line)
    return article


def render(article: Article) -> str:
    """Write an Article as the text of a dump file in its own format."""
    return _RENDERERS[article.format](article)


def convert(article: Article, fmt: ArchiveFormat) -> Article:
    """The same article laid out as a new ``fmt`` file (its own layout when fmt is its format)."""
    if fmt == article.format:
        return article
    layout = Layout(date_style=_DATE_STYLES[fmt])
    # The origin path belongs to the old format's archive: the new file goes where fmt's goes.
    update = {"format": fmt, "layout": layout, "title_written": None, "origin": None}
    return article.model_copy(update=update)


def relative_path(article: Article) -> str:
    """Where the article's archive keeps it: its origin when it has one, else the layout's."""
    if article.origin:
        return article.origin
    return _PATHS[article.format](article)


def read_file(path: Path, *, origin: str | None = None) -> Article:
    """Read and parse one dump file; ``origin`` (its path under a root) is kept on the article."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArchiveError(str(path), f"cannot read: {e.strerror or e}") from e
    return parse_bytes(data, str(path), origin=origin)


def decode(data: bytes, path: str) -> str:
    """A dump file's text: strict UTF-8, or an ArchiveError naming the line of the bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ArchiveError(path, f"not UTF-8 at byte {e.start}", line=line) from e


def parse_bytes(data: bytes, path: str, *, origin: str | None = None) -> Article:
    """Decode (strict UTF-8) and parse a dump file's bytes."""
    article = parse(decode(data, path), path)
    if origin is not None:
        article.origin = origin
    return article


def write_article(root: Path, article: Article, *, sync_folder: bool = True) -> Path:
    """Write the article under ``root`` at its archive path, atomically; return the path.

    ``sync_folder=False`` leaves the folder's fsync (which makes the rename durable) to the
    caller, who writes many files and syncs each folder once with ``sync_folders``.
    """
    relative = relative_path(article)
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ArchiveError(relative, "the archive path leaves the archive folder")
    data = render(article).encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, data)
        if sync_folder:
            sync_folders([target.parent])
    except OSError as e:
        raise ArchiveError(str(target), f"cannot write: {e.strerror or e}") from e
    return target


def write_articles(root: Path, articles: list[Article]) -> list[Path]:
    """Write many articles atomically, syncing each folder once at the end, not per file."""
    paths = [write_article(root, article, sync_folder=False) for article in articles]
    try:
        sync_folders({path.parent for path in paths})
    except OSError as e:
        raise ArchiveError(str(root), f"cannot sync the archive: {e.strerror or e}") from e
    return paths


def sync_folders(folders: Iterable[Path]) -> None:
    """fsync each folder, so the renames into it survive a power loss."""
    for folder in folders:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_difference(a: str, b: str) -> int:
    index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if index is None:
        index = min(len(a), len(b))
    return b.count("\n", 0, index) + 1
