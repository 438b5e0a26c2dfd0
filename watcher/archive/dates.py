"""Dates as the dump files write them: read into aware datetimes and written back exactly.

Does not guess: a string that no style reads exactly is kept verbatim by the caller.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from watcher.models import DateStyle, PublishedConfidence

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RFC = re.compile(
    r"(?P<wd>[A-Z][a-z]{2}), (?P<d>\d{2}) (?P<mon>[A-Z][a-z]{2}) (?P<y>\d{4}) "
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2}) (?P<zone>GMT|[+-]\d{4})"
)
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_ISO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
INVALID = "Invalid Date"


def read_date(text: str) -> tuple[datetime | None, DateStyle, PublishedConfidence] | None:
    """Read a header date; None when no style reads it (the caller keeps the text)."""
    try:
        if text == INVALID:
            return None, "invalid", "missing"
        if _NAIVE.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC), "naive", "naive"
        if _ISO_MS.fullmatch(text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")), "iso_ms", "exact"
        if _ISO_OFFSET.fullmatch(text):
            return datetime.fromisoformat(text), "iso_offset", "exact"
        m = _RFC.fullmatch(text)
        if m:
            return _read_rfc(m)
    except ValueError:
        return None
    return None


def _read_rfc(m: re.Match[str]) -> tuple[datetime, DateStyle, PublishedConfidence] | None:
    if m["mon"] not in _MONTHS:
        return None
    zone = m["zone"]
    if zone == "GMT":
        tz: timezone = UTC
    else:
        minutes = int(zone[1:3]) * 60 + int(zone[3:5])
        tz = timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes))
    value = datetime(
        int(m["y"]), _MONTHS.index(m["mon"]) + 1, int(m["d"]),
        int(m["h"]), int(m["mi"]), int(m["s"]), tzinfo=tz,
    )  # fmt: skip
    return value, ("rfc1123" if zone == "GMT" else "rfc822"), "exact"


def write_date(value: datetime | None, style: DateStyle) -> str:
    """Write a date in one of the dump styles (``Invalid Date`` when there is none)."""
    if value is None or style == "invalid":
        return INVALID
    if style == "rfc1123":
        return _write_rfc(value.astimezone(UTC), "GMT")
    if style == "rfc822":
        return _write_rfc(value, _offset(value, colon=False))
    if style == "naive":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if style == "iso_ms":
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if style == "iso_offset":
        return value.strftime("%Y-%m-%dT%H:%M:%S") + _offset(value, colon=True)
    raise ValueError(f"date style {style!r} has no header form")


def _write_rfc(value: datetime, zone: str) -> str:
    day, month = _DAYS[value.weekday()], _MONTHS[value.month - 1]
    return f"{day}, {value.day:02d} {month} {value.year:04d} {value:%H:%M:%S} {zone}"


def _offset(value: datetime, *, colon: bool) -> str:
    delta = value.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}" if colon else f"{sign}{hours:02d}{mins:02d}"


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch, as the ``<!--epoch-->`` line writes them."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of an ``<!--epoch-->`` value."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
