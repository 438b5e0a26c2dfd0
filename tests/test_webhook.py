"""WebhookNotifier against a real HTTP receiver on 127.0.0.1 (tests/feedserver.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from watcher.alerts import open_notifier
from watcher.alerts.payloads import webhook_request
from watcher.alerts.webhook import WebhookNotifier
from watcher.errors import ConfigError, DeliveryError
from watcher.models import Alert
from watcher.settings import WebhookChannelSettings, WebhookPreset, load_settings

from .alertsamples import NOW, sample_alert, second_alert
from .feedserver import FeedServer, Reply, closed_port_url
from .test_alerts_render import PRESETS

SECRET = "whsec-0123456789abcdef"
JSON = {"Content-Type": "application/json"}


def hook(url: str, preset: WebhookPreset = "generic", **extra: Any) -> WebhookChannelSettings:
    """A webhook channel posting to ``url``; signed presets get SECRET, telegram a chat."""
    values: dict[str, Any] = {"name": "ops-hook", "type": "webhook", "url": url, "preset": preset}
    if preset in ("generic", "feishu", "dingtalk"):
        values["secret"] = SECRET
    if preset == "telegram":
        values["chat_id"] = "42"
    return WebhookChannelSettings.model_validate({**values, **extra})


def post(settings: WebhookChannelSettings, *alerts: Alert) -> None:
    """Send one alert (or a digest of several) with a fixed clock, then close the notifier."""

    async def go() -> None:
        notifier = WebhookNotifier(settings, clock=lambda: NOW)
        try:
            if len(alerts) == 1:
                await notifier.send(alerts[0])
            else:
                await notifier.send_digest(alerts)
        finally:
            await notifier.aclose()

    asyncio.run(go())


def failure(settings: WebhookChannelSettings) -> DeliveryError:
    """The DeliveryError that posting the sample alert raises."""
    with pytest.raises(DeliveryError) as info:
        post(settings, sample_alert("ops-hook"))
    return info.value


# --- delivered ------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_posts_its_request(feed_server: FeedServer, preset: WebhookPreset) -> None:
    """The receiver gets exactly the preset's body, its query, key and content type."""
    feed_server.route("/hook", Reply(200, b'{"ok":true,"code":0,"errcode":0}', JSON))
    settings = hook(feed_server.url("/hook?token=abcdef012345"), preset)
    alert = sample_alert("ops-hook")
    post(settings, alert)
    built = webhook_request([alert], settings, now=NOW)
    [received] = feed_server.requests_to("/hook")
    expected = ("POST", built.body, built.url.partition("?")[2], alert.key)
    actual = (
        received.method,
        received.body,
        received.query,
        received.headers["idempotency-key"],
    )
    assert expected == actual


def test_generic_headers_and_custom_headers(feed_server: FeedServer) -> None:
    """Generic: signature and timestamp headers, and the channel's own headers, arrive."""
    feed_server.route("/hook", Reply(204))
    post(hook(feed_server.url("/hook"), headers={"X-Team": "ops"}), sample_alert("ops-hook"))
    headers = feed_server.requests_to("/hook")[0].headers
    expected = ("ops", str(int(NOW.timestamp())), True, "application/json; charset=utf-8")
    actual = (
        headers["x-team"],
        headers["x-watcher-timestamp"],
        headers["x-watcher-signature"].startswith("sha256="),
        headers["content-type"],
    )
    assert expected == actual


def test_digest_is_one_request(feed_server: FeedServer) -> None:
    """send_digest POSTs once with every alert in the generic payload."""
    feed_server.route("/hook", Reply(200))
    alerts = (sample_alert("ops-hook"), second_alert("ops-hook"))
    post(hook(feed_server.url("/hook")), *alerts)
    [received] = feed_server.requests_to("/hook")
    body = json.loads(received.body)
    assert [a.key for a in alerts] == [a["key"] for a in body["alerts"]]


def test_open_notifier_gives_webhook_for_webhook() -> None:
    """open_notifier builds a WebhookNotifier for a webhook channel, named after it."""
    notifier = open_notifier(hook("http://127.0.0.1:9/hook"))
    assert (WebhookNotifier, "ops-hook") == (type(notifier), notifier.channel)


def test_a_given_client_is_used_and_left_open(feed_server: FeedServer) -> None:
    """A client passed in carries the request and is not closed by aclose."""
    feed_server.route("/hook", Reply(200))

    async def go() -> bool:
        async with httpx.AsyncClient() as client:
            notifier = WebhookNotifier(hook(feed_server.url("/hook")), client=client)
            await notifier.send(sample_alert("ops-hook"))
            await notifier.aclose()
            return client.is_closed

    assert (False, 1) == (asyncio.run(go()), len(feed_server.requests_to("/hook")))


# --- failures -------------------------------------------------------------------------------------


def test_closed_port_is_connection_refused() -> None:
    """Nothing listening: DeliveryError naming the channel, the host and the refusal."""
    url = closed_port_url("/hook")
    error = failure(hook(url))
    port = httpx.URL(url).port
    expected = ("ops-hook", f"cannot connect to 127.0.0.1:{port}: connection refused")
    assert expected == (error.channel, error.message)


def test_4xx_quotes_the_body(feed_server: FeedServer) -> None:
    """A 4xx answer is a failure quoting what the receiver said."""
    feed_server.route("/hook", Reply(400, b"invalid_payload\n", {"Content-Type": "text/plain"}))
    error = failure(hook(feed_server.url("/hook"), "slack", secret=""))
    expected = f"127.0.0.1:{feed_server.port} answered HTTP 400: invalid_payload"
    assert expected == error.message


def test_5xx_is_a_failure(feed_server: FeedServer) -> None:
    """A 5xx answer is a failure with its status."""
    feed_server.route("/hook", Reply(503, b"", {}))
    error = failure(hook(feed_server.url("/hook")))
    expected = f"127.0.0.1:{feed_server.port} answered HTTP 503: (empty body)"
    assert expected == error.message


def test_redirect_is_not_followed(feed_server: FeedServer) -> None:
    """A webhook that moved is a failure to see, not a silent second POST."""
    feed_server.route("/hook", Reply(301, b"", {"Location": feed_server.url("/new")}))
    feed_server.route("/new", Reply(200))
    error = failure(hook(feed_server.url("/hook")))
    expected = (True, [])
    assert expected == ("answered HTTP 301" in error.message, feed_server.requests_to("/new"))


SERVICE_ERRORS: dict[str, tuple[WebhookPreset, dict[str, Any], str]] = {
    "feishu bad sign": (
        "feishu",
        {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"},
        "code 19021: sign match fail or timestamp is not within one hour",
    ),
    "dingtalk bad sign": (
        "dingtalk",
        {"errcode": 310000, "errmsg": "sign not match"},
        "errcode 310000: sign not match",
    ),
    "wecom bad markdown": (
        "wecom",
        {"errcode": 40058, "errmsg": "markdown.content exceed max length"},
        "errcode 40058: markdown.content exceed max length",
    ),
    "telegram not ok": ("telegram", {"ok": False, "description": "chat not found"}, "ok=false"),
}


@pytest.mark.parametrize(("preset", "answer", "said"), SERVICE_ERRORS.values(), ids=SERVICE_ERRORS)
def test_service_error_in_a_200_is_a_failure(
    feed_server: FeedServer, preset: WebhookPreset, answer: dict[str, Any], said: str
) -> None:
    """Feishu, DingTalk, WeCom and Telegram report errors inside a 200 answer: caught."""
    feed_server.route("/hook", Reply(200, json.dumps(answer).encode(), JSON))
    error = failure(hook(feed_server.url("/hook"), preset))
    assert error.message.startswith(f"127.0.0.1:{feed_server.port} answered {said}")


def test_feishu_success_answer_is_success(feed_server: FeedServer) -> None:
    """Feishu's success answer (code 0, StatusCode 0) counts as delivered."""
    answer = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
    feed_server.route("/hook", Reply(200, json.dumps(answer).encode(), JSON))
    post(hook(feed_server.url("/hook"), "feishu"), sample_alert("ops-hook"))
    assert 1 == len(feed_server.requests_to("/hook"))


def test_slow_receiver_times_out(feed_server: FeedServer) -> None:
    """A receiver slower than the channel's timeout: a timeout naming the host."""
    feed_server.route("/hook", Reply(200, delay_s=3))
    error = failure(hook(feed_server.url("/hook"), timeout="0.3s"))
    expected = f"timed out after 0.3s waiting for 127.0.0.1:{feed_server.port}"
    assert expected == error.message


def test_tokens_and_secret_never_in_the_error(feed_server: FeedServer) -> None:
    """A receiver echoing the URL's token and the secret back: both masked in the error."""
    token = "bot123456:AAE-secret-token"
    url = feed_server.url(f"/{token}/sendMessage?key=query-secret-99")
    echo = f"no such bot {token} (url {url}) key=query-secret-99 signed {SECRET}".encode()
    feed_server.route(f"/{token}/sendMessage", Reply(404, echo, {"Content-Type": "text/plain"}))
    error = failure(hook(url))
    shown = str(error) + repr(error)
    expected = (False, False, False, True)
    actual = (token in shown, "query-secret-99" in shown, SECRET in shown, "404" in shown)
    assert expected == actual


# --- settings -------------------------------------------------------------------------------------


def _config_error(tmp_path: Any, body: str) -> ConfigError:
    path = tmp_path / "watcher.toml"
    text = f"[[channels]]\nname = 'c'\ntype = 'webhook'\nurl = 'http://127.0.0.1/'\n{body}\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    return info.value


CHANNEL_ERRORS = {
    "unknown preset": ("preset = 'irc'", "channels.0.preset", "Input should be"),
    "telegram without chat": ("preset = 'telegram'", "channels.0.chat_id", "telegram"),
    "chat id elsewhere": ("chat_id = '1'", "channels.0.chat_id", "only there"),
    "secret unused": ("preset = 'slack'\nsecret = 'x'", "channels.0.secret", "signs nothing"),
    "bad quiet hours": ("quiet_hours = '22-7'", "channels.0.quiet_hours", "'22:00-07:00'"),
    "empty quiet span": ("quiet_hours = '07:00-07:00'", "channels.0.quiet_hours", "differ"),
    "bad time zone": ("timezone = 'Mars/Olympus'", "channels.0.timezone", "time zone"),
    "negative rate": ("rate_limit = -1", "channels.0.rate_limit", "greater"),
    "bad digest": ("digest = 'soon'", "channels.0.digest", "duration"),
}


@pytest.mark.parametrize(("body", "key", "words"), CHANNEL_ERRORS.values(), ids=CHANNEL_ERRORS)
def test_bad_channel_setting_names_the_key(tmp_path: Any, body: str, key: str, words: str) -> None:
    """Each bad webhook or common channel setting is a ConfigError naming its dotted key."""
    error = _config_error(tmp_path, body)
    assert (key, True) == (error.key, words in error.message)
