"""Polling hints in response headers: how long to wait (Retry-After), how long a feed stays fresh.

Dates a server sends are counted from its own ``Date`` header when it sent one, so a skewed local
clock does not stretch or shrink the wait. What this module does not do: decide when to check next
(the polling policy does, with these numbers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (RFC 9110: IMF-fixdate, RFC 850 or asctime) as aware UTC; None if invalid."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _server_now(headers: Mapping[str, str], now: datetime) -> datetime:
    """The server's clock (its Date header) when it sent one: dates it sends are on that clock."""
    return http_date(headers.get("date")) or now


def retry_after_s(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """Seconds the ``Retry-After`` header asks to wait (delay-seconds or HTTP-date), if any."""
    value = (headers.get("retry-after") or "").strip()
    if value.isdigit():
        return float(value)
    when = http_date(value)
    if when is None:
        return None
    return max(0.0, (when - _server_now(headers, now)).total_seconds())


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.I)
_NO_CACHE = re.compile(r"(?:^|,)\s*no-(?:cache|store)\b", re.I)


def max_age_s(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """Seconds the response stays fresh: ``Cache-Control: max-age`` less ``Age``, else ``Expires``.

    None when neither says (or ``no-cache``/``no-store`` forbid reuse).
    """
    control = headers.get("cache-control") or ""
    if _NO_CACHE.search(control):
        return None
    match = _MAX_AGE.search(control)
    if match:
        age = (headers.get("age") or "").strip()
        return max(0.0, float(match.group(1)) - (float(age) if age.isdigit() else 0.0))
    expires = http_date(headers.get("expires"))
    if expires is None:
        return None
    return max(0.0, (expires - _server_now(headers, now)).total_seconds())
