"""When to check a source next, and what its state becomes after a pass: pure decisions.

    after a 200:   max(interval + jitter, feed ttl, Cache-Control max-age / Expires),
                   then out of skipHours / skipDays
    after a 304:   the same, with no feed at hand (its last ttl is not kept)
    after a failure: interval * 2^(failures-1) capped, + jitter, at least Retry-After;
                   paused after ``pause_after`` failures in a row

Does no I/O and reads no clock: ``now`` and the random source are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.models import FetchResult, ParsedFeed, SourceState

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class PollPolicy:
    """How politely one source is polled (its interval; back-off and pause from settings)."""

    interval: timedelta
    jitter: float = 0.1  # up to this fraction of the interval is added at random
    backoff_cap: timedelta = timedelta(hours=6)
    pause_after: int = 20  # failures in a row; 0 never pauses


def next_check_after_success(
    policy: PollPolicy,
    now: datetime,
    rng: random.Random,
    *,
    result: FetchResult | None = None,
    feed: ParsedFeed | None = None,
) -> datetime:
    """The next check after a good pass: the interval, pushed later by every hint the feed gave."""
    delay = policy.interval + _jitter(policy, rng)
    if feed is not None and feed.ttl_minutes:
        delay = max(delay, timedelta(minutes=feed.ttl_minutes))
    if result is not None:
        for hint in (result.max_age_s, result.retry_after_s):
            if hint:
                delay = max(delay, timedelta(seconds=hint))
    when = now + delay
    if feed is not None:
        when = skip_hours_and_days(when, feed.skip_hours, feed.skip_days)
    return when


def next_check_after_failure(
    policy: PollPolicy,
    failures: int,
    now: datetime,
    rng: random.Random,
    *,
    retry_after_s: float | None = None,
) -> datetime:
    """The next check after ``failures`` failures in a row: exponential back-off with a cap."""
    factor = 1 << min(max(failures - 1, 0), 20)
    delay = min(policy.interval * factor, max(policy.backoff_cap, policy.interval))
    delay += _jitter(policy, rng)
    if retry_after_s:
        delay = max(delay, timedelta(seconds=retry_after_s))
    return now + delay


def skip_hours_and_days(when: datetime, hours: list[int], days: list[str]) -> datetime:
    """The first whole hour from ``when`` on that is in neither skipHours nor skipDays (UTC)."""
    skipped_hours, skipped_days = set(hours), set(days)
    if len(skipped_hours) >= 24 or len(skipped_days) >= 7:
        return when  # a feed that skips everything would never be checked: ignore the hint
    for _ in range(24 * 7):
        if when.hour not in skipped_hours and DAY_NAMES[when.weekday()] not in skipped_days:
            return when
        when = when.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return when


def _jitter(policy: PollPolicy, rng: random.Random) -> timedelta:
    return policy.interval * (policy.jitter * rng.random())


def state_after_success(
    state: SourceState,
    result: FetchResult,
    next_check_at: datetime,
    *,
    body_hash: str | None,
    configured_url: str | None = None,
) -> SourceState:
    """The state after a 200 or 304: errors cleared, validators and permanent URL kept."""
    moved = result.permanent_redirect is not None
    return state.model_copy(
        update={
            "url": result.permanent_redirect or state.url,
            "redirected_from": configured_url if moved else state.redirected_from,
            "etag": result.etag or (state.etag if result.not_modified else None),
            "last_modified": result.last_modified
            or (state.last_modified if result.not_modified else None),
            "last_checked_at": result.fetched_at,
            "last_success_at": result.fetched_at,
            "last_status": result.status,
            "next_check_at": next_check_at,
            "last_error": None,
            "consecutive_failures": 0,
            "body_hash": body_hash if body_hash is not None else state.body_hash,
        }
    )


def state_after_failure(
    state: SourceState,
    policy: PollPolicy,
    error: str,
    now: datetime,
    rng: random.Random,
    *,
    status: int | None = None,
    retry_after_s: float | None = None,
) -> SourceState:
    """The state after a failed pass: the error kept, the failure counted, back-off applied."""
    failures = state.consecutive_failures + 1
    return state.model_copy(
        update={
            "last_checked_at": now,
            "last_status": status,
            "last_error": error,
            "consecutive_failures": failures,
            "paused": state.paused or (0 < policy.pause_after <= failures),
            "next_check_at": next_check_after_failure(
                policy, failures, now, rng, retry_after_s=retry_after_s
            ),
        }
    )


def is_due(state: SourceState | None, now: datetime) -> bool:
    """Whether a source should be checked now (never while paused)."""
    if state is None:
        return True
    if state.paused:
        return False
    return state.next_check_at is None or state.next_check_at <= now
