"""The daemon: schedules from the store, isolates failing sources, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watcher import archive
from watcher import daemon as daemon_module
from watcher.daemon import Daemon
from watcher.fetch import Fetcher
from watcher.models import SourceState
from watcher.pipeline import PassResult
from watcher.settings import Settings, load_settings
from watcher.store import Store, open_store

from .feedserver import FeedServer, Reply
from .test_pipeline import ITEMS, rss


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store."""
    with open_store(tmp_path / "data" / "watcher.db") as opened:
        yield opened


def write_settings(tmp_path: Path, server: FeedServer, *sources: str) -> Path:
    """A config with one 1-second Hexo source per path in ``sources``."""
    text = f'[watcher]\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
    for path in sources:
        name = path.strip("/").replace(".xml", "")
        text += (
            f'[[sources]]\nname = "{name}"\nurl = "{server.url(path)}"\noutlet = "{name}"\n'
            'categories = ["新媒体", "测试", "头条"]\ninterval = "1s"\n'
        )
    config = tmp_path / "watcher.toml"
    config.write_text(text, encoding="utf-8")
    return config


def start_run(config: Path, *, stderr: int) -> subprocess.Popen[bytes]:
    """`watcher run` in a subprocess, stdout piped, no WATCHER_* variable of ours inherited."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def settings_for(tmp_path: Path, server: FeedServer, *sources: str) -> Settings:
    """Loaded settings for ``write_settings``."""
    return load_settings(write_settings(tmp_path, server, *sources), env={})


async def _poll(settings: Settings, store: Store) -> list[PassResult]:
    async with Fetcher(settings.http, settings.rsshub) as fetcher:
        return await Daemon(settings, store, fetcher).poll()


def test_one_broken_source_never_stops_the_others(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A source answering 503 fails alone; the good one stores its items."""
    feed_server.feed("/good.xml", rss(ITEMS))
    feed_server.route("/bad.xml", Reply(503, b"<html>down</html>", {"Content-Type": "text/html"}))
    settings = settings_for(tmp_path, feed_server, "/good.xml", "/bad.xml")
    results = {r.source: r for r in asyncio.run(_poll(settings, store))}
    assert ("updated", "failed") == (results["good"].outcome, results["bad"].outcome)
    assert 3 == store.count_articles()
    bad = store.get_source_state("bad")
    assert bad is not None
    assert (1, 503) == (bad.consecutive_failures, bad.last_status)


async def _run_until(daemon: Daemon, done: asyncio.Event, limit_s: float) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=limit_s)
    stop.set()
    await asyncio.wait_for(runner, timeout=10)


def test_run_polls_each_source_on_its_interval(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """Each source is polled again after its interval; the second pass is a 304."""
    feed_server.feed("/a.xml", rss(ITEMS), etag='"a"')
    settings = settings_for(tmp_path, feed_server, "/a.xml")

    async def go() -> None:
        done = asyncio.Event()

        async def watch() -> None:
            while len(feed_server.requests_to("/a.xml")) < 3:
                await asyncio.sleep(0.05)
            done.set()

        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            watcher = asyncio.create_task(watch())
            await _run_until(Daemon(settings, store, fetcher), done, limit_s=15)
            watcher.cancel()

    asyncio.run(go())
    requests = feed_server.requests_to("/a.xml")
    assert len(requests) >= 3
    assert '"a"' == requests[-1].headers.get("if-none-match")
    assert 3 == store.count_articles()


async def _scheduled_after(
    settings: Settings, store: Store, seconds: float
) -> dict[str, datetime | None]:
    """Run the daemon for ``seconds``; return its scheduled next run per source, then stop it."""
    async with Fetcher(settings.http, settings.rsshub) as fetcher:
        daemon = Daemon(settings, store, fetcher)
        stop = asyncio.Event()
        runner = asyncio.create_task(daemon.run(stop))
        await asyncio.sleep(seconds)
        scheduled = daemon.next_run_times()
        stop.set()
        await asyncio.wait_for(runner, timeout=10)
        return scheduled


def test_restart_resumes_from_stored_next_check(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A source whose stored next check is an hour away is not polled after a restart."""
    feed_server.feed("/later.xml", rss(ITEMS))
    settings = settings_for(tmp_path, feed_server, "/later.xml")
    hour = datetime.now(UTC) + timedelta(hours=1)
    store.put_source_state(SourceState(name="later", next_check_at=hour))

    scheduled = asyncio.run(_scheduled_after(settings, store, 1.5))
    assert [] == feed_server.requests_to("/later.xml")
    assert hour == scheduled["later"]


def test_paused_source_is_not_scheduled(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A paused source gets no job and no request."""
    feed_server.feed("/p.xml", rss(ITEMS))
    settings = settings_for(tmp_path, feed_server, "/p.xml")
    store.put_source_state(SourceState(name="p", paused=True, consecutive_failures=20))

    assert {} == asyncio.run(_scheduled_after(settings, store, 0.5))
    assert [] == feed_server.requests_to("/p.xml")


def test_sigterm_finishes_the_pass_in_flight_and_exits_0(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """`watcher run` given SIGTERM mid-fetch finishes that pass, stores it, and exits 0."""
    slow = Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"}, delay_s=1.5)
    feed_server.route("/slow.xml", slow)
    config = write_settings(tmp_path, feed_server, "/slow.xml")
    process = start_run(config, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not feed_server.requests_to("/slow.xml") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = process.wait(timeout=15)
    took = time.monotonic() - started
    process.stdout.close()  # type: ignore[union-attr]
    stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    assert 0 == code, stderr
    assert took < 10
    with open_store(tmp_path / "data" / "watcher.db") as store:
        assert 3 == store.count_articles()
    assert "daemon stopped" in stderr


WIRE = (
    "<p>俄罗斯总统普京告诉美国总统拜登，引入新的前所未有的制裁可能导致两国关系彻底破裂。"
    "在俄罗斯和西方关系因乌克兰问题持续紧张之际，俄美两国总统于上周四进行电话会议。"
    "克里姆林宫透露，美国、俄罗斯同意在日内瓦、布鲁塞尔和维也纳分别举行三次安全会谈，"
    "双方会谈将于1月9日开始。普京的助理说，会谈的重点是行动和指标，而不是空谈。</p>"
)


def test_the_same_wire_story_from_two_outlets_is_one_story(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """Two outlets carrying one wire story make one story with both outlets; one archive file
    with archive_first_only."""
    feed_server.feed("/one.xml", rss([("w1", "普京警告拜登", WIRE)]))
    feed_server.feed("/two.xml", rss([("w2", "普京严厉警告拜登！", WIRE)]))
    config = write_settings(tmp_path, feed_server, "/one.xml", "/two.xml")
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[[sources]]", "[dedup]\narchive_first_only = true\n[[sources]]", 1
        ),
        encoding="utf-8",
    )
    settings = load_settings(config, env={})
    results = {r.source: r for r in asyncio.run(_poll(settings, store))}
    stories = list(store.iter_stories())
    assert (1, ["one", "two"]) == (len(stories), sorted(stories[0].outlets))
    assert 1 == sum(r.duplicates for r in results.values())
    assert 1 == len(list(settings.archive_path.rglob("*.md")))


def _with_server(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[watcher]", '[server]\nlisten = "127.0.0.1:0"\n[watcher]', 1))


def test_server_reports_health_metrics_and_stories(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """With [server] listen set, /healthz, /metrics and /stories.json answer from the daemon."""
    import httpx

    feed_server.feed("/m.xml", rss(ITEMS))
    config = write_settings(tmp_path, feed_server, "/m.xml")
    _with_server(config)
    settings = load_settings(config, env={})

    async def go() -> tuple[int, str, dict[str, object]]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            daemon = Daemon(settings, store, fetcher)
            stop = asyncio.Event()
            runner = asyncio.create_task(daemon.run(stop))
            for _ in range(200):
                passes = daemon.metrics.passes.value(source="m", outcome="updated")
                if daemon.server is not None and passes == 1:
                    break
                await asyncio.sleep(0.05)
            assert daemon.server is not None
            host, port = daemon.server.address
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False) as c:
                health = await c.get("/healthz")
                metrics = (await c.get("/metrics")).text
                feed = (await c.get("/stories.json")).json()
            stop.set()
            await asyncio.wait_for(runner, timeout=10)
            return health.status_code, metrics, feed

    status, metrics, feed = asyncio.run(go())
    assert 200 == status
    assert 'watcher_passes_total{source="m",outcome="updated"} 1' in metrics
    assert "watcher_stories 3" in metrics
    assert 3 == len(feed["items"])  # type: ignore[arg-type]


def test_reload_adds_sources_and_refuses_a_bad_config(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A reload schedules a newly added source; a broken config is refused and the old kept."""
    feed_server.feed("/r1.xml", rss(ITEMS))
    feed_server.feed("/r2.xml", rss([("n1", "新来源", "<p>新的内容。</p>")]))
    config = write_settings(tmp_path, feed_server, "/r1.xml")
    settings = load_settings(config, env={})

    async def go() -> tuple[bool, bool, list[str]]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            daemon = Daemon(settings, store, fetcher)
            stop = asyncio.Event()
            runner = asyncio.create_task(daemon.run(stop))
            await asyncio.sleep(0.3)
            write_settings(tmp_path, feed_server, "/r1.xml", "/r2.xml")
            added = daemon.reload()
            for _ in range(200):
                if feed_server.requests_to("/r2.xml"):
                    break
                await asyncio.sleep(0.05)
            config.write_text("[watcher]\nbogus = 1\n", encoding="utf-8")
            refused = daemon.reload()
            names = [s.name for s in daemon.settings.sources]
            stop.set()
            await asyncio.wait_for(runner, timeout=10)
            return added, refused, names

    added, refused, names = asyncio.run(go())
    assert (True, False, ["r1", "r2"]) == (added, refused, names)
    assert 1 <= len(feed_server.requests_to("/r2.xml"))


def test_systemd_notify_ready_reload_stopping(feed_server: FeedServer, tmp_path: Path) -> None:
    """Under a service manager, `watcher run` says READY, RELOADING/READY on SIGHUP, STOPPING."""
    import socket

    feed_server.feed("/n.xml", rss(ITEMS))
    config = write_settings(tmp_path, feed_server, "/n.xml")
    address = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(address)
    manager.settimeout(20)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHER_")}
    env["NOTIFY_SOCKET"] = address
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    said: list[str] = []

    def wait_for(first_line: str) -> None:
        while True:
            message = manager.recv(4096).decode()
            said.append(message.split("\n")[0])
            if said[-1] == first_line:
                return

    try:
        wait_for("READY=1")
        process.send_signal(signal.SIGHUP)
        wait_for("RELOADING=1")
        wait_for("READY=1")
        process.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        assert 0 == process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        manager.close()
    assert ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"] == [
        line for line in said if not line.startswith("STATUS=")
    ]


def test_parse_pool_parses_in_another_process(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """With parse_workers, passes parse in a worker process; items are stored the same."""
    feed_server.feed("/pool.xml", rss(ITEMS))
    settings = settings_for(tmp_path, feed_server, "/pool.xml")

    async def go() -> tuple[int, bool, bool]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            daemon = Daemon(settings, store, fetcher, parse_workers=1)
            stop = asyncio.Event()
            runner = asyncio.create_task(daemon.run(stop))
            for _ in range(300):
                if store.count_articles() == 3:
                    break
                await asyncio.sleep(0.05)
            worker: int = await daemon._run_cpu(os.getpid)  # type: ignore[arg-type, assignment]
            uses_pool = daemon._context().run_cpu == daemon._run_cpu
            stop.set()
            await asyncio.wait_for(runner, timeout=15)
            return worker, uses_pool, daemon._parse_pool is None

    worker, uses_pool, closed = asyncio.run(go())
    assert (3, True, True) == (store.count_articles(), uses_pool, closed)
    assert os.getpid() != worker


def test_passes_under_way_are_bounded(
    feed_server: FeedServer, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle over many sources runs at most twice the request cap of passes at once."""
    paths = [f"/f{n}.xml" for n in range(12)]
    for n, path in enumerate(paths):
        body = rss([(f"g{n}", f"标题{n}", "<p>正文</p>")])
        feed_server.route(path, Reply(200, body, {"Content-Type": "application/rss+xml"}, 0.05))
    text = write_settings(tmp_path, feed_server, *paths).read_text(encoding="utf-8")
    config = tmp_path / "bounded.toml"
    config.write_text(f"[http]\nmax_concurrency = 2\nper_host_concurrency = 2\n{text}", "utf-8")
    settings = load_settings(config, env={})
    under_way = [0]
    peak = [0]
    real_poll_source = daemon_module.poll_source

    async def counting(*args: Any, **kwargs: Any) -> PassResult:
        under_way[0] += 1
        peak[0] = max(peak[0], under_way[0])
        try:
            return await real_poll_source(*args, **kwargs)
        finally:
            under_way[0] -= 1

    monkeypatch.setattr(daemon_module, "poll_source", counting)
    results = asyncio.run(_poll(settings, store))
    assert {"updated"} == {r.outcome for r in results} and len(results) == 12
    assert 2 < peak[0] <= 4  # more passes than requests (parsing overlaps), never more than 2x


def test_killed_daemon_leaves_no_parse_worker_behind(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """SIGKILL of `watcher run` with a parse pool: its workers die too, and stdout reaches EOF."""
    feed_server.feed("/pooled.xml", rss(ITEMS))
    text = write_settings(tmp_path, feed_server, "/pooled.xml").read_text(encoding="utf-8")
    config = tmp_path / "pooled.toml"
    config.write_text(text.replace("[watcher]\n", "[watcher]\nparse_workers = 1\n"), "utf-8")
    process = start_run(config, stderr=subprocess.DEVNULL)
    database = tmp_path / "data" / "watcher.db"
    deadline = time.monotonic() + 20
    stored = 0
    while stored < 3 and time.monotonic() < deadline:  # parsed by the pool, so it is up
        time.sleep(0.1)
        if database.exists():
            with open_store(database) as store:
                stored = store.count_articles()
    process.kill()
    process.wait(timeout=10)
    assert stored == 3
    stdout = process.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], 10)  # EOF once no worker holds the pipe
    assert ready and stdout.read() == b""
    stdout.close()


def test_poll_parses_in_a_pool_of_its_own_and_stops_it(
    feed_server: FeedServer, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watcher poll` with parse_workers parses in a pool made for the cycle, then shut down;
    a cycle where every feed answers 304 starts none."""
    feed_server.feed("/once.xml", rss(ITEMS), etag='"v1"')
    text = write_settings(tmp_path, feed_server, "/once.xml").read_text(encoding="utf-8")
    config = tmp_path / "pool.toml"
    config.write_text(text.replace("[watcher]\n", "[watcher]\nparse_workers = 1\n"), "utf-8")
    settings = load_settings(config, env={})
    submitted: list[str] = []
    real_submit = ProcessPoolExecutor.submit

    def spy(pool: ProcessPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        submitted.append(fn.__name__)
        return real_submit(pool, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", spy)
    started: list[int] = []

    class Counted(ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(daemon_module, "ProcessPoolExecutor", Counted)

    async def go() -> tuple[list[PassResult], bool, list[str], bool]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            daemon = Daemon(settings, store, fetcher)
            results = await daemon.poll()
            stopped = daemon._parse_pool is None
            again = await daemon.poll()
            return results, stopped, [r.outcome for r in again], daemon._pooled

    results, stopped, again, pooled = asyncio.run(go())
    assert (["updated"], 3, True) == ([r.outcome for r in results], store.count_articles(), stopped)
    assert (["not_modified"], False, 1) == (again, pooled, len(started))
    assert submitted == ["parse_entries", "write_archive_files"]  # none in the 304 cycle
    # The worker's files are the archive's own, byte for byte, flushed and noted as such.
    stored = list(store.iter_articles())
    root = settings.archive_path
    files = {p.relative_to(root).as_posix(): p.read_text("utf-8") for p in root.rglob("*.md")}
    assert files == {archive.relative_path(a): archive.render(a) for a in stored}
    assert [] == store.archive_pending_ids()


def test_a_feed_that_fails_to_parse_in_the_pool_fails_alone(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A ParseError raised in a parse worker fails its source; the pool goes on parsing."""
    feed_server.route("/html.xml", Reply(200, b"<html><body>a page</body></html>",
                                         {"Content-Type": "text/html"}))  # fmt: skip
    # Answered later, so that the one worker parses it after it raised for the page.
    feed_server.route("/good.xml", Reply(200, rss(ITEMS), {"Content-Type": "application/rss+xml"},
                                         delay_s=0.5))  # fmt: skip
    settings = settings_for(tmp_path, feed_server, "/html.xml", "/good.xml")

    async def go() -> list[PassResult]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            return await Daemon(settings, store, fetcher, parse_workers=1).poll()

    results = {r.source: r for r in asyncio.run(go())}
    html, good = results["html"], results["good"]
    assert ("failed", "updated", 3) == (html.outcome, good.outcome, store.count_articles())
    assert html.error is not None and "feed" in html.error.lower()


def test_poll_flushes_the_archive_and_run_repairs_what_a_crash_left(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """After a poll no file is pending; a pending, cut-short file is rewritten when run starts."""
    feed_server.feed("/a.xml", rss(ITEMS), etag='"a"')
    settings = settings_for(tmp_path, feed_server, "/a.xml")
    asyncio.run(_poll(settings, store))
    assert store.archive_pending_ids() == []
    victim = sorted(settings.archive_path.rglob("*.md"))[0]
    whole = victim.read_bytes()
    victim.write_bytes(whole[:10])  # a power loss before the flush
    article_id = next(a.id for a in store.iter_articles() if a.title in victim.name)
    store.add_archive_pending([article_id])

    async def go() -> None:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            await _run_until(Daemon(settings, store, fetcher), asyncio.Event(), 0.5)

    asyncio.run(go())
    assert (victim.read_bytes(), store.archive_pending_ids()) == (whole, [])
