"""The one exception tree of watcher.

Every message names the thing at fault (a config key, a source, a file and line, a channel)::

    WatcherError                    root; str() names the thing at fault
    +-- ConfigError(key)            at start-up only -> exit code 2
    +-- SourceError(source)         one source's pass failed; recorded; never stops other sources
    |   +-- FetchError(status, retry_after)
    |   +-- ParseError
    +-- ArchiveError(path, line)    unreadable/unwritable dump file; backfill reports it and goes on
    |   +-- NotADumpError           a file of no dump variant at all (a README); backfill skips it
    +-- StoreError                  wraps the driver's errors, cause chained
    +-- DeliveryError(channel)      alert not sent; the outbox keeps it and retries

Foreign exceptions are translated at each edge with ``raise ... from e``.
"""

from __future__ import annotations


class WatcherError(Exception):
    """Root of every error watcher raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as the same class with the same fields, without calling ``__init__`` again.

        An error raised in a parse worker crosses to the daemon pickled; the default would
        call ``__init__`` with the message alone, fail, and break the whole process pool.
        """
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[WatcherError], args: tuple[object, ...], fields: dict[str, object]
) -> object:
    error = cls.__new__(cls, *args)  # BaseException.__new__ stores args, runs no __init__
    error.args = args
    error.__dict__.update(fields)
    return error


class ConfigError(WatcherError):
    """A setting is missing, malformed or out of range; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str, *, file: str | None = None) -> None:
        self.key = key
        self.message = message
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


class SourceError(WatcherError):
    """One source's pass failed; the source's state records it."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"source {source!r}: {message}")


class FetchError(SourceError):
    """The feed could not be fetched; ``status`` is the HTTP status when there was one."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(source, message)


class ParseError(SourceError):
    """The fetched body is not a feed we can read."""


class ArchiveError(WatcherError):
    """A dump file cannot be read or written; names the path and, when known, the line."""

    def __init__(self, path: str | None, message: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = path or "<text>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class NotADumpError(ArchiveError):
    """The file is of no dump variant at all (a README beside the posts, say)."""


class StoreError(WatcherError):
    """The store failed; the driver's error is chained as the cause."""


class DeliveryError(WatcherError):
    """An alert could not be delivered on a channel; the outbox keeps it and retries."""

    def __init__(self, channel: str, message: str) -> None:
        self.channel = channel
        self.message = message
        super().__init__(f"channel {channel!r}: {message}")
