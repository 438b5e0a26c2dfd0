"""SOURCES stage: a configured source -> the ordered list of URLs to GET for it, and how.

    plan_fetch(source, http, rsshub, failed_at=..., now=...) -> FetchPlan
        url source:    [feed URL]
        route source:  [instance + route for each RSSHub instance]   (failover order)
        via:           each URL above appended to the via prefix, as CORS relays expect
        proxy:         source.proxy, else http.proxy, else none
        instances that failed within rsshub.failure_cooldown go last, oldest failure first

What this module does not do: it makes no request and keeps no state. The instance health it
orders by (``failed_at``) is kept by its caller (``fetch.Fetcher.instance_failures``), and the
fetching, failover and error handling are ``fetch``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from watcher.settings import HttpSettings, RsshubSettings, SourceSettings


@dataclass(frozen=True, slots=True)
class FetchTarget:
    """One URL to GET for a source: what is asked for, what it stands for, and through what."""

    url: str
    """The URL requested: the feed URL, or the via prefix followed by it."""
    feed_url: str
    """The feed's own URL (an RSSHub instance + route for route sources), before any via."""
    instance: str | None = None
    """The RSSHub instance (as configured) this target goes to; None for url sources."""
    proxy: str | None = None
    """The HTTP or SOCKS proxy URL to go through; None for a direct connection."""

    @property
    def is_direct(self) -> bool:
        """True when the URL is the feed's own (no via, no RSSHub): its redirects move the feed."""
        return self.instance is None and self.url == self.feed_url


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """Everything ``fetch`` needs for one source: targets in the order to try them, and limits."""

    source: str
    targets: tuple[FetchTarget, ...]
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 20.0


def resolve_route(instance: str, route: str) -> str:
    """The URL of RSSHub ``route`` on ``instance``; a path or query on the instance is kept.

    ``("http://h:1200/", "/a/b")`` -> ``http://h:1200/a/b``; ``("https://h/rsshub?key=k",
    "/a/b?limit=5")`` -> ``https://h/rsshub/a/b?limit=5&key=k`` (an access key stays on).
    """
    base = urlsplit(instance)
    path, _, route_query = route.partition("?")
    query = "&".join(q for q in (route_query, base.query) if q)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + path, query, ""))


def apply_via(via: str | None, url: str) -> str:
    """``url`` appended to the URL-prefix proxy ``via`` as it is (no quoting); ``url`` if none."""
    return url if via is None else via + url


def choose_proxy(source: SourceSettings, http: HttpSettings) -> str | None:
    """The proxy a source's requests go through: its own, else the global one, else none."""
    return source.proxy or http.proxy


def order_instances(
    instances: Sequence[str],
    failed_at: Mapping[str, datetime],
    *,
    now: datetime,
    cooldown: timedelta,
) -> tuple[str, ...]:
    """Instances in configured order, those that failed within ``cooldown`` last (oldest first)."""
    recent = {
        i: failed_at[i] for i in instances if i in failed_at and now - failed_at[i] < cooldown
    }
    healthy = [i for i in instances if i not in recent]
    return (*healthy, *sorted(recent, key=recent.__getitem__))


def plan_fetch(
    source: SourceSettings,
    http: HttpSettings,
    rsshub: RsshubSettings,
    *,
    now: datetime,
    failed_at: Mapping[str, datetime] | None = None,
    moved_url: str | None = None,
) -> FetchPlan:
    """The fetch plan of ``source``; ``moved_url`` (a permanent redirect's target) replaces its url.

    ``failed_at`` maps RSSHub instances to their last failure, as ``Fetcher.instance_failures``
    keeps it; ``now`` is compared with those times.
    """
    proxy = choose_proxy(source, http)
    if source.route is None:
        feed_url = moved_url or source.url
        assert feed_url is not None  # SourceSettings guarantees exactly one of url and route
        targets: tuple[FetchTarget, ...] = (
            FetchTarget(url=apply_via(source.via, feed_url), feed_url=feed_url, proxy=proxy),
        )
    else:
        ordered = order_instances(
            rsshub.instances, failed_at or {}, now=now, cooldown=rsshub.failure_cooldown
        )
        targets = tuple(
            _route_target(instance, source.route, source.via, proxy) for instance in ordered
        )
    timeout = source.timeout or http.timeout
    return FetchPlan(
        source=source.name,
        targets=targets,
        headers=tuple(source.headers.items()),
        timeout_s=timeout.total_seconds(),
    )


def _route_target(instance: str, route: str, via: str | None, proxy: str | None) -> FetchTarget:
    feed_url = resolve_route(instance, route)
    return FetchTarget(
        url=apply_via(via, feed_url), feed_url=feed_url, instance=instance, proxy=proxy
    )
