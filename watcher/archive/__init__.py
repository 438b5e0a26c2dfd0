"""The news-dump archive formats, read and written byte for byte.

    parse(text, path)  -> Article      detects the variant; ArchiveError names path and line
    render(article)    -> str          the file text, in the variant the article came in
    read_file(path)    -> Article      parse() of a file on disk
    write_article(root, article)       atomic: temp file + rename, at the archive's own path
    write_articles(root, articles)     the same for a batch, flushed to disk once (syncfs)
    write_articles(..., durable=False) then flush(root)   many batches, one flush
    write_files(root, plan_files(root, articles))         the same in two steps (a parse
                                                          worker plans, writes; see pipeline)

For every dump file ``render(parse(f)) == f``: ``parse`` checks it and refuses a file it could
not write back, rather than store an article that lost something. Does not touch the store.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from functools import cache
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
    "flush",
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


def write_article(root: Path, article: Article) -> Path:
    """Write the article under ``root`` at its archive path, atomically; return the path."""
    return write_articles(root, [article])[0]


def write_articles(root: Path, articles: list[Article], *, durable: bool = True) -> list[Path]:
    """Write many articles atomically; on disk before this returns; return their paths.

    Each file is written to a temporary name, the batch is flushed to disk at once (one
    ``syncfs`` on Linux, else an fsync per file), then renamed into place and flushed again,
    so a crash leaves every file whole or absent, never cut short. ArchiveError names the file.

    ``durable=False`` skips both flushes: the files are whole for every reader, and survive a
    killed process, but a power loss before the kernel writes them back may cut them short.
    The caller then remembers them and calls ``flush`` later (the daemon: every few seconds,
    for all the files of many passes at once).
    """
    return write_files(root, plan_files(root, articles), durable=durable)


def plan_files(root: Path, articles: list[Article]) -> list[tuple[Path, bytes]]:
    """Each article's file under ``root`` and its bytes, not written yet (see ``write_files``).

    ArchiveError names the article's path when it would leave ``root``.
    """
    folders: dict[Path, Path] = {}  # resolved once per folder: a resolve is an lstat per part
    return [
        (_target(root, article, folders), render(article).encode("utf-8")) for article in articles
    ]


def write_files(
    root: Path, planned: list[tuple[Path, bytes]], *, durable: bool = True
) -> list[Path]:
    """Write files planned by ``plan_files``, as ``write_articles`` does; return their paths."""
    if not planned:
        return []
    temporary: list[tuple[str, Path]] = []
    target = root
    try:
        for folder in dict.fromkeys(t.parent for t, _ in planned):
            target = folder
            folder.mkdir(parents=True, exist_ok=True)
        for target, data in planned:
            temporary.append((_write_temporary(target, data), target))
        target = root
        if durable:
            _flush(root, [tmp for tmp, _ in temporary], folders=())
        for tmp, target in temporary:
            Path(tmp).replace(target)
        target = root
        if durable:
            _flush(root, [], folders=dict.fromkeys(t.parent for _, t in temporary))
    except OSError as e:
        for tmp, _ in temporary:
            Path(tmp).unlink(missing_ok=True)
        raise ArchiveError(str(target), f"cannot write: {e.strerror or e}") from e
    return [t for t, _ in planned]


def flush(root: Path) -> None:
    """Make every file written under ``root`` so far durable: one syncfs (Linux), else sync.

    ArchiveError names the folder when the file system reports a write error.
    """
    try:
        if not _syncfs(root):
            os.sync()
    except OSError as e:
        raise ArchiveError(str(root), f"cannot flush to disk: {e.strerror or e}") from e


def _target(root: Path, article: Article, folders: dict[Path, Path]) -> Path:
    """Where the article goes, symlinks resolved; ArchiveError when that is outside ``root``."""
    relative = relative_path(article)
    joined = root / relative
    if joined.name in ("", ".", ".."):
        raise ArchiveError(relative, "the archive path names no file")
    if root not in folders:
        folders[root] = root.resolve()
    if joined.parent not in folders:
        folders[joined.parent] = joined.parent.resolve()
    target = folders[joined.parent] / joined.name
    if not target.is_relative_to(folders[root]):
        raise ArchiveError(relative, "the archive path leaves the archive folder")
    return target


def sync_folders(folders: Iterable[Path]) -> None:
    """fsync each folder, so the renames into it survive a power loss."""
    for folder in folders:
        _fsync(folder)


def _fsync(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(target: Path, data: bytes) -> str:
    """Write ``data`` beside ``target`` under a temporary name (not yet flushed to disk)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _flush(root: Path, files: list[str], *, folders: Iterable[Path]) -> None:
    """Make ``files`` and the renames into ``folders`` durable.

    One ``syncfs`` of the archive's file system where the C library has it (Linux): a
    batch of 20 files costs one journal commit instead of 20 (about 4x less here). Else
    an fsync per file and per folder.
    """
    if _syncfs(root):
        return
    for name in files:
        _fsync(name)
    sync_folders(folders)


@cache
def _libc_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


def _syncfs(root: Path) -> bool:
    """syncfs(2) on the file system holding ``root``; False when it is not available."""
    syncfs = _libc_syncfs()
    if syncfs is None:
        return False
    fd = os.open(root, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)
    return True


def _first_difference(a: str, b: str) -> int:
    index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if index is None:
        index = min(len(a), len(b))
    return b.count("\n", 0, index) + 1
