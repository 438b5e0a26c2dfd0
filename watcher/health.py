"""Is a source silent? A pure judgement from the times of its recent new articles.

    gaps      = the times between its recent new articles, in time order
    threshold = max(factor x median(gaps), floor)        3 x the usual gap, at least 24 h
    silent    = now - the latest new article > threshold

A source that posts every 20 minutes is silent after 24 hours with nothing new; one that posts
weekly, after three weeks. Too little history (fewer than ``min_items`` articles) says nothing:
a new or rarely posting source is never called silent.

Does not: read the store (the caller passes the times), look at fetch failures (a failing
source is "failing" first), or alert.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

SILENT_FACTOR = 3.0
SILENT_FLOOR = timedelta(hours=24)
MIN_ITEMS = 3
RECENT_ITEMS = 30  # how many of the latest article times a caller should pass


@dataclass(frozen=True)
class Silence:
    """A silent source's numbers: its latest article, how long since, its usual gap."""

    last_new_at: datetime
    quiet_for: timedelta
    usual_gap: timedelta
    threshold: timedelta


def find_silence(
    new_at: Iterable[datetime],
    now: datetime,
    *,
    factor: float = SILENT_FACTOR,
    floor: timedelta = SILENT_FLOOR,
    min_items: int = MIN_ITEMS,
) -> Silence | None:
    """The source's silence if it has been quiet past its threshold, else None.

    ``new_at``: when its recent new articles were published (or first seen), in any order,
    timezone-aware; the latest ``RECENT_ITEMS`` are enough. Times after ``now`` count as now.
    """
    times = sorted(min(t, now) for t in new_at)
    if len(times) < max(min_items, 2):
        return None
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    usual = timedelta(seconds=statistics.median(gaps))
    threshold = max(usual * factor, floor)
    quiet = now - times[-1]
    if quiet <= threshold:
        return None
    return Silence(last_new_at=times[-1], quiet_for=quiet, usual_gap=usual, threshold=threshold)


def is_silent(
    new_at: Iterable[datetime],
    now: datetime,
    *,
    factor: float = SILENT_FACTOR,
    floor: timedelta = SILENT_FLOOR,
    min_items: int = MIN_ITEMS,
) -> bool:
    """True when the source has brought nothing new for far longer than its usual rhythm."""
    found = find_silence(new_at, now, factor=factor, floor=floor, min_items=min_items)
    return found is not None
