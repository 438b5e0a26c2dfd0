"""Polling decisions: next check times, back-off, pause, and the state after each pass."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from watcher.models import FetchResult, ParsedFeed, SourceState
from watcher.polling import (
    PollPolicy,
    is_due,
    next_check_after_failure,
    next_check_after_success,
    skip_hours_and_days,
    state_after_failure,
    state_after_success,
)

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)  # a Monday
POLICY = PollPolicy(interval=timedelta(minutes=10), jitter=0.0)


class _Max(random.Random):
    """A random source that always draws its largest value."""

    def random(self) -> float:
        return 1.0


def _result(**fields: object) -> FetchResult:
    base = {"source": "s", "url": "http://x", "final_url": "http://x", "status": 200}
    return FetchResult.model_validate({**base, "fetched_at": NOW, **fields})


def _feed(**fields: object) -> ParsedFeed:
    return ParsedFeed.model_validate({"base_url": "http://x", **fields})


def test_interval_with_jitter() -> None:
    """The next check is the interval plus at most the jitter fraction of it."""
    policy = PollPolicy(interval=timedelta(minutes=10), jitter=0.1)
    assert NOW + timedelta(minutes=11) == next_check_after_success(policy, NOW, _Max())
    assert NOW + timedelta(minutes=10) == next_check_after_success(POLICY, NOW, _Max())


def test_ttl_pushes_later() -> None:
    """An RSS ttl longer than the interval pushes the next check later."""
    feed = _feed(ttl_minutes=60)
    assert NOW + timedelta(hours=1) == next_check_after_success(POLICY, NOW, _Max(), feed=feed)


def test_short_ttl_does_not_pull_earlier() -> None:
    """A ttl shorter than the interval changes nothing."""
    feed = _feed(ttl_minutes=1)
    assert NOW + timedelta(minutes=10) == next_check_after_success(POLICY, NOW, _Max(), feed=feed)


def test_max_age_and_retry_after_push_later() -> None:
    """Cache-Control max-age (or Expires) and Retry-After push the next check later."""
    result = _result(max_age_s=1800.0)
    assert NOW + timedelta(minutes=30) == next_check_after_success(
        POLICY, NOW, _Max(), result=result
    )
    result = _result(retry_after_s=3600.0)
    assert NOW + timedelta(hours=1) == next_check_after_success(POLICY, NOW, _Max(), result=result)


def test_skip_hours_move_to_next_allowed_hour() -> None:
    """A check that falls in skipHours moves to the start of the next allowed hour."""
    when = datetime(2026, 11, 23, 10, 40, tzinfo=UTC)
    assert datetime(2026, 11, 23, 13, 0, tzinfo=UTC) == skip_hours_and_days(when, [10, 11, 12], [])


def test_skip_days_move_to_next_allowed_day() -> None:
    """A check on a skipped day moves to midnight of the next allowed day."""
    saturday = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    assert datetime(2026, 11, 30, 0, 0, tzinfo=UTC) == skip_hours_and_days(
        saturday, [], ["Saturday", "Sunday"]
    )


def test_skipping_everything_is_ignored() -> None:
    """A feed that skips all 24 hours is still checked (the hint is ignored)."""
    assert NOW == skip_hours_and_days(NOW, list(range(24)), [])


def test_backoff_doubles_and_caps() -> None:
    """Each failure in a row doubles the delay, up to the cap."""
    policy = PollPolicy(interval=timedelta(minutes=10), jitter=0.0, backoff_cap=timedelta(hours=1))
    delays = [next_check_after_failure(policy, n, NOW, _Max()) - NOW for n in range(1, 6)]
    minutes = [int(d.total_seconds() // 60) for d in delays]
    assert [10, 20, 40, 60, 60] == minutes


def test_backoff_respects_retry_after() -> None:
    """Retry-After longer than the back-off wins."""
    when = next_check_after_failure(POLICY, 1, NOW, _Max(), retry_after_s=7200)
    assert NOW + timedelta(hours=2) == when


def test_failure_state_counts_and_pauses() -> None:
    """Failures are counted with the last error; the source pauses after pause_after of them."""
    policy = PollPolicy(interval=timedelta(minutes=10), jitter=0.0, pause_after=3)
    state = SourceState(name="s")
    for _ in range(3):
        state = state_after_failure(state, policy, "HTTP 500", NOW, _Max(), status=500)
    assert (3, "HTTP 500", 500, True) == (
        state.consecutive_failures,
        state.last_error,
        state.last_status,
        state.paused,
    )
    assert False is is_due(state, NOW + timedelta(days=30))


def test_success_resets_errors_and_keeps_validators() -> None:
    """A 200 clears the error record and stores the new ETag and Last-Modified."""
    failing = SourceState(name="s", last_error="boom", consecutive_failures=4, etag="old")
    result = _result(etag='"v2"', last_modified="Mon, 23 Nov 2026 10:00:00 GMT")
    state = state_after_success(failing, result, NOW + timedelta(minutes=10), body_hash="h")
    assert (None, 0, '"v2"', "Mon, 23 Nov 2026 10:00:00 GMT", "h", NOW) == (
        state.last_error,
        state.consecutive_failures,
        state.etag,
        state.last_modified,
        state.body_hash,
        state.last_success_at,
    )


def test_not_modified_keeps_validators() -> None:
    """A 304 without validators keeps the stored ones (and the body hash)."""
    before = SourceState(name="s", etag='"v1"', last_modified="x", body_hash="h")
    result = _result(status=304, not_modified=True)
    state = state_after_success(before, result, NOW, body_hash=None)
    assert ('"v1"', "x", "h", 304) == (
        state.etag,
        state.last_modified,
        state.body_hash,
        state.last_status,
    )


def test_permanent_redirect_updates_url() -> None:
    """A permanent redirect replaces the stored URL."""
    result = _result(permanent_redirect="http://new/feed.xml")
    state = state_after_success(SourceState(name="s", url="http://old"), result, NOW, body_hash="h")
    assert "http://new/feed.xml" == state.url


def test_is_due() -> None:
    """A source is due with no state, or once its next check time has come."""
    later = SourceState(name="s", next_check_at=NOW + timedelta(minutes=1))
    assert (True, False, True) == (
        is_due(None, NOW),
        is_due(later, NOW),
        is_due(later, NOW + timedelta(minutes=1)),
    )
