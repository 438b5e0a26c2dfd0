"""SmtpNotifier against a real aiosmtpd server on 127.0.0.1: plain, STARTTLS, TLS, failures."""

from __future__ import annotations

import asyncio
import email
import gc
import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from watcher.alerts import open_notifier
from watcher.alerts.email import SmtpNotifier
from watcher.errors import DeliveryError
from watcher.models import Alert
from watcher.settings import EmailChannelSettings

from .alertsamples import NOW, sample_alert, second_alert

# aiosmtpd's Controller stops its event loop in its own thread without closing every client
# transport it accepted; the garbage collector then reports those server-side sockets as
# "unclosed" in whichever test happens to be running. They are the server's: SmtpNotifier
# sends each message with aiosmtplib.send, which opens and closes its own connection.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PASSWORD = "correct horse battery staple"


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message and can refuse some recipients."""

    refuse: set[str] = field(default_factory=set)
    received: list[tuple[str, list[str], EmailMessage, bool]] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        """Refuse the addresses in ``refuse``, accept the rest."""
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message with its envelope and whether the session was authenticated."""
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        sender = envelope.mail_from or ""
        self.received.append((sender, list(envelope.rcpt_tos), message, session.authenticated))
        return "250 OK"


def check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """Accept the login "watcher" with PASSWORD only."""
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"watcher",
        PASSWORD.encode(),
    )
    return AuthResult(success=good, handled=False)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(inbox: Inbox, **options: Any) -> Iterator[int]:
    """Run aiosmtpd on 127.0.0.1 with ``options`` (tls_context, ssl_context ...); yield its port."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
        gc.collect()  # the server's leftover transports are reported here, not in a later test


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The server's TLS context: a certificate for 127.0.0.1 signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The client's TLS context: trusts ``ca`` only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def channel(port: int, **extra: Any) -> EmailChannelSettings:
    """An email channel to 127.0.0.1:port, plain SMTP unless ``extra`` says otherwise."""
    values: dict[str, Any] = {
        "name": "ops-mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "sender": "Watcher <watcher@example.org>",
        "recipients": ["ops@example.org", "李雷 <lilei@example.org>"],
        "timeout": "5s",
    }
    return EmailChannelSettings.model_validate({**values, **extra})


def send(settings: EmailChannelSettings, *alerts: Alert, tls: ssl.SSLContext | None = None) -> None:
    """Send one alert (or a digest of several) with a fixed clock."""
    notifier = SmtpNotifier(settings, tls_context=tls, clock=lambda: NOW)
    if len(alerts) == 1:
        asyncio.run(notifier.send(alerts[0]))
    else:
        asyncio.run(notifier.send_digest(alerts))


def failure(settings: EmailChannelSettings, tls: ssl.SSLContext | None = None) -> DeliveryError:
    """The DeliveryError sending the sample alert raises."""
    with pytest.raises(DeliveryError) as info:
        send(settings, sample_alert("ops-mail"), tls=tls)
    return info.value


# --- delivered ------------------------------------------------------------------------------------


def test_one_message_reaches_every_recipient() -> None:
    """A plain SMTP send: envelope, headers and both parts arrive as built."""
    inbox = Inbox()
    alert = sample_alert("ops-mail")
    with smtp_server(inbox) as port:
        send(channel(port), alert)
    [(sender, recipients, message, _)] = inbox.received
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    expected = (
        "watcher@example.org",
        ["ops@example.org", "lilei@example.org"],
        "[watcher] ukraine: 烏克蘭總統：黑海糧食協議 將再延長120天",
        f"<watcher.{alert.key}@example.org>",
        alert.key,
        "Tue, 03 Nov 2026 05:20:20 +0000",
        True,
        True,
    )
    actual = (
        sender,
        recipients,
        message["Subject"],
        message["Message-ID"],
        message["X-Watcher-Idempotency-Key"],
        message["Date"],
        "*烏克蘭*總統" in text.get_content(),
        '<mark style="background:#ffe066;padding:0 1px">烏克蘭</mark>' in html.get_content(),
    )
    assert expected == actual


def test_digest_is_one_message_with_every_key() -> None:
    """send_digest sends several alerts as one message listing each alert's key."""
    inbox = Inbox()
    alerts = (sample_alert("ops-mail"), second_alert("ops-mail"))
    with smtp_server(inbox) as port:
        send(channel(port), *alerts)
    [(_, _, message, _)] = inbox.received
    expected = (1, "[watcher] 2 alerts: ukraine", f"{alerts[0].key} {alerts[1].key}")
    actual = (len(inbox.received), message["Subject"], message["X-Watcher-Alert-Keys"].strip())
    assert expected == actual


def test_starttls_with_login(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """STARTTLS then AUTH: the server requires both and takes the message."""
    inbox = Inbox()
    options = {"tls_context": server_tls, "require_starttls": True, "authenticator": check_login}
    with smtp_server(inbox, **options) as port:
        settings = channel(port, starttls=True, username="watcher", password=PASSWORD)
        send(settings, sample_alert("ops-mail"), tls=client_tls)
    assert [True] == [authenticated for *_, authenticated in inbox.received]


def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """tls = true speaks TLS from the first byte (port 465 style)."""
    inbox = Inbox()
    with smtp_server(inbox, ssl_context=server_tls) as port:
        send(channel(port, tls=True), sample_alert("ops-mail"), tls=client_tls)
    assert 1 == len(inbox.received)


def test_some_recipients_refused_is_sent_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """When only some recipients are refused the message counts as sent; a warning names them."""
    inbox = Inbox(refuse={"lilei@example.org"})
    logger = "watcher.alerts.email"
    with caplog.at_level(logging.WARNING, logger=logger), smtp_server(inbox) as port:
        send(channel(port), sample_alert("ops-mail"))
    refused = [getattr(r, "kv", {}).get("refused") for r in caplog.records]
    expected = ([["ops@example.org"]], [{"lilei@example.org": "550 5.1.1 no such mailbox here"}])
    assert expected == ([r for _, r, *_ in inbox.received], refused)


def test_open_notifier_gives_smtp_for_email() -> None:
    """open_notifier builds an SmtpNotifier for an email channel, named after it."""
    notifier = open_notifier(channel(25))
    assert (SmtpNotifier, "ops-mail") == (type(notifier), notifier.channel)


# --- failures -------------------------------------------------------------------------------------


def test_closed_port_is_connection_refused() -> None:
    """Nothing listening: DeliveryError naming the channel, the address and the refusal."""
    port = free_port()
    error = failure(channel(port))
    expected = ("ops-mail", f"cannot connect to 127.0.0.1:{port}: connection refused")
    assert expected == (error.channel, error.message)


def test_wrong_password_is_auth_failure_without_the_password(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login names the user and the server's answer, never the password."""
    options = {"tls_context": server_tls, "require_starttls": True, "authenticator": check_login}
    wrong = "hunter2-wrong-password"
    with caplog.at_level(logging.DEBUG), smtp_server(Inbox(), **options) as port:
        settings = channel(port, starttls=True, username="watcher", password=wrong)
        error = failure(settings, tls=client_tls)
    shown = str(error) + repr(error) + caplog.text
    expected = (True, True, False)
    actual = (
        error.message.startswith(f"authentication failed for 'watcher' at 127.0.0.1:{port}: 535"),
        str(error).startswith("channel 'ops-mail': "),
        wrong in shown,
    )
    assert expected == actual


# The client refusing the certificate makes the server's TLS setup fail in aiosmtpd's own
# thread or event loop; when that surfaces there is the expected outcome, not a bug.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_untrusted_certificate_fails_tls(server_tls: ssl.SSLContext) -> None:
    """A certificate no trusted CA signed fails the STARTTLS step, saying so."""
    with smtp_server(Inbox(), tls_context=server_tls, require_starttls=True) as port:
        error = failure(channel(port, starttls=True))
    assert (True, True) == ("127.0.0.1" in error.message, "CERTIFICATE_VERIFY_FAILED" in str(error))


def test_starttls_required_but_not_offered() -> None:
    """starttls = true against a server without STARTTLS fails instead of sending in clear."""
    inbox = Inbox()
    with smtp_server(inbox) as port:
        error = failure(channel(port, starttls=True))
    expected = (True, [])
    assert expected == ("STARTTLS" in error.message.upper(), inbox.received)


def test_every_recipient_refused() -> None:
    """When the server refuses every recipient, the error lists each with its answer."""
    inbox = Inbox(refuse={"ops@example.org", "lilei@example.org"})
    with smtp_server(inbox) as port:
        error = failure(channel(port))
    expected = (
        f"127.0.0.1:{port} refused every recipient: "
        "ops@example.org (550 5.1.1 no such mailbox here); "
        "lilei@example.org (550 5.1.1 no such mailbox here)"
    )
    assert expected == error.message


def test_silent_server_times_out() -> None:
    """A server that accepts the connection but never greets: a timeout naming the server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        error = failure(channel(port, timeout="0.3s"))
    assert f"timed out after 0.3s talking to 127.0.0.1:{port}" == error.message
