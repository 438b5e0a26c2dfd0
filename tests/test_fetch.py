"""Fetch: real HTTP servers on 127.0.0.1 with scripted status, headers, bodies and delays."""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from watcher.errors import FetchError
from watcher.fetch import (
    ACCEPT,
    Fetcher,
    fetch_source,
    http_date,
    max_age_s,
    retry_after_s,
    sniff_non_feed,
    strip_userinfo,
)
from watcher.fetch.transport import AiohttpTransport
from watcher.models import FetchResult, SourceState
from watcher.settings import DEFAULT_USER_AGENT, HttpSettings, RsshubSettings, SourceSettings
from watcher.sources import FetchPlan, plan_fetch

from .feedserver import (
    CLOUDFLARE_CHALLENGE_PAGE,
    PLAIN_TEXT_NOTICE,
    SHARED_FEEDS,
    FeedServer,
    ForwardProxy,
    InFlight,
    Reply,
    closed_port_url,
    relay,
    rsshub_down,
    serve_rsshub,
    shared_feed,
)

NOW = datetime(2026, 11, 3, 5, 20, tzinfo=UTC)
FEED = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title>'
    b"<item><title>one</title><link>http://127.0.0.1/1</link></item></channel></rss>\n"
)
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
HTTP = HttpSettings(timeout="5s")


def plan(url: str | None = None, *, http: HttpSettings = HTTP, **kw: Any) -> FetchPlan:
    """The fetch plan of a source named "src" fetching ``url`` (or the given route)."""
    instances = tuple(kw.pop("instances", ()))
    src = SourceSettings(name="src", url=url, outlet="Outlet", **kw)
    return plan_fetch(src, http, RsshubSettings(instances=instances), now=NOW)


def fetch(
    the_plan: FetchPlan, state: SourceState | None = None, http: HttpSettings = HTTP
) -> FetchResult:
    """Fetch one plan with a fresh Fetcher."""

    async def go() -> FetchResult:
        async with Fetcher(http) as fetcher:
            return await fetch_source(fetcher, the_plan, state, now=NOW)

    return asyncio.run(go())


def fetch_error(the_plan: FetchPlan, http: HttpSettings = HTTP) -> FetchError:
    """The FetchError that fetching ``the_plan`` raises."""
    with pytest.raises(FetchError) as info:
        fetch(the_plan, http=http)
    return info.value


# --- 200 and 304 ----------------------------------------------------------------------------------


def test_200_gives_body_and_validators(feed_server: FeedServer) -> None:
    """A 200 feed comes back with its body, status, validators and final URL."""
    url = feed_server.url("/a.xml")
    feed_server.feed("/a.xml", FEED, etag='"v1"', last_modified="Mon, 02 Nov 2026 10:00:00 GMT")
    result = fetch(plan(url))
    expected = (200, FEED, '"v1"', "Mon, 02 Nov 2026 10:00:00 GMT", url, False, None, "src")
    actual = (
        result.status,
        result.body,
        result.etag,
        result.last_modified,
        result.final_url,
        result.not_modified,
        result.permanent_redirect,
        result.source,
    )
    assert expected == actual
    assert RSS["Content-Type"] == result.headers["content-type"]


def test_user_agent_accept_and_source_headers_sent(feed_server: FeedServer) -> None:
    """Requests name watcher and its version, ask for feeds and carry the source's headers."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))
    fetch(plan(feed_server.url("/a.xml"), headers={"X-Token": "t"}))
    sent = feed_server.requests_to("/a.xml")[0].headers
    assert (DEFAULT_USER_AGENT, "t") == (sent["user-agent"], sent["x-token"])
    assert sent["accept"].startswith("application/rss+xml")
    assert DEFAULT_USER_AGENT.startswith("watcher/")


def test_304_round_trip_with_etag(feed_server: FeedServer) -> None:
    """The ETag of one fetch is sent back as If-None-Match, and the 304 is a normal result."""
    feed_server.feed("/a.xml", FEED, etag='"v1"', last_modified="Mon, 02 Nov 2026 10:00:00 GMT")
    first = fetch(plan(feed_server.url("/a.xml")))
    state = SourceState(name="src", etag=first.etag, last_modified=first.last_modified)
    second = fetch(plan(feed_server.url("/a.xml")), state)
    assert (True, None, 304, '"v1"') == (
        second.not_modified,
        second.body,
        second.status,
        second.etag,
    )
    sent = feed_server.requests_to("/a.xml")[1].headers
    assert ('"v1"', "Mon, 02 Nov 2026 10:00:00 GMT") == (
        sent["if-none-match"],
        sent["if-modified-since"],
    )


def test_304_round_trip_with_last_modified_only(feed_server: FeedServer) -> None:
    """A feed with only Last-Modified gets If-Modified-Since back and answers 304."""
    stamp = "Mon, 02 Nov 2026 10:00:00 GMT"
    feed_server.feed("/a.xml", FEED, last_modified=stamp)
    first = fetch(plan(feed_server.url("/a.xml")))
    second = fetch(
        plan(feed_server.url("/a.xml")), SourceState(name="src", last_modified=first.last_modified)
    )
    assert (True, stamp, None) == (second.not_modified, second.last_modified, second.etag)
    assert "if-none-match" not in feed_server.requests_to("/a.xml")[1].headers


def test_first_fetch_sends_no_conditional_headers(feed_server: FeedServer) -> None:
    """Without stored state no If-None-Match or If-Modified-Since is sent."""
    feed_server.feed("/a.xml", FEED, etag='"v1"')
    fetch(plan(feed_server.url("/a.xml")), SourceState(name="src"))
    sent = feed_server.requests_to("/a.xml")[0].headers
    assert set() == {"if-none-match", "if-modified-since"} & set(sent)


# --- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "permanent"), [(301, True), (308, True), (302, False), (307, False)]
)
def test_permanent_redirect_reported(feed_server: FeedServer, status: int, permanent: bool) -> None:
    """A 301/308 is reported as the feed's new URL; a 302/307 is followed but not reported."""
    new = feed_server.url("/new.xml")
    feed_server.route("/old.xml", Reply(status, headers={"Location": new}))
    feed_server.route("/new.xml", Reply(body=FEED, headers=RSS))
    result = fetch(plan(feed_server.url("/old.xml")))
    assert (FEED, new, new if permanent else None) == (
        result.body,
        result.final_url,
        result.permanent_redirect,
    )


def test_permanent_redirect_stops_at_first_temporary_hop(feed_server: FeedServer) -> None:
    """301 -> 302 -> feed: the feed moved for good only as far as the 301 said."""
    feed_server.route("/a", Reply(301, headers={"Location": "/b"}))
    feed_server.route("/b", Reply(302, headers={"Location": "/c"}))
    feed_server.route("/c", Reply(body=FEED, headers=RSS))
    assert feed_server.url("/b") == fetch(plan(feed_server.url("/a"))).permanent_redirect


def test_redirect_loop_hits_the_limit(feed_server: FeedServer) -> None:
    """A redirect loop fails after http.max_redirects hops, saying so."""
    feed_server.route("/a", Reply(302, headers={"Location": "/b"}))
    feed_server.route("/b", Reply(302, headers={"Location": "/a"}))
    error = fetch_error(plan(feed_server.url("/a")), http=HttpSettings(max_redirects=3))
    assert (
        f"source 'src': {feed_server.url('/a')}: more than 3 redirects (http.max_redirects)"
        == str(error)
    )
    assert 4 == len(feed_server.requests)


# --- error statuses -------------------------------------------------------------------------------


def test_redirect_without_location(feed_server: FeedServer) -> None:
    """A 3xx with no Location to follow is an error that says so."""
    feed_server.route("/a.xml", Reply(300, b"pick one", {"Content-Type": "text/plain"}))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    expected = f"{feed_server.url('/a.xml')}: HTTP 300 Multiple Choices without a usable Location"
    assert (300, expected) == (error.status, error.message)


def test_410_gone(feed_server: FeedServer) -> None:
    """A 410 is a FetchError with the status."""
    feed_server.route("/a.xml", Reply(410, b"", {"Content-Type": "text/plain"}))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    assert (410, f"{feed_server.url('/a.xml')}: HTTP 410 Gone (an empty body)") == (
        error.status,
        error.message,
    )


def test_429_retry_after_seconds(feed_server: FeedServer) -> None:
    """A 429 with Retry-After in seconds carries them in the error."""
    feed_server.route("/a.xml", Reply(429, b"slow down", {"Retry-After": "120"}))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    assert (429, 120.0) == (error.status, error.retry_after_s)


def test_503_retry_after_http_date(feed_server: FeedServer) -> None:
    """A 503 with Retry-After as an HTTP date is counted from the server's own Date."""
    headers = {
        "Date": "Tue, 03 Nov 2026 05:00:00 GMT",
        "Retry-After": "Tue, 03 Nov 2026 05:01:30 GMT",
    }
    feed_server.route("/a.xml", Reply(503, b"", headers))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    assert (503, 90.0) == (error.status, error.retry_after_s)


def test_max_age_from_cache_control_and_expires(feed_server: FeedServer) -> None:
    """Cache-Control max-age (less Age) and Expires become max_age_s."""
    feed_server.route(
        "/cc", Reply(body=FEED, headers={"Cache-Control": "public, max-age=600", "Age": "60"})
    )
    expires = {"Date": "Tue, 03 Nov 2026 05:00:00 GMT", "Expires": "Tue, 03 Nov 2026 05:30:00 GMT"}
    feed_server.route("/ex", Reply(body=FEED, headers=expires))
    assert (540.0, 1800.0) == (
        fetch(plan(feed_server.url("/cc"))).max_age_s,
        fetch(plan(feed_server.url("/ex"))).max_age_s,
    )


# --- not a feed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "says"),
    [
        (
            403,
            CLOUDFLARE_CHALLENGE_PAGE,
            {**HTML, "cf-mitigated": "challenge"},
            "HTTP 403 Forbidden (a Cloudflare challenge page)",
        ),
        (
            200,
            CLOUDFLARE_CHALLENGE_PAGE,
            HTML,
            "HTTP 200 but a Cloudflare challenge page instead of a feed",
        ),
        (
            200,
            PLAIN_TEXT_NOTICE,
            {"Content-Type": "text/plain"},
            "HTTP 200 but a plain-text notice 'This public RSSHub instance no longer serves"
            " feed readers. Please deploy your own instance: see the RSSHub documentation.'"
            " instead of a feed",
        ),
        (
            200,
            b"<!DOCTYPE html>\n<html><head><title>Welcome &amp; hello</title></head></html>",
            HTML,
            "HTTP 200 but an HTML page titled 'Welcome & hello' instead of a feed",
        ),
        (200, b"  \r\n", RSS, "HTTP 200 but an empty body instead of a feed"),
    ],
)
def test_not_a_feed_is_an_error(
    feed_server: FeedServer, status: int, body: bytes, headers: dict[str, str], says: str
) -> None:
    """Challenge pages, plain-text notices, HTML pages and empty bodies are errors, never feeds."""
    feed_server.route("/a.xml", Reply(status, body, headers))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    assert (status, f"{feed_server.url('/a.xml')}: {says}") == (error.status, error.message)


@pytest.mark.parametrize(
    "body",
    [
        FEED,
        b"\xef\xbb\xbf\n  <feed xmlns='http://www.w3.org/2005/Atom'/>",
        "\ufeff<?xml version='1.0' encoding='utf-16'?><rss/>".encode("utf-16-le"),
        "<?xml version='1.0'?><rss/>".encode("utf-16-be"),
        b"<!--\nDescription: a feedparser fixture\n-->\n<rdf:RDF xmlns:rdf='x'/>",
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>\n<rss>&lol2;</rss>',
        b'<?xml-stylesheet href="a.xsl"?><!DOCTYPE rss PUBLIC "-//Netscape//DTD RSS 0.91//EN">'
        b"\n<rss/>",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        b"<rss><channel><item><title>Just a moment...</title></item></channel></rss>",
    ],
)
def test_feed_like_bodies_pass_the_sniff(body: bytes) -> None:
    """BOMs, UTF-16, comments, DOCTYPEs with internal subsets and JSON all look like feeds."""
    assert None is sniff_non_feed(body, {})


def test_rss_under_an_xhtml_doctype_is_a_feed() -> None:
    """The root element decides: RSS declared with an XHTML DOCTYPE is still a feed."""
    body = b'<?xml version="1.0"?><!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" "x">\n<rss/>'
    assert None is sniff_non_feed(body, {})


def test_every_feedparser_fixture_passes_the_sniff() -> None:
    """None of feedparser's test feeds (UTF-16/32, odd DOCTYPEs...) is taken for a non-feed."""
    folder = SHARED_FEEDS / "feedparser-tests"
    if not folder.is_dir():
        pytest.skip(f"feedparser fixtures not found at {folder} (set WATCHER_FEEDS)")
    files = [p for p in sorted(folder.rglob("*")) if p.suffix in (".xml", ".rdf", ".json")]
    flagged = {str(p.relative_to(folder)): sniff_non_feed(p.read_bytes(), {}) for p in files}
    assert ({}, True) == ({k: v for k, v in flagged.items() if v}, len(files) > 2000)


def test_xhtml_page_with_xml_declaration_is_html() -> None:
    """An XHTML page is HTML even when it opens with an XML declaration."""
    body = b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" "x">\n<html/>'
    assert "an HTML page" == sniff_non_feed(body, {})


# --- RSSHub ---------------------------------------------------------------------------------------


def test_rsshub_serves_a_real_feed(feed_server: FeedServer) -> None:
    """A route on a fake RSSHub instance returns the saved RSSHub response byte for byte."""
    real = shared_feed("real/rsshub-3dm-news.xml")
    serve_rsshub(feed_server, {"/3dm/news": real})
    result = fetch(plan(route="/3dm/news", instances=[feed_server.base_url]))
    assert (real, feed_server.base_url, 300.0) == (result.body, result.instance, result.max_age_s)
    assert result.etag is not None


def test_rsshub_503_fails_over_to_next_instance(feed_servers: Callable[..., FeedServer]) -> None:
    """An instance answering its 503 HTML page is recorded as failed and the next one answers."""
    down, up = feed_servers(), feed_servers()
    rsshub_down(down, "/guancha/headline")
    serve_rsshub(up, {"/guancha/headline": FEED})
    rsshub = RsshubSettings(instances=(down.base_url, up.base_url))
    src = SourceSettings(name="src", route="/guancha/headline", outlet="观察者网")

    async def go() -> tuple[FetchResult, FetchResult, dict[str, datetime]]:
        async with Fetcher(HTTP) as fetcher:
            first = await fetch_source(
                fetcher, plan_fetch(src, HTTP, rsshub, now=NOW), None, now=NOW
            )
            health = dict(fetcher.instance_failures)
            again = plan_fetch(src, HTTP, rsshub, now=NOW, failed_at=fetcher.instance_failures)
            second = await fetch_source(fetcher, again, None, now=NOW)
            return first, second, health

    first, second, health = asyncio.run(go())
    assert (FEED, up.base_url) == (first.body, first.instance)
    assert {down.base_url: NOW} == health
    assert up.base_url == second.instance
    assert (1, 2) == (len(down.requests), len(up.requests))  # the failed one was asked once only


def test_every_instance_failing_names_each(feed_servers: Callable[..., FeedServer]) -> None:
    """When every instance fails, one error lists them all with RSSHub's own message."""
    first, second = feed_servers(), feed_servers()
    rsshub_down(first, "/x")
    second.route("/x", Reply(503, CLOUDFLARE_CHALLENGE_PAGE, HTML))
    error = fetch_error(plan(route="/x", instances=[first.base_url, second.base_url]))
    rsshub_page = (
        "HTTP 503 Service Unavailable (an HTML page titled 'Welcome to RSSHub!', error message "
        "'FetchError: [GET] \"https://www.guancha.cn/\": 503 Service Unavailable')"
    )
    expected = (
        f"all 2 RSSHub instances failed: {first.url('/x')}: {rsshub_page}; "
        f"{second.url('/x')}: HTTP 503 Service Unavailable (a Cloudflare challenge page)"
    )
    assert (503, expected) == (error.status, error.message)


# --- limits ---------------------------------------------------------------------------------------


def test_slow_body_times_out(feed_server: FeedServer) -> None:
    """Headers on time but a body that never comes: the whole-request timeout fails the fetch."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS, body_delay_s=30))
    error = fetch_error(plan(feed_server.url("/a.xml"), timeout="0.3s"))
    assert (None, f"{feed_server.url('/a.xml')}: no complete answer within 0.3s") == (
        error.status,
        error.message,
    )


@pytest.mark.parametrize("length", [True, False])
def test_huge_body_hits_the_size_cap(feed_server: FeedServer, length: bool) -> None:
    """A body past http.max_response_bytes fails, with or without a Content-Length."""
    feed_server.route("/a.xml", Reply(body=FEED + b" " * 5000, headers=RSS, length=length))
    error = fetch_error(plan(feed_server.url("/a.xml")), http=HttpSettings(max_response_bytes=1000))
    expected = (
        f"{feed_server.url('/a.xml')}: the response is larger than 1000 bytes"
        " (http.max_response_bytes)"
    )
    assert expected == error.message


def test_size_cap_counts_decompressed_bytes(feed_server: FeedServer) -> None:
    """A small gzip body that inflates past the cap fails: a compression bomb is stopped."""
    feed_server.route("/a.xml", Reply(body=FEED + b" " * 200_000, headers=RSS, encoding="gzip"))
    assert len(gzip.compress(FEED + b" " * 200_000)) < 10_000
    error = fetch_error(
        plan(feed_server.url("/a.xml")), http=HttpSettings(max_response_bytes=10_000)
    )
    assert "larger than 10000 bytes" in error.message


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compressed_bodies_are_decoded(feed_server: FeedServer, encoding: str) -> None:
    """gzip, deflate and brotli bodies come back decoded, and the request offered all three."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS, encoding=encoding))
    assert FEED == fetch(plan(feed_server.url("/a.xml"))).body
    offered = feed_server.requests_to("/a.xml")[0].headers["accept-encoding"]
    assert {"gzip", "deflate", "br"} <= {e.strip() for e in offered.split(",")}


def test_connection_refused() -> None:
    """A closed port is a FetchError that says it could not connect, with no status."""
    url = closed_port_url()
    error = fetch_error(plan(url))
    assert (None, f"{url}: cannot connect: Connection refused") == (error.status, error.message)


def test_tls_failure(feed_server: FeedServer) -> None:
    """An https URL on a plain-HTTP port fails as a TLS error, saying what TLS said."""
    url = feed_server.url("/a.xml").replace("http://", "https://")
    assert fetch_error(plan(url)).message.startswith(f"{url}: TLS failed: [SSL:")


def test_per_host_cap(feed_server: FeedServer) -> None:
    """Six fetches to one host never have more than http.per_host_concurrency in flight."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS, delay_s=0.2))
    http = HttpSettings(per_host_concurrency=2, max_concurrency=8)

    async def go() -> None:
        async with Fetcher(http) as fetcher:
            the_plan = plan(feed_server.url("/a.xml"), http=http)
            await asyncio.gather(
                *(fetch_source(fetcher, the_plan, None, now=NOW) for _ in range(6))
            )

    asyncio.run(go())
    assert (2, 6) == (feed_server.in_flight.max, len(feed_server.requests))


def test_global_cap(feed_servers: Callable[..., FeedServer]) -> None:
    """Fetches to three hosts never have more than http.max_concurrency in flight over all."""
    shared = InFlight()
    servers = [feed_servers(in_flight=shared) for _ in range(3)]
    for server in servers:
        server.route("/a.xml", Reply(body=FEED, headers=RSS, delay_s=0.2))
    http = HttpSettings(per_host_concurrency=2, max_concurrency=3)

    async def go() -> None:
        async with Fetcher(http) as fetcher:
            plans = [plan(s.url("/a.xml"), http=http) for s in servers for _ in range(3)]
            await asyncio.gather(*(fetch_source(fetcher, p, None, now=NOW) for p in plans))

    asyncio.run(go())
    assert (3, 9) == (shared.max, sum(len(s.requests) for s in servers))


# --- via prefixes and proxies ---------------------------------------------------------------------


def test_via_prefix_is_fetched(feed_servers: Callable[..., FeedServer]) -> None:
    """A via source asks the relay for prefix + feed URL, and the relay's answer is the feed."""
    relay_server, origin = feed_servers(), feed_servers()
    relay_server.route("/", relay)
    origin.feed("/a.xml", FEED, etag='"v1"')
    feed_url = origin.url("/a.xml")
    result = fetch(plan(feed_url, via=relay_server.url("/?")))
    assert (FEED, relay_server.url("/?") + feed_url, None) == (
        result.body,
        result.url,
        result.permanent_redirect,
    )
    assert [feed_url] == [r.query for r in relay_server.requests]


def test_http_proxy_is_used(feed_server: FeedServer, forward_proxy: ForwardProxy) -> None:
    """A source's proxy gets the absolute-URI request and the feed comes back through it."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))
    url = feed_server.url("/a.xml")
    result = fetch(plan(url, proxy=forward_proxy.url))
    assert (FEED, [url]) == (result.body, [r.target for r in forward_proxy.requests])
    assert DEFAULT_USER_AGENT == feed_server.requests[0].headers["user-agent"]


def test_global_proxy_with_credentials(feed_server: FeedServer) -> None:
    """http.proxy applies to every source, and its credentials are sent to it."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))
    with ForwardProxy(auth=("watcher", "s3cret")) as proxy:
        http = HttpSettings(proxy=proxy.url)
        result = fetch(plan(feed_server.url("/a.xml"), http=http), http=http)
        assert (FEED, 1) == (result.body, len(proxy.requests))


def test_no_secret_in_error_messages() -> None:
    """Neither a proxy's password nor a feed URL's userinfo appears in an error."""
    feed = closed_port_url("/a.xml").replace("http://", "http://reader:feedpw@")
    http = HttpSettings(proxy=closed_port_url("").replace("http://", "http://watcher:s3cret@"))
    error = fetch_error(plan(feed, http=http), http=http)
    assert (False, False, False) == (
        "s3cret" in str(error),
        "feedpw" in str(error),
        "reader" in str(error),
    )
    assert "through the proxy 127.0.0.1:" in str(error)


# --- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cache-control": "max-age=300"}, 300.0),
        ({"cache-control": "no-cache, max-age=300"}, None),
        ({"cache-control": "private"}, None),
        ({"expires": "0"}, None),
        ({"expires": "Tue, 03 Nov 2026 05:30:00 GMT"}, 600.0),  # no Date: from now
        ({"expires": "Tue, 03 Nov 2026 05:10:00 GMT", "cache-control": "max-age=5"}, 5.0),
    ],
)
def test_max_age_s(headers: dict[str, str], expected: float | None) -> None:
    """max-age wins over Expires; no-cache gives no hint; a bad Expires gives none."""
    assert expected == max_age_s(headers, now=NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        ("Tue, 03 Nov 2026 05:25:00 GMT", 300.0),
        ("Tue, 03 Nov 2026 05:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_s(value: str, expected: float | None) -> None:
    """Retry-After in seconds or as an HTTP date (from now, never negative); junk is ignored."""
    assert expected == retry_after_s({"retry-after": value}, now=NOW)


def test_http_date_forms() -> None:
    """IMF-fixdate, RFC 850 and asctime dates all read as the same UTC instant."""
    forms = [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ]
    assert {datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)} == {http_date(f) for f in forms}


def test_strip_userinfo() -> None:
    """user:password@ is removed from every URL in a text, including one inside a query."""
    text = "http://a:b@h.example.org/x and https://relay.example.org/?http://u:p@f.example.org/"
    expected = "http://h.example.org/x and https://relay.example.org/?http://f.example.org/"
    assert expected == strip_userinfo(text)


def test_socks_proxy_failure_names_the_proxy() -> None:
    """A socks5 proxy that is down fails the fetch, naming the proxy but not its password."""
    proxy = closed_port_url("").replace("http://", "socks5://watcher:s3cret@")
    error = fetch_error(plan("http://127.0.0.1:9/a.xml", proxy=proxy))
    assert (False, True) == ("s3cret" in str(error), "through the proxy 127.0.0.1:" in str(error))


# --- the Fetcher as the pipeline calls it ---------------------------------------------------------


def test_fetcher_call_fetches_the_moved_url(feed_server: FeedServer) -> None:
    """Called with a state whose url a permanent redirect changed, the Fetcher asks that URL."""
    feed_server.route("/new.xml", Reply(body=FEED, headers=RSS))
    src = SourceSettings(name="src", url=feed_server.url("/old.xml"), outlet="Outlet")
    state = SourceState(name="src", url=feed_server.url("/new.xml"), redirected_from=src.url)

    async def go() -> FetchResult:
        async with Fetcher(HTTP, clock=lambda: NOW) as fetcher:
            return await fetcher(src, state)

    result = asyncio.run(go())
    assert (FEED, NOW, ["/new.xml"]) == (
        result.body,
        result.fetched_at,
        [r.path for r in feed_server.requests],
    )


def test_fetcher_ignores_a_redirect_of_a_url_no_longer_configured(feed_server: FeedServer) -> None:
    """After the config names a new URL, a redirect stored for the old one is not followed."""
    feed_server.route("/edited.xml", Reply(body=FEED, headers=RSS))
    src = SourceSettings(name="src", url=feed_server.url("/edited.xml"), outlet="Outlet")
    stale = SourceState(
        name="src", url=feed_server.url("/new.xml"), redirected_from=feed_server.url("/old.xml")
    )

    async def go() -> FetchResult:
        async with Fetcher(HTTP, clock=lambda: NOW) as fetcher:
            return await fetcher(src, stale)

    asyncio.run(go())
    assert ["/edited.xml"] == [r.path for r in feed_server.requests]


def test_fetcher_call_remembers_instance_health(feed_servers: Callable[..., FeedServer]) -> None:
    """After an instance fails, the Fetcher asks the others first until the cooldown is over."""
    down, up = feed_servers(), feed_servers()
    down.route("/r", Reply(502, b"Bad Gateway", {"Content-Type": "text/plain"}))
    serve_rsshub(up, {"/r": FEED})
    rsshub = RsshubSettings(instances=(down.base_url, up.base_url), failure_cooldown="10m")
    src = SourceSettings(name="src", route="/r", outlet="Outlet")
    times = iter([NOW, NOW.replace(minute=25), NOW.replace(minute=31)])

    async def go() -> list[str | None]:
        async with Fetcher(HTTP, rsshub, clock=lambda: next(times)) as fetcher:
            return [(await fetcher(src, None)).instance for _ in range(3)]

    assert [up.base_url] * 3 == asyncio.run(go())
    assert 2 == len(down.requests)  # asked at 05:20 and again at 05:31, not at 05:25


# --- the aiohttp transport under direct requests --------------------------------------------------


def fetch_via(
    transport: httpx.AsyncBaseTransport | None, the_plan: FetchPlan, http: HttpSettings = HTTP
) -> FetchResult | str:
    """Fetch one plan over ``transport`` (None: the Fetcher's own); a FetchError as its message."""

    async def go() -> FetchResult | str:
        async with Fetcher(http, transport=transport) as fetcher:
            try:
                return await fetch_source(fetcher, the_plan, None, now=NOW)
            except FetchError as e:
                return e.message

    return asyncio.run(go())


def test_direct_requests_go_through_aiohttp(feed_server: FeedServer) -> None:
    """The direct client's transport is aiohttp's, it opens its session to fetch, and closes it."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))

    async def go() -> tuple[object, bool, bool]:
        async with Fetcher(HTTP) as fetcher:
            transport = fetcher.client(None)._transport
            assert isinstance(transport, AiohttpTransport)
            src = SourceSettings(name="src", url=feed_server.url("/a.xml"), outlet="Outlet")
            result = await fetcher(src, None)
            session = transport._session  # opened by the fetch, not by asking for it
            assert session is not None
            opened = not session.closed
        return result.body, opened, session.closed

    assert (FEED, True, True) == asyncio.run(go())


def test_proxied_and_injected_clients_keep_their_transport(forward_proxy: ForwardProxy) -> None:
    """A proxy's client keeps httpx's own transport, and an injected transport wins over aiohttp."""
    injected = httpx.AsyncHTTPTransport()

    async def go() -> tuple[bool, bool, bool]:
        async with Fetcher(HTTP) as fetcher, Fetcher(HTTP, transport=injected) as faked:
            proxied = fetcher.client(forward_proxy.url)._transport_for_url(httpx.URL("http://x/"))
            return (
                isinstance(proxied, httpx.AsyncHTTPTransport),
                isinstance(proxied, AiohttpTransport),
                faked.client(None)._transport is injected,
            )

    assert (True, False, True) == asyncio.run(go())


def test_direct_request_carries_exactly_the_headers_httpx_sets(feed_server: FeedServer) -> None:
    """On the wire the aiohttp path sends httpx's headers, the same as httpx's own transport."""
    feed_server.feed("/a.xml", FEED, etag='"v1"')
    the_plan = plan(feed_server.url("/a.xml"))
    state = SourceState(name="src", etag='"v1"')

    async def go(transport: httpx.AsyncBaseTransport | None) -> FetchResult:
        async with Fetcher(HTTP, transport=transport) as fetcher:
            return await fetch_source(fetcher, the_plan, state, now=NOW)

    assert (304, 304) == (
        asyncio.run(go(None)).status,
        asyncio.run(go(httpx.AsyncHTTPTransport())).status,
    )
    via_aiohttp, via_httpx = (r.headers for r in feed_server.requests_to("/a.xml"))
    assert via_httpx == via_aiohttp
    expected = {
        "host": f"127.0.0.1:{feed_server.port}",
        "accept-encoding": httpx.AsyncClient().headers["accept-encoding"],
        "connection": "keep-alive",
        "user-agent": DEFAULT_USER_AGENT,
        "accept": ACCEPT,
        "if-none-match": '"v1"',
    }
    assert expected == dict(via_aiohttp)
    assert "aiohttp" not in via_aiohttp["user-agent"]


def test_direct_requests_keep_no_cookies(feed_server: FeedServer) -> None:
    """A cookie the server sets is not sent back on the next request over the same Fetcher."""
    feed_server.route("/a.xml", Reply(body=FEED, headers={**RSS, "Set-Cookie": "id=1; Path=/"}))
    # a host name: aiohttp's default jar would refuse a cookie from an IP address anyway
    the_plan = plan(feed_server.url("/a.xml").replace("127.0.0.1", "localhost"))

    async def go() -> None:
        async with Fetcher(HTTP) as fetcher:
            for _ in range(2):
                await fetch_source(fetcher, the_plan, None, now=NOW)

    asyncio.run(go())
    assert [None, None] == [r.headers.get("cookie") for r in feed_server.requests]


def test_direct_userinfo_becomes_one_authorization_header(feed_server: FeedServer) -> None:
    """user:password@ in a direct feed URL is sent as Basic auth, once, and not in the target."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))
    url = feed_server.url("/a.xml").replace("http://", "http://reader:feed%20pw@")
    assert FEED == fetch(plan(url)).body
    sent = feed_server.requests[0]
    token = base64.b64encode(b"reader:feed pw").decode()
    assert ("/a.xml", f"Basic {token}") == (sent.target, sent.headers["authorization"])


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_direct_path_decodes_gzip_and_brotli(feed_server: FeedServer, encoding: str) -> None:
    """aiohttp hands the body over still compressed and httpx decodes it, as before."""
    body = FEED + b"<!-- padding -->" * 1000
    feed_server.route("/a.xml", Reply(body=body, headers=RSS, encoding=encoding))
    result = fetch(plan(feed_server.url("/a.xml")))
    assert (body, encoding) == (result.body, result.headers["content-encoding"])


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_direct_size_cap_stops_a_5mb_body(feed_server: FeedServer, encoding: str | None) -> None:
    """A 5 MB body (plain or gzip, no Content-Length) stops at http.max_response_bytes."""
    feed_server.route(
        "/a.xml", Reply(body=FEED + b" " * 5_000_000, headers=RSS, encoding=encoding, length=False)
    )
    error = fetch_error(
        plan(feed_server.url("/a.xml")), http=HttpSettings(max_response_bytes=100_000)
    )
    expected = (
        f"{feed_server.url('/a.xml')}: the response is larger than 100000 bytes"
        " (http.max_response_bytes)"
    )
    assert expected == error.message


def test_direct_error_page_is_read_only_at_its_start(feed_server: FeedServer) -> None:
    """A 5 MB error page is named from its first bytes, the rest left unread."""
    page = b"<!DOCTYPE html><html><head><title>Down</title></head>" + b" " * 5_000_000
    feed_server.route("/a.xml", Reply(503, page, HTML))
    error = fetch_error(plan(feed_server.url("/a.xml")))
    expected = (
        f"{feed_server.url('/a.xml')}: HTTP 503 Service Unavailable (an HTML page titled 'Down')"
    )
    assert (503, expected) == (error.status, error.message)


def test_direct_stalled_server_times_out(feed_server: FeedServer) -> None:
    """A server that accepts and never answers fails with the timeout message."""
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS, delay_s=30))
    error = fetch_error(plan(feed_server.url("/a.xml"), timeout="0.3s"))
    assert f"{feed_server.url('/a.xml')}: no complete answer within 0.3s" == error.message


def test_direct_truncated_body_is_broken_off(feed_server: FeedServer) -> None:
    """A body shorter than its Content-Length is an error saying the server broke off."""
    feed_server.route(
        "/a.xml", Reply(body=FEED, headers={**RSS, "content-length": "5000"}, length=False)
    )
    error = fetch_error(plan(feed_server.url("/a.xml")))
    prefix = f"{feed_server.url('/a.xml')}: the server broke off the answer: "
    assert (True, True) == (error.message.startswith(prefix), "5000" in error.message)


def test_head_only_httpx_parses_is_fetched_with_httpx(feed_server: FeedServer) -> None:
    """A head aiohttp refuses (two Content-Lengths) is fetched again over httpx, then always."""
    feed_server.route("/a.xml", Reply(body=FEED, headers={**RSS, "content-length": str(len(FEED))}))
    the_plan = plan(feed_server.url("/a.xml"))

    async def go() -> tuple[list[bytes | None], int]:
        async with Fetcher(HTTP) as fetcher:
            bodies = [(await fetch_source(fetcher, the_plan, None, now=NOW)).body for _ in range(2)]
            transport = fetcher.client(None)._transport
            assert isinstance(transport, AiohttpTransport)
            return bodies, len(transport.lenient_origins)

    assert ([FEED, FEED], 1) == asyncio.run(go())
    assert 3 == len(feed_server.requests)  # aiohttp's refused try, then httpx twice


@pytest.mark.parametrize(
    "scenario", ["refused", "tls", "stall", "redirect loop", "gone", "bad gzip"]
)
def test_direct_path_fails_as_httpx_did(feed_server: FeedServer, scenario: str) -> None:
    """Over aiohttp each failure gives the very message httpx's own transport gave."""
    feed_server.route("/loop", Reply(302, headers={"Location": "/loop"}))
    feed_server.route("/gone", Reply(410, b"gone", {"Content-Type": "text/plain"}))
    bad_gzip = {**RSS, "Content-Encoding": "gzip"}
    feed_server.route("/gzip", Reply(body=b"not gzip at all", headers=bad_gzip))
    feed_server.route("/a.xml", Reply(body=FEED, headers=RSS))
    urls = {
        "refused": closed_port_url(),
        "tls": feed_server.url("/a.xml").replace("http://", "https://"),
        "stall": feed_server.url("/a.xml").replace("/a.xml", "/slow"),
        "redirect loop": feed_server.url("/loop"),
        "gone": feed_server.url("/gone"),
        "bad gzip": feed_server.url("/gzip"),
    }
    feed_server.route("/slow", Reply(body=FEED, delay_s=30))
    http = HttpSettings(timeout="0.3s", max_redirects=2)
    the_plan = plan(urls[scenario], http=http)
    via_aiohttp, via_httpx = (
        fetch_via(t, the_plan, http) for t in (None, httpx.AsyncHTTPTransport())
    )
    assert (str, via_httpx) == (type(via_aiohttp), via_aiohttp)
