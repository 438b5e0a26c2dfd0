"""Tell the service manager how the daemon is doing: the ``sd_notify`` protocol, stdlib only.

    ready()                  start-up done (systemd ``Type=notify`` waits for it)
    watchdog()               "still alive"; due every watchdog_interval() / 2
    reloading() ... ready()  around a SIGHUP reload
    stopping()               shutdown begun
    status("3 sources")      a line ``systemctl status`` shows

Each call sends one datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). Without ``$NOTIFY_SOCKET`` (a terminal, Docker, tests)
every call is a no-op that returns False; a send that fails is logged at debug level and
returns False too: the manager's absence is never an error.

Does not: decide when the daemon is healthy (``keep_watchdog`` asks a callback), or read any
setting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

log = logging.getLogger("watcher.notify")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def socket_address(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """The address ``$NOTIFY_SOCKET`` names (abstract ``@name`` as ``b"\\0name"``), or None."""
    name = _environ(environ).get(NOTIFY_SOCKET, "")
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # unset, empty, or a kind we do not speak (vsock:)


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to the service manager; True if it was sent."""
    address = socket_address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as e:
        log.debug("notify failed", extra={"kv": {"message": message, "error": str(e)}})
        return False
    return True


def ready(*, environ: Mapping[str, str] | None = None) -> bool:
    """Start-up (or a reload) is done: ``READY=1``."""
    return notify("READY=1", environ=environ)


def watchdog(*, environ: Mapping[str, str] | None = None) -> bool:
    """Still alive: ``WATCHDOG=1``; the manager restarts a service that stops sending it."""
    return notify("WATCHDOG=1", environ=environ)


def reloading(*, environ: Mapping[str, str] | None = None) -> bool:
    """A reload began (``RELOADING=1`` with ``MONOTONIC_USEC``); send ``ready()`` when done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", environ=environ)


def stopping(*, environ: Mapping[str, str] | None = None) -> bool:
    """Shutdown began: ``STOPPING=1``."""
    return notify("STOPPING=1", environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """A one-line status for ``systemctl status``: ``STATUS=text`` (newlines become spaces)."""
    return notify(f"STATUS={' '.join(text.splitlines())}", environ=environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> timedelta | None:
    """The manager's watchdog timeout from ``$WATCHDOG_USEC``, or None when there is none.

    None too when ``$WATCHDOG_PID`` names another process (the timeout is not ours).
    """
    env = _environ(environ)
    pid = env.get(WATCHDOG_PID)
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    return timedelta(microseconds=usec) if usec > 0 else None


async def keep_watchdog(
    is_healthy: Callable[[], bool], *, environ: Mapping[str, str] | None = None
) -> None:
    """Ping the watchdog at half its interval while ``is_healthy()``; returns at once if none.

    Runs until cancelled. A ping is skipped while ``is_healthy()`` is False, so a daemon that
    is up but stuck is restarted by the manager rather than kept alive by this loop.
    """
    interval = watchdog_interval(environ)
    if interval is None:
        return
    period = interval.total_seconds() / 2
    while True:
        if is_healthy():
            watchdog(environ=environ)
        else:
            log.warning("watchdog ping skipped", extra={"kv": {"reason": "unhealthy"}})
        await asyncio.sleep(period)
