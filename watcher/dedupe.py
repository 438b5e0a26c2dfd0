"""Near-duplicate detection: matching text, shingles, signatures, an index, decisions.

    text   = matching_text(title, body)       Simplified, lower case, boilerplate rules removed
    hashes = features(text)                   char 5-grams (CJK) or word 3-grams (Latin), numpy
    sig    = Signer.sign(...)                 rensa MinHash digest + shingle count + numbers
                                              + a consistent 1-in-8 sample of the shingles
    keys   = index.query(sig)                 LSH bands (Jaccard) and sampled shingles
                                              (containment), over the articles held
    choice = decide(sig, candidates, ...)     best member by Jaccard or containment, unless
                                              their numbers disagree; else a new story

Why this shape (../shared/LIBRARIES.md): signatures are where the time goes. Rolling hashes
of code points in numpy (no Python loop per shingle) feed rensa's Rust MinHash in one call.
The index keeps its keys in sorted numpy arrays (~2 KB per article, no Python object per
key), so it is rebuilt from stored signatures in seconds per 100k articles.

Normalization for matching (never for display): the text is converted Traditional ->
Simplified (OpenCC t2s) and lower-cased; the boilerplate rules (outlet datelines, copyright
and feed footers) are removed; then only letters and digits are kept, NFKC-normalized (the
costly ``unicodedata.normalize`` runs only when a kept character is not NFKC-stable).

Does not: read or write the store, know about time windows beyond filtering the candidates it
is given, fetch anything, or decide what an alert is.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
import opencc
from rensa import RMinHash

from watcher.settings import DedupSettings

NUM_PERM: Final = 128
SEED: Final = 20201201
CHAR_SHINGLE: Final = 5  # characters per shingle in CJK text
WORD_SHINGLE: Final = 3  # words per shingle in Latin text
CJK_SHARE: Final = 0.3  # a text is CJK when this share of its letters is Han, kana or hangul
BANDS: Final = 64  # LSH: 64 bands of 2 rows, so a pair is a candidate with probability
ROWS: Final = 2  # 1 - (1 - J**2)**64: J 0.15 -> 77%, 0.2 -> 93%, 0.25 -> 98%, 0.3 -> 99.8%
SAMPLE_EVERY: Final = 8  # one shingle in 8 is kept whole, for containment
SAMPLE_MIN: Final = 8  # sampled shingles the smaller text needs before the sample is trusted
_NORMALIZATION: Final = "n2"  # bump when matching_text or shingling changes meaning

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]

# Built-in boilerplate, matched on lower-case Simplified text with the outlet's own punctuation.
# Each is a regular expression; users add their own with `[dedup] boilerplate`.
BUILTIN_BOILERPLATE: Final[tuple[str, ...]] = (
    r"获取更多rss[:：]?(?:\s*https?://\S+)*",  # feedx footer (路透, 纽约时报 ...)
    r"©[^©]{0,80}for 中国数字时代.*",  # China Digital Times footer, to the end
    r"\|\s*permalink\s*\|.*",
    r"^\s*\d{4}-\d\d-\d\dt\d\d:\d\d:\d\d(?:\.\d+)?z",  # ISO time opening 路透 and 德国之声
    r"^\s*(?:mon|tue|wed|thu|fri|sat|sun), \d\d [a-z]{3} \d{4} \d\d:\d\d:\d\d (?:gmt|[+-]\d{4})",
    r"^\s*\d\d/\d\d/\d{4} - \d\d:\d\d",  # 法广 opening
    r"^[^｜|\s]{1,12}[｜|]",  # a source named before the title: "美国之音｜..." (中国数字时代)
    r"[–-] 法国国际广播电台 - rfi$",  # 法广's title suffix
    r"路透[^\s\-—]{1,12}\d{1,2}月\d{1,2}日\s*[-—]\s*",  # 路透香港12月1日 -
    r"\(完\)",
    r"中央社[^）)]{0,40}(?:电|报导)[）)]",  # （中央社台北4日电） (the opening paren is dropped)
    r"编辑[:：][^）)]{0,40}[）)]\d{0,7}",  # CNA credits: （编辑：...）1100121
    r"译者[:：][^）)]{0,40}[）)]",
    r"延伸阅读.*",  # CNA's further reading, to the end
    r"【大纪元\d{4}年\d{1,2}月\d{1,2}日讯】",
    r"大纪元记者[^）)]{0,30}[）)]",
    r"责任编辑[:：]\s*\S{0,12}",
    r"© \d{4} afp",
    r"法新社[^）)]{0,30}电[）)]",
    r"德国之声中文网[）)]",
    r"© \d{4}年? ?德国之声版权声明.*?刑事追究。",
    r"翻译[:：][^。]{0,40}点击查看本文英文版。",
    r"the post .{0,200}? first appeared on bitter winter\.",
    r"mitbbs\.com",
    r"本文系观察者网独家稿件，未经授权，不得转载。",
    r"【文/观察者网\s*[^】]{0,12}】",
    r"观察者网讯[）)]",
    r"共享此文章[:：].*",  # iYouPort share buttons, to the end
    r"证券时报e公司讯[,，]",
    r"财联社\d{1,2}月\d{1,2}日[电讯][,，]",
    r"央视新闻[）)]",  # a wire item's source in parentheses (the opening one is punctuation)
    r"第一财经[）)]",
    r"please subscribe to the economist.*",
    r"编写/责编[:：][^）)]{0,20}[）)]",
)


_CJK_RANGES: Final = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))

# --- matching text --------------------------------------------------------------------------------


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """OpenCC t2s: Traditional characters and phrases to Simplified."""
    return str(_converter().convert(text))


@dataclass(frozen=True)
class Boilerplate:
    """The compiled boilerplate rules: built-in first, then the configured ones."""

    patterns: tuple[str, ...]
    compiled: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)
    triggers: tuple[str | None, ...] = field(repr=False, compare=False)
    """Each rule's literal opening, which a text must contain for the rule to match."""
    finder: re.Pattern[str] = field(repr=False, compare=False)
    """All the openings in one alternation: one pass finds which rules can match at all."""

    @classmethod
    def from_settings(cls, settings: DedupSettings) -> Boilerplate:
        """The built-in rules plus ``settings.boilerplate``."""
        patterns = (*BUILTIN_BOILERPLATE, *settings.boilerplate)
        compiled = tuple(re.compile(p, re.DOTALL) for p in patterns)
        triggers = tuple(_literal_prefix(p) for p in patterns)
        openings = sorted({t for t in triggers if t}, key=len, reverse=True)
        finder = re.compile("|".join(re.escape(t) for t in openings) or "(?!)")
        return cls(patterns, compiled, triggers, finder)

    def strip(self, text: str) -> str:
        """``text`` with every rule's matches replaced by a space.

        A rule runs only when its opening occurs in the text (one pass for all openings:
        3x cheaper than trying each rule).
        """
        found = set(self.finder.findall(text))  # the longest opening wins at each place
        for trigger, pattern in zip(self.triggers, self.compiled, strict=True):
            if trigger is None or any(f.startswith(trigger) for f in found):
                text = pattern.sub(" ", text)
        return text

    @property
    def fingerprint(self) -> str:
        """A short hash of the rules, part of the signature scheme."""
        return hashlib.blake2b("\n".join(self.patterns).encode(), digest_size=4).hexdigest()


_META: Final = frozenset("\\.^$*+?{}[]|()")


def _literal_prefix(pattern: str) -> str | None:
    """The literal characters a match must start with ('' or None when there are none)."""
    prefix = ""
    for i, char in enumerate(pattern):
        if char in _META:
            if char in "*?{" and prefix:  # the last literal is optional or repeated
                prefix = prefix[:-1]
            if char == "|" or "|" in pattern[i:]:
                return None  # an alternation: no single opening
            break
        prefix += char
    return prefix or None


def matching_text(title: str, text: str, rules: Boilerplate) -> str:
    """Title and visible text, Traditional -> Simplified, lower case, boilerplate removed.

    The rules see the title and the text apart, so ``^`` and ``$`` anchor to each one's ends.
    """
    if not title:
        return rules.strip(to_simplified(text).lower())
    joined = to_simplified(f"{' '.join(title.split())}\n{text}").lower()
    head, _, body = joined.partition("\n")  # one conversion for both: a call costs ~5 us
    return f"{rules.strip(head)} {rules.strip(body)}"


# --- shingles -------------------------------------------------------------------------------------


@cache
def _tables() -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per BMP code point: is a letter/digit, is NFKC-stable, is CJK. About 30 ms, once."""
    chars = [chr(c) for c in range(0x10000)]
    word = np.array([c.isalnum() for c in chars], dtype=np.bool_)
    stable = np.array(
        [unicodedata.is_normalized("NFKC", c) and not unicodedata.combining(c) for c in chars],
        dtype=np.bool_,
    )
    cjk = np.zeros(0x10000, dtype=np.bool_)
    for lo, hi in (*_CJK_RANGES, (0x3040, 0x30FF), (0xAC00, 0xD7AF)):  # + kana, hangul
        cjk[lo : hi + 1] = True
    return word, stable, cjk


def _code_points(text: str) -> U64:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _letters(text: str) -> tuple[str, U64, npt.NDArray[np.bool_]]:
    """``text`` after NFKC, its code points, and the mask of letters/digits among them."""
    points = _code_points(text)
    keep = _is_letter(points)
    if not _is_stable(points[keep]):
        text = unicodedata.normalize("NFKC", text).lower()
        points = _code_points(text)
        keep = _is_letter(points)
    return text, points, keep


def _is_letter(points: U64) -> npt.NDArray[np.bool_]:
    word, _, _ = _tables()
    letter = word[np.minimum(points, 0xFFFF).astype(np.intp)]
    astral = np.flatnonzero(points > 0xFFFF)
    if astral.size:  # CJK extensions, emoji, math letters: rare, asked one by one
        letter[astral] = [chr(int(points[i])).isalnum() for i in astral]
    return letter


def _is_stable(points: U64) -> bool:
    """True when NFKC would leave these code points as they are."""
    _, stable, _ = _tables()
    if not stable[np.minimum(points, 0xFFFF).astype(np.intp)].all():
        return False
    astral = points[points > 0xFFFF]
    return all(unicodedata.is_normalized("NFKC", chr(int(c))) for c in astral)


_P: Final = np.uint64(0x9E3779B97F4A7C15)  # odd: invertible modulo 2**64
_P_INV: Final = np.uint64(pow(int(_P), -1, 2**64))
_Q: Final = np.uint64(0xC2B2AE3D27D4EB4F)


def _powers(base: np.uint64, n: int) -> U64:
    """``base ** i`` for i < n (wrapping uint64), from a cached table sized to a power of two."""
    return _power_table(int(base), 1 << max(10, (n - 1).bit_length()))[:n]


@cache
def _power_table(base: int, size: int) -> U64:
    out = np.full(size, base, dtype=np.uint64)
    out[0] = 1
    table = np.cumprod(out, dtype=np.uint64)
    table.flags.writeable = False
    return table


def _span_hashes(values: U64, starts: U64, ends: U64, base: np.uint64, inverse: np.uint64) -> U64:
    """Polynomial hash of ``values[s:e]`` for each (s, e), all at once (wrapping uint64)."""
    n = len(values)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(values * _powers(base, n), dtype=np.uint64, out=prefix[1:])
    spans = prefix[ends.astype(np.intp)] - prefix[starts.astype(np.intp)]
    return _mix(spans * _powers(inverse, n + 1)[starts.astype(np.intp)])


def _mix(x: U64) -> U64:
    """The murmur3 64-bit finalizer: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _windows(values: U64, k: int, base: np.uint64) -> U64:
    """Hashes of every run of ``k`` consecutive values (one run of all when there are fewer).

    Horner's rule over shifted views: k - 1 vectorized multiply-adds, no prefix sums.
    """
    width = min(k, len(values))
    n = len(values) - width + 1
    hashes = values[:n].copy()
    for i in range(1, width):
        hashes *= base
        hashes += values[i : i + n]
    return _mix(hashes)


def shingle_hashes(text: str) -> U64:
    """Distinct 64-bit hashes of the shingles of a matching text; empty when it has no letters.

    CJK text (at least ``CJK_SHARE`` of its letters): 5-grams of its letters and digits, with
    punctuation and spaces dropped. Other text: 3-grams of its words.
    """
    hashes, _, _ = features(text)
    return np.unique(hashes)


def features(text: str) -> tuple[U64, int, U32]:
    """The shingle hashes of a matching text, how many are distinct, and its numbers' hashes.

    Numbers are the runs of digits ("6.5564" is 6 and 5564): two articles from one template
    with other facts share most shingles but few numbers. The hashes may repeat (MinHash
    does not mind); the distinct count is taken on their low 32 bits, a sort half as costly.
    """
    text, points, keep = _letters(text)
    letters = points[keep]
    if letters.size == 0:
        return np.empty(0, dtype=np.uint64), 0, np.empty(0, dtype=np.uint32)
    numbers = _number_hashes(points, text)
    _, _, cjk = _tables()
    if cjk[np.minimum(letters, 0xFFFF).astype(np.intp)].mean() >= CJK_SHARE:
        hashes = _windows(letters, CHAR_SHINGLE, _P)
    else:
        starts, ends = _runs(keep)
        words = _span_hashes(points, starts, ends, _P, _P_INV)
        hashes = _windows(words, WORD_SHINGLE, _Q)
    return hashes, _count_distinct(hashes), numbers


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[U64, U64]:
    """Start and end (exclusive) of every run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return edges[0::2].astype(np.uint64), edges[1::2].astype(np.uint64)


def _count_distinct(hashes: U64) -> int:
    ordered = np.sort(hashes.astype(np.uint32))
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _number_hashes(points: U64, text: str) -> U32:
    """The distinct numbers of the text (runs of digits, ASCII or full-width), as uint32."""
    full = (points >= 0xFF10) & (points <= 0xFF19)
    digits = ((points >= ord("0")) & (points <= ord("9"))) | full
    if not digits.any():
        return np.empty(0, dtype=np.uint32)
    starts, ends = _runs(digits)
    runs = zip(starts.tolist(), ends.tolist(), strict=True)
    values = {int(text[a:b]) & 0xFFFFFFFF for a, b in runs}
    return np.array(sorted(values), dtype=np.uint32)


# --- signatures -----------------------------------------------------------------------------------


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


class Signer:
    """Turns (title, text) pairs into signatures under one scheme (rules, shingles, MinHash)."""

    def __init__(self, settings: DedupSettings) -> None:
        self.rules = Boilerplate.from_settings(settings)
        self.scheme = (
            f"minhash:rensa-r{RMinHash.ALGORITHM_VERSION}:p{NUM_PERM}:s{SEED}:"
            f"c{CHAR_SHINGLE}w{WORD_SHINGLE}:{_NORMALIZATION}:b{self.rules.fingerprint}"
        )

    def features(self, title: str, text: str) -> tuple[U64, int, U32]:
        """``features`` of an article's title and visible text."""
        return features(matching_text(title, text, self.rules))

    def sign(self, title: str, text: str) -> Signature:
        """The signature of one article's title and visible text."""
        return self.sign_many([(title, text)])[0]

    def sign_many(self, items: Iterable[tuple[str, str]]) -> list[Signature]:
        """Signatures of many (title, text) pairs, with one call into rensa for all of them."""
        found = [self.features(title, text) for title, text in items]
        rows = iter(_digests([h for h, _, _ in found if h.size]))
        return [
            Signature(next(rows), size, n, _sample(h)) if size else _EMPTY for h, size, n in found
        ]


def _sample(hashes: U64) -> U32:
    """The distinct low halves of the hashes that are 0 modulo ``SAMPLE_EVERY`` (high half)."""
    chosen = hashes[(hashes >> np.uint64(32)) % np.uint64(SAMPLE_EVERY) == 0]
    return np.unique(chosen.astype(np.uint32))


def _digests(sets: Sequence[U64]) -> list[U32]:
    if not sets:
        return []
    offsets = np.cumsum([0, *(len(s) for s in sets)], dtype=np.uint64)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(
        np.concatenate(sets), offsets, NUM_PERM, SEED
    )
    return [np.array(row, dtype=np.uint32) for row in matrix.to_rows()]


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


# --- the index ------------------------------------------------------------------------------------

_BAND_SALT: Final = _mix(np.arange(1, BANDS + 1, dtype=np.uint64))
_MERGE_AT: Final = 1024  # pending items before they are merged into the sorted arrays
_SAMPLE_SALT: Final = np.uint64(0x5A5A5A5A00000000)
CONTAINMENT_KEY_EVERY: Final = 4  # of the sampled shingles, those indexed (1 in 32 in all)


def band_keys(signatures: Sequence[Signature]) -> U64:
    """The LSH keys of each signature, shape (n, ``BANDS``): each band's ``ROWS`` values salted."""
    if not signatures:
        return np.empty((0, BANDS), dtype=np.uint64)
    values = np.stack([s.values for s in signatures])[:, : BANDS * ROWS]
    pairs = np.ascontiguousarray(values).view(np.uint64)  # ROWS == 2: one uint64 per band
    return pairs ^ _BAND_SALT


def index_keys(signature: Signature, bands: U64 | None = None) -> U64:
    """Everything an article is indexed under: its LSH bands, and one sampled shingle in 4.

    The sampled shingles find a short item inside a long text (containment), whose Jaccard
    is too low for the bands to find it; salted so they never equal a band key.
    """
    bands = band_keys([signature])[0] if bands is None else bands
    some = signature.sample[signature.sample % np.uint32(CONTAINMENT_KEY_EVERY) == 0]
    return np.concatenate((bands, _mix(some.astype(np.uint64) | _SAMPLE_SALT)))


class LshIndex:
    """An index of int items under their ``index_keys``: insert, query, remove.

    Most keys live in two sorted numpy arrays (key, item), searched with one
    ``searchsorted`` per query: 1-2 KB per item, no Python object per key. New items
    wait in a small dict until ``_MERGE_AT`` of them (or a quarter of the index) are merged.
    Removed items are filtered out of answers and dropped at the next merge.
    """

    def __init__(self) -> None:
        self._keys: U64 = np.empty(0, dtype=np.uint64)
        self._items: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        # keys with top bits p sit at [directory[p], directory[p + 1]): ~8 per slot, so a
        # lookup touches one or two cache lines instead of a 23-step binary search
        self._shift = np.uint64(63)
        self._directory: npt.NDArray[np.intp] = np.zeros(3, dtype=np.intp)
        self._pending: dict[int, list[int]] = {}
        self._pending_items: list[tuple[int, U64]] = []
        self._dead: set[int] = set()
        self._live: set[int] = set()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def insert(self, key: int, signature: Signature, bands: U64 | None = None) -> None:
        """Index ``key`` under ``index_keys`` (``bands``: those keys, when already computed)."""
        if signature.is_empty or key in self._live:
            return
        bands = index_keys(signature) if bands is None else bands
        self._live.add(key)
        self._pending_items.append((key, bands))
        for band in bands.tolist():
            self._pending.setdefault(band, []).append(key)
        if len(self._pending_items) >= max(_MERGE_AT, len(self._live) // 4):
            self._merge()

    def insert_many(self, keys: Sequence[int], signatures: Sequence[Signature]) -> None:
        """Index many keys at once (start-up): one sort for all of them."""
        chosen = [(k, s) for k, s in zip(keys, signatures, strict=True) if not s.is_empty]
        chosen = [(k, s) for k, s in chosen if k not in self._live]
        if not chosen:
            return
        self._live.update(k for k, _ in chosen)
        bands = band_keys([s for _, s in chosen])
        self._pending_items.extend(
            (k, index_keys(s, b)) for (k, s), b in zip(chosen, bands, strict=True)
        )
        self._merge()

    def _merge(self) -> None:
        """Fold the pending items into the sorted arrays: a linear merge, not a re-sort."""
        keys, items = self._keys, self._items
        if self._dead:
            alive = ~np.isin(items, np.fromiter(self._dead, dtype=np.int64))
            keys, items = keys[alive], items[alive]
            # an item removed while still pending must not come back with the merge
            self._pending_items = [(k, b) for k, b in self._pending_items if k not in self._dead]
            self._dead.clear()
        if self._pending_items:
            new_keys = np.concatenate([bands for _, bands in self._pending_items])
            lengths = [len(bands) for _, bands in self._pending_items]
            new_items = np.repeat([key for key, _ in self._pending_items], lengths)
            order = np.argsort(new_keys, kind="stable")
            new_keys, new_items = new_keys[order], new_items[order].astype(np.int64)
            at = np.searchsorted(keys, new_keys, side="right")
            keys, items = np.insert(keys, at, new_keys), np.insert(items, at, new_items)
        self._keys, self._items = keys, items
        self._shift = np.uint64(64 - max(1, int(keys.size).bit_length() - 3))
        prefixes = (keys >> self._shift).astype(np.intp)
        counts = np.bincount(prefixes, minlength=(1 << (64 - int(self._shift))) + 1)
        self._directory = np.concatenate(([0], np.cumsum(counts)))
        self._pending.clear()
        self._pending_items.clear()

    def query(self, signature: Signature, bands: U64 | None = None) -> set[int]:
        """Items sharing a band, or two indexed sampled shingles (``bands``: its index keys).

        One shared shingle is not enough: a common phrase ("中国外交部") is in hundreds of
        articles and would make each of them a candidate.
        """
        if signature.is_empty:
            return set()
        keys = index_keys(signature) if bands is None else bands
        found = set(self._lookup(keys[:BANDS]))
        sampled = Counter(self._lookup(keys[BANDS:]))
        found.update(item for item, count in sampled.items() if count >= 2)
        return found - self._dead if self._dead else found

    def _lookup(self, needles: U64) -> list[int]:
        """Items under each needle (an item once per needle it is under)."""
        found = self._search(np.sort(needles)) if self._keys.size and needles.size else []
        if self._pending:
            for needle in self._pending.keys() & needles.tolist():
                found.extend(self._pending[needle])
        return found

    def _search(self, needles: U64) -> list[int]:
        """Items under any of the needles, from the sorted arrays."""
        prefixes = (needles >> self._shift).astype(np.intp)
        lo, hi = self._directory[prefixes], self._directory[prefixes + 1]
        width = int((hi - lo).max(initial=0))
        if width == 0:
            return []
        at = lo[:, None] + np.arange(width)
        inside = at < hi[:, None]
        at = np.where(inside, at, 0)
        match = inside & (self._keys[at] == needles[:, None])
        return self._items[at[match]].tolist()  # type: ignore[no-any-return]

    def remove(self, key: int) -> None:
        """Forget ``key``; unknown keys are ignored."""
        if key in self._live:
            self._live.discard(key)
            self._dead.add(key)


# --- decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """An article already in a story, as the decision sees it."""

    article_id: str
    story_id: str
    published_at: datetime | None
    signature: Signature


@dataclass(frozen=True)
class Decision:
    """Join ``story_id`` because of ``matched_id`` (with ``similarity``), or start a story."""

    story_id: str | None
    matched_id: str | None = None
    similarity: float = 1.0

    @property
    def starts_story(self) -> bool:
        """True when the article starts a story of its own."""
        return self.story_id is None


def score(a: Signature, b: Signature, settings: DedupSettings) -> float | None:
    """The similarity that makes a and b one story, or None when they are not.

    Jaccard at least ``threshold``, or containment at least ``containment`` when the smaller
    has ``containment_min_shingles``; vetoed when both carry ``number_check_min`` numbers and
    fewer than ``number_agreement`` of them agree (one template, other facts).
    """
    j = jaccard(a, b)
    similarity: float | None = j if j >= settings.threshold else None
    if similarity is None and min(a.size, b.size) >= settings.containment_min_shingles:
        c = containment(a, b, j)
        similarity = c if c >= settings.containment else None
    if similarity is None:
        return None
    if (
        min(a.numbers.size, b.numbers.size) >= settings.number_check_min
        and number_agreement(a, b) < settings.number_agreement
    ):
        return None
    return similarity


def is_within(a: datetime | None, b: datetime | None, window: timedelta) -> bool:
    """True when both times are known and at most ``window`` apart."""
    return a is not None and b is not None and abs(a - b) <= window


def decide(
    signature: Signature,
    published_at: datetime | None,
    candidates: Iterable[Member],
    settings: DedupSettings,
) -> Decision:
    """The story to join: that of the best-scoring candidate within the window, else a new one.

    Ties go to the earlier-published candidate, then the smaller id, so the choice does not
    depend on the order candidates come in.
    """
    best: tuple[float, datetime, str] | None = None
    chosen: Member | None = None
    for member in candidates:
        if not is_within(published_at, member.published_at, settings.window):
            continue
        similarity = score(signature, member.signature, settings)
        if similarity is None:
            continue
        assert member.published_at is not None  # is_within checked it
        rank = (-similarity, member.published_at, member.article_id)
        if best is None or rank < best:
            best, chosen = rank, member
    if chosen is None or best is None:
        return Decision(None)
    return Decision(chosen.story_id, chosen.article_id, -best[0])


class StoryBook:
    """The articles held in memory for matching: the LSH index and each one's story.

    ``assign`` is the whole decision for one new article: query the index, keep candidates
    within the window, pick the best (``decide``), then index the article too. A new story's
    id is the id of the article that starts it. Memory is what was added and not evicted:
    callers add the window they need and ``evict`` what falls out of it.
    """

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings
        self._index = LshIndex()
        self._members: dict[int, Member] = {}
        self._keys: dict[str, int] = {}
        self._next_key = 0

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._keys

    def add(self, members: Sequence[Member]) -> None:
        """Hold these members (already assigned) for matching; known ids are skipped."""
        fresh = [m for m in members if m.article_id not in self._keys]
        keys = list(range(self._next_key, self._next_key + len(fresh)))
        self._next_key += len(fresh)
        for key, member in zip(keys, fresh, strict=True):
            self._members[key] = member
            self._keys[member.article_id] = key
        if len(fresh) == 1:
            self._index.insert(keys[0], fresh[0].signature)
        elif fresh:
            self._index.insert_many(keys, [m.signature for m in fresh])

    def candidates(self, signature: Signature, bands: U64 | None = None) -> list[Member]:
        """Members sharing an LSH band with the signature."""
        return [self._members[k] for k in sorted(self._index.query(signature, bands))]

    def assign(self, article_id: str, signature: Signature, at: datetime | None) -> Decision:
        """Decide the story of a new article and hold it for the next ones."""
        known = self._keys.get(article_id)
        if known is not None:  # assigned before: the same answer again
            member = self._members[known]
            return Decision(member.story_id if member.story_id != article_id else None)
        if at is None:  # undated: no window to compare within, a story of its own
            return Decision(None)
        bands = index_keys(signature)
        decision = decide(signature, at, self.candidates(signature, bands), self.settings)
        key = self._next_key
        self._next_key += 1
        self._members[key] = Member(article_id, decision.story_id or article_id, at, signature)
        self._keys[article_id] = key
        self._index.insert(key, signature, bands)
        return decision

    def forget(self, article_ids: Iterable[str]) -> None:
        """Stop holding these articles (unknown ids are ignored)."""
        for article_id in article_ids:
            key = self._keys.pop(article_id, None)
            if key is not None:
                del self._members[key]
                self._index.remove(key)

    def evict(self, before: datetime) -> int:
        """Forget members published before ``before``; return how many."""
        gone = [m.article_id for m in self._members.values() if m.published_at is None
                or m.published_at < before]  # fmt: skip
        self.forget(gone)
        return len(gone)
