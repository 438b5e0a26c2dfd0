"""Decisions: which story a new article joins, from the members it is compared with.

    similarity = score(sig, member.signature)   Jaccard, else containment; numbers may veto
    decision   = decide(sig, at, candidates)    the best within the window, else a new story
    decision   = decide_among(sig, at, families)  the same, copies scored once per family

``decide`` scores every candidate in one numpy pass (``similarities``) and checks the
numbers, the costly part, only down the ranking until a candidate passes.

Does not: find candidates (``index``, ``book``), hold articles, or read the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from watcher.dedupe.signature import (
    NUM_PERM,
    Signature,
    containment,
    containments,
    jaccard,
    number_agreement,
)
from watcher.settings import DedupSettings


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
    if similarity is None or is_vetoed(a, b, settings):
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
    depend on the order candidates come in. The same rule as ``score`` on each candidate,
    computed for all of them at once (``similarities``); the numbers are checked last, in
    rank order, until one candidate passes: a veto only removes candidates, so the first
    that passes is the best of those ``score`` keeps.
    """
    return decide_among(signature, published_at, [(m.signature, [m]) for m in candidates], settings)


def decide_among(
    signature: Signature,
    published_at: datetime | None,
    families: Iterable[tuple[Signature, Sequence[Member]]],
    settings: DedupSettings,
) -> Decision:
    """``decide`` over families of copies (members sharing one signature), each scored once."""
    if published_at is None:  # nothing is within the window of an unknown time
        return Decision(None)
    kept: list[tuple[Signature, list[Member]]] = []
    window = settings.window
    for family, members in families:  # is_within, inlined: ~70 members an article
        within = [
            m for m in members if m.published_at is not None
            and abs(published_at - m.published_at) <= window
        ]  # fmt: skip
        if within:
            kept.append((family, within))
    found = similarities(signature, [family for family, _ in kept], settings)
    passing = [
        (similarity, member, i)
        for i, ((_, members), similarity) in enumerate(zip(kept, found, strict=True))
        if similarity is not None
        for member in members
    ]
    vetoed: dict[int, bool] = {}
    # sorted() is stable: candidates of equal rank stay in the order they came, as before
    for similarity, member, i in sorted(passing, key=_rank):
        if i not in vetoed:
            vetoed[i] = is_vetoed(signature, kept[i][0], settings)
        if not vetoed[i]:
            return Decision(member.story_id, member.article_id, similarity)
    return Decision(None)


def _rank(passing: tuple[float, Member, int]) -> tuple[float, datetime | None, str]:
    """Best first: the higher similarity, then the earlier published, then the smaller id."""
    similarity, member, _ = passing
    return -similarity, member.published_at, member.article_id


def similarities(
    signature: Signature, others: Sequence[Signature], settings: DedupSettings
) -> list[float | None]:
    """``score`` before the numbers' veto, for each of ``others``: one numpy pass for all.

    Jaccard from one comparison of the stacked digests; containment only where Jaccard is
    below ``threshold`` and both texts are long enough.
    """
    if not others:
        return []
    shared = np.count_nonzero(np.stack([o.values for o in others]) == signature.values, axis=1)
    sizes = [o.size for o in others]
    jaccards = [
        0.0 if signature.is_empty or size == 0 else count / NUM_PERM
        for count, size in zip(shared.tolist(), sizes, strict=True)
    ]
    found: list[float | None] = [j if j >= settings.threshold else None for j in jaccards]
    wanted = [
        i
        for i, (j, size) in enumerate(zip(jaccards, sizes, strict=True))
        if j < settings.threshold and min(signature.size, size) >= settings.containment_min_shingles
    ]
    measured = containments(signature, [others[i] for i in wanted], [jaccards[i] for i in wanted])
    for i, c in zip(wanted, measured, strict=True):
        if c >= settings.containment:
            found[i] = c
    return found


def is_vetoed(a: Signature, b: Signature, settings: DedupSettings) -> bool:
    """True when both carry ``number_check_min`` numbers and too few of them agree."""
    return (
        min(a.numbers.size, b.numbers.size) >= settings.number_check_min
        and number_agreement(a, b) < settings.number_agreement
    )
