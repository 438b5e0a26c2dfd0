"""Alerts by webhook: POST the preset's request (``payloads.py``) with httpx, then judge the answer.

    notifier = WebhookNotifier(settings)          # or WebhookNotifier(settings, client=...)
    await notifier.send(alert)                    # DeliveryError(channel) on any failure
    await notifier.aclose()

Success is a 2xx answer that the service does not contradict in its body: Feishu/Lark answer
200 with ``{"code": 19021, "msg": "sign match fail ..."}``, DingTalk and WeCom 200 with a
non-zero ``errcode``, Telegram ``{"ok": false}``; those are failures too, with the service's
words. Redirects are not followed (a webhook that moved is a configuration error to see).

Errors name the channel and the host, never the URL's path or query (Slack, Discord, DingTalk,
WeCom and Telegram keep their tokens there), and every secret of the channel is masked in what
the receiver said back.

Does not: retry (the outbox does), or build payloads (``payloads.py``).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from watcher.alerts.payloads import WebhookRequest, webhook_request
from watcher.errors import DeliveryError
from watcher.models import Alert
from watcher.settings import WebhookChannelSettings

BODY_SHOWN = 300  # characters of a failing answer quoted in the error
MASK = "**********"


class WebhookNotifier:
    """Sends alerts by HTTP POST on one ``webhook`` channel (see the module doc)."""

    def __init__(
        self,
        settings: WebhookChannelSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def channel(self) -> str:
        """The channel's configured name."""
        return self.settings.name

    async def send(self, alert: Alert) -> None:
        """POST one alert; DeliveryError with the exact failure."""
        await self.post(webhook_request([alert], self.settings, now=self._clock()))

    async def send_digest(self, alerts: Sequence[Alert]) -> None:
        """POST several alerts as one message; nothing for none."""
        if alerts:
            await self.post(webhook_request(alerts, self.settings, now=self._clock()))

    async def aclose(self) -> None:
        """Close the HTTP client if this notifier made it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def post(self, request: WebhookRequest) -> None:
        """Send ``request`` and judge the answer; DeliveryError naming the channel and host."""
        client = self._http()
        try:
            response = await client.post(
                request.url,
                content=request.body,
                headers=dict(request.headers),
                timeout=self.settings.timeout.total_seconds(),
            )
        except httpx.HTTPError as e:
            raise self._error(self._describe(e), request) from e
        problem = answer_problem(self.settings.preset, response)
        if problem is not None:
            raise self._error(f"{self._where()} answered {problem}", request)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                proxy=self.settings.proxy, follow_redirects=False, trust_env=False
            )
        return self._client

    def _where(self) -> str:
        parts = urlsplit(self.settings.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.hostname}{port}"

    def _describe(self, error: httpx.HTTPError) -> str:
        where = self._where()
        if isinstance(error, httpx.TimeoutException):
            return f"timed out after {self.settings.timeout.total_seconds():g}s waiting for {where}"
        if isinstance(error, httpx.ConnectError):
            return f"cannot connect to {where}: {_connect_reason(error)}"
        return f"request to {where} failed: {type(error).__name__}: {error}"

    def _error(self, message: str, request: WebhookRequest) -> DeliveryError:
        for secret in (*request.secrets, request.url, self.settings.url):
            message = message.replace(secret, MASK)
        return DeliveryError(self.channel, message)


def _connect_reason(error: BaseException) -> str:
    """The deepest cause worth naming: "connection refused", a TLS or a name failure."""
    seen: BaseException | None = error
    for _ in range(10):  # a cause chain is short; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed: {seen.reason or seen}"
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve the host: {seen.strerror or seen}"
        seen = seen.__cause__ or seen.__context__
    return str(error) or type(error).__name__


def answer_problem(preset: str, response: httpx.Response) -> str | None:
    """What is wrong with the receiver's answer, or None when it took the message."""
    if not response.is_success:
        return f"HTTP {response.status_code}: {_quoted(response.text)}"
    if preset not in ("feishu", "dingtalk", "wecom", "telegram"):
        return None
    try:
        answer = json.loads(response.content or b"null")
    except ValueError:
        return None  # a 2xx without JSON: nothing contradicts it
    if not isinstance(answer, dict):
        return None
    return _service_problem(preset, answer)


def _service_problem(preset: str, answer: dict[str, object]) -> str | None:
    if preset == "telegram":
        if answer.get("ok") is False:
            return f"ok=false: {_quoted(str(answer.get('description', '')))}"
        return None
    code_key, text_key = ("code", "msg") if preset == "feishu" else ("errcode", "errmsg")
    code = answer.get(code_key, answer.get("StatusCode", 0))
    if code not in (0, None):
        return f"{code_key} {code}: {_quoted(str(answer.get(text_key, '')))}"
    return None


def _quoted(text: str) -> str:
    flat = " ".join(text.split())
    return (flat[:BODY_SHOWN] + "…") if len(flat) > BODY_SHOWN else (flat or "(empty body)")
