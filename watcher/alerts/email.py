"""Alerts by email: a MIME message per alert (or per digest), sent over SMTP with aiosmtplib.

    message = build_message(alerts, settings, now=now)    # pure: headers, text and HTML parts
    await SmtpNotifier(settings).send(alert)              # or .send_digest(alerts)

The message: ``multipart/alternative`` with a UTF-8 ``text/plain`` and ``text/html`` part; the
subject RFC 2047-encoded when it is not ASCII; ``Date`` of the sending time; ``Message-ID``
``<watcher.KEY@sender-domain>`` derived from the idempotency key, so a message sent again after a
crash has the same id and the receiving side can drop the copy; ``X-Watcher-Idempotency-Key``
(and, for a digest, ``X-Watcher-Alert-Keys``); ``Auto-Submitted: auto-generated`` (RFC 3834) so
vacation responders stay quiet. The MIME boundary is derived from the key too: the same alerts at
the same time give the same bytes.

Connection: implicit TLS (``tls = true``, port 465), STARTTLS required (``starttls = true``,
port 587), or plain (both false: a local relay); login when ``username`` is set; certificates are
verified against the system's CAs (or the ``tls_context`` given). One connection per message;
the whole exchange is bounded by ``timeout``.

Does not: retry, queue, or decide when to send (the outbox does).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

import aiosmtplib

from watcher.alerts import digest_key
from watcher.alerts.render import html, plain_text, subject
from watcher.errors import DeliveryError
from watcher.log import get_logger
from watcher.models import Alert
from watcher.settings import EmailChannelSettings

log = get_logger(__name__)


def message_id(key: str, sender: str) -> str:
    """``<watcher.KEY@domain>``: the sender's domain, or ``watcher.invalid`` when it has none."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = domain.strip() if at else ""
    domain = domain or "watcher.invalid"
    return f"<watcher.{key}@{domain}>"


def build_message(
    alerts: Sequence[Alert], settings: EmailChannelSettings, *, now: datetime
) -> EmailMessage:
    """The email for ``alerts`` (one, or a digest), dated ``now``."""
    if not alerts:
        raise ValueError("build_message needs at least one alert")
    key = digest_key(alerts)
    zone = settings.zone
    message = EmailMessage(policy=SMTP)
    message["Subject"] = subject(alerts)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id(key, settings.sender)
    message["X-Watcher-Idempotency-Key"] = key
    if len(alerts) > 1:
        message["X-Watcher-Alert-Keys"] = " ".join(a.key for a in alerts)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(plain_text(alerts, zone, key=key))
    message.add_alternative(html(alerts, zone, key=key), subtype="html")
    for part in message.iter_parts():
        del part["MIME-Version"]  # add_alternative puts one on the new part; only the top needs it
    message.set_boundary(f"==watcher-{key}")
    return message


class SmtpNotifier:
    """Sends alerts by SMTP on one ``email`` channel (see the module doc)."""

    def __init__(
        self,
        settings: EmailChannelSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._tls_context = tls_context
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def channel(self) -> str:
        """The channel's configured name."""
        return self.settings.name

    async def send(self, alert: Alert) -> None:
        """Send one alert as one message; DeliveryError with the exact failure."""
        await self._deliver([alert])

    async def send_digest(self, alerts: Sequence[Alert]) -> None:
        """Send several alerts as one message; nothing for none."""
        if alerts:
            await self._deliver(alerts)

    async def aclose(self) -> None:
        """Nothing to release: each message has its own connection."""

    async def _deliver(self, alerts: Sequence[Alert]) -> None:
        settings = self.settings
        message = build_message(alerts, settings, now=self._clock())
        timeout_s = settings.timeout.total_seconds()
        password = settings.password.get_secret_value() if settings.password else None
        with self._translated():
            async with asyncio.timeout(timeout_s):
                refused, _ = await aiosmtplib.send(
                    message,
                    sender=parseaddr(settings.sender)[1],
                    recipients=[parseaddr(r)[1] for r in settings.recipients],
                    hostname=settings.host,
                    port=settings.port,
                    username=settings.username,
                    password=password,
                    use_tls=settings.tls,
                    start_tls=settings.starttls,
                    timeout=timeout_s,
                    tls_context=self._tls_context,
                )
        if refused:  # some recipients took it: sending again would give them a second copy
            shown = {r: f"{v.code} {v.message}" for r, v in refused.items()}
            log.warning("recipients refused", channel=self.channel, refused=shown)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Any failure of the exchange as a DeliveryError naming the channel; secrets masked."""
        try:
            yield
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            message = describe_smtp_error(e, self.settings)
            raise DeliveryError(self.channel, _masked(message, self.settings)) from e


def describe_smtp_error(error: BaseException, settings: EmailChannelSettings) -> str:
    """What went wrong, in words that name the server and the step that failed."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return f"authentication failed for {settings.username!r} at {where}: {_said(error)}"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient} ({_said(r)})" for r in error.recipients)
        return f"{where} refused every recipient: {refused}"
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return f"{where} refused the sender {error.sender}: {_said(error)}"
    if isinstance(error, aiosmtplib.SMTPDataError):
        return f"{where} refused the message: {_said(error)}"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{where} answered {_said(error)}"
    if isinstance(error, TimeoutError):
        return f"timed out after {settings.timeout.total_seconds():g}s talking to {where}"
    if isinstance(error, aiosmtplib.SMTPConnectError | ConnectionRefusedError):
        return f"cannot connect to {where}: {_connect_reason(error)}"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {where} failed: {error.reason or error}"
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return f"{where} closed the connection: {error.message}"
    if isinstance(error, aiosmtplib.SMTPException):
        return f"{where}: {error.message}"
    return f"cannot talk to {where}: {error}"


def _said(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {' '.join(error.message.split())}"


def _connect_reason(error: BaseException) -> str:
    cause = error.__cause__ or error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause.reason or cause}"
    return str(getattr(cause, "strerror", None) or cause)


def _masked(text: str, settings: EmailChannelSettings) -> str:
    """``text`` with the password masked, should a server ever echo it back."""
    password = settings.password.get_secret_value() if settings.password else ""
    # a password of 1-3 characters would mask letters of ordinary words instead
    return text.replace(password, "**********") if len(password) >= 4 else text
