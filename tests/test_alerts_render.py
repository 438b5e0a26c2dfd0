"""Rendering alerts: golden text, HTML, emails and webhook payloads; hostile input stays inert."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from watcher.alerts import digest_key, idempotency_key, new_alert, quiet_until
from watcher.alerts.email import build_message, message_id
from watcher.alerts.payloads import WebhookRequest, webhook_request
from watcher.alerts.presets import header_value
from watcher.alerts.render import excerpt, html, plain_text, safe_link, squeeze, subject
from watcher.models import Match, StoryView
from watcher.settings import (
    EmailChannelSettings,
    WebhookChannelSettings,
    WebhookPreset,
)

from .alertsamples import NOW, golden, hostile_alert, sample_alert, second_alert

ZONE = ZoneInfo("Asia/Shanghai")
SECRET = "s3cr3t-signing-key"
URLS: dict[str, str] = {
    "generic": "https://hooks.example.org/watcher",
    "slack": "https://hooks.example.org/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "discord": "https://discord.example.org/api/webhooks/123456789/tokentokentokentoken",
    "feishu": "https://open.example.org/open-apis/bot/v2/hook/0a1b2c3d-4e5f",
    "dingtalk": "https://oapi.example.org/robot/send?access_token=abcdef0123456789",
    "wecom": "https://qyapi.example.org/cgi-bin/webhook/send?key=0a1b2c3d-4e5f",
    "telegram": "https://api.example.org/bot123456:ABCDEFGHIJ/sendMessage",
    "ntfy": "https://ntfy.example.org/watcher-alerts",
}
PRESETS: tuple[WebhookPreset, ...] = (
    "generic", "slack", "discord", "feishu", "dingtalk", "wecom", "telegram", "ntfy",
)  # fmt: skip
SIGNED = ("generic", "feishu", "dingtalk")


def hook(preset: WebhookPreset, **extra: Any) -> WebhookChannelSettings:
    """A webhook channel of ``preset`` with the secret where the preset signs."""
    values: dict[str, Any] = {
        "name": "ops-hook",
        "type": "webhook",
        "url": URLS[preset],
        "preset": preset,
        "timezone": "Asia/Shanghai",
    }
    if preset in SIGNED:
        values["secret"] = SECRET
    if preset == "telegram":
        values["chat_id"] = "-1001234567890"
    return WebhookChannelSettings.model_validate({**values, **extra})


def mail(**extra: Any) -> EmailChannelSettings:
    """An email channel with two recipients, shown in Shanghai time."""
    values: dict[str, Any] = {
        "name": "ops-mail",
        "type": "email",
        "host": "127.0.0.1",
        "sender": "Watcher <watcher@example.org>",
        "recipients": ["ops@example.org", "李雷 <lilei@example.org>"],
        "timezone": "Asia/Shanghai",
    }
    return EmailChannelSettings.model_validate({**values, **extra})


def shown(request: WebhookRequest) -> str:
    """A request as its golden file shows it: URL, headers, and the body parsed when JSON."""
    body: Any = request.body.decode()
    if request.headers["Content-Type"].startswith("application/json"):
        body = json.loads(body)
    view = {"url": request.url, "headers": dict(request.headers), "body": body}
    return json.dumps(view, ensure_ascii=False, indent=2) + "\n"


# --- keys and alerts ------------------------------------------------------------------------------


def test_idempotency_key_is_stable_per_story_rule_channel() -> None:
    """The key is a fixed function of story, rule and channel, and differs on each of them."""
    key = idempotency_key("s1", "ukraine", "ops-mail")
    others = {
        idempotency_key("s2", "ukraine", "ops-mail"),
        idempotency_key("s1", "taiwan", "ops-mail"),
        idempotency_key("s1", "ukraine", "ops-hook"),
    }
    expected = (hashlib.sha256(b"s1\x1fukraine\x1fops-mail").hexdigest()[:32], 32, False)
    assert expected == (key, len(key), key in others)


def test_digest_key_ignores_order_and_is_the_key_of_one() -> None:
    """A digest's key does not depend on the alerts' order; a digest of one is that alert's key."""
    a, b = sample_alert("c"), second_alert("c")
    expected = (digest_key([a, b]), a.key)
    assert expected == (digest_key([b, a]), digest_key([a]))


def test_new_alert_folds_title_and_cuts_excerpt_around_first_term() -> None:
    """The alert's title is one line and its excerpt keeps the highlights on the terms."""
    alert = sample_alert("ops-mail")
    marked = [alert.excerpt[s:e] for s, e in alert.excerpt_highlights]
    expected = ("烏克蘭總統：黑海糧食協議 將再延長120天", ["烏克蘭"], True)
    actual = (
        alert.title,
        [alert.title[s:e] for s, e in alert.title_highlights],
        set(marked) == {"烏克蘭", "Black Sea", "Ukraine"},
    )
    assert expected == actual


def test_excerpt_starts_near_a_late_first_term() -> None:
    """A term deep in a long text opens the excerpt with an ellipsis, term kept highlighted."""
    text = "word " * 200 + "Ukraine " + "tail " * 200
    start = text.index("Ukraine")
    cut, spans = excerpt(text, [(start, start + 7)], width=80)
    expected = (True, True, ["Ukraine"], True)
    actual = (
        cut.startswith("…"),
        cut.endswith("…"),
        [cut[s:e] for s, e in spans],
        len(cut) <= 82,
    )
    assert expected == actual


def test_squeeze_moves_spans() -> None:
    """Whitespace runs fold to one space and the spans still cover the same words."""
    text, spans = squeeze("  a \n\t Black   Sea  ", [(7, 18)])
    expected = ("a Black Sea", ["Black Sea"])
    assert expected == (text, [text[s:e] for s, e in spans])


def test_new_alert_without_text_has_no_excerpt() -> None:
    """An alert of a title-only story has an empty excerpt and no excerpt highlights."""
    view = StoryView(story_id="s", title="Ukraine", outlets=("A", "A", "B"))
    match = Match(rule="r", story_id="s", terms=("Ukraine",), outlet_count=2, matched_at=NOW)
    alert = new_alert(match, view, "c", now=NOW)
    expected = ("", (), ("A", "B"))
    assert expected == (alert.excerpt, alert.excerpt_highlights, alert.outlets)


# --- subject, text, HTML --------------------------------------------------------------------------


def test_subject_golden() -> None:
    """Subjects of one alert and of a digest, one line each."""
    one = subject([sample_alert("c")])
    two = subject([sample_alert("c"), second_alert("c")])
    assert golden("subjects.txt", f"{one}\n{two}\n") == f"{one}\n{two}\n"


def test_plain_text_golden() -> None:
    """The plain-text part of one alert matches its golden file."""
    alert = sample_alert("ops-mail")
    actual = plain_text([alert], ZONE, key=alert.key)
    assert golden("single.txt", actual) == actual


def test_html_golden() -> None:
    """The HTML part of one alert matches its golden file."""
    alert = sample_alert("ops-mail")
    actual = html([alert], ZONE, key=alert.key)
    assert golden("single.html", actual) == actual


def test_hostile_html_golden() -> None:
    """Markup and script in a title, text, outlet and link come out escaped (golden)."""
    alert = hostile_alert("ops-mail")
    actual = html([alert], ZONE, key=alert.key)
    assert golden("hostile.html", actual) == actual


ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "div", "h3", "p", "b", "br", "mark"}
ALLOWED_TAGS |= {"blockquote", "a"}


def test_hostile_html_has_only_our_tags_and_no_script_link() -> None:
    """The HTML of a hostile alert holds only the renderer's own tags and no javascript: URL."""
    alert = hostile_alert("ops-mail")
    page = html([alert, sample_alert("ops-mail")], ZONE, key="k")
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", page))
    hrefs = re.findall(r'href="([^"]*)"', page)
    expected = (set(), [True])
    assert expected == (tags - ALLOWED_TAGS, [h.startswith("https://") for h in hrefs])


def test_subject_of_hostile_title_is_one_line() -> None:
    """Line breaks in a title never reach the Subject header (no header injection)."""
    view = StoryView(story_id="s", title="Ukraine\r\nBcc: victim@example.org\n")
    match = Match(rule="r", story_id="s", terms=("Ukraine",), outlet_count=1, matched_at=NOW)
    alert = new_alert(match, view, "ops-mail", now=NOW)
    message = build_message([alert], mail(), now=NOW)
    expected = ("[watcher] r: Ukraine Bcc: victim@example.org", None)
    assert expected == (message["Subject"], message["Bcc"])


SAFE_LINKS = {
    "javascript": ("javascript:alert(1)", None),
    "mixed case javascript": ("JaVaScRiPt:alert(1)", None),
    "javascript split by a newline": ("java\nscript:alert(1)", None),
    "data URL": ("data:text/html,<script>alert(1)</script>", None),
    "no scheme": ("//evil.example.org/x", None),
    "no host": ("https:///path", None),
    "empty": ("", None),
    "quotes and brackets encoded": (
        'https://example.org/a b"<x>',
        "https://example.org/ab%22%3Cx%3E",
    ),
    "non-ASCII path and host": (
        "http://例子.example.org/路径?q=新闻#x",
        "http://xn--fsqu00a.example.org/%E8%B7%AF%E5%BE%84?q=%E6%96%B0%E9%97%BB#x",
    ),
    "plain https kept": ("https://example.org/a?b=1&c=2", "https://example.org/a?b=1&c=2"),
}


@pytest.mark.parametrize(("url", "expected"), SAFE_LINKS.values(), ids=SAFE_LINKS)
def test_safe_link(url: str, expected: str | None) -> None:
    """Only http(s) URLs with a host survive, percent-encoded so no markup can break out."""
    assert expected == safe_link(url)


# --- emails ---------------------------------------------------------------------------------------


def test_email_golden() -> None:
    """The whole email of one alert, byte for byte (boundary and Message-ID from the key)."""
    actual = build_message([sample_alert("ops-mail")], mail(), now=NOW).as_bytes().decode()
    assert golden("single.eml", actual) == actual


def test_email_digest_golden() -> None:
    """The whole digest email of two alerts, byte for byte."""
    alerts = [sample_alert("ops-mail"), second_alert("ops-mail")]
    actual = build_message(alerts, mail(), now=NOW).as_bytes().decode()
    assert golden("digest.eml", actual) == actual


def test_email_headers_and_parts() -> None:
    """Subject decodes to UTF-8, Message-ID and the key header come from the alert's key."""
    alert = sample_alert("ops-mail")
    raw = build_message([alert], mail(), now=NOW).as_bytes()
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    expected = (
        "[watcher] ukraine: 烏克蘭總統：黑海糧食協議 將再延長120天",
        f"<watcher.{alert.key}@example.org>",
        alert.key,
        "Tue, 03 Nov 2026 05:20:20 +0000",
        ["text/plain", "text/html"],
        "auto-generated",
    )
    actual = (
        parsed["Subject"],
        parsed["Message-ID"],
        parsed["X-Watcher-Idempotency-Key"],
        parsed["Date"],
        [p.get_content_type() for p in parsed.iter_parts()],
        parsed["Auto-Submitted"],
    )
    assert expected == actual


def test_message_id_without_domain() -> None:
    """A sender with no usable domain gives a Message-ID on watcher.invalid."""
    assert "<watcher.k@watcher.invalid>" == message_id("k", "nobody")


# --- webhook payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_webhook_payload_golden(preset: WebhookPreset) -> None:
    """Each preset's request for one alert (URL, headers, body) matches its golden file."""
    request = webhook_request([sample_alert("ops-hook")], hook(preset), now=NOW)
    actual = shown(request)
    assert golden(f"webhook-{preset}.json", actual) == actual


@pytest.mark.parametrize("preset", ["generic", "slack", "telegram"])
def test_webhook_digest_golden(preset: WebhookPreset) -> None:
    """A digest of two alerts in one request matches its golden file."""
    alerts = [sample_alert("ops-hook"), second_alert("ops-hook")]
    actual = shown(webhook_request(alerts, hook(preset), now=NOW))
    assert golden(f"webhook-{preset}-digest.json", actual) == actual


@pytest.mark.parametrize("preset", PRESETS)
def test_every_request_carries_the_idempotency_key(preset: WebhookPreset) -> None:
    """Every preset sends the alert's key in an Idempotency-Key header."""
    alert = sample_alert("ops-hook")
    request = webhook_request([alert], hook(preset), now=NOW)
    assert alert.key == request.headers["Idempotency-Key"]


def test_generic_signature_verifies_as_a_receiver_would() -> None:
    """A receiver recomputing HMAC-SHA256 over "<timestamp>.<body>" gets the header's value."""
    request = webhook_request([sample_alert("ops-hook")], hook("generic"), now=NOW)
    timestamp = request.headers["X-Watcher-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    sent = request.headers["X-Watcher-Signature"]
    expected = (True, str(int(NOW.timestamp())))
    assert expected == (hmac.compare_digest("sha256=" + mac.hexdigest(), sent), timestamp)


def test_generic_without_secret_is_unsigned() -> None:
    """A generic channel without a secret sends no signature header (but the timestamp)."""
    request = webhook_request([sample_alert("c")], hook("generic", secret=""), now=NOW)
    expected = (False, True)
    actual = ("X-Watcher-Signature" in request.headers, "X-Watcher-Timestamp" in request.headers)
    assert expected == actual


def test_feishu_sign_follows_its_docs() -> None:
    """Feishu: sign = base64(HMAC-SHA256 keyed "<timestamp>\\n<secret>" over nothing)."""
    request = webhook_request([sample_alert("c")], hook("feishu"), now=NOW)
    body = json.loads(request.body)
    key = f"{body['timestamp']}\n{SECRET}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert (expected, str(int(NOW.timestamp()))) == (body["sign"], body["timestamp"])


def test_dingtalk_sign_in_query_follows_its_docs() -> None:
    """DingTalk: timestamp (ms) and sign = base64(HMAC-SHA256(secret, "<ts>\\n<secret>"))."""
    request = webhook_request([sample_alert("c")], hook("dingtalk"), now=NOW)
    query = parse_qs(urlsplit(request.url).query)
    timestamp = query["timestamp"][0]
    mac = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256)
    expected = (["abcdef0123456789"], base64.b64encode(mac.digest()).decode(), "1793683220000")
    assert expected == (query["access_token"], query["sign"][0], timestamp)


def test_custom_headers_never_override_ours() -> None:
    """A channel header named like ours is overridden; others are sent as given."""
    headers = {"Idempotency-Key": "forged", "X-Team": "ops"}
    request = webhook_request([sample_alert("c")], hook("slack", headers=headers), now=NOW)
    alert_key = sample_alert("c").key
    assert (alert_key, "ops") == (request.headers["Idempotency-Key"], request.headers["X-Team"])


def test_request_knows_the_url_tokens_as_secrets() -> None:
    """Tokens in the URL path and query and the signing secret are listed for masking."""
    telegram = webhook_request([sample_alert("c")], hook("telegram"), now=NOW)
    dingtalk = webhook_request([sample_alert("c")], hook("dingtalk"), now=NOW)
    expected = (True, True, True)
    actual = (
        "bot123456:ABCDEFGHIJ" in telegram.secrets,
        "abcdef0123456789" in dingtalk.secrets,
        SECRET in dingtalk.secrets,
    )
    assert expected == actual


def test_ntfy_header_value_is_rfc2047_when_not_ascii() -> None:
    """ntfy's Title header is ASCII: non-ASCII text goes as an RFC 2047 encoded word."""
    encoded = header_value("乌克兰 alert")
    decoded = str(email.header.make_header(email.header.decode_header(encoded)))
    assert (True, "乌克兰 alert") == (encoded.isascii(), decoded)


# --- hostile input in chat markup -----------------------------------------------------------------


def _hostile(preset: WebhookPreset) -> dict[str, Any]:
    request = webhook_request([hostile_alert("c")], hook(preset), now=NOW)
    body: dict[str, Any] = json.loads(request.body)
    return body


def test_discord_hostile_pings_nobody_and_links_nothing() -> None:
    """Discord: mentions are disabled and an unsafe link gives the embed no url."""
    body = _hostile("discord")
    expected = ({"parse": []}, False, True)
    actual = (
        body["allowed_mentions"],
        "url" in body["embeds"][0],
        "\\*\\*bold\\*\\*" in body["content"],
    )
    assert expected == actual


def test_slack_hostile_has_no_angle_brackets() -> None:
    """Slack: < and > of a title are escaped, so no <link|text> or <!channel> can be forged."""
    body = _hostile("slack")
    texts = [body["text"]] + [json.dumps(b, ensure_ascii=False) for b in body["blocks"]]
    assert [] == [t for t in texts if "<" in t or ">" in t]


def test_telegram_hostile_has_only_our_tags() -> None:
    """Telegram HTML of a hostile alert holds only b, u, i, code tags and no link."""
    text = _hostile("telegram")["text"]
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z]+)", text))
    assert set() == tags - {"b", "u", "i", "code"}


def test_markdown_presets_escape_link_syntax() -> None:
    """DingTalk and WeCom Markdown escape a title's [x](javascript:y) so it is no link."""
    texts = [_hostile("dingtalk")["markdown"]["text"], _hostile("wecom")["markdown"]["content"]]
    assert [False, False] == ["](javascript" in t for t in texts]


# --- quiet hours ----------------------------------------------------------------------------------

QUIET = {
    "inside, across midnight": ("23:00-07:00", "2026-11-03T16:30:00+00:00", "2026-11-03T23:00:00"),
    "after midnight": ("23:00-07:00", "2026-11-03T20:00:00+00:00", "2026-11-03T23:00:00"),
    "before midnight": ("23:00-07:00", "2026-11-03T15:30:00+00:00", "2026-11-03T23:00:00"),
    "outside": ("23:00-07:00", "2026-11-03T05:00:00+00:00", None),
    "end is not quiet": ("23:00-07:00", "2026-11-03T23:00:00+00:00", None),
    "daytime span": ("12:00-14:00", "2026-11-03T04:30:00+00:00", "2026-11-03T06:00:00"),
}


@pytest.mark.parametrize(("hours", "now", "until"), QUIET.values(), ids=QUIET)
def test_quiet_until(hours: str, now: str, until: str | None) -> None:
    """Inside quiet hours (Shanghai time) gives their end in UTC; outside gives None."""
    channel = mail(quiet_hours=hours)
    ends = quiet_until(channel, datetime.fromisoformat(now))
    expected = None if until is None else datetime.fromisoformat(until).replace(tzinfo=UTC)
    assert expected == ends


def test_no_quiet_hours_is_never_quiet() -> None:
    """A channel without quiet hours is never held."""
    assert None is quiet_until(mail(), NOW)
