"""Backtest the story grouping against labelled pairs: precision, recall and F1 over thresholds.

    python bench/backtest_dedup.py [CORPUS_DIR] [--pairs FILE]

Reads every dump file of the corpus, signs each article once (the boilerplate rules do not
change with the thresholds), then for each (threshold, containment) on the grid assigns
stories to all articles in publishing order with the real ``StoryBook`` and checks each
labelled pair: ``dup`` pairs should share a story, ``related`` and ``different`` ones should
not. Prints, per setting, precision/recall/F1 over the cross-outlet pairs and over all pairs,
and how many related and different pairs were merged. The defaults in settings.py come from
the best row here (goal: F1 >= 0.97 cross-outlet, no related pair merged).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from watcher import archive
from watcher.backfill import find_dump_files
from watcher.dedupe import Signature, Signer, StoryBook
from watcher.errors import ArchiveError
from watcher.models import Article
from watcher.settings import DedupSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_PAIRS = ROOT / "tests" / "data" / "dedupe" / "pairs.tsv"
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
CONTAINMENTS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.01)  # 1.01: containment off


@dataclass(frozen=True)
class Pair:
    """One labelled pair of corpus paths."""

    label: str
    a: str
    b: str


def read_pairs(path: Path) -> list[Pair]:
    """The labelled pairs of a TSV file (comment lines start with #)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, a, b, *_ = line.split("\t")
            pairs.append(Pair(label, a, b))
    return pairs


def read_corpus(root: Path) -> list[Article]:
    """Every dump file below root, with ``origin`` relative to it."""
    articles = []
    for dump in find_dump_files([root]):
        try:
            articles.append(archive.read_file(dump.path, origin=dump.origin))
        except ArchiveError:
            continue
    return articles


def assign_all(
    articles: list[Article], signatures: list[Signature], settings: DedupSettings
) -> dict[str, str]:
    """Origin -> story id, assigning in publishing order as the daemon would see them."""
    book = StoryBook(settings)
    order = sorted(range(len(articles)), key=lambda i: (articles[i].published_at is None,
                   articles[i].published_at or 0, articles[i].id))  # fmt: skip
    story: dict[str, str] = {}
    for i in order:
        article = articles[i]
        decision = book.assign(article.id, signatures[i], article.published_at)
        story[article.id] = decision.story_id or article.id
    return {a.origin or a.id: story[a.id] for a in articles}


def score(pairs: list[Pair], story: dict[str, str], outlet: dict[str, str]) -> dict[str, float]:
    """Precision, recall, F1 (cross-outlet and all) and merged related/different counts."""
    counts = dict.fromkeys(("tp", "fp", "fn", "xtp", "xfp", "xfn", "related", "different"), 0)
    for pair in pairs:
        merged = story[pair.a] == story[pair.b]
        cross = outlet[pair.a] != outlet[pair.b]
        if pair.label == "dup":
            counts["tp" if merged else "fn"] += 1
            if cross:
                counts["xtp" if merged else "xfn"] += 1
        elif merged:
            counts["fp"] += 1
            counts[pair.label] += 1
            if cross:
                counts["xfp"] += 1
    return {**_prf(counts["tp"], counts["fp"], counts["fn"], ""),
            **_prf(counts["xtp"], counts["xfp"], counts["xfn"], "x"),
            "related": counts["related"], "different": counts["different"]}  # fmt: skip


def _prf(tp: int, fp: int, fn: int, prefix: str) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {f"{prefix}p": p, f"{prefix}r": r, f"{prefix}f1": f}


def main() -> None:
    """Sign the corpus once, sweep the grid, print one row per setting and the best."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    pairs = read_pairs(args.pairs)
    articles = read_corpus(args.corpus)
    origins = {a.origin for a in articles}
    missing = [p for p in pairs if p.a not in origins or p.b not in origins]
    if missing:
        sys.exit(f"{len(missing)} labelled files are not in the corpus, e.g. {missing[0]}")
    start = time.perf_counter()
    signatures = Signer(DedupSettings()).sign_many((a.title, a.text) for a in articles)
    per = (time.perf_counter() - start) / len(articles) * 1e6
    print(f"{len(articles)} articles signed in {per:.0f} us each; {len(pairs)} labelled pairs "
          f"({sum(p.label == 'dup' for p in pairs)} dup)")  # fmt: skip
    outlet = {a.origin or a.id: a.outlet for a in articles}
    print("threshold containment |  x-P    x-R   x-F1 |   P      R     F1  | related diff")
    rows = []
    for threshold in THRESHOLDS:
        for contain in CONTAINMENTS:
            settings = DedupSettings(threshold=threshold, containment=min(contain, 1.0))
            if contain > 1.0:
                settings = settings.model_copy(update={"containment_min_shingles": 10**9})
            s = score(pairs, assign_all(articles, signatures, settings), outlet)
            rows.append((s["xf1"], -s["related"], threshold, contain))
            label = "off" if contain > 1.0 else f"{contain:.2f}"
            print(f"  {threshold:.2f}      {label:>5}     | {s['xp']:.3f}  {s['xr']:.3f}  "
                  f"{s['xf1']:.3f} | {s['p']:.3f}  {s['r']:.3f}  {s['f1']:.3f} | "
                  f"{s['related']:4}  {s['different']:4}")  # fmt: skip
    best = max(r for r in rows if r[1] == 0) if any(r[1] == 0 for r in rows) else max(rows)
    print(f"best with no related pair merged: threshold {best[2]}, containment {best[3]}, "
          f"cross-outlet F1 {best[0]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
