"""Dedupe cost per article at 10k and 100k indexed articles, beside naive datasketch use.

    python bench/dedup.py [CORPUS_DIR] [--sizes 10000 100000] [--new 500]

For each size N, both sides start from an index already holding N articles, then take the
same ``--new`` articles (corpus texts) one at a time:
  watcher:  matching text -> numpy shingles -> rensa digest -> StoryBook.assign (LSH query,
            decision, insert)
  naive:    NFKC, t2s, lower, punctuation dropped -> one ``MinHash.update`` per 5-gram ->
            datasketch ``MinHashLSH`` query and insert (threshold 0.5, 128 permutations)
Prints the median per-article cost of each and the ratio (goal >= 40x), the memory the
watcher index takes per article (tracemalloc), and the start-up rebuild of N signatures from
a SQLite store (read rows, decode, index).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import opencc
from datasketch import LeanMinHash, MinHash, MinHashLSH

from watcher import archive
from watcher.backfill import find_dump_files
from watcher.dedupe import NUM_PERM, Member, Signature, Signer, StoryBook
from watcher.errors import ArchiveError
from watcher.models import Article
from watcher.settings import DedupSettings
from watcher.store import open_store
from watcher.store.rows import MemberRow, SignatureRow, time_key

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
_PUNCT = re.compile(r"[\W_]+")


def read_texts(root: Path, limit: int) -> list[tuple[str, str]]:
    """(title, text) of up to ``limit`` corpus articles with some text."""
    texts = []
    for dump in find_dump_files([root]):
        try:
            article = archive.read_file(dump.path)
        except ArchiveError:
            continue
        if len(article.text) > 200:
            texts.append((article.title, article.text))
        if len(texts) >= limit:
            break
    return texts


def random_signatures(n: int, seed: int = 1) -> list[Signature]:
    """Digests of N unrelated articles (what an index holds, as far as cost goes)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**32, size=(n, NUM_PERM), dtype=np.uint64).astype(np.uint32)
    return [Signature(row, 1500) for row in values]


def watcher_side(n: int, new: list[tuple[str, str]]) -> tuple[float, float]:
    """Median µs per new article, and KB of index per held article."""
    settings = DedupSettings()
    signer = Signer(settings)
    tracemalloc.start()
    book = StoryBook(settings)
    held = random_signatures(n)
    book.add([Member(f"old{i}", f"old{i}", T0, s) for i, s in enumerate(held)])
    size_kb = tracemalloc.get_traced_memory()[0] / n / 1024
    tracemalloc.stop()
    del held
    costs = []
    for i, (title, text) in enumerate(new):
        start = time.perf_counter()
        book.assign(f"new{i}", signer.sign(title, text), T0 + timedelta(minutes=i))
        costs.append(time.perf_counter() - start)
    return statistics.median(costs) * 1e6, size_kb


def naive_side(n: int, new: list[tuple[str, str]]) -> float:
    """Median µs per new article with datasketch used the plain way."""
    convert = opencc.OpenCC("t2s").convert
    lsh = MinHashLSH(threshold=0.5, num_perm=NUM_PERM)
    for i, s in enumerate(random_signatures(n, seed=2)):
        lsh.insert(
            f"old{i}", LeanMinHash(seed=1, hashvalues=s.values.astype(np.uint64), scheme="affine32")
        )
    costs = []
    for i, (title, text) in enumerate(new):
        start = time.perf_counter()
        plain = _PUNCT.sub("", convert(unicodedata.normalize("NFKC", f"{title} {text}")).lower())
        minhash = MinHash(num_perm=NUM_PERM, seed=1)
        for gram in {plain[k : k + 5] for k in range(max(len(plain) - 4, 1))}:
            minhash.update(gram.encode("utf-8"))
        lsh.query(minhash)
        lsh.insert(f"new{i}", minhash)
        costs.append(time.perf_counter() - start)
    return statistics.median(costs) * 1e6


def rebuild(n: int) -> tuple[float, float]:
    """Seconds to read N stored signatures and index them; seconds it took to store them."""
    settings = DedupSettings()
    scheme = Signer(settings).scheme
    held = random_signatures(n, seed=3)
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        start = time.perf_counter()
        for lo in range(0, n, 5000):
            chunk = range(lo, min(lo + 5000, n))
            store.add_articles(_article(i) for i in chunk)
            key = time_key(T0)
            store.save_stories(
                [SignatureRow(f"a{i}", scheme, 1500, held[i].to_bytes(), key) for i in chunk],
                [MemberRow(f"a{i}", f"a{i}", None, 1.0, key) for i in chunk],
            )
        stored = time.perf_counter() - start
        start = time.perf_counter()
        rows = store.iter_signatures(scheme, since=T0 - timedelta(days=1))
        members = [Member(r.article_id, r.story_id or r.article_id, T0,
                          Signature.from_bytes(r.minhash, r.size)) for r in rows]  # fmt: skip
        StoryBook(settings).add(members)
        return time.perf_counter() - start, stored


def _article(i: int) -> Article:
    return Article(id=f"a{i}", format="link", title=f"t{i}", outlet="o", published_at=T0)


def timed(label: str, run: Callable[[], object]) -> object:
    """Run and say how long it took (for the slow set-up steps)."""
    start = time.perf_counter()
    result = run()
    print(f"  {label}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return result


def main() -> None:
    """Measure each size and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--new", type=int, default=500)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    new = read_texts(args.corpus, args.new)
    chars = statistics.mean(len(t) + len(b) for t, b in new)
    print(f"{len(new)} new articles of {chars:,.0f} characters on average")
    for n in args.sizes:
        ours, kb = watcher_side(n, new)
        naive = naive_side(n, new)
        seconds, stored = rebuild(n)
        print(f"N={n:>7,}: watcher {ours:7.0f} us/article, naive datasketch {naive:7.0f} us "
              f"-> {naive / ours:5.1f}x; index {kb:.2f} KB/article; start-up rebuild "
              f"{seconds:.2f}s (storing them took {stored:.1f}s)")  # fmt: skip


if __name__ == "__main__":
    main()
