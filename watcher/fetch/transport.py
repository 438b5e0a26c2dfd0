"""An httpx transport that sends direct requests over aiohttp: httpx's API, aiohttp's C parser.

    httpx.AsyncClient (redirects, cookies, headers, decoding, the size cap upstream)
        -> AiohttpTransport.handle_async_request(request)
            one aiohttp.ClientSession per transport, opened on first use in the running loop
            GET request.url with request.headers exactly, timeouts from request.extensions
            aiohttp errors -> httpx's TransportError subclasses, the original chained
            a response head aiohttp's parser refuses (a duplicate Content-Length, say) ->
                the GET again over httpx's own transport, and that origin stays with it
        <- httpx.Response(status, raw headers, body streamed as it arrives, still encoded)
    closing that response releases the connection to the pool (or closes it, body unread)

Why: httpx's own transport parses HTTP in pure Python (h11), which costs more CPU than
everything else a poll does; aiohttp parses in C. Measured on 1,000 local 171 KB feeds the
all-304 cycle drops from ~1.6 s of CPU to ~0.3 s (issue 7 asks for <= 0.8 s).

What this module does not do: follow redirects, decompress, keep cookies or add any header of
its own (httpx does the first three and has already set every header; aiohttp is told to leave
them alone), or speak to proxies: the Fetcher keeps httpx's own transport for those. It is an
HTTP/1.1 transport only. It does not retry a failure, except by the fallback above, so that
a server h11 could parse but aiohttp's stricter parser cannot still answers as it did.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
import yarl  # aiohttp's own URL type (a dependency of aiohttp)
from aiohttp.http_exceptions import HttpProcessingError

from watcher.log import get_logger

__all__ = ["AiohttpTransport"]

MAX_HEADER_BYTES = 100 * 1024
"""The longest header line or field accepted: httpcore's cap on a whole response head, so
nothing httpx used to accept is refused for length (aiohttp's own default is 8190)."""
MAX_HEADERS = 256
"""How many response header fields are accepted (aiohttp's default is 128; h11 sets none)."""
KEEPALIVE_S = 5.0
"""How long an idle connection stays pooled (httpx's keepalive_expiry)."""
_NEVER_ADDED = ("User-Agent", "Accept", "Accept-Encoding")
"""Headers aiohttp adds to a request that lacks them: httpx has set them, or left them out."""
_RESENDABLE = frozenset(("GET", "HEAD"))
"""Methods the fallback may send a second time."""

_log = get_logger(__name__)

# aiohttp's exceptions -> httpx's, first match wins (the subclasses come before their bases)
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting or waiting for the pool
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # a read that waited past the timeout
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS, certificate
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # closed before the head
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short or malformed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed status line or head
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (TimeoutError, httpx.ReadTimeout),
    (OSError, httpx.ReadError),  # a connection reset or broken while talking
    (aiohttp.ClientError, httpx.ReadError),  # anything else aiohttp says went wrong
)


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's and the socket's exceptions as httpx's, chaining the original."""
    try:
        yield
    except Exception as e:
        for theirs, ours in _ERRORS:
            if isinstance(e, theirs):
                raise ours(_message(e), request=request) from e
        raise


def _message(error: BaseException) -> str:
    """What went wrong on one line (the parser's messages point a caret under the bad byte)."""
    if isinstance(error, aiohttp.ClientResponseError):  # its str() repeats the URL
        text = error.message
    else:
        text = str(error) or type(error).__name__
        cause = error.__cause__
        if isinstance(error, aiohttp.ClientPayloadError) and isinstance(cause, HttpProcessingError):
            text = text.replace(repr(cause), cause.message.rstrip("."))
    lines = (line.strip() for line in text.splitlines())
    return " ".join(line for line in lines if line.strip("^ "))


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it: chunks as they arrive, undecoded."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        """Give the connection back when the body was read to its end, else close it."""
        if self._response.content.at_eof():
            self._response.release()
        else:  # the rest of the body is not wanted: the connection cannot be reused
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx's requests with one aiohttp session; ``max_connections`` caps its pool."""

    def __init__(self, *, max_connections: int) -> None:
        self.max_connections = max_connections
        self.lenient_origins: set[tuple[str, str, int | None]] = set()
        """(scheme, host, port) whose response heads only httpx's parser accepts."""
        self._session: aiohttp.ClientSession | None = None
        self._fallback: httpx.AsyncHTTPTransport | None = None

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, opened on first use (it must be made in the running loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                keepalive_timeout=KEEPALIVE_S,
                ssl=_ssl_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps (no) cookies, not aiohttp
                skip_auto_headers=_NEVER_ADDED,
                timeout=aiohttp.ClientTimeout(total=None),  # each request brings its own
                auto_decompress=False,  # httpx decodes, so the size cap counts decoded bytes
                trust_env=False,  # no proxy or .netrc from the environment
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
                max_headers=MAX_HEADERS,
            )
        return self._session

    def fallback(self) -> httpx.AsyncHTTPTransport:
        """httpx's own transport, made on first use, for the servers aiohttp cannot parse."""
        if self._fallback is None:
            size = self.max_connections
            self._fallback = httpx.AsyncHTTPTransport(
                verify=_ssl_context(),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                trust_env=False,
            )
        return self._fallback

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return as soon as the response head has arrived."""
        origin = (request.url.scheme, request.url.host, request.url.port)
        if origin in self.lenient_origins:
            return await self.fallback().handle_async_request(request)
        try:
            return await self._send(request)
        except httpx.RemoteProtocolError as e:
            refused_head = isinstance(e.__cause__, aiohttp.ClientResponseError)
            if not refused_head or request.method not in _RESENDABLE:
                raise
            where = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
            _log.info("response head only httpx parses", origin=where, error=str(e))
            self.lenient_origins.add(origin)
            return await self.fallback().handle_async_request(request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        with _as_httpx_errors(request):
            response = await self.session().request(
                request.method,
                _aiohttp_url(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,
                compress=False,
                timeout=_timeout(request.extensions.get("timeout", {})),
            )
        version = response.version or aiohttp.HttpVersion11
        extensions: dict[str, Any] = {"http_version": f"HTTP/{version[0]}.{version[1]}".encode()}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        """Close the session, the fallback, and every pooled connection."""
        session, self._session = self._session, None
        fallback, self._fallback = self._fallback, None
        if session is not None:
            await session.close()
        if fallback is not None:
            await fallback.aclose()


def _aiohttp_url(url: httpx.URL) -> yarl.URL:
    """``url`` as httpx encoded it (not re-quoted), without the userinfo httpx already sent
    as an Authorization header (aiohttp refuses both at once)."""
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    return yarl.URL(str(url), encoded=True)


def _timeout(timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's per-phase timeouts as aiohttp's (aiohttp has no write timeout)."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout.get("pool"),  # aiohttp's connect: waiting for the pool, then connecting
        sock_connect=timeout.get("connect"),
        sock_read=timeout.get("read"),
    )


def _ssl_context() -> ssl.SSLContext:
    """The context httpx verifies with (certifi's CAs; SSL_CERT_FILE ignored, as trust_env)."""
    return httpx.create_ssl_context(trust_env=False)
