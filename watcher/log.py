"""Logging for watcher: one event per line, JSON lines for machines, ``event key=value`` for people.

An event is a fixed lowercase phrase; everything that varies goes in key-values::

    from watcher.log import get_logger, setup_logging

    setup_logging("info", "auto")                 # once, by the CLI, from Settings.watcher
    log = get_logger(__name__)                    # an EventLogger over logging.getLogger(__name__)
    log.info("source updated", source="guancha-headline", new=3)
    job = log.bind(source="guancha-headline")     # bind context once per job ...
    job.warning("fetch failed", status=503)       # ... and every event of the job carries it
    job.exception("pass crashed")                 # error level, with the traceback

Plain stdlib loggers work too: ``log_event(logger, logging.INFO, "source updated", new=3)``, which
is ``logger.info("source updated", extra={"kv": {"new": 3}})``. Records from other libraries
(httpx, apscheduler) have no key-values; their message becomes the event.

Output, chosen by ``setup_logging(level, fmt)``:

- ``json`` (and ``auto`` when stderr is not a terminal, e.g. under systemd): one JSON object per
  line, ``{"ts": "2026-11-03T05:20:20.123Z", "level": "info", "event": "source updated",
  "logger": "watcher.pipeline", "source": "guancha-headline", "new": 3}``; a traceback goes in
  ``"exc"``. A key-value named like a reserved field is written as ``kv_<name>``.
- ``console`` (and ``auto`` on a terminal):
  ``05:20:20 info    source updated source=guancha-headline new=3``.

Secrets are never written: a ``SecretStr``/``SecretBytes`` value, and any value whose key looks like
a credential (password, passwd, passphrase, secret, token, authorization, api_key, cookie,
credential), is shown as ``**********``, in nested mappings too; the password of a URL with userinfo
(``https://user:pass@host``) is masked wherever it appears, in values, events and tracebacks.

What this module does not do: it reads no settings, writes no files and rotates nothing (the service
manager owns the stream).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TextIO

from pydantic import SecretBytes, SecretStr

from watcher.errors import ConfigError

MASK = "**********"
FORMATS = ("auto", "json", "console")

_HANDLER_NAME = "watcher"
_SECRET_KEY = re.compile(
    r"passw(?:or)?d|passphrase|secret|token|authorization|api[-_]?key|cookie|credential", re.I
)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]*@", re.I)
_RESERVED = ("ts", "level", "event", "logger", "exc")
_BARE = re.compile(r"[^\s\"'=]+")


# --- redaction ------------------------------------------------------------------------------------


def redact_urls(text: str) -> str:
    """Mask the password of every ``scheme://user:password@host`` URL in ``text``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)


def redact(key: str, value: object) -> object:
    """``value`` safe to log under ``key``: secrets masked, containers redacted item by item."""
    if value is None:
        return None
    if isinstance(value, SecretStr | SecretBytes) or _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, Mapping):
        return {str(k): redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(key, item) for item in value]
    return value


def _plain(value: object) -> object:
    """JSON's fallback for values it cannot write: times as ISO text, anything else as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return redact_urls(str(value))  # str() of an exception or a URL object may carry a password


def _record_kv(record: logging.LogRecord) -> dict[str, object]:
    kv = getattr(record, "kv", None)
    if kv is None:
        return {}
    if not isinstance(kv, Mapping):
        return {"kv": redact("kv", kv)}
    return {str(k): redact(str(k), v) for k, v in kv.items()}


# --- formatters -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, event, logger, then the key-values."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": redact_urls(record.getMessage()),
            "logger": record.name,
        }
        for key, value in _record_kv(record).items():
            payload[f"kv_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            payload["exc"] = redact_urls(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=_plain)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one readable line, then its traceback if any."""
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        parts = [when, f"{record.levelname.lower():<7}", redact_urls(record.getMessage())]
        parts += [f"{k}={_console_value(v)}" for k, v in _record_kv(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + redact_urls(self.formatException(record.exc_info))
        return line


def _console_value(value: object) -> str:
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    return str(_plain(value)) if isinstance(value, datetime | timedelta) else str(value)


# --- setup ----------------------------------------------------------------------------------------


def setup_logging(level: str, fmt: str = "auto", *, stream: TextIO | None = None) -> None:
    """Send every record at ``level`` or above to stderr (or ``stream``) in format ``fmt``.

    Calling it again replaces the handler it installed; handlers installed by others stay.
    """
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_formatter(fmt, out))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level_number(level))


def _formatter(fmt: str, out: TextIO) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ConfigError("watcher.log_format", f"must be one of {', '.join(FORMATS)}")
    if fmt == "console" or (fmt == "auto" and _is_terminal(out)):
        return ConsoleFormatter()
    return JsonFormatter()


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream is no terminal
        return False


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ConfigError("watcher.log_level", "must be debug, info, warning, error or critical")
    return number


# --- emitting -------------------------------------------------------------------------------------


def log_event(logger: logging.Logger, level: int, event: str, /, **kv: object) -> None:
    """Log ``event`` with key-values on a plain stdlib ``logger``."""
    logger.log(level, event, extra={"kv": kv}, stacklevel=2)


def get_logger(name: str) -> EventLogger:
    """An EventLogger over ``logging.getLogger(name)``, with no context bound."""
    return EventLogger(logging.getLogger(name))


class EventLogger:
    """A stdlib logger that takes an event phrase and key-values; ``bind`` adds context."""

    def __init__(self, logger: logging.Logger, context: Mapping[str, object] | None = None):
        self.logger = logger
        self.context: Mapping[str, object] = dict(context or {})

    def bind(self, **kv: object) -> EventLogger:
        """A logger that adds ``kv`` to every event, on top of this one's context."""
        return EventLogger(self.logger, {**self.context, **kv})

    def debug(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at debug level."""
        self._emit(logging.DEBUG, event, kv)

    def info(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at info level."""
        self._emit(logging.INFO, event, kv)

    def warning(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at warning level."""
        self._emit(logging.WARNING, event, kv)

    def error(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at error level."""
        self._emit(logging.ERROR, event, kv)

    def critical(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at critical level."""
        self._emit(logging.CRITICAL, event, kv)

    def exception(self, event: str, /, **kv: object) -> None:
        """Log ``event`` at error level with the exception being handled."""
        self._emit(logging.ERROR, event, kv, exc_info=True)

    def _emit(
        self, level: int, event: str, kv: Mapping[str, object], *, exc_info: bool = False
    ) -> None:
        if self.logger.isEnabledFor(level):
            merged = {**self.context, **kv}
            # stacklevel 3: the record names the caller of info()/warning(), not this module
            self.logger.log(level, event, extra={"kv": merged}, exc_info=exc_info, stacklevel=3)
