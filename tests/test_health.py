"""Silent sources: quiet for far longer than their own rhythm, never for too little history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.health import Silence, find_silence, is_silent

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def every(gap: timedelta, count: int, last: datetime) -> list[datetime]:
    """``count`` article times ``gap`` apart, the latest at ``last``."""
    return [last - gap * i for i in range(count)]


@pytest.mark.parametrize(
    ("case", "times", "expected"),
    [
        ("hourly, quiet 23 h: under the 24 h floor", every(H, 10, NOW - 23 * H), False),
        ("hourly, quiet 25 h: past the floor", every(H, 10, NOW - 25 * H), True),
        ("daily, quiet 2.5 d: under 3 x its gap", every(24 * H, 10, NOW - 60 * H), False),
        ("daily, quiet 3.5 d: past 3 x its gap", every(24 * H, 10, NOW - 84 * H), True),
        ("weekly, quiet 20 d: under 3 weeks", every(168 * H, 10, NOW - 480 * H), False),
        ("weekly, quiet 22 d", every(168 * H, 10, NOW - 528 * H), True),
        ("two items only: too little history", every(H, 2, NOW - 1000 * H), False),
        ("no items at all", [], False),
        ("a burst at one instant: floor applies", [NOW - 30 * H] * 5, True),
    ],
)
def test_is_silent(case: str, times: list[datetime], expected: bool) -> None:
    """Silent once quiet for longer than max(3 x the median gap, 24 h)."""
    assert expected == is_silent(times, NOW), case


def test_one_outlier_gap_does_not_move_the_rhythm() -> None:
    """The median ignores one long holiday gap: an hourly source stays hourly."""
    times = [*every(H, 10, NOW - 30 * H), NOW - 30 * H - 24 * 30 * H]
    found = find_silence(times, NOW)
    assert found is not None and H == found.usual_gap


def test_silence_reports_its_numbers() -> None:
    """find_silence gives the last article, how long since, the usual gap and the threshold."""
    times = every(24 * H, 5, NOW - 100 * H)
    expected = Silence(NOW - 100 * H, 100 * H, 24 * H, 72 * H)
    assert expected == find_silence(reversed(times), NOW)


def test_future_dates_count_as_now() -> None:
    """An item dated in the future (a wrong feed clock) counts as just now, not silent."""
    times = [*every(H, 5, NOW - 50 * H), NOW + 10 * H]
    assert None is find_silence(times, NOW)


def test_factor_floor_and_min_items_are_settings() -> None:
    """factor, floor and min_items change the judgement."""
    times = every(H, 3, NOW - 5 * H)
    actual = (
        is_silent(times, NOW, floor=4 * H),
        is_silent(times, NOW, floor=4 * H, factor=6),
        is_silent(times, NOW, floor=4 * H, min_items=4),
    )
    assert (True, False, False) == actual
