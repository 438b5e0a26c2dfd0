"""Webhook requests per preset: the URL, headers and body to POST for some alerts; pure.

    request = webhook_request(alerts, settings, now=now)   # WebhookRequest(url, headers, body)

| preset   | body                                          | signing (``secret``)         |
|----------|-----------------------------------------------|------------------------------|
| generic  | JSON ``idempotency_key``, ``channel``, alerts | ``X-Watcher-Signature``      |
| slack    | JSON ``text`` + mrkdwn ``blocks``              | none: the URL is the secret  |
| discord  | JSON ``content`` + ``embeds``, no mentions     | none: the URL is the secret  |
| feishu   | JSON ``msg_type = "post"`` (Lark too)          | ``timestamp``, ``sign`` body |
| dingtalk | JSON ``msgtype = "markdown"``                  | ``timestamp``, ``sign`` URL  |
| wecom    | JSON ``msgtype = "markdown"``                  | none: the URL's key          |
| telegram | JSON ``sendMessage``: ``chat_id``, HTML text   | none: the URL's bot token    |
| ntfy     | plain text; ``Title``, ``Tags``, ``Click``     | none: a token in ``headers`` |

Signatures:

- generic: ``X-Watcher-Timestamp: <unix seconds>`` and ``X-Watcher-Signature: sha256=<hex>``,
  the HMAC-SHA256 with the secret as key over ``<timestamp>.<body bytes>``, so neither the body
  nor the time can be changed or replayed later; a receiver recomputes it and compares in
  constant time, and rejects timestamps more than a few minutes old.
- feishu (open.feishu.cn / open.larksuite.com custom bots): ``sign`` = base64 of the
  HMAC-SHA256 keyed with ``"<timestamp>\\n<secret>"`` over an empty message; timestamp in seconds.
- dingtalk: ``sign`` = URL-encoded base64 of the HMAC-SHA256 keyed with the secret over
  ``"<timestamp>\\n<secret>"``; timestamp in milliseconds; both appended to the URL's query.

Every request carries ``Idempotency-Key`` (the alert's key, or the digest's) and the channel's
own ``headers``, which never override the ones above. The chat presets' bodies (escaping, limits)
are built in ``presets.py``; the generic payload here.

Does not: send anything (``webhook.py`` does), read the clock (``now`` is passed), or check
answers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from watcher import __version__
from watcher.alerts import digest_key
from watcher.alerts.presets import JSON_HEADERS, PRESET_PAYLOADS, Built, json_body
from watcher.alerts.render import safe_link
from watcher.models import Alert
from watcher.settings import WebhookChannelSettings

USER_AGENT = f"watcher/{__version__} (alerts)"


@dataclass(frozen=True)
class WebhookRequest:
    """One POST: where, with which headers, and the exact body bytes (signed as they are)."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings that must never appear in an error or a log (secret, tokens of the URL)."""


def webhook_request(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, *, now: datetime
) -> WebhookRequest:
    """The POST that delivers ``alerts`` (one, or a digest) on the channel ``settings``."""
    if not alerts:
        raise ValueError("webhook_request needs at least one alert")
    builder = _BUILDERS[settings.preset]
    url, headers, body = builder(alerts, settings, now)
    key = digest_key(alerts)
    fixed = {"User-Agent": USER_AGENT, **settings.headers, **headers, "Idempotency-Key": key}
    return WebhookRequest(url, fixed, body, _secrets(settings))


def _secrets(settings: WebhookChannelSettings) -> tuple[str, ...]:
    """The secret, header values, and the URL's password, query values and token-like parts."""
    found = [settings.secret.get_secret_value()] if settings.secret else []
    found += [v for v in settings.headers.values() if len(v) >= 8]
    url = urlsplit(settings.url)
    found.append(url.password or "")
    found += [v for _, v in parse_qsl(url.query) if len(v) >= 6]
    found += [p for p in url.path.split("/") if len(p) >= 20 or any(c.isdigit() for c in p)]
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


# --- signatures -----------------------------------------------------------------------------------


def generic_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` over ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- generic --------------------------------------------------------------------------------------


def generic_alert(alert: Alert) -> dict[str, Any]:
    """One alert in the generic payload (the shape receivers code against: keep it stable)."""
    return {
        "key": alert.key,
        "rule": alert.rule,
        "terms": list(alert.terms),
        "story_id": alert.story_id,
        "article_id": alert.article_id,
        "title": alert.title,
        "title_highlights": [list(s) for s in alert.title_highlights],
        "link": safe_link(alert.link),
        "outlets": list(alert.outlets),
        "published_at": alert.published_at.isoformat() if alert.published_at else None,
        "excerpt": alert.excerpt,
        "excerpt_highlights": [list(s) for s in alert.excerpt_highlights],
        "created_at": alert.created_at.isoformat(),
    }


def _generic(alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime) -> Built:
    payload = {
        "version": 1,
        "idempotency_key": digest_key(alerts),
        "channel": settings.name,
        "alerts": [generic_alert(a) for a in alerts],
    }
    body = json_body(payload)
    timestamp = int(now.timestamp())
    headers = {**JSON_HEADERS, "X-Watcher-Timestamp": str(timestamp)}
    if settings.secret is not None:
        secret = settings.secret.get_secret_value()
        headers["X-Watcher-Signature"] = generic_signature(secret, timestamp, body)
    return settings.url, headers, body


Builder = Callable[[Sequence[Alert], WebhookChannelSettings, datetime], Built]
_BUILDERS: dict[str, Builder] = {"generic": _generic, **PRESET_PAYLOADS}
