"""The daemon's small HTTP server: health, metrics, and the stories as Atom and JSON feeds.

    GET /healthz        200 {"status": "ok", "checks": {...}} when every check passes, else 503
    GET /metrics        Prometheus text format 0.0.4, from the metrics registry
    GET /stories.atom   Atom 1.0: the newest stories, each entry listing every outlet's copy
    GET /stories.json   JSON Feed 1.1: the same
                        ?limit=N (at most feed_limit), ?min_outlets=N (default 1)

HTTP/1.1 over ``asyncio.start_server`` (stdlib), one request per connection, GET and HEAD only;
the request head is capped in size and time. The data comes from callables the daemon gives
(``health``, ``stories``) and a ``Metrics`` registry: this module imports no store or daemon.
The callables run in a worker thread with a time limit, so a slow store never stalls the
event loop that also runs the polling.

Does not: authenticate (keep it on loopback, or put a proxy in front), keep connections open,
cache feeds, or write anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from watcher.errors import WatcherError
from watcher.feeds import ATOM_TYPE, JSON_FEED_TYPE, atom_feed, json_feed, newest_first
from watcher.log import log_event
from watcher.metrics import CONTENT_TYPE as METRICS_TYPE
from watcher.metrics import Metrics
from watcher.models import Story
from watcher.settings import parse_listen

HealthCheck = Callable[[], Mapping[str, bool]]
"""Named checks (``{"scheduler": True, "store": True}``); healthy when all are True."""

StoryFeed = Callable[[int, int], Sequence[Story]]
"""``(limit, min_outlets)`` -> up to ``limit`` stories with that many outlets, newest first."""

MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 64
JSON_TYPE = "application/json; charset=utf-8"

log = logging.getLogger("watcher.server")
T = TypeVar("T")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


class RequestError(WatcherError):
    """The request cannot be answered as asked; ``status`` says why (400, 405, 431 ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """One parsed request head."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case


@dataclass(frozen=True)
class Response:
    """What is sent back: status, body, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, *, head_only: bool = False) -> bytes:
        """The response as bytes on the wire (HEAD: the same headers, no body)."""
        reason = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only or self.status == 304 else head + self.body


def text_response(status: int, message: str) -> Response:
    """A plain-text response, for errors."""
    return Response(status, (message + "\n").encode(), headers={"Cache-Control": "no-store"})


def json_response(status: int, payload: object, content_type: str = JSON_TYPE) -> Response:
    """A JSON response (UTF-8, not ASCII-escaped)."""
    body = json.dumps(payload, ensure_ascii=False, indent=1).encode()
    return Response(status, body, content_type, {"Cache-Control": "no-store"})


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Read and parse one request head; RequestError if it is malformed or too large."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise RequestError(431, "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise RequestError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in filter(None, lines[1:]):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise RequestError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    target = urlsplit(parts[1])
    return Request(parts[0], target.path, dict(parse_qsl(target.query)), headers)


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """The HTTP server; ``async with Server(...)`` listens, leaving the block closes it."""

    def __init__(
        self,
        listen: str,
        *,
        health: HealthCheck,
        metrics: Metrics,
        stories: StoryFeed,
        feed_limit: int = 50,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.health = health
        self.metrics = metrics
        self.stories = stories
        self.feed_limit = feed_limit
        self.timeout_s = timeout_s
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/": self._index,
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/stories.atom": self._atom,
            "/stories.json": self._json_feed,
        }

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on; the real port once started with port 0."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self.host, self.port

    async def start(self) -> tuple[str, int]:
        """Listen; return the address. Warns when the address is not loopback."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_HEAD
        )
        host, port = self.address
        log_event(log, logging.INFO, "server listening", host=host, port=port)
        if not is_loopback(self.host):
            log_event(
                log,
                logging.WARNING,
                "server listening beyond loopback",
                host=self.host,
                hint="anyone who can reach it reads health, metrics and feeds",
            )
        return host, port

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening, let requests in progress finish (``grace_s``), drop the rest."""
        if self._server is None:
            return
        self._server.close()
        pending = set(self._handlers)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            if len(self._handlers) > MAX_CONNECTIONS:
                writer.write(text_response(503, "too many connections").encode())
            else:
                await self._exchange(reader, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or was too slow: nothing to answer
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(read_request(reader), self.timeout_s)
        except RequestError as e:
            writer.write(text_response(e.status, e.message).encode())
            return
        response = await self.respond(request)
        log_event(
            log,
            logging.DEBUG,
            "http request",
            method=request.method,
            path=request.path,
            status=response.status,
        )
        writer.write(response.encode(head_only=request.method == "HEAD"))

    async def respond(self, request: Request) -> Response:
        """The response to one request (routing, method check, bad parameters)."""
        route = self._routes.get(request.path)
        if route is None:
            return text_response(404, f"no such page: {request.path}")
        if request.method not in ("GET", "HEAD"):
            allowed = text_response(405, f"{request.method} not allowed: use GET or HEAD")
            allowed.headers["Allow"] = "GET, HEAD"
            return allowed
        try:
            return await route(request)
        except RequestError as e:
            return text_response(e.status, e.message)
        except TimeoutError:
            log_event(log, logging.ERROR, "http data timed out", path=request.path)
            return text_response(
                503, f"{request.path}: the data took longer than {self.timeout_s}s"
            )
        except Exception as e:  # the store or a collector failed: say so, keep serving
            log_event(log, logging.ERROR, "http data failed", path=request.path, error=repr(e))
            return text_response(500, f"{request.path}: {type(e).__name__}")

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run a data callable in a worker thread, for at most ``timeout_s``."""
        return await asyncio.wait_for(asyncio.to_thread(fn), self.timeout_s)

    async def _index(self, request: Request) -> Response:
        pages = "\n".join(path for path in self._routes if path != "/")
        return Response(200, f"watcher\n{pages}\n".encode())

    async def _healthz(self, request: Request) -> Response:
        try:
            checks = {name: bool(ok) for name, ok in (await self._call(self.health)).items()}
        except Exception as e:  # a check that hangs or breaks is a failed check, not a 500
            log_event(log, logging.ERROR, "health check failed", error=repr(e))
            return json_response(503, {"status": "fail", "error": type(e).__name__})
        healthy = bool(checks) and all(checks.values())
        payload = {"status": "ok" if healthy else "fail", "checks": checks}
        return json_response(200 if healthy else 503, payload)

    async def _metrics(self, request: Request) -> Response:
        text = await self._call(self.metrics.render)
        return Response(200, text.encode(), METRICS_TYPE, {"Cache-Control": "no-store"})

    async def _atom(self, request: Request) -> Response:
        stories = await self._feed_stories(request)
        body = atom_feed(stories, self_url=self._url(request), now=self.clock())
        return _conditional(request, Response(200, body, ATOM_TYPE))

    async def _json_feed(self, request: Request) -> Response:
        stories = await self._feed_stories(request)
        payload = json_feed(stories, feed_url=self._url(request))
        body = json.dumps(payload, ensure_ascii=False, indent=1).encode()
        return _conditional(request, Response(200, body, JSON_FEED_TYPE))

    async def _feed_stories(self, request: Request) -> list[Story]:
        limit = min(_positive(request.query, "limit", self.feed_limit), self.feed_limit)
        min_outlets = _positive(request.query, "min_outlets", 1)
        stories = await self._call(lambda: self.stories(limit, min_outlets))
        return newest_first(stories, limit)

    def _url(self, request: Request) -> str:
        """This request's own URL, with the Host it was asked under when that looks sane."""
        host = request.headers.get("host", "")
        if not _HOST.fullmatch(host):
            bound, port = self.address
            host = f"[{bound}]:{port}" if ":" in bound else f"{bound}:{port}"
        query = "&".join(
            f"{k}={v}" for k, v in sorted(request.query.items()) if k in ("limit", "min_outlets")
        )
        return f"http://{host}{request.path}" + (f"?{query}" if query else "")


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise RequestError(400, f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


def _conditional(request: Request, response: Response) -> Response:
    """Add an ETag; answer 304 when the client already has this body."""
    etag = '"' + hashlib.blake2b(response.body, digest_size=16).hexdigest() + '"'
    response.headers.update({"ETag": etag, "Cache-Control": "no-cache"})
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(304, b"", response.content_type, response.headers)
    return response
