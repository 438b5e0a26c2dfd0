"""Local HTTP servers for tests, all on 127.0.0.1: a scripted feed server, a forward proxy, a relay.

    server = FeedServer()                       # or the ``feed_server`` fixture (closed for you)
    server.route("/a.xml", Reply(body=FEED, headers={"Content-Type": "application/rss+xml"}))
    server.route("/flaky", Reply(status=503), Reply(body=FEED))  # in turn; the last one repeats
    server.route("/x", lambda request: Reply(body=request.query.encode()))  # computed per request
    server.feed("/b.xml", FEED, etag='"v1"')    # a feed that answers 304 to its own validators
    server.url("/a.xml")                        # http://127.0.0.1:<port>/a.xml
    server.requests_to("/a.xml")[0].headers["user-agent"]   # every request, headers lower-cased
    server.in_flight.max                        # most requests it was handling at one time

    Reply(status, body, headers, delay_s=, body_delay_s=, encoding="gzip"|"deflate"|"br",
          length=False)                         # slow answers, slow bodies, compressed bodies,
                                                # bodies that end when the connection closes
    serve_rsshub(server, {"/guancha/headline": FEED})   # the server answers like an RSSHub instance
    server.route("/", relay)                    # a URL-prefix relay: GETs the URL in the query
    ForwardProxy(auth=("user", "pass"))         # an HTTP proxy for absolute-URI requests (fixture
                                                # ``forward_proxy``); its ``requests`` log them
    RSSHUB_ERROR_PAGE, CLOUDFLARE_CHALLENGE_PAGE, PLAIN_TEXT_NOTICE: bodies public instances send
    closed_port_url()                           # a URL on which nothing listens (refused)

The proxy and the relay only ever connect to 127.0.0.1: anything else gets a 403.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import os
import socket
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import pytest

SHARED_FEEDS = Path(
    os.environ.get(
        "WATCHER_FEEDS", Path(__file__).resolve().parent.parent.parent / "shared" / "feeds"
    )
)
"""The shared feed fixtures (``../shared/feeds`` beside the checkout, or ``$WATCHER_FEEDS``)."""

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",  # recomputed from the body that is sent on
    )
)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers and body, and how slowly to send them."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Wait this long before answering at all."""
    body_delay_s: float = 0.0
    """Wait this long between the headers and the body (a slow body)."""
    encoding: str | None = None
    """``gzip``, ``deflate`` or ``br``: send the body compressed, with Content-Encoding."""
    length: bool = True
    """False: no Content-Length; the body ends when the connection closes."""


@dataclass(frozen=True)
class Request:
    """One request as a server received it."""

    method: str
    target: str
    """As on the request line: a path, or an absolute URI when sent to a proxy."""
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-case names; a repeated header's values joined by ", "."""
    body: bytes = b""


Handler = Callable[[Request], Reply]


class InFlight:
    """Counts the requests being handled at once, and the most at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.max = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one request in flight while the block runs."""
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


# --- the HTTP plumbing ----------------------------------------------------------------------------


class _Owner(Protocol):
    def answer(self, handler: _Handler) -> None: ...


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away (timeouts in tests do that) is no error worth printing."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection is dropped after this long
    server: _Httpd

    def do_GET(self) -> None:
        self.server.owner.answer(self)

    def do_HEAD(self) -> None:
        self.server.owner.answer(self)

    def do_POST(self) -> None:
        self.server.owner.answer(self)

    def do_PUT(self) -> None:
        self.server.owner.answer(self)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``requests`` instead."""

    def recorded(self) -> Request:
        """This request as a Request."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        parts = urlsplit(self.path)
        return Request(self.command, self.path, parts.path or "/", parts.query, headers, body)

    def send(self, reply: Reply, closing: threading.Event) -> None:
        """Write ``reply``, waiting as it says; stop early when the server is closing."""
        if reply.delay_s and closing.wait(reply.delay_s):
            self.close_connection = True
            return
        body = compress(reply.body, reply.encoding)
        self.send_response_only(reply.status)
        headers = {"Server": "feedserver", "Date": formatdate(usegmt=True), **reply.headers}
        if reply.encoding:
            headers["Content-Encoding"] = reply.encoding
        has_body = reply.status not in (204, 304) and self.command != "HEAD"
        if not reply.length:
            headers["Connection"] = "close"
            self.close_connection = True
        elif reply.status not in (204, 304):
            headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.body_delay_s and closing.wait(reply.body_delay_s):
            self.close_connection = True
            return
        if has_body:
            self.wfile.write(body)


def compress(body: bytes, encoding: str | None) -> bytes:
    """``body`` compressed with the Content-Encoding ``encoding`` (None: as it is)."""
    if encoding is None:
        return body
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "br":
        import brotli  # only the tests that send brotli need it

        return bytes(brotli.compress(body))
    raise ValueError(f"no such Content-Encoding in the feed server: {encoding!r}")


class _Running:
    """Starts an ``_Httpd`` for its owner in a thread; ``close`` stops it and wakes slow replies."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.in_flight = InFlight()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _Httpd(self)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def answer(self, handler: _Handler) -> None:
        """Record the request, then send what ``reply_to`` says."""
        with self.in_flight.track():
            request = handler.recorded()
            with self._lock:
                self.requests.append(request)
            handler.send(self.reply_to(request), self._closing)

    def reply_to(self, request: Request) -> Reply:
        """The answer to ``request``; subclasses decide."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop serving; replies still waiting give up."""
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> _Running:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the feed server ------------------------------------------------------------------------------


class FeedServer(_Running):
    """A scripted HTTP server on 127.0.0.1: per path, replies in turn or computed per request."""

    def __init__(self, *, in_flight: InFlight | None = None) -> None:
        self._routes: dict[str, list[Reply | Handler]] = {}
        self._served: dict[str, int] = {}
        self.not_found = Reply(404, b"no such path", {"Content-Type": "text/plain"})
        super().__init__()
        if in_flight is not None:
            self.in_flight = in_flight  # shared with other servers: counts over all of them

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    def route(self, path: str, *replies: Reply | Handler) -> None:
        """Answer ``path`` with ``replies`` in turn, the last one repeating."""
        if not replies:
            raise ValueError("route needs at least one reply")
        with self._lock:
            self._routes[path] = list(replies)
            self._served[path] = 0

    def feed(
        self,
        path: str,
        body: bytes,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str = "application/rss+xml; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Serve ``body`` at ``path``, with a 304 to a request that sends its validators back."""
        validators = {"ETag": etag, "Last-Modified": last_modified}
        sent = {k: v for k, v in validators.items() if v is not None}
        full = {"Content-Type": content_type, **sent, **(headers or {})}

        def answer(request: Request) -> Reply:
            matched = (etag is not None and request.headers.get("if-none-match") == etag) or (
                etag is None
                and last_modified is not None
                and request.headers.get("if-modified-since") == last_modified
            )
            return Reply(304, b"", sent) if matched else Reply(200, body, full)

        self.route(path, answer)

    def requests_to(self, path: str) -> list[Request]:
        """The requests received for ``path`` (query ignored), oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reply_to(self, request: Request) -> Reply:
        """The next scripted reply for the request's path, or ``not_found``."""
        with self._lock:
            replies = self._routes.get(request.path)
            if replies is None:
                return self.not_found
            index = min(self._served[request.path], len(replies) - 1)
            self._served[request.path] += 1
        chosen = replies[index]
        return chosen if isinstance(chosen, Reply) else chosen(request)


# --- proxies --------------------------------------------------------------------------------------


def forward(url: str, method: str, headers: Mapping[str, str]) -> Reply:
    """GET ``url`` (on 127.0.0.1 only) and hand its answer back as a Reply, body as it came."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        return Reply(403, b"this test proxy only reaches http://127.0.0.1", {})
    sent = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k != "host"}
    connection = http.client.HTTPConnection("127.0.0.1", parts.port or 80, timeout=10)
    try:
        target = parts.path or "/"
        connection.request(method, target + (f"?{parts.query}" if parts.query else ""), None, sent)
        response = connection.getresponse()
        body = response.read()
        kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        return Reply(response.status, body, kept)
    except OSError as e:
        return Reply(502, f"upstream failed: {e}".encode(), {"Content-Type": "text/plain"})
    finally:
        connection.close()


def relay(request: Request) -> Reply:
    """A URL-prefix relay (a CORS worker): GET the URL that makes up the query string."""
    return forward(request.query, "GET", request.headers)


class ForwardProxy(_Running):
    """An HTTP forward proxy for absolute-URI requests to 127.0.0.1, optionally with Basic auth."""

    def __init__(self, *, auth: tuple[str, str] | None = None) -> None:
        self.auth = auth
        super().__init__()

    @property
    def url(self) -> str:
        """The proxy URL to configure, with ``user:password@`` when it needs auth."""
        login = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"http://{login}127.0.0.1:{self.port}"

    def reply_to(self, request: Request) -> Reply:
        """407 without the right credentials; else the upstream answer."""
        if self.auth is not None:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            if request.headers.get("proxy-authorization") != f"Basic {token}":
                return Reply(407, b"", {"Proxy-Authenticate": 'Basic realm="test"'})
        if not request.target.startswith("http://"):
            return Reply(405, b"only absolute-URI requests (no CONNECT)", {})
        return forward(request.target, request.method, request.headers)


# --- RSSHub as public instances answer ------------------------------------------------------------

RSSHUB_ERROR_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Welcome to RSSHub!</title></head>
<body>
<h1 class="text-4xl font-bold">Looks like something went wrong</h1>
<p class="message">Error Message:<br><code class="mt-2 block details">FetchError: [GET] \
"https://www.guancha.cn/": 503 Service Unavailable</code></p>
<p class="message">Route: <code>/guancha/:category?</code></p>
</body>
</html>
"""

CLOUDFLARE_CHALLENGE_PAGE = b"""<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...\
</title><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><meta name="robots" \
content="noindex,nofollow"></head><body><div class="main-wrapper" role="main"><noscript>Enable \
JavaScript and cookies to continue</noscript></div><script>(function(){window._cf_chl_opt=\
{cvId: '3',cType: 'managed'};var a=document.createElement('script');a.src=\
'/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1';document.head.appendChild(a);}());\
</script></body></html>"""

PLAIN_TEXT_NOTICE = (
    b"This public RSSHub instance no longer serves feed readers. "
    b"Please deploy your own instance: see the RSSHub documentation.\n"
)


def serve_rsshub(server: FeedServer, routes: Mapping[str, bytes]) -> None:
    """Make ``server`` answer like an RSSHub instance: each route a feed, the rest its 404 page."""
    for route, body in routes.items():
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        cache = {"Cache-Control": "public, max-age=300"}
        server.feed(
            route, body, etag=etag, content_type="application/xml; charset=utf-8", headers=cache
        )
    server.not_found = Reply(404, RSSHUB_ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"})


def rsshub_down(server: FeedServer, route: str) -> None:
    """Make ``route`` on ``server`` answer RSSHub's 503 error page."""
    page = Reply(503, RSSHUB_ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"})
    server.route(route, page)


def shared_feed(relative: str) -> bytes:
    """The bytes of ``relative`` under SHARED_FEEDS; skips the test when the folder is absent."""
    path = SHARED_FEEDS / relative
    if not path.is_file():
        pytest.skip(f"shared feed {relative} not found under {SHARED_FEEDS} (set WATCHER_FEEDS)")
    return path.read_bytes()


def closed_port_url(path: str = "/feed.xml") -> str:
    """A URL on 127.0.0.1 at a port nothing listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- fixtures (imported into tests/conftest.py) ---------------------------------------------------


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running FeedServer, closed after the test."""
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def feed_servers() -> Iterator[Callable[..., FeedServer]]:
    """A factory of FeedServers (``feed_servers(in_flight=...)``), all closed after the test."""
    made: list[FeedServer] = []

    def make(*, in_flight: InFlight | None = None) -> FeedServer:
        server = FeedServer(in_flight=in_flight)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A running ForwardProxy without auth, closed after the test."""
    proxy = ForwardProxy()
    yield proxy
    proxy.close()
