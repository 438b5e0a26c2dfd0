"""Shingles: a matching text -> 64-bit shingle hashes, its numbers and a sample, in numpy.

    points, flags = code points, and per point: letter/digit, NFKC-stable, CJK (one table)
    hashes  = windows of 5 letters (CJK) or of 3 words (Latin), polynomial hashes, mixed
    numbers = the distinct runs of digits, as uint32
    sample  = the distinct low halves of the hashes whose high half is 0 modulo 8

Rolling hashes of code points in numpy: no Python loop per shingle. The costly
``unicodedata.normalize`` runs only when a kept character is not NFKC-stable. Code points
past the BMP (rare: CJK extensions, emoji) are asked of ``unicodedata`` one by one.

Does not: convert or strip the text (``text``), or compute MinHash digests (``signature``).
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

CHAR_SHINGLE: Final = 5  # characters per shingle in CJK text
WORD_SHINGLE: Final = 3  # words per shingle in Latin text
CJK_SHARE: Final = 0.3  # a text is CJK when this share of its letters is Han, kana or hangul
NORMALIZATION: Final = "n2"  # bump when matching_text or shingling changes meaning
SAMPLE_EVERY: Final = 8  # one shingle in 8 is kept whole, for containment (a power of two)

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]
Places = npt.NDArray[np.intp]

_CJK_RANGES: Final = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_LETTER: Final = 1  # str.isalnum()
_STABLE: Final = 2  # NFKC leaves it as it is, and it does not combine
_CJK: Final = 4  # Han, kana or hangul
_DIGIT: Final = 8  # 0-9 or full-width ０-９: either way, its low four bits are its value
_BMP_END: Final = 0xFFFF


@cache
def _flags() -> U8:
    """Per BMP code point: letter/digit, NFKC-stable, CJK and ASCII-or-full-width digit bits.

    One byte a code point, so one gather per text (about 30 ms to build, once).
    """
    chars = [chr(c) for c in range(_BMP_END + 1)]
    letter = np.array([c.isalnum() for c in chars], dtype=np.uint8)
    stable = np.array(
        [unicodedata.is_normalized("NFKC", c) and not unicodedata.combining(c) for c in chars],
        dtype=np.uint8,
    )
    cjk = np.zeros(_BMP_END + 1, dtype=np.uint8)
    for lo, hi in (*_CJK_RANGES, (0x3040, 0x30FF), (0xAC00, 0xD7AF)):  # + kana, hangul
        cjk[lo : hi + 1] = 1
    digit = np.zeros(_BMP_END + 1, dtype=np.uint8)
    digit[ord("0") : ord("9") + 1] = digit[0xFF10 : 0xFF19 + 1] = 1  # full-width digits too
    flags = letter * _LETTER | stable * _STABLE | cjk * _CJK | digit * _DIGIT
    flags.flags.writeable = False
    return flags


def _code_points(text: str) -> U32:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _letters(text: str) -> tuple[str, U32, npt.NDArray[np.bool_], U8]:
    """``text`` after NFKC, its code points, the mask of letters/digits, and the flags."""
    points, keep, flags = _scan(text)
    if not _is_stable(points, keep, flags):
        text = unicodedata.normalize("NFKC", text).lower()
        points, keep, flags = _scan(text)
    return text, points, keep, flags


def _scan(text: str) -> tuple[U32, npt.NDArray[np.bool_], U8]:
    """The code points, which are letters or digits, and each one's flags."""
    points = _code_points(text)
    flags = _flags()[np.minimum(points, _BMP_END)]
    keep = (flags & _LETTER).view(np.bool_)
    if points.size and points.max() > _BMP_END:  # past the BMP: asked one by one
        astral = np.flatnonzero(points > _BMP_END)
        keep = keep.copy()
        keep[astral] = [chr(c).isalnum() for c in points[astral].tolist()]
    return points, keep, flags


def _is_stable(points: U32, keep: npt.NDArray[np.bool_], flags: U8) -> bool:
    """True when NFKC would leave the kept code points as they are."""
    if np.any((flags & (_LETTER | _STABLE)) == _LETTER):  # a BMP letter NFKC would change
        return False
    if not points.size or points.max() <= _BMP_END:
        return True
    astral = points[keep & (points > _BMP_END)].tolist()
    return all(unicodedata.is_normalized("NFKC", chr(c)) for c in astral)  # U+FFFF is stable


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


def _span_hashes(
    values: U64, starts: Places, ends: Places, base: np.uint64, inverse: np.uint64
) -> U64:
    """Polynomial hash of ``values[s:e]`` for each (s, e), all at once (wrapping uint64)."""
    n = len(values)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(values * _powers(base, n), dtype=np.uint64, out=prefix[1:])
    spans = prefix[ends] - prefix[starts]
    spans *= _powers(inverse, n + 1)[starts]
    return mix_in_place(spans)


def mix(x: U64) -> U64:
    """The murmur3 64-bit finalizer: every input bit reaches every output bit."""
    return mix_in_place(x.copy())


def mix_in_place(x: U64) -> U64:
    """``mix``, overwriting ``x`` and returning it (no temporary arrays but the shifts)."""
    x ^= x >> _33
    x *= _M1
    x ^= x >> _33
    x *= _M2
    x ^= x >> _33
    return x


_33: Final = np.uint64(33)
_M1: Final = np.uint64(0xFF51AFD7ED558CCD)
_M2: Final = np.uint64(0xC4CEB9FE1A85EC53)


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
    return mix_in_place(hashes)


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
    hashes, count, numbers, _ = features_with_sample(text)
    return hashes, count, numbers


def features_with_sample(text: str) -> tuple[U64, int, U32, U32]:
    """``features``, and the sample of the hashes (``sample``)."""
    text, points, keep, flags = _letters(text)
    letters = points[keep]
    if letters.size == 0:
        return np.empty(0, dtype=np.uint64), 0, _no_numbers(), _no_numbers()
    numbers = _number_hashes(points, flags)
    cjk = np.count_nonzero((flags & (_LETTER | _CJK)) == _LETTER | _CJK)  # astral: never
    if cjk / letters.size >= CJK_SHARE:
        hashes = _windows(letters.astype(np.uint64), CHAR_SHINGLE, _P)
    else:
        starts, ends = _runs(keep)
        words = _span_hashes(points.astype(np.uint64), starts, ends, _P, _P_INV)
        hashes = _windows(words, WORD_SHINGLE, _Q)
    return hashes, _count_distinct(hashes), numbers, sample(hashes)


def sample(hashes: U64) -> U32:
    """The distinct low halves of the hashes that are 0 modulo ``SAMPLE_EVERY`` (high half)."""
    chosen = hashes[(hashes & _SAMPLE_BITS) == 0].astype(np.uint32)
    return _distinct(chosen)


def _count_distinct(hashes: U64) -> int:
    ordered = np.sort(hashes.astype(np.uint32))
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _distinct(values: U32) -> U32:
    """``np.unique(values)`` for a fresh array: sorted in place, neighbours compared."""
    values.sort()
    fresh = np.empty(values.size, dtype=np.bool_)
    fresh[:1] = True
    np.not_equal(values[1:], values[:-1], out=fresh[1:])
    return values[fresh]


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[Places, Places]:
    """Start and end (exclusive) of every run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return edges[0::2], edges[1::2]


def _number_hashes(points: U32, flags: U8) -> U32:
    """The distinct numbers of the text (runs of digits, ASCII or full-width), as uint32.

    Each digit becomes its ASCII byte ("0" + its low four bits) and everything else a space,
    so ``bytes.split`` finds the runs and ``int`` reads them as it would the text.
    """
    digits = flags & _DIGIT  # 8 at a digit, else 0
    if not digits.any():
        return _no_numbers()
    codes = (points & 0xF).astype(np.uint8)
    codes += 0x10
    codes *= digits >> 3
    codes += ord(" ")  # a digit: 0x30 + its value; anything else: a space
    runs = codes.tobytes().split()
    return np.array(sorted({int(run) & 0xFFFFFFFF for run in runs}), dtype=np.uint32)


def _no_numbers() -> U32:
    return np.empty(0, dtype=np.uint32)


_SAMPLE_BITS: Final = np.uint64((SAMPLE_EVERY - 1) << 32)
