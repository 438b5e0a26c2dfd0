"""Alerts: a Match becomes an Alert per channel; a Notifier sends it by email or webhook.

    alert = new_alert(match, view, "ops-mail", now=now)   # pure; key = story x rule x channel
    notifier = open_notifier(channel_settings)            # SmtpNotifier | WebhookNotifier
    await notifier.send(alert)                            # one message, or DeliveryError(channel)
    await notifier.send_digest(alerts)                    # several alerts in one message
    await notifier.aclose()

Every message carries the alert's idempotency key (``idempotency_key``): webhooks in an
``Idempotency-Key`` header (and the generic payload's ``idempotency_key``), emails in an
``X-Watcher-Idempotency-Key`` header and a Message-ID derived from it. A digest's key is
derived from the keys of the alerts it holds (``digest_key``).

A Notifier raises ``DeliveryError(channel)`` with the exact failure (connection refused,
authentication failed, the receiver's 4xx body, a timeout) and never a foreign exception;
no password, secret or token of the channel appears in its messages.

Does not: keep an outbox, retry, wait out quiet hours or count a rate limit (the outbox does,
with ``quiet_until``); decide whether a story matches (``watcher.rules``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from watcher.alerts.render import excerpt, squeeze
from watcher.models import Alert, Match, StoryView
from watcher.settings import ChannelSettings, EmailChannelSettings

__all__ = [
    "Notifier",
    "digest_key",
    "idempotency_key",
    "new_alert",
    "open_notifier",
    "quiet_until",
]

EXCERPT_WIDTH = 240


class Notifier(Protocol):
    """Sends alerts on one channel; the technology behind it is the implementation's business."""

    @property
    def channel(self) -> str:
        """The channel's configured name (``DeliveryError.channel``)."""
        ...

    async def send(self, alert: Alert) -> None:
        """Deliver one alert as one message, or raise DeliveryError naming the channel."""
        ...

    async def send_digest(self, alerts: Sequence[Alert]) -> None:
        """Deliver several alerts as one message, or raise DeliveryError naming the channel."""
        ...

    async def aclose(self) -> None:
        """Release connections; the notifier is not used again."""
        ...


def idempotency_key(story_id: str, rule: str, channel: str) -> str:
    """The key of story x rule x channel: 32 hex digits of SHA-256, stable across runs."""
    joined = "\x1f".join((story_id, rule, channel)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]


def digest_key(alerts: Sequence[Alert]) -> str:
    """The key of a message holding ``alerts``: one alert's own key, else a hash of all keys."""
    if len(alerts) == 1:
        return alerts[0].key
    joined = "\x1f".join(sorted(a.key for a in alerts)).encode()
    return "d" + hashlib.sha256(joined).hexdigest()[:31]


def new_alert(match: Match, view: StoryView, channel: str, *, now: datetime) -> Alert:
    """The alert that ``match`` owes ``channel``: title and excerpt with their highlights."""
    title_spans = [(h.start, h.end) for h in match.highlights if h.field == "title"]
    text_spans = [(h.start, h.end) for h in match.highlights if h.field == "text"]
    title, title_highlights = squeeze(view.title, title_spans)
    text, text_highlights = excerpt(view.text, text_spans, EXCERPT_WIDTH)
    return Alert(
        key=idempotency_key(match.story_id, match.rule, channel),
        channel=channel,
        rule=match.rule,
        story_id=match.story_id,
        article_id=match.article_id,
        terms=match.terms,
        title=title,
        title_highlights=title_highlights,
        excerpt=text,
        excerpt_highlights=text_highlights,
        link=view.link,
        outlets=tuple(dict.fromkeys(view.outlets)),
        published_at=view.published_at,
        created_at=now,
    )


def quiet_until(channel: ChannelSettings, now: datetime) -> datetime | None:
    """When the channel's quiet hours end (UTC), if ``now`` falls inside them; else None."""
    span = channel.quiet_span
    if span is None:
        return None
    start, end = span
    local = now.astimezone(channel.zone)
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=channel.zone).astimezone(UTC)


def open_notifier(channel: ChannelSettings) -> Notifier:
    """The Notifier for a configured channel: SMTP for email, HTTP POST for webhooks."""
    if isinstance(channel, EmailChannelSettings):
        from watcher.alerts.email import SmtpNotifier

        return SmtpNotifier(channel)
    from watcher.alerts.webhook import WebhookNotifier

    return WebhookNotifier(channel)
