"""The daemon: every enabled source polled on its own schedule until SIGINT or SIGTERM.

    for each enabled source:
        one APScheduler date job at its stored next check (now if due or never checked)
    job(source): poll_source(...) -> state saved -> the job re-adds itself at the new next check
                 new articles -> stories -> rules -> alerts queued in the outbox (then wake it)
    beside the scheduler: the outbox loop delivers queued alerts (outbox.py)
    on SIGINT/SIGTERM: no new passes; passes in flight finish (bounded wait); then the outbox
                       sends no new message and finishes the one in flight; store closed

APScheduler 3.11 (../shared/LIBRARIES.md): one job per source, ``max_instances=1`` so a source
never runs two passes at once, ``coalesce`` so missed runs collapse into one, and no misfire
grace limit so a late run still happens. Its job store stays in memory: our own store keeps the
per-source state, so a restart resumes each source where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher import notify
from watcher.alerting import Alerting
from watcher.alerts import Notifier, open_notifier
from watcher.dedupe import Signed
from watcher.errors import ConfigError, WatcherError
from watcher.health import RECENT_ITEMS, is_silent
from watcher.log import log_event
from watcher.metrics import WatcherMetrics
from watcher.models import Article, Story
from watcher.outbox import Outbox
from watcher.pipeline import (
    Fetch,
    Folded,
    Parsed,
    PassContext,
    PassResult,
    flush_archive,
    poll_source,
    prepare_worker,
    repair_archive,
    run_here,
    write_archive_files,
)
from watcher.polling import PollPolicy
from watcher.rules import compile_rules
from watcher.server import Server
from watcher.settings import ChannelSettings, Settings, SourceSettings, load_settings
from watcher.store import Store
from watcher.stories import StoryAssigner

log = logging.getLogger("watcher.daemon")
ARCHIVE_FLUSH_S = 5.0
"""How often the archive files written by passes are flushed to disk, all at once."""
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass
class Daemon:
    """Polls the configured sources; ``run`` until stopped, or ``poll`` once."""

    settings: Settings
    store: Store
    fetch: Fetch
    clock: Clock = utc_now
    rng: random.Random | None = None
    shutdown_grace_s: float = 10.0
    notifier_factory: Callable[[ChannelSettings], Notifier] = open_notifier
    parse_workers: int | None = None  # processes parsing beside the event loop; None: settings'

    def __post_init__(self) -> None:
        if self.parse_workers is None:
            self.parse_workers = self.settings.watcher.parse_workers
        self._rng = self.rng or random.Random()
        self._stories = StoryAssigner(self.store, self.settings.dedup)
        rules = compile_rules(self.settings.rules)  # a bad pattern: ConfigError, at start-up
        self._alerting = Alerting(self.store, rules, clock=self.clock)
        self.outbox = Outbox(self.store, self.settings.channels, self.settings.outbox,
                             clock=self.clock, notifier_factory=self.notifier_factory)  # fmt: skip
        self.metrics = WatcherMetrics()
        self.metrics.registry.on_collect(self._collect)
        self._fetch = self.metrics.instrument_fetch(self.fetch)
        self.server: Server | None = None
        self._parse_pool: ProcessPoolExecutor | None = None
        self._pooled = False  # passes parse in the pool (started at its first use)
        self._outbox_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[PassResult]] = set()
        self._recent: dict[str, list[datetime]] = {}  # latest article times, per source
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None

    def policy(self, source: SourceSettings) -> PollPolicy:
        """The polling policy of one source."""
        return PollPolicy(interval=source.interval)

    def _context(self) -> PassContext:
        root: Path = self.settings.archive_path
        return PassContext(
            self.store, self._fetch, root, self.clock(), self._rng,
            assign_stories=self._assign_stories,
            archive_first_only=self.settings.dedup.archive_first_only,
            enqueue_alerts=self._enqueue_alerts,
            run_cpu=self._run_cpu if self._pooled else run_here,
            forget_stories=self._stories.forget,
            dedup=self.settings.dedup,
            write_files=self._write_files if self._pooled else None,
            fold_for_rules=self._pooled and bool(self._alerting.rules),
        )  # fmt: skip

    async def _write_files(self, root: Path, planned: list[tuple[Path, bytes]]) -> None:
        """Write a pass's new archive files in the pool: file creation costs CPU too."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool(), write_archive_files, root, planned)

    async def _run_cpu(self, func: Callable[..., Parsed], *args: object) -> Parsed:
        """Run a CPU-bound step (parsing a feed) in the pool, so fetches go on meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), func, *args)

    def _use_parse_pool(self) -> bool:
        """Let passes parse in the pool from now on; False if they did already, or cannot.

        The pool itself starts when a pass first needs it: a `watcher poll` cycle where every
        feed answers 304 starts no process.
        """
        if self._pooled or not self.parse_workers:
            return False
        # forkserver, not fork: this process has threads (the store's, the server's).
        self._pooled = "forkserver" in multiprocessing.get_all_start_methods()
        return self._pooled

    def _pool(self) -> ProcessPoolExecutor:
        """The parse pool, started now if it is not running yet."""
        if self._parse_pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["watcher.pipeline"])
            self._parse_pool = ProcessPoolExecutor(
                self.parse_workers, mp_context=context, initializer=prepare_worker,
                initargs=(os.getpid(),),
            )  # fmt: skip
        return self._parse_pool

    def _stop_parse_pool(self) -> None:
        self._pooled = False
        pool, self._parse_pool = self._parse_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _repair_archive(self) -> None:
        """Write again the archive files a crash may have left unflushed (logged, not raised)."""
        try:
            repair_archive(self.store, self.settings.archive_path)
        except WatcherError as e:  # they stay pending; each pass will name the archive's fault
            log_event(log, logging.ERROR, "archive not repaired", error=str(e))

    def _flush_archive(self) -> None:
        """Flush the archive files written since the last flush (logged, never raised)."""
        try:
            flush_archive(self.store, self.settings.archive_path)
        except WatcherError as e:  # the files stay pending: the next flush or start retries
            log_event(log, logging.ERROR, "archive not flushed", error=str(e))

    async def _flush_archive_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self._flush_archive)

    def _assign_stories(self, articles: list[Article], signed: Signed | None) -> set[str]:
        return {a.article_id for a in self._stories.assign(articles, signed) if a.starts_story}

    def _enqueue_alerts(self, articles: list[Article], folded: Folded) -> int:
        try:
            queued = self._alerting.enqueue(articles, folded)
        except WatcherError as e:  # the rules have not seen them: caught up at the next start
            log_event(log, logging.ERROR, "alerts not queued", error=str(e))
            return 0
        if queued:
            self.outbox.wake()
        return len(queued)

    async def poll(self, names: Iterable[str] | None = None) -> list[PassResult]:
        """One pass now over the named sources (default: every enabled one), due or not."""
        sources = self._select(names)
        ours = self._use_parse_pool()  # a pool for this cycle only (`watcher poll`)
        try:
            self._repair_archive()
            results = list(await asyncio.gather(*map(self._bounded_pass, sources)))
        finally:
            if ours:
                self._stop_parse_pool()
            self._flush_archive()
        if self.settings.channels:  # send what is due now; the rest waits for `watcher run`
            try:
                await self.outbox.deliver_due()
            except WatcherError as e:
                log_event(log, logging.ERROR, "outbox round failed", error=str(e))
            finally:
                await self.outbox.aclose()
        return results

    def _select(self, names: Iterable[str] | None) -> list[SourceSettings]:
        if names is None:
            return [s for s in self.settings.sources if s.enabled]
        return [self.settings.source(name) for name in names]

    def _pass_slots(self) -> asyncio.Semaphore:
        """Passes under way at once, per event loop: twice the requests allowed in flight.

        A pass holds its fetched body until it is parsed; with no bound, a cycle over 1,000
        sources would fetch every body before the first is parsed (171 MB in the benchmark).
        """
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(2 * self.settings.http.max_concurrency))
        return self._slots[1]

    async def _bounded_pass(self, source: SourceSettings) -> PassResult:
        async with self._pass_slots():
            return await self._pass(source)

    async def _pass(self, source: SourceSettings) -> PassResult:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        started = time.perf_counter()
        try:
            result = await poll_source(source, self.policy(source), self._context())
        finally:
            if task is not None:
                self._inflight.discard(task)
        self._observe(source, result, time.perf_counter() - started)
        return result

    def _observe(self, source: SourceSettings, result: PassResult, seconds: float) -> None:
        """Count a pass in the metrics and refresh the source's gauges (silence included)."""
        self.metrics.observe_pass(source.name, result.outcome, new=len(result.new),
                                  updated=len(result.changed), duplicates=result.duplicates,
                                  seconds=seconds)  # fmt: skip
        state = result.state
        if state is not None:
            recent = self._recent.get(source.name)
            if recent is None or result.new or result.changed:  # else the store has no newer
                recent = self.store.recent_published_at(source.name, limit=RECENT_ITEMS)
                self._recent[source.name] = recent
            self.metrics.observe_source(
                source.name, consecutive_failures=state.consecutive_failures,
                last_success_at=state.last_success_at, silent=is_silent(recent, self.clock()),
            )  # fmt: skip

    def _collect(self) -> None:
        """Figures read from the store at each scrape."""
        self.metrics.stories.set(self.store.count_stories())
        self.metrics.observe_alerts(self.store.count_alerts_by_channel())

    def is_alive(self) -> bool:
        """Scheduler running, not stopping, and no source's job far overdue (health, watchdog)."""
        scheduler = self._scheduler
        if self._stopping or scheduler is None or not scheduler.running:
            return False
        late = self.clock() - timedelta(minutes=5)
        return all(t is None or t >= late for t in self.next_run_times().values())

    def health(self) -> dict[str, bool]:
        """The checks /healthz reports: the scheduler alive, the store writable."""
        return {"scheduler": self.is_alive(), "store": self.store.is_writable()}

    def latest_stories(self, limit: int, min_outlets: int) -> list[Story]:
        """The newest stories, for the /stories feeds."""
        return self.store.latest_stories(limit=limit, min_outlets=min_outlets)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll every enabled source on its schedule until ``stop`` is set or a signal arrives."""
        stop = stop or asyncio.Event()
        self._install_signal_handlers(stop)
        caught_up = self._stories.assign_pending()  # stored before a kill, not yet assigned
        if caught_up:
            log_event(log, logging.INFO, "stories caught up", articles=caught_up)
        try:  # articles a kill left between their story and the rules
            self._alerting.catch_up()
        except WatcherError as e:  # they stay unchecked: the next start tries again
            log_event(log, logging.ERROR, "rules not caught up", error=str(e))
        if self._use_parse_pool():
            self._pool()  # started before the first passes, not during them
        self._repair_archive()
        self._outbox_task = asyncio.create_task(self.outbox.run())
        flusher = asyncio.create_task(self._flush_archive_every(ARCHIVE_FLUSH_S))
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        sources = [s for s in self.settings.sources if s.enabled]
        for source in sources:
            self._schedule(source)
        log_event(log, logging.INFO, "daemon started", sources=len(sources))
        server = self.server = await self._start_server()
        notify.ready()
        notify.status(f"polling {len(sources)} sources")
        watchdog = asyncio.create_task(notify.keep_watchdog(self.is_alive))
        try:
            await stop.wait()
        finally:
            notify.stopping()
            watchdog.cancel()
            flusher.cancel()
            await self._shutdown()
            self._flush_archive()
            if server is not None:
                await server.close()

    async def _start_server(self) -> Server | None:
        """The HTTP endpoints (/healthz, /metrics, story feeds) when [server] listen is set."""
        listen = self.settings.server.listen
        if listen is None:
            return None
        server = Server(listen, health=self.health, metrics=self.metrics.registry,
                        stories=self.latest_stories,
                        feed_limit=self.settings.server.feed_limit)  # fmt: skip
        await server.start()
        host, port = server.address
        log_event(log, logging.INFO, "server listening", host=host, port=port)
        return server

    def _schedule(self, source: SourceSettings) -> None:
        if self._stopping or self._scheduler is None:
            return
        state = self.store.get_source_state(source.name)
        now = self.clock()
        if state is not None and state.paused:
            log_event(log, logging.WARNING, "source paused", source=source.name)
            return
        when = max(state.next_check_at or now, now) if state else now
        self._scheduler.add_job(
            self._job, "date", run_date=when, args=[source.name], id=source.name,
            replace_existing=True, max_instances=1, coalesce=True, misfire_grace_time=None,
        )  # fmt: skip

    async def _job(self, name: str) -> None:
        try:
            source = self.settings.source(name)
        except KeyError:  # removed by a reload while its job was due
            return
        try:
            async with self._pass_slots():
                if self._stopping:  # waited for a slot while the daemon began to stop
                    return
                await self._pass(source)
        except Exception as e:  # a bug: logged loudly, and the source keeps its schedule
            log_event(log, logging.CRITICAL, "pass crashed", source=name, error=repr(e))
        self._schedule(source)

    def next_run_times(self) -> dict[str, datetime | None]:
        """The scheduled next run of each source's job (empty when not running)."""
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    async def _shutdown(self) -> None:
        # Wait for the passes in flight before shutting the scheduler down: its asyncio
        # executor cancels the jobs still running when it shuts down.
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.pause()
        pending = set(self._inflight)
        log_event(log, logging.INFO, "daemon stopping", inflight=len(pending))
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.shutdown_grace_s)
            for task in late:
                task.cancel()
        await self._stop_outbox()
        self._stop_parse_pool()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        log_event(log, logging.INFO, "daemon stopped")

    async def _stop_outbox(self) -> None:
        """No new message; the one in flight finishes (bounded: a cancelled send is released)."""
        task, self._outbox_task = self._outbox_task, None
        if task is None:
            return
        self.outbox.stop()
        _, late = await asyncio.wait({task}, timeout=self.shutdown_grace_s)
        for running in late:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await self.outbox.aclose()

    def _install_signal_handlers(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGINT: stop.set, signal.SIGTERM: stop.set, signal.SIGHUP: self.reload}
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                return

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP): apply added, removed and changed sources and rules.

        A config that does not load is refused with a log line and the running one kept.
        Other changes ([http], channels, [dedup], [server]) need a restart, and say so.
        """
        notify.reloading()
        try:
            new = load_settings(self.settings.config_file)
            rules = compile_rules(new.rules)
        except ConfigError as e:
            log_event(log, logging.ERROR, "reload refused", error=str(e))
            notify.ready()
            return False
        old, self.settings = self.settings, new
        self._alerting = Alerting(self.store, rules, clock=self.clock)
        self._apply_sources(old, new)
        for section in ("http", "rsshub", "dedup", "server", "outbox", "channels", "watcher"):
            if getattr(old, section) != getattr(new, section):
                log_event(log, logging.WARNING, "reload needs a restart", section=section)
        log_event(log, logging.INFO, "config reloaded", sources=len(new.sources),
                  rules=len(new.rules))  # fmt: skip
        notify.ready()
        return True

    def _apply_sources(self, old: Settings, new: Settings) -> None:
        before = {s.name: s for s in old.sources if s.enabled}
        after = {s.name: s for s in new.sources if s.enabled}
        for name in before.keys() - after.keys():
            if self._scheduler is not None and self._scheduler.get_job(name) is not None:
                self._scheduler.remove_job(name)
            self.metrics.forget_source(name)
        for name, source in after.items():
            if before.get(name) != source:
                self._schedule(source)  # (re)scheduled from its stored state
