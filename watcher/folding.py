"""Text folding for matching: NFKC, lower case, Traditional -> Simplified (OpenCC t2s); pure.

    fold(text)                      what rules compare: NFKC, lower case, Simplified
    fold_with_offsets(text)         the same, each folded character knowing its original offset
    nfkc(text)                      unicodedata's NFKC, normalizing only where the text needs it
    simplified_pair(title, text)    both converted by one OpenCC call
    fold_title_text(title, text)    both as ``fold`` gives them, with one OpenCC call
    lowered_by_character(text)      NFKC per character, then lower case, with offsets
    same_length(folded, converted)  a conversion that kept the length, else None

NFKC is the costly step on CJK text (~130 us per 2,000 characters); most feed text is NFKC
already, and the rest is mostly the common full-width punctuation, replaced directly. Does not
compile or match rules (rules.py does), nor build the matching text of dedupe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import cache

import opencc

# Characters NFKC keeps and never joins to what precedes them (NFKC_Quick_Check=Yes, ccc=0): a
# text may be normalized in pieces cut just before any of them (UAX #15, stable code points).
# Chosen blocks, checked against unicodedata by tests/test_rules.py; others are looked at.
_STABLE = (
    r"\u0000-\u007f\u00a1-\u00a7\u00a9\u00ab-\u00ae\u00b0-\u00b1\u00b6-\u00b7\u00bb\u00bf-\u00ff"
    r"\u2010\u2012-\u2016\u2018-\u2023\u2027-\u202e\u2030-\u2032\u2500-\u25ff\u3001-\u3029"
    r"\u3041-\u3096\u30a1-\u30fa\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
)
# ... of which these never combine with what follows either (no letters, no < = >): where a
# character's NFKD is made of these alone (，-> , …-> ...), NFKC replaces it, whatever is around.
_INERT = re.compile(
    r"[\u0000-\u003b\u003f-\u0040\u005b-\u0060\u007b-\u007f\u2010\u2012-\u2016\u2018-\u2023"
    r"\u2027-\u202e\u2030-\u2032\u2500-\u25ff\u3001-\u3029\u3400-\u4dbf\u4e00-\u9fff]*"
)
# The full-width punctuation of Chinese text (all inert in NFKD), replaced before looking further.
_PUNCTUATION = tuple((c, unicodedata.normalize("NFKD", c)) for c in "，（）：？；！…\u3000")
_UNSTABLE = re.compile(f"[^{_STABLE}]")
_UNSTABLE_RUN = re.compile(f"[^{_STABLE}]+")
_SIGMA = "\u03a3"  # the one character whose lower case depends on its neighbours


# --- folding --------------------------------------------------------------------------------------


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """OpenCC t2s: Traditional characters and phrases to Simplified."""
    if text.isascii():  # no t2s entry holds an ASCII character
        return text
    return str(_converter().convert(text))


def fold(text: str) -> str:
    """``text`` as rules compare it: NFKC, lower case, Simplified."""
    return to_simplified(nfkc(text).lower())


def fold_with_offsets(text: str) -> tuple[str, list[int]] | None:
    """``fold(text)`` built so that each folded character knows its original offset.

    Returns (folded, owners) with ``owners[i]`` the index in ``text`` of folded character
    ``i``; None in the rare text whose Simplified form changes length (no highlights then).
    """
    lowered, owners = lowered_by_character(text)
    simplified = same_length(lowered, to_simplified(lowered))
    if simplified is None:
        return None
    return simplified, list(range(len(text))) if owners is None else owners


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, normalizing only where the text needs it."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    text = _without_punctuation(text)
    replaced_all = True
    for char in _unstable_characters(text):
        replacement = _inert_nfkd(char)
        if replacement is None:
            replaced_all = False
        else:
            text = text.replace(char, replacement)
    return text if replaced_all else _nfkc_in_pieces(text)


def _without_punctuation(text: str) -> str:
    """``text`` with the common full-width punctuation normalized (exactly as NFKC would)."""
    for char, replacement in _PUNCTUATION:
        text = text.replace(char, replacement)
    return text


@cache
def _inert_nfkd(char: str) -> str | None:
    """The NFKD of ``char`` when it is made of inert characters only, else None."""
    decomposed = unicodedata.normalize("NFKD", char)
    return decomposed if _INERT.fullmatch(decomposed) else None


def _nfkc_in_pieces(text: str) -> str:
    """NFKC of each run of unstable characters with the stable one before it; the rest kept."""
    pieces: list[str] = []
    done = 0
    for run in _UNSTABLE_RUN.finditer(text):
        start = max(run.start() - 1, 0)
        pieces += (text[done:start], unicodedata.normalize("NFKC", text[start : run.end()]))
        done = run.end()
    pieces.append(text[done:])
    return "".join(pieces)


def _unstable_characters(text: str) -> set[str]:
    """The characters of ``text`` outside the stable blocks (none when it is NFKC already)."""
    return set() if unicodedata.is_normalized("NFKC", text) else set(_UNSTABLE.findall(text))


@cache
def _nfkc_of(char: str) -> str:
    return unicodedata.normalize("NFKC", char)


def lowered_by_character(text: str) -> tuple[str, list[int] | None]:
    """Each character NFKC-normalized, then lower-cased; owners as in fold_with_offsets.

    Owners are None where folded and original characters pair one for one. Only the
    characters NFKC changes are replaced; lower case is taken character by character
    (the whole text's only when the text is NFKC already and keeps its length).
    """
    if unicodedata.is_normalized("NFKC", text):
        lowered = text.lower()
        return (lowered, None) if len(lowered) == len(text) else _lowered_one_by_one(text)
    normalized = _without_punctuation(text)
    widened = [c for c, nfkc in _PUNCTUATION if len(nfkc) != 1 and c in text]
    for char in _unstable_characters(normalized):
        if (nfkc := _nfkc_of(char)) != char:
            normalized = normalized.replace(char, nfkc)
            if len(nfkc) != 1:
                widened.append(char)
    lowered = normalized.lower()
    if _SIGMA in normalized or len(lowered) != len(normalized):
        return _lowered_one_by_one(text)
    return lowered, _widened_owners(text, widened) if widened else None


def _widened_owners(text: str, widened: Sequence[str]) -> list[int]:
    """Owners when the ``widened`` characters normalize to several (``…`` -> ``...``)."""
    owners: list[int] = []
    done = 0
    for hit in re.finditer("|".join(map(re.escape, sorted(widened))), text):
        owners += range(done, hit.start())
        owners += [hit.start()] * len(_nfkc_of(hit.group()))
        done = hit.end()
    owners += range(done, len(text))
    return owners


def _lowered_one_by_one(text: str) -> tuple[str, list[int]]:
    pieces = [unicodedata.normalize("NFKC", c).lower() for c in text]
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


def same_length(folded: str, simplified: str) -> str | None:
    """``simplified`` (``folded`` converted), else converted character by character, else None."""
    if len(simplified) != len(folded):
        simplified = "".join(to_simplified(c) for c in folded)
        if len(simplified) != len(folded):
            return None
    return simplified


def fold_title_text(title: str, text: str) -> tuple[str, str]:
    """``(fold(title), fold(text))``: what every rule compares a title and a text with."""
    return simplified_pair(nfkc(title).lower(), nfkc(text).lower())


def simplified_pair(title: str, text: str) -> tuple[str, str]:
    """Both converted by one OpenCC call: t2s maps no phrase across a newline."""
    if "\n" in title:
        return to_simplified(title), to_simplified(text)
    head, _, tail = to_simplified(f"{title}\n{text}").partition("\n")
    return head, tail
