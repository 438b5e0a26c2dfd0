"""Signatures: (title, text) -> a MinHash digest, the shingle count, numbers and a sample.

    sig = Signer(settings).sign(title, text)   matching text -> features -> rensa digest
    jaccard(a, b), containment(a, b)           estimates from digests and samples
    number_agreement(a, b)                     share of the fewer numbers found in the other

rensa's Rust MinHash takes every article's hashes in one call (``sign_many``).

Does not: index signatures (``index``) or decide anything from them (``decision``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
from rensa import RMinHash

from watcher.dedupe.shingles import (
    CHAR_SHINGLE,
    NORMALIZATION,
    U32,
    U64,
    WORD_SHINGLE,
    features,
    features_with_sample,
)
from watcher.dedupe.text import Boilerplate, matching_text
from watcher.models import Article
from watcher.plaintext import article_text
from watcher.settings import DedupSettings

NUM_PERM: Final = 128
SEED: Final = 20201201
SAMPLE_MIN: Final = 8  # sampled shingles the smaller text needs before the sample is trusted


@dataclass(frozen=True)
class Signature:
    """A MinHash digest (``NUM_PERM`` uint32), the shingle count, the numbers' hashes, and a
    consistent sample of the shingles (those whose hash is 0 modulo ``SAMPLE_EVERY``).

    The sample measures containment where the MinHash estimate cannot: for a short item
    inside a text 15 times longer, Jaccard is ~0.06 and its estimate's noise swamps it, but
    every sampled shingle of the item is sampled in the long text too.
    """

    values: U32 = field(compare=False)
    size: int
    numbers: U32 = field(compare=False, default_factory=lambda: np.empty(0, dtype=np.uint32))
    sample: U32 = field(compare=False, default_factory=lambda: np.empty(0, dtype=np.uint32))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self.to_bytes() == other.to_bytes() and self.size == other.size

    def __hash__(self) -> int:
        return hash((self.size, self.to_bytes()))

    @property
    def is_empty(self) -> bool:
        """True for a text with no letters: it matches nothing."""
        return self.size == 0

    def to_bytes(self) -> bytes:
        """Little-endian uint32: the digest, the count of numbers, the numbers, the sample."""
        count = np.array([self.numbers.size], dtype=np.uint32)
        parts = (self.values, count, self.numbers, self.sample)
        return b"".join(part.astype("<u4").tobytes() for part in parts)

    @classmethod
    def from_bytes(cls, data: bytes, size: int) -> Signature:
        """Read back what ``to_bytes`` wrote; ValueError when it is not a signature."""
        if len(data) < NUM_PERM * 4 + 4 or len(data) % 4:
            raise ValueError(f"a signature has {NUM_PERM * 4 + 4} bytes and more, not {len(data)}")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        count = int(words[NUM_PERM])
        numbers = words[NUM_PERM + 1 : NUM_PERM + 1 + count]
        if numbers.size != count:
            raise ValueError(f"a signature holding {count} numbers is cut short")
        return cls(words[:NUM_PERM], size, numbers, words[NUM_PERM + 1 + count :])


_EMPTY: Final = Signature(np.zeros(NUM_PERM, dtype=np.uint32), 0)


@dataclass(frozen=True)
class Signed:
    """Signatures of articles by id, made under ``scheme`` (a parse worker's, say)."""

    scheme: str
    signatures: dict[str, Signature]


@cache
def signer_for(settings: DedupSettings) -> Signer:
    """One Signer per settings, kept: a parse worker signs every feed with the same one."""
    return Signer(settings)


def sign_articles(articles: Sequence[Article], settings: DedupSettings) -> Signed:
    """The articles' signatures under ``settings``' scheme, by article id."""
    signer = signer_for(settings)
    signed = signer.sign_articles(articles)
    return Signed(signer.scheme, {a.id: sig for a, sig in zip(articles, signed, strict=True)})


def matching_input(article: Article) -> tuple[str, str]:
    """The (title, visible text) an article is matched on."""
    return article.title, article_text(article)


class Signer:
    """Turns (title, text) pairs into signatures under one scheme (rules, shingles, MinHash)."""

    def __init__(self, settings: DedupSettings) -> None:
        self.rules = Boilerplate.from_settings(settings)
        self.scheme = (
            f"minhash:rensa-r{RMinHash.ALGORITHM_VERSION}:p{NUM_PERM}:s{SEED}:"
            f"c{CHAR_SHINGLE}w{WORD_SHINGLE}:{NORMALIZATION}:b{self.rules.fingerprint}"
        )

    def features(self, title: str, text: str) -> tuple[U64, int, U32]:
        """``features`` of an article's title and visible text."""
        return features(matching_text(title, text, self.rules))

    def sign(self, title: str, text: str) -> Signature:
        """The signature of one article's title and visible text."""
        return self.sign_many([(title, text)])[0]

    def sign_articles(self, articles: Iterable[Article]) -> list[Signature]:
        """``sign_many`` of each article's ``matching_input``."""
        return self.sign_many(map(matching_input, articles))

    def sign_many(self, items: Iterable[tuple[str, str]]) -> list[Signature]:
        """Signatures of many (title, text) pairs, with one call into rensa for all of them."""
        found = [
            features_with_sample(matching_text(title, text, self.rules)) for title, text in items
        ]
        rows = iter(_digests([h for h, _, _, _ in found if h.size]))
        return [
            Signature(next(rows), size, numbers, sample) if size else _EMPTY
            for _, size, numbers, sample in found
        ]


def _digests(sets: Sequence[U64]) -> list[U32]:
    if not sets:
        return []
    offsets = np.zeros(len(sets) + 1, dtype=np.uint64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    flat = sets[0] if len(sets) == 1 else np.concatenate(sets)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, NUM_PERM, SEED)
    return list(np.array(matrix.to_rows(), dtype=np.uint32))  # rows: views of one array


def jaccard(a: Signature, b: Signature) -> float:
    """Estimated Jaccard similarity of the two shingle sets (0 when either is empty)."""
    if a.is_empty or b.is_empty:
        return 0.0
    return float(np.count_nonzero(a.values == b.values)) / NUM_PERM


def number_agreement(a: Signature, b: Signature) -> float:
    """Share of the fewer numbers found among the other's (1.0 when either has none)."""
    fewer = min(a.numbers.size, b.numbers.size)
    if fewer == 0:
        return 1.0
    return len(set(a.numbers.tolist()).intersection(b.numbers.tolist())) / fewer


def containment(a: Signature, b: Signature, similarity: float | None = None) -> float:
    """Estimated share of the smaller set found in the larger.

    From the samples when the smaller holds ``SAMPLE_MIN`` sampled shingles (unbiased, and
    exact for a text wholly inside another); else from the Jaccard estimate and the sizes.
    """
    small, large = (a, b) if a.size <= b.size else (b, a)
    if small.sample.size >= SAMPLE_MIN:
        shared = np.intersect1d(small.sample, large.sample, assume_unique=True).size
        return shared / small.sample.size
    j = jaccard(a, b) if similarity is None else similarity
    if j <= 0.0:
        return 0.0
    estimate = j * (a.size + b.size) / (1.0 + j)
    return min(1.0, estimate / min(a.size, b.size))


def containments(
    a: Signature, others: Sequence[Signature], similarities: Sequence[float]
) -> list[float]:
    """``containment(a, b, j)`` for each b of ``others`` with its Jaccard j: equal floats.

    The pairs measured by their samples share one ``searchsorted`` into ``a``'s sample when
    every sample is sorted and distinct (as ``Signer`` makes them, so the count is the
    ``intersect1d`` one); any other pair goes through ``containment``.
    """
    found = [0.0] * len(others)
    by_sample: list[int] = []
    for i, (b, j) in enumerate(zip(others, similarities, strict=True)):
        small = a if a.size <= b.size else b
        if small.sample.size >= SAMPLE_MIN:
            by_sample.append(i)
        else:
            found[i] = containment(a, b, j)
    if not by_sample:
        return found
    samples = [others[i].sample for i in by_sample]
    flat = np.concatenate(samples)
    lengths = np.array([s.size for s in samples], dtype=np.int64)
    ends = np.cumsum(lengths)
    if not (_is_ascending(a.sample) and _is_ascending(flat, ends[:-1])):
        for i in by_sample:
            found[i] = containment(a, others[i], similarities[i])
        return found
    at = np.minimum(np.searchsorted(a.sample, flat), a.sample.size - 1)
    inside = a.sample[at] == flat if a.sample.size else np.zeros(flat.size, dtype=np.bool_)
    hits = np.concatenate(([0], np.cumsum(inside)))
    shared = (hits[ends] - hits[ends - lengths]).tolist()
    for i, count in zip(by_sample, shared, strict=True):
        b = others[i]
        small = a if a.size <= b.size else b
        found[i] = count / small.sample.size
    return found


def _is_ascending(values: U32, breaks: npt.NDArray[np.int64] | None = None) -> bool:
    """True when ``values`` strictly increase, except where a new run starts (at ``breaks``)."""
    rising = values[1:] > values[:-1]
    if breaks is not None:
        inner = breaks[(breaks > 0) & (breaks < values.size)]
        rising[inner - 1] = True
    return bool(rising.all())
