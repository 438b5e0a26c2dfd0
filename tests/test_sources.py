"""Sources: a configured source -> the ordered URLs to fetch, through via prefixes and proxies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watcher.settings import HttpSettings, RsshubSettings, SourceSettings
from watcher.sources import (
    FetchPlan,
    FetchTarget,
    apply_via,
    choose_proxy,
    order_instances,
    plan_fetch,
    resolve_route,
)

NOW = datetime(2026, 11, 3, 5, 20, tzinfo=UTC)
A, B, C = "http://127.0.0.1:1200", "https://rsshub.example.org", "https://hub.example.org/rsshub"
RSSHUB = RsshubSettings(instances=(A, B, C))


def source(**kw: Any) -> SourceSettings:
    values: dict[str, Any] = {"name": "src", "outlet": "Outlet", **kw}
    if "route" not in kw:
        values.setdefault("url", "https://feeds.example.org/world.xml")
    return SourceSettings(**values)


def plan(src: SourceSettings, http: HttpSettings | None = None, **kw: Any) -> FetchPlan:
    return plan_fetch(src, http or HttpSettings(), RSSHUB, now=NOW, **kw)


# --- url sources ----------------------------------------------------------------------------------


def test_url_source_is_one_direct_target() -> None:
    """A url source is fetched from its own URL, directly, with no RSSHub instance."""
    url = "https://feeds.example.org/world.xml"
    expected = (FetchTarget(url=url, feed_url=url),)
    actual = plan(source(url=url)).targets
    assert expected == actual
    assert actual[0].is_direct


def test_moved_url_replaces_configured_url() -> None:
    """A permanent redirect's new URL is fetched instead of the configured one."""
    moved = "https://feeds.example.org/new.xml"
    assert moved == plan(source(), moved_url=moved).targets[0].url


def test_source_timeout_and_headers_reach_the_plan() -> None:
    """The source's own timeout and headers are in its plan; without one, http.timeout applies."""
    own = plan(source(timeout="7s", headers={"Cookie": "a=b"}))
    assert (7.0, (("Cookie", "a=b"),)) == (own.timeout_s, own.headers)
    assert 20.0 == plan(source()).timeout_s


# --- RSSHub routes --------------------------------------------------------------------------------


def test_route_resolves_against_each_instance_in_order() -> None:
    """A route source has one target per RSSHub instance, in configured order."""
    expected = (
        ("http://127.0.0.1:1200/guancha/headline", A),
        ("https://rsshub.example.org/guancha/headline", B),
        ("https://hub.example.org/rsshub/guancha/headline", C),
    )
    targets = plan(source(route="/guancha/headline")).targets
    assert expected == tuple((t.url, t.instance) for t in targets)
    assert not any(t.is_direct for t in targets)


@pytest.mark.parametrize(
    ("instance", "route", "expected"),
    [
        ("http://127.0.0.1:1200/", "/a/b", "http://127.0.0.1:1200/a/b"),
        ("http://127.0.0.1:1200", "/a/b?limit=5", "http://127.0.0.1:1200/a/b?limit=5"),
        ("https://h.example.org/hub/", "/a", "https://h.example.org/hub/a"),
        ("https://h.example.org/?key=k", "/a?limit=5", "https://h.example.org/a?limit=5&key=k"),
    ],
)
def test_resolve_route(instance: str, route: str, expected: str) -> None:
    """A trailing slash is dropped; an instance's path prefix and access key are kept."""
    assert expected == resolve_route(instance, route)


def test_recently_failed_instances_go_last_oldest_failure_first() -> None:
    """Instances that failed within the cooldown follow the healthy ones, oldest failure first."""
    failed = {A: NOW - timedelta(minutes=1), B: NOW - timedelta(minutes=5)}
    assert (C, B, A) == order_instances((A, B, C), failed, now=NOW, cooldown=timedelta(minutes=10))


def test_failure_older_than_cooldown_is_forgotten() -> None:
    """An instance whose last failure is older than the cooldown keeps its configured place."""
    failed = {A: NOW - timedelta(minutes=11)}
    assert (A, B, C) == order_instances((A, B, C), failed, now=NOW, cooldown=timedelta(minutes=10))


def test_plan_orders_instances_by_health() -> None:
    """plan_fetch puts an instance that just failed at the back."""
    targets = plan(source(route="/x"), failed_at={A: NOW}).targets
    assert (B, C, A) == tuple(t.instance for t in targets)


# --- via prefixes and proxies ---------------------------------------------------------------------


def test_via_prefix_gets_the_feed_url_appended() -> None:
    """via: the feed URL is appended to the prefix as it is, as CORS relays expect."""
    url = "https://feeds.example.org/a.xml?x=1&y=2"
    target = plan(source(url=url, via="https://relay.example.org/?")).targets[0]
    expected = ("https://relay.example.org/?https://feeds.example.org/a.xml?x=1&y=2", url, False)
    assert expected == (target.url, target.feed_url, target.is_direct)


def test_via_applies_to_every_instance_of_a_route() -> None:
    """A route with via goes through the prefix for each instance."""
    targets = plan(source(route="/x", via="https://relay.example.org/?url=")).targets
    expected = [f"https://relay.example.org/?url={i.rstrip('/')}/x" for i in (A, B)]
    assert expected == [t.url for t in targets[:2]]


def test_apply_via_without_prefix_is_the_url() -> None:
    """No via: the URL is unchanged."""
    assert "https://x.example.org/" == apply_via(None, "https://x.example.org/")


@pytest.mark.parametrize(
    ("own", "global_", "expected"),
    [
        ("socks5://127.0.0.1:1080", "http://127.0.0.1:3128", "socks5://127.0.0.1:1080"),
        (None, "http://127.0.0.1:3128", "http://127.0.0.1:3128"),
        (None, None, None),
    ],
)
def test_proxy_source_else_global(
    own: str | None, global_: str | None, expected: str | None
) -> None:
    """A source's own proxy wins over http.proxy; with neither, the connection is direct."""
    src, http = source(proxy=own), HttpSettings(proxy=global_)
    assert expected == choose_proxy(src, http)
    assert {expected} == {t.proxy for t in plan(src, http).targets}
