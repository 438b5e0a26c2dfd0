"""The HTTP server: a real server on 127.0.0.1, real requests with httpx."""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from lxml import etree

from watcher.errors import ConfigError, StoreError
from watcher.feeds import ATOM_NS, JSON_FEED_VERSION, story_uuid
from watcher.metrics import WatcherMetrics
from watcher.models import Story
from watcher.server import Server, is_loopback
from watcher.settings import ServerSettings, load_settings, parse_listen

from .conftest import ROOT
from .promtext import parse_prometheus
from .test_feeds import NOW, SOLO, WIRE

T = TypeVar("T")
A = f"{{{ATOM_NS}}}"
EXAMPLE = ROOT / "config.example.toml"


def healthy() -> Mapping[str, bool]:
    """Both checks pass."""
    return {"scheduler": True, "store": True}


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A Server on 127.0.0.1 (a free port) and an httpx client pointed at it."""
    options: dict[str, Any] = {
        "health": healthy,
        "metrics": WatcherMetrics().registry,
        "stories": lambda limit, min_outlets: [SOLO, WIRE],
        "clock": lambda: NOW,
        **overrides,
    }
    async with Server("127.0.0.1:0", **options) as server:
        base = f"http://127.0.0.1:{server.address[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=10, trust_env=False) as client:
            yield client


def run(test: Callable[[], Awaitable[T]]) -> T:
    """Run one async test body."""
    return asyncio.run(test())  # type: ignore[arg-type]


def get(path: str, **overrides: Any) -> httpx.Response:
    """GET ``path`` from a fresh server built with ``overrides``."""

    async def go() -> httpx.Response:
        async with running(**overrides) as client:
            return await client.get(path)

    return run(go)


# --- /healthz -------------------------------------------------------------------------------------


def test_healthz_ok() -> None:
    """Every check passing gives 200 and the checks as JSON."""
    response = get("/healthz")
    expected = (200, {"status": "ok", "checks": {"scheduler": True, "store": True}})
    assert expected == (response.status_code, response.json())


def test_healthz_fails_when_a_check_fails() -> None:
    """One failing check gives 503 and names it."""
    response = get("/healthz", health=lambda: {"scheduler": True, "store": False})
    expected = (503, {"status": "fail", "checks": {"scheduler": True, "store": False}})
    assert expected == (response.status_code, response.json())


def test_healthz_fails_when_the_check_raises() -> None:
    """A health callback that raises is a failed check (503), not a crash."""

    def broken() -> Mapping[str, bool]:
        raise StoreError("watcher.db: cannot write: disk I/O error")

    response = get("/healthz", health=broken)
    assert (503, {"status": "fail", "error": "StoreError"}) == (
        response.status_code,
        response.json(),
    )


def test_healthz_with_no_checks_is_not_healthy() -> None:
    """An empty set of checks proves nothing: 503."""
    assert 503 == get("/healthz", health=dict).status_code


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_is_prometheus_text() -> None:
    """/metrics answers in text format 0.0.4 and the recorded samples parse back."""
    metrics = WatcherMetrics()
    metrics.observe_fetch("guancha", 200, 0.3)
    metrics.observe_fetch("guancha", None, 2.0)
    response = get("/metrics", metrics=metrics.registry)
    families = parse_prometheus(response.text)
    fetches = families["watcher_fetches_total"]
    actual = (
        response.status_code,
        response.headers["content-type"],
        fetches.value("watcher_fetches_total", source="guancha", status="200"),
        fetches.value("watcher_fetches_total", source="guancha", status="error"),
        families["watcher_fetch_duration_seconds"].value("watcher_fetch_duration_seconds_count"),
    )
    assert (200, "text/plain; version=0.0.4; charset=utf-8", 1, 1, 2) == actual


# --- feeds ----------------------------------------------------------------------------------------


def test_atom_feed_served() -> None:
    """/stories.atom is well-formed Atom, newest first, each entry with every outlet."""
    response = get("/stories.atom")
    root = etree.fromstring(response.content)
    entries = root.findall(f"{A}entry")
    actual = (
        response.status_code,
        response.headers["content-type"],
        root.tag,
        [root.findtext(f"{A}{tag}") is not None for tag in ("id", "title", "updated")],
        [e.findtext(f"{A}id") for e in entries],
        [[c.get("term") for c in e.findall(f"{A}category")] for e in entries],
        root.find(f"{A}link[@rel='self']").get("href"),  # type: ignore[union-attr]
    )
    expected = (
        200,
        "application/atom+xml; charset=utf-8",
        f"{A}feed",
        [True, True, True],
        [story_uuid("s2"), story_uuid("s1")],
        [["DW"], ["中央社", "联合早报", "RFI"]],
        f"{response.url.scheme}://{response.url.netloc.decode()}/stories.atom",
    )
    assert expected == actual


def test_json_feed_served() -> None:
    """/stories.json is JSON Feed 1.1 with each story's outlets and articles."""
    response = get("/stories.json")
    feed = response.json()
    actual = (
        response.headers["content-type"],
        feed["version"],
        [item["id"] for item in feed["items"]],
        [item["_watcher"]["outlets"] for item in feed["items"]],
        all(item["content_html"] for item in feed["items"]),
    )
    expected = (
        "application/feed+json; charset=utf-8",
        JSON_FEED_VERSION,
        ["s2", "s1"],
        [["DW"], ["中央社", "联合早报", "RFI"]],
        True,
    )
    assert expected == actual


def test_feed_parameters_reach_the_data_and_are_capped() -> None:
    """limit and min_outlets are passed on; limit is capped at feed_limit."""
    calls: list[tuple[int, int]] = []

    def stories(limit: int, min_outlets: int) -> Sequence[Story]:
        calls.append((limit, min_outlets))
        return [WIRE, SOLO]

    async def go() -> list[int]:
        async with running(stories=stories, feed_limit=5) as client:
            one = await client.get("/stories.json?limit=1&min_outlets=2")
            await client.get("/stories.atom?limit=999")
            await client.get("/stories.atom")
            return [len(one.json()["items"])]

    assert ([1], [(1, 2), (5, 1), (5, 1)]) == (run(go), calls)


@pytest.mark.parametrize("query", ["limit=0", "limit=ten", "min_outlets=-1", "limit=²"])
def test_bad_feed_parameters_are_400(query: str) -> None:
    """A limit or min_outlets that is no whole number >= 1 gives 400 naming it."""
    response = get(f"/stories.atom?{query}")
    name = query.partition("=")[0]
    assert (400, True) == (response.status_code, response.text.startswith(f"{name} must be"))


def test_feed_etag_gives_304() -> None:
    """A feed asked again with its ETag answers 304 with no body."""

    async def go() -> tuple[int, int, bytes]:
        async with running() as client:
            first = await client.get("/stories.atom")
            again = await client.get(
                "/stories.atom", headers={"If-None-Match": first.headers["etag"]}
            )
            return first.status_code, again.status_code, again.content

    assert (200, 304, b"") == run(go)


def test_store_failure_is_500_and_the_server_goes_on() -> None:
    """A data callable that raises gives 500; the next request is answered normally."""

    def broken(limit: int, min_outlets: int) -> Sequence[Story]:
        raise StoreError("watcher.db: cannot list stories: database is locked")

    async def go() -> tuple[int, str, int]:
        async with running(stories=broken) as client:
            failed = await client.get("/stories.json")
            return failed.status_code, failed.text, (await client.get("/healthz")).status_code

    assert (500, "/stories.json: StoreError\n", 200) == run(go)


def test_slow_data_times_out_as_503() -> None:
    """A data callable that does not answer within timeout_s gives 503."""
    release = threading.Event()

    def stuck(limit: int, min_outlets: int) -> Sequence[Story]:
        release.wait(10)
        return []

    async def go() -> int:
        async with running(stories=stuck, timeout_s=0.2) as client:
            response = await client.get("/stories.json")
        release.set()
        return response.status_code

    assert 503 == run(go)


# --- HTTP itself ----------------------------------------------------------------------------------


def test_unknown_path_is_404_and_post_is_405() -> None:
    """An unknown page is 404; a POST to a known page is 405 with Allow: GET, HEAD."""

    async def go() -> tuple[int, int, str]:
        async with running() as client:
            missing = await client.get("/nope")
            posted = await client.post("/healthz", content=b"x")
            return missing.status_code, posted.status_code, posted.headers["allow"]

    assert (404, 405, "GET, HEAD") == run(go)


def test_index_lists_the_pages() -> None:
    """GET / lists every page."""
    expected = "watcher\n/healthz\n/metrics\n/stories.atom\n/stories.json\n"
    assert expected == get("/").text


def test_head_has_headers_and_no_body() -> None:
    """HEAD answers with GET's Content-Length and no body."""

    async def go() -> tuple[str, str, bytes]:
        async with running() as client:
            full = await client.get("/stories.json")
            head = await client.head("/stories.json")
            return full.headers["content-length"], head.headers["content-length"], head.content

    full_length, head_length, body = run(go)
    assert (full_length, b"") == (head_length, body)


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    writer.write_eof()
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.0\r\n\r\n", b"200"),
    ],
)
def test_raw_requests(request_bytes: bytes, status: bytes) -> None:
    """Malformed or oversized request heads get 400 or 431; a plain HTTP/1.0 GET works."""

    async def go() -> bytes:
        async with Server(
            "127.0.0.1:0",
            health=healthy,
            metrics=WatcherMetrics().registry,
            stories=lambda a, b: [],
        ) as server:
            return await _raw(server.address[1], request_bytes)

    assert status == run(go).split(b" ")[1]


def test_client_that_sends_nothing_is_dropped() -> None:
    """A client that connects and closes without a request gets nothing and breaks nothing."""

    async def go() -> tuple[bytes, int]:
        async with running() as client:
            port = int(str(client.base_url).rsplit(":", 1)[1])
            silent = await _raw(port, b"")
            return silent, (await client.get("/healthz")).status_code

    assert (b"", 200) == run(go)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Loopback addresses and localhost count as loopback; anything else warns at start."""
    assert expected == is_loopback(host)


def test_json_is_utf8_not_escaped() -> None:
    """Chinese text travels as UTF-8, not \\u escapes."""
    body = get("/stories.json").content
    assert ("中央社".encode() in body, "\\u4e2d" in body.decode()) == (True, False)
    assert json.loads(body)["title"] == "watcher: stories"


# --- [server] settings ----------------------------------------------------------------------------


def test_example_config_lists_every_server_key() -> None:
    """config.example.toml's [server] table has every ServerSettings key; the server is off."""
    table = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["server"]
    settings = load_settings(EXAMPLE, {})
    assert (sorted(ServerSettings.model_fields), None) == (sorted(table), settings.server.address)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("[::1]:0", ("::1", 0)),
        (" localhost:80 ", ("localhost", 80)),
        ("0.0.0.0:8787", ("0.0.0.0", 8787)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    """host:port, with IPv6 hosts in brackets; port 0 lets the system choose."""
    assert expected == parse_listen(listen)


@pytest.mark.parametrize("listen", ["8787", ":8787", "127.0.0.1:", "127.0.0.1:99999", "a:b"])
def test_bad_listen_is_a_config_error_naming_the_key(listen: str) -> None:
    """A listen value that is no host:port is a ConfigError on server.listen."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"WATCHER_SERVER__LISTEN": listen})
    assert "server.listen" == info.value.key


def test_listen_from_the_environment() -> None:
    """WATCHER_SERVER__LISTEN turns the server on."""
    settings = load_settings(None, {"WATCHER_SERVER__LISTEN": "0.0.0.0:8787"})
    assert ("0.0.0.0", 8787) == settings.server.address
