"""sd_notify: datagrams on a real unix socket (a path, and the abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from watcher import notify


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A unix datagram socket standing in for systemd, and the environment naming it."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, {"NOTIFY_SOCKET": str(path)}


def test_ready_sends_ready(manager: tuple[socket.socket, dict[str, str]]) -> None:
    """ready() sends READY=1 and says it was sent."""
    sock, env = manager
    sent = notify.ready(environ=env)
    assert (True, b"READY=1") == (sent, sock.recv(1024))


@pytest.mark.parametrize(
    ("call", "expected"),
    [(notify.watchdog, b"WATCHDOG=1"), (notify.stopping, b"STOPPING=1")],
)
def test_state_messages(
    manager: tuple[socket.socket, dict[str, str]], call: object, expected: bytes
) -> None:
    """watchdog() and stopping() send their one line."""
    sock, env = manager
    assert callable(call)
    call(environ=env)
    assert expected == sock.recv(1024)


def test_status_is_one_line(manager: tuple[socket.socket, dict[str, str]]) -> None:
    """status() folds newlines so the STATUS= message stays one assignment."""
    sock, env = manager
    notify.status("3 sources\npolling", environ=env)
    assert b"STATUS=3 sources polling" == sock.recv(1024)


def test_reloading_carries_monotonic_time(manager: tuple[socket.socket, dict[str, str]]) -> None:
    """reloading() sends RELOADING=1 and a MONOTONIC_USEC= line of digits."""
    sock, env = manager
    notify.reloading(environ=env)
    first, second = sock.recv(1024).decode().split("\n")
    assert ("RELOADING=1", "MONOTONIC_USEC", True) == (
        first,
        second.partition("=")[0],
        second.partition("=")[2].isdigit(),
    )


def test_abstract_namespace_socket() -> None:
    """NOTIFY_SOCKET=@name reaches a socket bound in the abstract namespace."""
    name = f"watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notify.ready(environ={"NOTIFY_SOCKET": f"@{name}"})
        assert b"READY=1" == sock.recv(1024)


@pytest.mark.parametrize("value", ["", "vsock:2:1234", "relative/path"])
def test_no_usable_socket_is_a_no_op(value: str) -> None:
    """Without a usable NOTIFY_SOCKET every call returns False and raises nothing."""
    env = {"NOTIFY_SOCKET": value} if value else {}
    assert (False, False) == (notify.ready(environ=env), notify.watchdog(environ=env))


def test_socket_gone_returns_false(tmp_path: Path) -> None:
    """A NOTIFY_SOCKET path where nothing listens gives False, not an exception."""
    env = {"NOTIFY_SOCKET": str(tmp_path / "nothing.sock")}
    assert False is notify.ready(environ=env)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, timedelta(seconds=30)),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, timedelta(seconds=30)),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: timedelta | None) -> None:
    """WATCHDOG_USEC gives the timeout, unless WATCHDOG_PID names another process."""
    assert expected == notify.watchdog_interval(env)


def test_keep_watchdog_pings_while_healthy(manager: tuple[socket.socket, dict[str, str]]) -> None:
    """keep_watchdog sends WATCHDOG=1 again and again while the daemon is healthy."""
    sock, env = manager
    env = {**env, "WATCHDOG_USEC": "20000"}  # 20 ms: a ping every 10 ms

    async def go() -> list[bytes]:
        task = asyncio.create_task(notify.keep_watchdog(lambda: True, environ=env))
        pings = [await asyncio.to_thread(sock.recv, 1024) for _ in range(3)]
        task.cancel()
        return pings

    assert [b"WATCHDOG=1"] * 3 == asyncio.run(go())


def test_keep_watchdog_skips_pings_while_unhealthy(
    manager: tuple[socket.socket, dict[str, str]],
) -> None:
    """An unhealthy daemon is not kept alive: no ping until the check passes again."""
    sock, env = manager
    env = {**env, "WATCHDOG_USEC": "20000"}
    checks = iter([False, False, False, True])

    async def go() -> bytes:
        task = asyncio.create_task(notify.keep_watchdog(lambda: next(checks, True), environ=env))
        ping = await asyncio.to_thread(sock.recv, 1024)
        task.cancel()
        return ping

    ping = asyncio.run(go())
    assert (b"WATCHDOG=1", None) == (ping, next(checks, None))


def test_keep_watchdog_returns_without_a_watchdog() -> None:
    """Without WATCHDOG_USEC keep_watchdog returns at once (nothing to keep alive)."""
    assert None is asyncio.run(notify.keep_watchdog(lambda: True, environ={}))
