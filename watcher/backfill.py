"""Import dump folders into the store: the pipeline from "an Article exists" on, with no alerts.

    files = walk(roots)                           every *.md below each root, sorted
    for chunk of files:
        texts = read(chunk); ids = content hashes
        skip ids the store already has            idempotent, and resumable after a kill
        articles = archive.parse(new texts)       a bad file is reported, never fatal
        store.add_articles(articles)              one transaction per chunk
        progress(counts)

Does not send alerts, assign stories (a later issue) or write the archive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from watcher import archive
from watcher.errors import ArchiveError, NotADumpError
from watcher.models import Article
from watcher.store import Store

SUFFIX = ".md"
CHUNK = 500


@dataclass(frozen=True)
class DumpFile:
    """One file to import: where it is and its path relative to the root it was found under."""

    path: Path
    origin: str


@dataclass
class BackfillReport:
    """Counts so far, and every failed or skipped file with its reason (naming path and line)."""

    total: int = 0
    imported: int = 0
    known: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        """How many files have been dealt with."""
        return self.imported + self.known + len(self.failures) + len(self.skipped)

    @property
    def rate(self) -> float:
        """Files per second so far."""
        return self.done / max(time.monotonic() - self.started_at, 1e-9)


ProgressCallback = Callable[[BackfillReport], None]


def find_dump_files(roots: Iterable[Path]) -> list[DumpFile]:
    """Every ``*.md`` file below each root (or the root itself when it is a file), sorted."""
    found: list[DumpFile] = []
    for root in roots:
        if root.is_file():
            found.append(DumpFile(root, root.name))
            continue
        for path in sorted(_walk(root)):
            found.append(DumpFile(path, path.relative_to(root).as_posix()))
    return found


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(SUFFIX) and not name.startswith("."):
                yield Path(folder) / name


def backfill(
    store: Store,
    files: list[DumpFile],
    *,
    progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK,
) -> BackfillReport:
    """Import ``files`` into ``store``; a file that fails is reported and the rest go on."""
    report = BackfillReport(total=len(files))
    for start in range(0, len(files), chunk_size):
        _import_chunk(store, files[start : start + chunk_size], report)
        if progress is not None:
            progress(report)
    return report


def _import_chunk(store: Store, chunk: list[DumpFile], report: BackfillReport) -> None:
    texts: dict[str, tuple[DumpFile, str]] = {}
    for dump in chunk:
        text = _read_text(dump, report)
        if text is None:
            continue
        article_id = archive.content_id(text)
        if article_id in texts:
            report.known += 1  # the same file twice in one run
        else:
            texts[article_id] = (dump, text)
    known = store.known_ids(texts)
    report.known += len(known)
    articles = [
        article
        for article_id, (dump, text) in texts.items()
        if article_id not in known
        and (article := _parse(dump, text, article_id, report)) is not None
    ]
    added = store.add_articles(articles)
    report.imported += added
    report.known += len(articles) - added


def _read_text(dump: DumpFile, report: BackfillReport) -> str | None:
    try:
        return archive.decode(dump.path.read_bytes(), str(dump.path))
    except OSError as e:
        report.failures.append((str(dump.path), f"{dump.path}: cannot read: {e.strerror or e}"))
    except ArchiveError as e:
        report.failures.append((str(dump.path), str(e)))
    return None


def _parse(dump: DumpFile, text: str, article_id: str, report: BackfillReport) -> Article | None:
    try:
        article = archive.parse(text, str(dump.path), article_id=article_id)
    except NotADumpError as e:
        report.skipped.append((str(dump.path), str(e)))
        return None
    except ArchiveError as e:
        report.failures.append((str(dump.path), str(e)))
        return None
    article.origin = dump.origin
    return article
