"""FETCH stage: a source's fetch plan -> one FetchResult (or a FetchError), over async httpx.

    fetch_source(fetcher, plan, state, now=...)
        for each target of the plan, in order (more than one only for RSSHub routes):
            wait for a slot on the target's host (http.per_host_concurrency), then a global one
            GET target.url with If-None-Match / If-Modified-Since from ``state``,
                redirects followed up to http.max_redirects, the whole exchange within the
                source's timeout, the body streamed and cut off past http.max_response_bytes
            304                         -> FetchResult(not_modified=True), no body
            2xx that starts like a feed -> FetchResult(body, etag, last_modified, hints)
            anything else               -> FetchError; an RSSHub instance that fails is
                                           recorded in ``fetcher.instance_failures`` and the
                                           next instance is tried
        every target failed             -> FetchError naming each failure

Whether a body "starts like a feed" is ``fetch.sniff``'s call: an HTML page, a Cloudflare
challenge page, a plain-text notice and an empty body are FetchErrors that say which, never an
empty feed. The polling hints are read by ``fetch.hints``. httpx does the HTTP (redirects,
decoding, headers); under it, direct requests travel over aiohttp (``fetch.transport``, C parsing,
a fraction of the CPU) and proxied ones over httpx's own transport.

What this module does not do: it does not parse feeds (``parse`` does; fetch only sniffs the first
bytes), decide when to check next (``Retry-After``, ``Cache-Control`` and ``Expires`` are handed
on as ``retry_after_s`` and ``max_age_s``), retry a failed request, or store anything. Proxies come
from the config only: ``HTTP_PROXY`` and the like in the environment are ignored.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from itertools import pairwise
from types import TracebackType
from urllib.parse import unquote, urlsplit

import httpx

from watcher.errors import FetchError
from watcher.fetch.hints import http_date, max_age_s, retry_after_s
from watcher.fetch.sniff import sniff_non_feed
from watcher.fetch.transport import AiohttpTransport
from watcher.log import get_logger
from watcher.models import FetchResult, SourceState
from watcher.settings import HttpSettings, RsshubSettings, SourceSettings
from watcher.sources import FetchPlan, FetchTarget, plan_fetch

__all__ = [
    "ACCEPT",
    "ERROR_BODY_BYTES",
    "Fetcher",
    "conditional_headers",
    "fetch_source",
    "fetch_target",
    "host_key",
    "http_date",
    "max_age_s",
    "permanent_redirect",
    "retry_after_s",
    "sniff_non_feed",
    "strip_userinfo",
]

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
ERROR_BODY_BYTES = 65536
"""How much of an error response's body is read, to say what it was."""

_log = get_logger(__name__)


# --- the shared clients and limits ----------------------------------------------------------------


class Fetcher:
    """Shared httpx clients (one per proxy), the concurrency caps, and RSSHub instance health.

    Use one per process and event loop, as ``async with Fetcher(settings.http, settings.rsshub)
    as fetcher:``; ``await fetcher(source, state)`` plans and fetches one source (the shape
    ``pipeline.Fetch`` wants). ``clock`` gives that call its ``now``. ``transport`` replaces the
    network for every client (the seam for fake I/O; proxies are then unused). Without it, the
    direct client sends over aiohttp and each proxy's client over httpx's own transport.
    """

    def __init__(
        self,
        http: HttpSettings,
        rsshub: RsshubSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = http
        self.rsshub = rsshub or RsshubSettings()
        self.clock = clock
        self.instance_failures: dict[str, datetime] = {}
        """RSSHub instance -> when it last failed; cleared when it answers. Feeds ``plan_fetch``."""
        self._transport = transport
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._global = asyncio.Semaphore(http.max_concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def __call__(self, source: SourceSettings, state: SourceState | None) -> FetchResult:
        """Fetch ``source`` now: from ``state.url`` when a permanent redirect moved it there."""
        now = self.clock()
        # A stored redirect applies only while the config still names the URL it came from.
        moved = (
            state.url
            if state is not None and state.url and state.redirected_from == source.url
            else None
        )
        plan = plan_fetch(
            source,
            self.http,
            self.rsshub,
            now=now,
            failed_at=self.instance_failures,
            moved_url=moved,
        )
        return await fetch_source(self, plan, state, now=now)

    async def aclose(self) -> None:
        """Close every client and its connections."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def client(self, proxy: str | None) -> httpx.AsyncClient:
        """The shared client for ``proxy`` (None: direct), made on first use."""
        client = self._clients.get(proxy)
        if client is None:
            client = self._clients[proxy] = self._new_client(proxy)
        return client

    def _new_client(self, proxy: str | None) -> httpx.AsyncClient:
        # the pool is as large as the global cap, so requests wait in our semaphores, never in it
        size = self.http.max_concurrency
        transport = self._transport
        if transport is None and proxy is None:
            transport = AiohttpTransport(max_connections=size)
        return httpx.AsyncClient(
            proxy=None if transport is not None else proxy,
            transport=transport,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            max_redirects=self.http.max_redirects,
            follow_redirects=True,
            headers={"User-Agent": self.http.user_agent, "Accept": ACCEPT},
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # keep no cookies
            trust_env=False,
        )

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        """Hold a slot on ``url``'s host, then a global one, for one request."""
        host = host_key(url)
        semaphore = self._hosts.get(host)
        if semaphore is None:
            semaphore = self._hosts[host] = asyncio.Semaphore(self.http.per_host_concurrency)
        # the host first: a request waiting for a busy host holds no global slot meanwhile
        async with semaphore, self._global:
            yield


def host_key(url: str) -> str:
    """``host:port`` of ``url``, the unit the per-host cap counts (default port filled in)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


# --- one source -----------------------------------------------------------------------------------


async def fetch_source(
    fetcher: Fetcher, plan: FetchPlan, state: SourceState | None, *, now: datetime
) -> FetchResult:
    """GET the plan's targets in order until one answers with a feed or a 304."""
    failures: list[FetchError] = []
    for target in plan.targets:
        try:
            result = await fetch_target(fetcher, plan, target, state, now=now)
        except FetchError as e:
            failures.append(e)
            if target.instance is not None:
                fetcher.instance_failures[target.instance] = now
                _log.warning(
                    "rsshub instance failed",
                    source=plan.source,
                    instance=strip_userinfo(target.instance),
                    error=e.message,
                )
            continue
        if target.instance is not None:
            fetcher.instance_failures.pop(target.instance, None)
        return result
    raise _all_failed(plan, failures)


def _all_failed(plan: FetchPlan, failures: list[FetchError]) -> FetchError:
    if not failures:
        return FetchError(plan.source, "nothing to fetch (no URL and no RSSHub instance)")
    if len(failures) == 1:
        return failures[0]
    statuses = {e.status for e in failures}
    hints = [e.retry_after_s for e in failures if e.retry_after_s is not None]
    return FetchError(
        plan.source,
        f"all {len(failures)} RSSHub instances failed: " + "; ".join(e.message for e in failures),
        status=statuses.pop() if len(statuses) == 1 else None,
        retry_after_s=max(hints) if hints else None,  # the politest of the hints
    )


async def fetch_target(
    fetcher: Fetcher,
    plan: FetchPlan,
    target: FetchTarget,
    state: SourceState | None,
    *,
    now: datetime,
) -> FetchResult:
    """GET one target within the caps and the plan's timeout; FetchError unless feed or 304."""
    where = strip_userinfo(target.url)
    client = fetcher.client(target.proxy)
    headers = conditional_headers(plan, state)
    async with fetcher.slot(target.url):
        started = time.monotonic()
        with _translate(plan, target, fetcher.http):
            async with asyncio.timeout(plan.timeout_s):
                response, body = await _download(client, plan, target, headers, fetcher.http)
        elapsed = time.monotonic() - started
    _check(plan.source, where, response, body, now=now)
    return _result(plan, target, response, body, state, now=now, elapsed_s=elapsed)


def conditional_headers(plan: FetchPlan, state: SourceState | None) -> dict[str, str]:
    """The source's own headers plus If-None-Match / If-Modified-Since from its state."""
    headers = dict(plan.headers)
    if state is not None and state.etag:
        headers["If-None-Match"] = state.etag
    if state is not None and state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


async def _download(
    client: httpx.AsyncClient,
    plan: FetchPlan,
    target: FetchTarget,
    headers: dict[str, str],
    http: HttpSettings,
) -> tuple[httpx.Response, bytes]:
    timeout = httpx.Timeout(plan.timeout_s)
    async with client.stream("GET", target.url, headers=headers, timeout=timeout) as response:
        if response.is_success:
            body = await _read_capped(response, http.max_response_bytes, plan.source, target)
        else:  # read enough of an error page to say what it was, and no more
            body = await _read_head(response, min(http.max_response_bytes, ERROR_BODY_BYTES))
    return response, body


async def _read_capped(
    response: httpx.Response, cap: int, source: str, target: FetchTarget
) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(source, target, cap, response.status_code)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded: the cap also stops compression bombs
        size += len(chunk)
        if size > cap:
            raise _too_large(source, target, cap, response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(source: str, target: FetchTarget, cap: int, status: int) -> FetchError:
    message = f"the response is larger than {cap} bytes (http.max_response_bytes)"
    return FetchError(source, f"{strip_userinfo(target.url)}: {message}", status=status)


async def _read_head(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


# --- status and body -> result or error -----------------------------------------------------------


def _check(
    source: str, where: str, response: httpx.Response, body: bytes, *, now: datetime
) -> None:
    """Raise the FetchError ``response`` stands for; return when it is a feed or a 304."""
    status = response.status_code
    if status == 304:
        return
    what = sniff_non_feed(body, response.headers)
    if response.is_success and what is None:
        return
    retry_after = retry_after_s(response.headers, now=now) if status in (429, 503) else None
    if response.is_success:
        message = f"HTTP {status} but {what} instead of a feed"
    elif 300 <= status < 400:
        message = f"HTTP {status} {response.reason_phrase} without a usable Location"
    else:
        message = f"HTTP {status} {response.reason_phrase}".rstrip()
        message += f" ({what})" if what else ""
    raise FetchError(source, f"{where}: {message}", status=status, retry_after_s=retry_after)


def _result(
    plan: FetchPlan,
    target: FetchTarget,
    response: httpx.Response,
    body: bytes,
    state: SourceState | None,
    *,
    now: datetime,
    elapsed_s: float,
) -> FetchResult:
    headers = response.headers
    not_modified = response.status_code == 304
    etag = headers.get("etag") or (state.etag if not_modified and state else None)
    last_modified = headers.get("last-modified") or (
        state.last_modified if not_modified and state else None
    )
    return FetchResult(
        source=plan.source,
        url=target.url,
        final_url=str(response.url),
        status=response.status_code,
        headers=dict(headers.items()),
        body=None if not_modified else body,
        not_modified=not_modified,
        etag=etag,
        last_modified=last_modified,
        permanent_redirect=permanent_redirect(response) if target.is_direct else None,
        retry_after_s=retry_after_s(headers, now=now),
        max_age_s=max_age_s(headers, now=now),
        instance=target.instance,
        fetched_at=now,
        elapsed_s=elapsed_s,
    )


def permanent_redirect(response: httpx.Response) -> str | None:
    """Where the chain of 301/308 redirects that opens ``response.history`` led, if any."""
    moved: str | None = None
    for hop, following in pairwise([*response.history, response]):
        if hop.status_code not in (301, 308):
            break
        moved = str(following.url)
    return moved


# --- exceptions -> FetchError ---------------------------------------------------------------------

_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s/?#@]*@", re.I)


def strip_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)


@contextmanager
def _translate(plan: FetchPlan, target: FetchTarget, http: HttpSettings) -> Iterator[None]:
    """httpx and timeout exceptions -> a FetchError naming source and URL, with no secrets."""
    source, where = plan.source, strip_userinfo(target.url)
    try:
        yield
    except (TimeoutError, httpx.TimeoutException) as e:
        message = f"no complete answer within {plan.timeout_s:g}s"
        raise FetchError(source, f"{where}: {message}") from e
    except httpx.TooManyRedirects as e:
        message = f"more than {http.max_redirects} redirects (http.max_redirects)"
        raise FetchError(source, f"{where}: {message}") from e
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        message = _describe_exception(e, target.proxy)
        raise FetchError(source, f"{where}: {message}") from e


def _describe_exception(error: Exception, proxy: str | None) -> str:
    reason = _reason(error, proxy)
    via = f" through the proxy {host_key(proxy)}" if proxy else ""
    if isinstance(error, httpx.ProxyError):
        return f"the proxy {host_key(proxy or '')} failed: {reason}"
    if isinstance(error, httpx.ConnectError):
        kind = "TLS failed" if "SSL" in reason or "certificate" in reason else "cannot connect"
        return f"{kind}{via}: {reason}"
    if isinstance(error, httpx.DecodingError):
        return f"cannot decode the compressed body: {reason}"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke off the answer{via}: {reason}"
    return f"{type(error).__name__}{via}: {reason}"


def _reason(error: Exception, proxy: str | None) -> str:
    reason = strip_userinfo(_os_reason(error) or str(error) or type(error).__name__)
    password = urlsplit(proxy).password if proxy else None
    for secret in {password, unquote(password or "")} - {None, ""}:
        reason = reason.replace(str(secret), "**********")
    return reason


def _os_reason(error: BaseException) -> str | None:
    """The system's word for what failed ("Connection refused"), found down the cause chain.

    httpx says only "All connection attempts failed"; the OSError it wraps says why.
    """
    found: str | None = None
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 10:
        if isinstance(cause, OSError):
            found = _os_words(cause) or found
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return found


def _os_words(error: OSError) -> str | None:
    if isinstance(error, ssl.SSLError | socket.gaierror):  # their errno means something else
        return error.strerror or str(error)
    if error.errno is not None and error.errno > 0:  # asyncio's strerror is "Connect call failed"
        return os.strerror(error.errno)
    return error.strerror
