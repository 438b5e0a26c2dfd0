"""Logging: JSON lines carry key-values, the console is readable, and secrets never show."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from watcher.errors import ConfigError
from watcher.log import MASK, get_logger, log_event, redact_urls, setup_logging


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Always a terminal."""
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    for record in records:
        record.pop("ts")
    return records


def json_stream(level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, "json", stream=stream)
    return stream


def test_json_line_carries_event_and_key_values() -> None:
    """Each event is one JSON object with level, event, logger and its key-values."""
    stream = json_stream()
    get_logger("watcher.test").info("source updated", source="guancha", new=3, ok=True)
    expected = [
        {
            "level": "info",
            "event": "source updated",
            "logger": "watcher.test",
            "source": "guancha",
            "new": 3,
            "ok": True,
        }
    ]
    assert expected == json_lines(stream)


def test_json_timestamp_is_utc_iso() -> None:
    """The ts field is an ISO 8601 UTC time with milliseconds."""
    stream = json_stream()
    get_logger("watcher.test").info("tick")
    ts = json.loads(stream.getvalue())["ts"]
    expected = (24, "Z", "T")
    assert expected == (len(ts), ts[-1], ts[10])


def test_bound_context_is_on_every_event() -> None:
    """bind() adds its key-values to every event; a call's own key-values win."""
    stream = json_stream()
    job = get_logger("watcher.test").bind(source="a", attempt=1)
    job.warning("fetch failed", status=503)
    job.info("retrying", attempt=2)
    expected = [
        ("fetch failed", "warning", {"source": "a", "attempt": 1, "status": 503}),
        ("retrying", "info", {"source": "a", "attempt": 2}),
    ]
    actual = [
        (r.pop("event"), r.pop("level"), {k: v for k, v in r.items() if k != "logger"})
        for r in json_lines(stream)
    ]
    assert expected == actual


def test_reserved_names_do_not_clobber_fields() -> None:
    """A key-value named like a reserved field is written as kv_<name>."""
    stream = json_stream()
    get_logger("watcher.test").info("odd", level=5, event="x")
    expected = {"level": "info", "event": "odd", "kv_level": 5, "kv_event": "x"}
    actual = {k: v for k, v in json_lines(stream)[0].items() if k != "logger"}
    assert expected == actual


def test_plain_logger_with_log_event_and_extra() -> None:
    """log_event and extra={"kv": ...} on a stdlib logger give the same line."""
    stream = json_stream()
    logger = logging.getLogger("watcher.plain")
    log_event(logger, logging.INFO, "story matched", rule="ukraine")
    logger.info("story matched", extra={"kv": {"rule": "ukraine"}})
    line = {"level": "info", "event": "story matched", "logger": "watcher.plain", "rule": "ukraine"}
    assert [line, line] == json_lines(stream)


def test_level_filters_events() -> None:
    """Events below the configured level are not written."""
    stream = json_stream("warning")
    log = get_logger("watcher.test")
    log.info("quiet")
    log.error("loud")
    expected = ["loud"]
    assert expected == [r["event"] for r in json_lines(stream)]


def test_exception_goes_in_exc() -> None:
    """exception() logs at error level with the traceback in the exc field."""
    stream = json_stream()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("watcher.test").exception("pass crashed", source="a")
    record = json_lines(stream)[0]
    expected = ("error", "a", "RuntimeError: boom")
    assert expected == (record["level"], record["source"], record["exc"].splitlines()[-1])


def test_values_json_cannot_encode_become_text() -> None:
    """Times, durations and other objects are written as text or seconds, not as errors."""
    stream = json_stream()
    at = datetime(2026, 11, 3, 5, 20, tzinfo=UTC)
    get_logger("watcher.test").info("x", at=at, every=timedelta(minutes=2), path=Path("/d"))
    record = json_lines(stream)[0]
    expected = ("2026-11-03T05:20:00+00:00", 120.0, "/d")
    assert expected == (record["at"], record["every"], record["path"])


# --- secrets --------------------------------------------------------------------------------------


def test_secret_keys_and_secret_values_are_masked() -> None:
    """Credential-named keys and SecretStr values are masked, in nested mappings too."""
    stream = json_stream()
    get_logger("watcher.test").info(
        "channel configured",
        password="hunter2",
        api_token="t0k",
        smtp=SecretStr("s3cr3t"),
        headers={"Authorization": "Bearer abc", "Accept": "text/xml"},
        author="Reuters",
    )
    expected = {
        "password": MASK,
        "api_token": MASK,
        "smtp": MASK,
        "headers": {"Authorization": MASK, "Accept": "text/xml"},
        "author": "Reuters",
    }
    actual = {k: v for k, v in json_lines(stream)[0].items() if k in expected}
    assert expected == actual


def test_url_passwords_are_masked_everywhere() -> None:
    """A URL's password is masked in values, lists, event text and tracebacks."""
    stream = json_stream()
    log = get_logger("watcher.test")
    log.info("fetching", url="https://bob:pw1@feeds.example.org/a.xml", via=["socks5://u:pw2@h"])
    logging.getLogger("httpx").info("HTTP Request: GET http://x:pw3@127.0.0.1/ 200")
    try:
        raise OSError("cannot reach http://y:pw4@127.0.0.1:9")
    except OSError:
        log.exception("fetch crashed")
    text = stream.getvalue()
    records = json_lines(stream)
    expected: tuple[object, ...] = (
        [],
        f"https://bob:{MASK}@feeds.example.org/a.xml",
        [f"socks5://u:{MASK}@h"],
        f"HTTP Request: GET http://x:{MASK}@127.0.0.1/ 200",
        f"OSError: cannot reach http://y:{MASK}@127.0.0.1:9",
    )
    actual = (
        [pw for pw in ("pw1", "pw2", "pw3", "pw4") if pw in text],
        records[0]["url"],
        records[0]["via"],
        records[1]["event"],
        records[2]["exc"].splitlines()[-1],
    )
    assert expected == actual


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://u:p@h.example/x", f"https://u:{MASK}@h.example/x"),
        (
            "see http://:tok@127.0.0.1:8080/a and more",
            f"see http://:{MASK}@127.0.0.1:8080/a and more",
        ),
        ("https://user@h.example/", "https://user@h.example/"),
        ("http://127.0.0.1:8080/path", "http://127.0.0.1:8080/path"),
        ("no url here: a@b", "no url here: a@b"),
    ],
)
def test_redact_urls(text: str, expected: str) -> None:
    """redact_urls masks only the password part of URL userinfo."""
    assert expected == redact_urls(text)


# --- console --------------------------------------------------------------------------------------


def test_console_line_is_event_then_key_values() -> None:
    """The console format is time, level, event, then key=value, quoting values with spaces."""
    stream = io.StringIO()
    setup_logging("info", "console", stream=stream)
    get_logger("watcher.test").info("source updated", source="a", new=3, title="两 words")
    line = stream.getvalue().rstrip("\n")
    expected = 'info    source updated source=a new=3 title="两 words"'
    assert expected == line.split(" ", 1)[1]


def test_auto_format_follows_the_terminal() -> None:
    """auto writes console lines to a terminal and JSON lines elsewhere."""
    terminal, pipe = FakeTerminal(), io.StringIO()
    setup_logging("info", "auto", stream=terminal)
    get_logger("watcher.test").info("hello", password="x")
    setup_logging("info", "auto", stream=pipe)
    get_logger("watcher.test").info("hello", password="x")
    expected = (f"info    hello password={MASK}", {"event": "hello", "password": MASK})
    actual = (
        terminal.getvalue().rstrip("\n").split(" ", 1)[1],
        {k: v for k, v in json.loads(pipe.getvalue()).items() if k in ("event", "password")},
    )
    assert expected == actual


def test_setup_again_replaces_its_own_handler_only() -> None:
    """A second setup_logging replaces the first one's handler and keeps other handlers."""
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging("info", "json", stream=io.StringIO())
    setup_logging("debug", "json", stream=io.StringIO())
    expected = (before + 1, logging.DEBUG)
    assert expected == (len(root.handlers), root.level)


@pytest.mark.parametrize(
    ("level", "fmt", "key"),
    [("loud", "json", "watcher.log_level"), ("info", "xml", "watcher.log_format")],
)
def test_bad_level_or_format_is_a_config_error(level: str, fmt: str, key: str) -> None:
    """An unknown level or format raises ConfigError naming the setting."""
    with pytest.raises(ConfigError) as info:
        setup_logging(level, fmt, stream=io.StringIO())
    assert key == info.value.key
