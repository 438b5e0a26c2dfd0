"""What the daemon's HTTP server costs: renders, and requests beside a stdlib baseline.

    python bench/server.py [--sources 200] [--stories 50] [--requests 500] [--rounds 5]

  metrics:  WatcherMetrics.render() with ``--sources`` sources that each have fetches of three
            statuses, passes of two outcomes, items and gauges (the daemon after a few hours)
  feeds:    atom_feed and json_feed (+ json.dumps) of ``--stories`` stories of 5 members
  requests: sequential GET /healthz over fresh connections with one httpx client, against our
            asyncio server and against a stdlib ThreadingHTTPServer answering the same bytes
            (the baseline), both on 127.0.0.1 in this process
Prints medians over ``--rounds`` and the request-rate ratio (goal: within 2x of the baseline;
both are far beyond what a health checker or a Prometheus scrape asks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from watcher.feeds import atom_feed, json_feed
from watcher.metrics import WatcherMetrics
from watcher.models import Story, StoryMember
from watcher.server import Server

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
HEALTH_BODY = json.dumps({"status": "ok", "checks": {"scheduler": True, "store": True}}).encode()


def median_s(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``fn`` over ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def busy_metrics(sources: int) -> WatcherMetrics:
    """Metrics as after a few hours with ``sources`` sources."""
    metrics = WatcherMetrics()
    for i in range(sources):
        name = f"source-{i}"
        for status in (200, 304, 503):
            metrics.observe_fetch(name, status, 0.2)
        for outcome in ("updated", "not_modified"):
            metrics.observe_pass(name, outcome, new=3, updated=1, duplicates=1, seconds=0.3)
        metrics.observe_source(name, consecutive_failures=0, last_success_at=NOW, silent=False)
    return metrics


def stories(count: int) -> list[Story]:
    """``count`` stories of 5 members each, an hour apart."""
    made = []
    for i in range(count):
        members = [
            StoryMember(
                article_id=f"a{i}-{j}",
                outlet=f"Outlet {j}",
                title=f"标题 {i} 第{j}版",
                link=f"https://o{j}.example.org/{i}",
                published_at=NOW - timedelta(hours=i),
            )
            for j in range(5)
        ]
        made.append(
            Story(
                id=f"s{i}",
                canonical_id=members[0].article_id,
                outlets=[m.outlet for m in members],
                first_published_at=NOW - timedelta(hours=i),
                updated_at=NOW,
                members=members,
            )
        )
    return made


class _Baseline(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(HEALTH_BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(HEALTH_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


def rate(url: str, requests: int) -> float:
    """Requests per second of sequential GETs on fresh connections (at most 30 s)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(trust_env=False, limits=limits, timeout=10) as client:
        started, done = time.perf_counter(), 0
        while done < requests and time.perf_counter() - started < 30:
            client.get(url).raise_for_status()
            done += 1
        return done / (time.perf_counter() - started)


def ours_rate(requests: int) -> float:
    """Request rate of watcher.server, run on an event loop in a thread."""
    loop = asyncio.new_event_loop()
    server = Server(
        "127.0.0.1:0",
        health=lambda: {"scheduler": True, "store": True},
        metrics=WatcherMetrics().registry,
        stories=lambda a, b: [],
    )
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        return rate(f"http://127.0.0.1:{server.address[1]}/healthz", requests)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def baseline_rate(requests: int) -> float:
    """Request rate of a stdlib ThreadingHTTPServer answering the same body."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Baseline)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        return rate(f"http://127.0.0.1:{httpd.server_address[1]}/healthz", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--stories", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    metrics = busy_metrics(args.sources)
    text = metrics.registry.render()
    render_s = median_s(metrics.registry.render, args.rounds)
    print(
        f"metrics: {args.sources} sources, {len(text.splitlines())} lines, "
        f"{len(text) / 1024:.0f} KiB, render {render_s * 1000:.1f} ms"
    )

    feed = stories(args.stories)
    atom_s = median_s(
        lambda: atom_feed(feed, self_url="http://x/stories.atom", now=NOW), args.rounds
    )
    json_s = median_s(
        lambda: json.dumps(json_feed(feed, feed_url="http://x/stories.json"), ensure_ascii=False),
        args.rounds,
    )
    print(
        f"feeds: {args.stories} stories x 5 members: atom {atom_s * 1000:.2f} ms, "
        f"json feed {json_s * 1000:.2f} ms"
    )

    ours = statistics.median(ours_rate(args.requests) for _ in range(args.rounds))
    base = statistics.median(baseline_rate(args.requests) for _ in range(args.rounds))
    print(
        f"GET /healthz, new connection each: watcher.server {ours:,.0f}/s, "
        f"stdlib ThreadingHTTPServer {base:,.0f}/s, ratio {ours / base:.2f}"
    )


if __name__ == "__main__":
    main()
