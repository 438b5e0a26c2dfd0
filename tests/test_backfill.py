"""Backfill: dump folders into a real SQLite store, idempotent, resumable, never stopped."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher import archive
from watcher.backfill import BackfillReport, backfill, find_dump_files
from watcher.settings import DedupSettings
from watcher.store import Store, open_store
from watcher.stories import StoryAssigner

from .conftest import CORPUS, DATA, corpus_files

DUMPS = DATA / "dumps"
N_DUMPS = len(list(DUMPS.rglob("*.md")))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store in a temporary folder."""
    with open_store(tmp_path / "db" / "watcher.db") as opened:
        yield opened


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    """A writable copy of the fixture dumps."""
    return Path(shutil.copytree(DUMPS, tmp_path / "dumps"))


def test_imports_every_file_once(store: Store, dumps: Path) -> None:
    """A first run imports every file; a second imports none and counts them known."""
    first = backfill(store, find_dump_files([dumps]))
    second = backfill(store, find_dump_files([dumps]))
    assert (N_DUMPS, 0, []) == (first.imported, first.known, first.failures)
    assert (0, N_DUMPS, []) == (second.imported, second.known, second.failures)
    assert N_DUMPS == store.count_articles()


def test_moved_file_is_known(store: Store, dumps: Path, tmp_path: Path) -> None:
    """The same file under another root is the same article: importing it again is a no-op."""
    backfill(store, find_dump_files([dumps]))
    moved = Path(shutil.copytree(dumps, tmp_path / "elsewhere" / "deeper"))
    report = backfill(store, find_dump_files([moved]))
    assert (0, N_DUMPS) == (report.imported, report.known)


def test_same_link_twice_is_two_versions(store: Store, tmp_path: Path) -> None:
    """Two files with the same link but other text are two stored versions."""
    root = tmp_path / "versions"
    root.mkdir()
    seed = (DATA / "seeds" / "002_3b3052345fed2cc9.txt").read_bytes()
    (root / "a.md").write_bytes(seed)
    (root / "b.md").write_bytes(seed.replace("普京".encode(), "普丁".encode()))
    report = backfill(store, find_dump_files([root]))
    links = {a.link for a in store.iter_articles()}
    assert (2, 1) == (report.imported, len(links))


def test_broken_file_is_reported_and_others_imported(store: Store, dumps: Path) -> None:
    """A malformed file fails with its path and line; every other file is imported."""
    broken = dumps / "broken.md"
    broken.write_text("\n---\ntitle: 'x'\ncategories: \n - a\nauthor: a\n", encoding="utf-8")
    (dumps / "gbk.md").write_bytes("<!--1-->\n[标题](http://a)\n".encode("gbk"))
    report = backfill(store, find_dump_files([dumps]), chunk_size=4)
    reasons = dict(report.failures)
    assert N_DUMPS == report.imported
    assert {str(broken), str(dumps / "gbk.md")} == set(reasons)
    assert reasons[str(broken)].startswith(f"{broken}:")
    assert reasons[str(dumps / "gbk.md")].startswith(f"{dumps / 'gbk.md'}:2:")


def test_readme_is_skipped_not_failed(store: Store, dumps: Path) -> None:
    """A README beside the posts is skipped with its reason, not counted as a failure."""
    (dumps / "README.md").write_text("# My archive\n", encoding="utf-8")
    report = backfill(store, find_dump_files([dumps]))
    assert ([], [str(dumps / "README.md")]) == (report.failures, [p for p, _ in report.skipped])


def test_resumes_after_interruption(store: Store, dumps: Path) -> None:
    """A run killed after its first chunk keeps that chunk; the next run imports the rest."""

    def stop_after_first_chunk(report: BackfillReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill(store, find_dump_files([dumps]), progress=stop_after_first_chunk, chunk_size=5)
    assert 5 == store.count_articles()
    report = backfill(store, find_dump_files([dumps]), chunk_size=5)
    assert (N_DUMPS - 5, 5) == (report.imported, report.known)


def test_origin_is_relative_to_root(store: Store, dumps: Path) -> None:
    """Each article keeps its file's path relative to the backfill root."""
    backfill(store, find_dump_files([dumps]))
    origins = {a.origin for a in store.iter_articles()}
    expected = {p.relative_to(dumps).as_posix() for p in dumps.rglob("*.md")}
    assert expected == origins


def test_stored_article_renders_the_file(store: Store, dumps: Path) -> None:
    """An article read back from the store still renders its file byte for byte."""
    backfill(store, find_dump_files([dumps]))
    for article in store.iter_articles():
        assert (dumps / str(article.origin)).read_text(encoding="utf-8") == archive.render(article)


def test_progress_reports_every_chunk(store: Store, dumps: Path) -> None:
    """Progress is reported once per chunk with growing counts."""
    seen: list[int] = []
    backfill(store, find_dump_files([dumps]), progress=lambda r: seen.append(r.done), chunk_size=4)
    expected = [min(n, N_DUMPS) for n in range(4, N_DUMPS + 4, 4)]
    assert expected == seen


def test_whole_corpus(store: Store) -> None:
    """The whole shared corpus imports with no failure, only SOURCES.md skips, and every
    article lands in a story (fewer stories than articles: the corpus has copies)."""
    files = corpus_files()
    stories = StoryAssigner(store, DedupSettings())
    report = backfill(store, find_dump_files([CORPUS]), assign_stories=stories.assign_pending)
    skipped = [Path(p).name for p, _ in report.skipped]
    assert ([], len(files), ["SOURCES.md"]) == (
        report.failures,
        report.imported + report.known,
        skipped,
    )
    assert report.imported == report.storied
    assert 0 < store.count_stories() < report.imported


def test_worker_processes_give_the_same_result(tmp_path: Path, dumps: Path) -> None:
    """Parsing in worker processes imports, fails and skips exactly what one process does."""
    (dumps / "README.md").write_text("# My archive\n", encoding="utf-8")
    (dumps / "broken.md").write_text("<!--1-->\nno link line\n", encoding="utf-8")
    results = []
    for workers in (1, 2):
        with open_store(tmp_path / f"w{workers}.db") as store:
            report = backfill(store, find_dump_files([dumps]), chunk_size=3, workers=workers)
            ids = sorted(a.id for a in store.iter_articles())
        results.append((report.imported, report.known, report.failures, report.skipped, ids))
    assert results[0] == results[1]
    assert N_DUMPS == results[1][0]
    assert [str(dumps / "broken.md")] == [p for p, _ in results[1][2]]
