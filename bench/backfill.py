"""Backfill throughput: watcher against a bare baseline, measured in the same run.

    python bench/backfill.py [CORPUS_DIR] [--rounds N]

Baseline: read each file, take its text with lxml, insert one row into SQLite in batches of
500 with one commit per batch. watcher: ``find_dump_files`` + ``backfill`` into a fresh store.
Prints files/s for both (median of the rounds) and the ratio; the goal is >= 0.7x.

With ``--stories`` both sides also compute a story signature per article (the baseline signs
its lxml text with the same Signer; watcher assigns stories as ``watcher backfill`` does):
the goal there is >= 0.5x.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lxml.html

from watcher.backfill import backfill, find_dump_files
from watcher.dedupe import Signer
from watcher.settings import DedupSettings
from watcher.store import open_store
from watcher.stories import StoryAssigner

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BATCH = 500


def baseline(files: list[Path], db: Path, signer: Signer | None = None) -> int:
    """Read, lxml text, (a signature,) batched insert: the least any importer must do."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE docs (path TEXT PRIMARY KEY, body TEXT, text TEXT)")
    rows: list[tuple[str, str, str]] = []
    for path in files:
        body = path.read_text(encoding="utf-8")
        text = lxml.html.fromstring(body).text_content() if body.strip() else ""
        if signer is not None:
            text += signer.sign("", text).to_bytes().hex()[:0]  # signed, not stored
        rows.append((str(path), body, text))
        if len(rows) >= BATCH:
            conn.executemany("INSERT INTO docs VALUES (?, ?, ?)", rows)
            conn.commit()
            rows.clear()
    conn.executemany("INSERT INTO docs VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return len(files)


def watcher_backfill(root: Path, db: Path, *, stories: bool = False) -> int:
    """watcher's own backfill of the whole folder into a fresh store."""
    with open_store(db) as store:
        assign = StoryAssigner(store, DedupSettings()).assign_pending if stories else None
        report = backfill(store, find_dump_files([root]), assign_stories=assign)
    if report.failures:
        sys.exit(f"backfill failed on {len(report.failures)} files: {report.failures[:3]}")
    return report.imported


def timed(label: str, run: object, rounds: int) -> float:
    """Median files/s of ``rounds`` runs of ``run(db)``, each into a fresh database."""
    rates = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            count = run(Path(tmp) / "bench.db")  # type: ignore[operator]
            elapsed = time.perf_counter() - start
        rates.append(count / elapsed)
        print(f"  {label:9} round {n + 1}: {count} files in {elapsed:.2f}s = {rates[-1]:,.0f}/s")
    return statistics.median(rates)


def main() -> None:
    """Run both, alternating, and print the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stories", action="store_true", help="sign and assign stories too")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    files = [d.path for d in find_dump_files([args.corpus]) if d.path.name != "SOURCES.md"]
    print(f"corpus: {args.corpus} ({len(files)} files)")
    baseline(files, Path(tempfile.mkdtemp()) / "warm.db")  # warm the page cache for both
    signer = Signer(DedupSettings()) if args.stories else None
    base = timed("baseline", lambda db: baseline(files, db, signer), args.rounds)
    ours = timed(
        "watcher", lambda db: watcher_backfill(args.corpus, db, stories=args.stories), args.rounds
    )
    extra = " + signature" if args.stories else ""
    goal = 0.5 if args.stories else 0.7
    print(f"baseline (read + lxml text{extra} + batched insert): {base:,.0f} files/s")
    print(f"watcher backfill{' with stories' if args.stories else ''}: {ours:,.0f} files/s")
    print(f"ratio watcher/baseline: {ours / base:.2f}x (goal >= {goal:.2f}x)")


if __name__ == "__main__":
    main()
