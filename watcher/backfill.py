"""Import dump folders into the store: the pipeline from "an Article exists" on, with no alerts.

    files = walk(roots); known = the ids stored already
    for chunk of files, in worker processes:
        texts = read(chunk); ids = content hashes
        skip known ids                            idempotent, and resumable after a kill
        rows = archive.parse(new texts)           a bad file is reported, never fatal
    here, the store's one writer, in order:
        store.add_article_rows(rows)              one transaction per chunk
        progress(counts)
    assign_stories()                              every stored article without a story yet

Does not send alerts or write the archive.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from watcher import archive
from watcher.errors import ArchiveError, NotADumpError
from watcher.store import Store
from watcher.store.rows import Row, article_row

SUFFIX = ".md"
CHUNK = 250
T = TypeVar("T")


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
    storied: int = 0  # articles put into stories at the end of the run
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
    workers: int | None = None,
    assign_stories: Callable[[], int] | None = None,
) -> BackfillReport:
    """Import ``files`` into ``store``; a file that fails is reported and the rest go on.

    ``workers`` processes read and parse while this one writes (the store keeps one writer).
    None: one per core for a run of several chunks; 1: everything in this process.
    ``assign_stories`` then puts every stored article that has no story yet into one (so a
    run killed before it is caught up by the next) and returns how many it assigned.
    """
    report = BackfillReport(total=len(files))
    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    count = _worker_count(workers, len(chunks))
    known = store.all_ids()  # workers read it (inherited at fork): ~100 bytes per article
    with _parser_pool(count, known) as pool:
        parsing: deque[Future[ParsedChunk]] = deque()
        for chunk in chunks:
            jobs = [(str(d.path), d.origin) for d in chunk]
            parsing.append(pool.submit(import_files, jobs))
            # Keep every worker busy and one chunk queued; store the oldest meanwhile.
            while len(parsing) > count:
                _store_chunk(store, parsing.popleft().result(), report, progress)
        while parsing:
            _store_chunk(store, parsing.popleft().result(), report, progress)
    if assign_stories is not None:
        report.storied = assign_stories()
    return report


def _worker_count(workers: int | None, chunks: int) -> int:
    if workers is not None:
        return max(workers, 1)
    return min(os.cpu_count() or 1, 8) if chunks > 2 else 1


_known: frozenset[str] = frozenset()
"""Ids stored before the run, in the process that reads the files (set by ``_know``)."""


def _know(ids: frozenset[str]) -> None:
    global _known
    _known = ids


@contextmanager
def _parser_pool(workers: int, known: frozenset[str]) -> Iterator[Executor]:
    """Processes to read and parse in (forked: cheap to start, ``known`` inherited, not sent)."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        _know(known)
        try:
            with _InlineExecutor() as inline:
                yield inline
        finally:
            _know(frozenset())
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, context, initializer=_know, initargs=(known,)) as pool:
        yield pool


class _InlineExecutor(Executor):
    """Runs each job at once in this process: the one-core path, with the same code."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` now; return its result (or exception) as a finished future."""
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:
            future.set_exception(e)
        return future


@dataclass
class ParsedChunk:
    """What a worker sends back: store rows of the new articles, how many files were known
    already, and the files it failed or skipped.

    Rows, not Articles: serializing in the worker takes that work off the writer's core.
    """

    rows: list[Row] = field(default_factory=list)
    known: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def import_files(jobs: list[tuple[str, str]]) -> ParsedChunk:
    """Read, hash and parse (path, origin) jobs, skipping ids stored before the run.

    Runs in a worker process: it touches no store, and the writer inserts what it returns.
    """
    parsed = ParsedChunk()
    seen: set[str] = set()
    for path, origin in jobs:
        text = _read_text(path, parsed)
        if text is None:
            continue
        article_id = archive.content_id(text)
        if article_id in _known or article_id in seen:
            parsed.known += 1
            continue
        seen.add(article_id)
        try:
            article = archive.parse(text, path, article_id=article_id)
        except NotADumpError as e:
            parsed.skipped.append((path, str(e)))
            continue
        except ArchiveError as e:
            parsed.failures.append((path, str(e)))
            continue
        article.origin = origin
        parsed.rows.append(article_row(article))
    return parsed


def _store_chunk(
    store: Store, parsed: ParsedChunk, report: BackfillReport, progress: ProgressCallback | None
) -> None:
    added = store.add_article_rows(parsed.rows)
    report.imported += added
    # rows not added were stored by an earlier chunk of this run (the same file twice)
    report.known += parsed.known + len(parsed.rows) - added
    report.failures += parsed.failures
    report.skipped += parsed.skipped
    if progress is not None:
        progress(report)


def _read_text(path: str, parsed: ParsedChunk) -> str | None:
    try:
        with open(path, "rb") as f:  # noqa: PTH123 - the plain call is the cheaper one here
            return archive.decode(f.read(), path)
    except OSError as e:
        parsed.failures.append((path, f"{path}: cannot read: {e.strerror or e}"))
    except ArchiveError as e:
        parsed.failures.append((path, str(e)))
    return None
