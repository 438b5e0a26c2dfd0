"""The chat-app presets of webhooks: Slack, Discord, Feishu/Lark, DingTalk, WeCom, Telegram, ntfy.

Each ``*_payload(alerts, settings, now)`` returns ``(url, headers, body)`` for one message
holding one alert or a digest (at most MAX_CHAT_ALERTS shown, the rest counted), cut to the
service's limits. Feed text is escaped for each markup: Slack mrkdwn (``&<>``), Discord Markdown
(backslashes; mentions disabled by ``allowed_mentions``), DingTalk and WeCom Markdown (markup
characters as full-width lookalikes, since their renderers may not honour backslashes), Telegram
HTML (entities), Feishu rich text (plain text segments, no markup at all). Links are only the
``safe_link`` of an alert's link (http(s), percent-encoded).

Does not: add the headers every request carries, sign generic payloads or pick a preset
(``payloads.py``), or send anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_lib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from email.header import Header
from typing import Any
from urllib.parse import quote_plus

from watcher.alerts import digest_key
from watcher.alerts.render import (
    PRODUCT,
    local_time,
    marked,
    outlets_line,
    plain_text,
    safe_link,
    shorten,
    subject,
    terms_line,
)
from watcher.models import Alert
from watcher.settings import WebhookChannelSettings

MAX_CHAT_ALERTS = 10  # alerts shown in one chat message; the rest are counted
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]<>])")  # what can open markup inside a line
_LOOKALIKES = str.maketrans("\\`*_~[]<>", "＼｀＊＿～［］＜＞")


Built = tuple[str, dict[str, str], bytes]
"""What a preset returns: the URL to POST to, its own headers, the body."""
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the bytes that are sent (and signed)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --- signatures -----------------------------------------------------------------------------------


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu/Lark: base64(HMAC-SHA256(key="<timestamp>\\n<secret>", message=b""))."""
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: base64(HMAC-SHA256(key=secret, message="<timestamp_ms>\\n<secret>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


# --- escaping for each markup ---------------------------------------------------------------------


def escape_markdown(text: str) -> str:
    """Backslash before each character that can open Markdown markup in a line (Discord)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def neutralize_markdown(text: str) -> str:
    """The same characters as full-width lookalikes, for renderers that may not honour
    backslash escapes (DingTalk, WeCom): shown as written, never taken as markup."""
    return text.translate(_LOOKALIKES)


def escape_mrkdwn(text: str) -> str:
    """Slack's mrkdwn escapes: only &, < and > (control characters of its link syntax)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_html(text: str) -> str:
    return html_lib.escape(text, quote=True)


def _md_link(url: str | None) -> str | None:
    """A safe link for Markdown's ``(url)``: parentheses encoded too."""
    link = safe_link(url)
    return None if link is None else link.replace("(", "%28").replace(")", "%29")


def _shown(alerts: Sequence[Alert]) -> tuple[Sequence[Alert], int]:
    """The alerts one chat message shows, and how many more it only counts."""
    return alerts[:MAX_CHAT_ALERTS], max(0, len(alerts) - MAX_CHAT_ALERTS)


# --- slack ----------------------------------------------------------------------------------------


def slack_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """Slack incoming webhook: ``text`` (the notification) and mrkdwn ``blocks``."""
    shown, more = _shown(alerts)
    blocks: list[dict[str, Any]] = []
    for alert in shown:
        blocks.append(_mrkdwn_section(_slack_head(alert, settings.zone)))
        if alert.excerpt:
            text = marked(alert.excerpt, alert.excerpt_highlights, escape_mrkdwn, "*", "*")
            blocks.append({"type": "context", "elements": [_mrkdwn(shorten(text, 2900))]})
    if more:
        blocks.append(_mrkdwn_section(f"… and {more} more alerts"))
    payload = {"text": escape_mrkdwn(subject(alerts)), "blocks": blocks}
    return settings.url, dict(JSON_HEADERS), json_body(payload)


def _slack_head(alert: Alert, zone: tzinfo) -> str:
    title = marked(alert.title, alert.title_highlights, escape_mrkdwn, "", "")
    link = safe_link(alert.link)
    head = f"*<{link}|{title}>*" if link else f"*{title}*"
    terms = ", ".join(f"*{escape_mrkdwn(t)}*" for t in alert.terms)
    meta = f"{escape_mrkdwn(outlets_line(alert))} · {local_time(alert.published_at, zone)}"
    return shorten(f"{head}\nRule `{escape_mrkdwn(alert.rule)}` matched {terms}\n{meta}", 2900)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


# --- discord --------------------------------------------------------------------------------------


def discord_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """Discord webhook: ``content`` and one embed per alert; mentions disabled."""
    shown, more = _shown(alerts)
    content = escape_markdown(subject(alerts))
    if more:
        content += f" (showing {len(shown)}, {more} more)"
    payload = {
        "content": shorten(content, 2000),
        "embeds": [_discord_embed(a, settings.zone) for a in shown],
        "allowed_mentions": {"parse": []},  # a title saying @everyone pings nobody
    }
    return settings.url, dict(JSON_HEADERS), json_body(payload)


def _discord_embed(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    description = marked(alert.excerpt, alert.excerpt_highlights, escape_markdown, "**", "**")
    embed: dict[str, Any] = {
        "title": shorten(alert.title, 256),
        "description": shorten(description, 4000),
        "fields": [
            {"name": "Rule", "value": shorten(alert.rule, 1024), "inline": True},
            {"name": "Matched", "value": shorten(terms_line(alert), 1024), "inline": True},
            {"name": "Outlets", "value": shorten(outlets_line(alert), 1024), "inline": False},
        ],
        "footer": {"text": f"{PRODUCT} · {local_time(alert.published_at, zone)}"},
    }
    link = safe_link(alert.link)
    if link:
        embed["url"] = link
    if alert.published_at is not None:
        embed["timestamp"] = alert.published_at.isoformat()
    return embed


# --- feishu / lark --------------------------------------------------------------------------------


def feishu_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """Feishu/Lark custom bot: a ``post`` rich-text message; signed when a secret is set."""
    shown, more = _shown(alerts)
    lines: list[list[dict[str, Any]]] = []
    for alert in shown:
        lines += _feishu_lines(alert, settings.zone)
    if more:
        lines.append([{"tag": "text", "text": f"… and {more} more alerts"}])
    post = {"zh_cn": {"title": subject(alerts), "content": lines}}
    payload: dict[str, Any] = {"msg_type": "post", "content": {"post": post}}
    if settings.secret is not None:
        timestamp = int(now.timestamp())
        sign = feishu_sign(settings.secret.get_secret_value(), timestamp)
        payload = {"timestamp": str(timestamp), "sign": sign, **payload}
    return settings.url, dict(JSON_HEADERS), json_body(payload)


def _feishu_lines(alert: Alert, zone: tzinfo) -> list[list[dict[str, Any]]]:
    link = safe_link(alert.link)
    title: dict[str, Any] = {"tag": "text", "text": alert.title, "style": ["bold"]}
    if link:
        title = {"tag": "a", "text": alert.title, "href": link}
    meta = f"{outlets_line(alert)} · {local_time(alert.published_at, zone)}"
    lines = [
        [title],
        [{"tag": "text", "text": f"Rule {alert.rule} matched: {terms_line(alert)}"}],
        [{"tag": "text", "text": meta}],
    ]
    if alert.excerpt:
        lines.append(_feishu_segments(alert.excerpt, alert.excerpt_highlights))
    return lines


def _feishu_segments(text: str, spans: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = []
    at = 0
    for start, end in sorted(spans):
        if start < at or end > len(text):
            continue
        if start > at:
            segments.append({"tag": "text", "text": text[at:start]})
        segments.append({"tag": "text", "text": text[start:end], "style": ["bold"]})
        at = end
    if at < len(text):
        segments.append({"tag": "text", "text": text[at:]})
    return segments


# --- dingtalk and wecom (Markdown) ----------------------------------------------------------------


def markdown_text(alerts: Sequence[Alert], zone: tzinfo, *, heading: str = "####") -> str:
    """The Markdown DingTalk and WeCom show: a title line, rule, outlets, time, excerpt."""
    shown, more = _shown(alerts)
    blocks = [_markdown_block(a, zone, heading) for a in shown]
    if more:
        blocks.append(f"… and {more} more alerts")
    return "\n\n".join(blocks)


def _markdown_block(alert: Alert, zone: tzinfo, heading: str) -> str:
    title = neutralize_markdown(alert.title)
    link = _md_link(alert.link)
    head = f"{heading} [{title}]({link})" if link else f"{heading} {title}"
    terms = ", ".join(f"**{neutralize_markdown(t)}**" for t in alert.terms)
    meta = f"{neutralize_markdown(outlets_line(alert))} · {local_time(alert.published_at, zone)}"
    lines = [head, f"Rule {neutralize_markdown(alert.rule)} matched {terms}", meta]
    if alert.excerpt:
        text = marked(alert.excerpt, alert.excerpt_highlights, neutralize_markdown, "**", "**")
        lines.append(f"> {text}")
    return "\n\n".join(lines)


def dingtalk_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """DingTalk robot: a Markdown message; timestamp and sign in the URL with a secret."""
    text = markdown_text(alerts, settings.zone)
    payload = {"msgtype": "markdown", "markdown": {"title": subject(alerts), "text": text}}
    url = settings.url
    if settings.secret is not None:
        timestamp = int(now.timestamp() * 1000)
        sign = dingtalk_sign(settings.secret.get_secret_value(), timestamp)
        url += ("&" if "?" in url else "?") + f"timestamp={timestamp}&sign={quote_plus(sign)}"
    return url, dict(JSON_HEADERS), json_body(payload)


def wecom_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """WeCom group robot: a Markdown message of at most 4096 bytes."""
    text = _cut_bytes(markdown_text(alerts, settings.zone), 4000)  # WeCom: 4096 bytes at most
    payload = {"msgtype": "markdown", "markdown": {"content": text}}
    return settings.url, dict(JSON_HEADERS), json_body(payload)


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut so its UTF-8 form has at most ``limit`` bytes, with an ellipsis if cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore").rstrip() + "…"


# --- telegram -------------------------------------------------------------------------------------


def telegram_payload(
    alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime
) -> Built:
    """Telegram Bot API ``sendMessage``: HTML text to ``chat_id``."""
    shown, more = _shown(alerts)
    blocks = [_telegram_block(a, settings.zone) for a in shown]
    if more:
        blocks.append(f"… and {more} more alerts")
    text = "\n\n".join(blocks)
    if len(text) > 4096:  # Telegram's limit; cutting HTML could break a tag: send it plain
        text = _escape_html(
            shorten(plain_text(alerts, settings.zone, key=digest_key(alerts)), 4000)
        )
    payload = {"chat_id": settings.chat_id, "text": text, "parse_mode": "HTML"}
    return settings.url, dict(JSON_HEADERS), json_body(payload)


def _telegram_block(alert: Alert, zone: tzinfo) -> str:
    title = marked(alert.title, alert.title_highlights, _escape_html, "<u>", "</u>")
    link = safe_link(alert.link)
    head = f'<b><a href="{_escape_html(link)}">{title}</a></b>' if link else f"<b>{title}</b>"
    terms = ", ".join(f"<b>{_escape_html(t)}</b>" for t in alert.terms)
    meta = f"{_escape_html(outlets_line(alert))} · {local_time(alert.published_at, zone)}"
    lines = [
        head,
        f"Rule <code>{_escape_html(alert.rule)}</code> matched {terms}",
        f"<i>{meta}</i>",
    ]
    if alert.excerpt:
        text = marked(alert.excerpt, alert.excerpt_highlights, _escape_html, "<b>", "</b>")
        lines.append(f"\n{text}")
    return "\n".join(lines)


# --- ntfy -----------------------------------------------------------------------------------------


def ntfy_payload(alerts: Sequence[Alert], settings: WebhookChannelSettings, now: datetime) -> Built:
    """ntfy: the plain-text body, with ``Title``, ``Tags`` and ``Click`` headers."""
    key = digest_key(alerts)
    body = _cut_bytes(plain_text(alerts, settings.zone, key=key), 4000)  # larger: an attachment
    rules = ",".join(dict.fromkeys(a.rule for a in alerts))
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": header_value(subject(alerts)),
        "Tags": header_value(f"newspaper,{rules}"),
    }
    link = safe_link(alerts[0].link) if len(alerts) == 1 else None
    if link:
        headers["Click"] = link
    return settings.url, headers, body.encode()


def header_value(text: str) -> str:
    """``text`` as an HTTP header value: as it is when ASCII, else RFC 2047 (ntfy decodes it)."""
    flat = " ".join(text.split())
    if flat.isascii():
        return flat
    return Header(flat, "utf-8").encode(maxlinelen=10_000)


PRESET_PAYLOADS = {
    "slack": slack_payload,
    "discord": discord_payload,
    "feishu": feishu_payload,
    "dingtalk": dingtalk_payload,
    "wecom": wecom_payload,
    "telegram": telegram_payload,
    "ntfy": ntfy_payload,
}
