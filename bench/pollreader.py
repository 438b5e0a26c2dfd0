"""lemon24/reader over the benchmark's feeds, run by ``bench/poll.py`` with reader's own venv.

    bench/.venv-reader/bin/python bench/pollreader.py DB URLS_FILE [--workers 16]

Adds every URL of URLS_FILE (one a line) to a fresh reader database at DB, then times
``update_feeds(scheduled=False, workers=N)`` twice: the first update (everything new) and the
second (every feed answers 304). Prints one JSON line: seconds for each, entries stored, feeds
with an update error, and the process's peak RSS in MiB. Imports reader only (no watcher).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from reader import make_reader  # type: ignore[import-not-found, unused-ignore]


def timed_update(reader: object, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds (every thread) of one ``update_feeds`` over every feed."""
    wall, cpu = time.perf_counter(), time.process_time()
    reader.update_feeds(scheduled=False, workers=workers)  # type: ignore[attr-defined]
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Run both updates and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("urls", type=Path)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    urls = args.urls.read_text(encoding="utf-8").split()
    reader = make_reader(str(args.db))
    for url in urls:
        reader.add_feed(url)
    first_s, first_cpu_s = timed_update(reader, args.workers)
    first_rss = peak_rss_mib()
    second_s, second_cpu_s = timed_update(reader, args.workers)
    errors = sum(1 for feed in reader.get_feeds() if feed.last_exception is not None)
    counts = reader.get_entry_counts()
    reader.close()
    version = sys.modules["reader"].__version__
    print(json.dumps({
        "version": version, "feeds": len(urls), "first_s": first_s, "second_s": second_s,
        "first_cpu_s": first_cpu_s, "second_cpu_s": second_cpu_s,
        "entries": counts.total, "errors": errors,
        "rss_first_mib": first_rss, "rss_mib": peak_rss_mib(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
