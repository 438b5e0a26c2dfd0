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
import random
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.alerting import Alerting
from watcher.alerts import Notifier, open_notifier
from watcher.errors import WatcherError
from watcher.log import log_event
from watcher.models import Article
from watcher.outbox import Outbox
from watcher.pipeline import Fetch, PassContext, PassResult, poll_source
from watcher.polling import PollPolicy
from watcher.rules import compile_rules
from watcher.settings import ChannelSettings, Settings, SourceSettings
from watcher.store import Store
from watcher.stories import StoryAssigner

log = logging.getLogger("watcher.daemon")
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

    def __post_init__(self) -> None:
        self._rng = self.rng or random.Random()
        self._stories = StoryAssigner(self.store, self.settings.dedup)
        rules = compile_rules(self.settings.rules)  # a bad pattern: ConfigError, at start-up
        self._alerting = Alerting(self.store, rules, clock=self.clock)
        self.outbox = Outbox(self.store, self.settings.channels, self.settings.outbox,
                             clock=self.clock, notifier_factory=self.notifier_factory)  # fmt: skip
        self._outbox_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[PassResult]] = set()
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None

    def policy(self, source: SourceSettings) -> PollPolicy:
        """The polling policy of one source."""
        return PollPolicy(interval=source.interval)

    def _context(self) -> PassContext:
        root: Path = self.settings.archive_path
        return PassContext(
            self.store, self.fetch, root, self.clock(), self._rng,
            assign_stories=self._assign_stories,
            archive_first_only=self.settings.dedup.archive_first_only,
            enqueue_alerts=self._enqueue_alerts,
        )  # fmt: skip

    def _assign_stories(self, articles: list[Article]) -> set[str]:
        return {a.article_id for a in self._stories.assign(articles) if a.starts_story}

    def _enqueue_alerts(self, articles: list[Article]) -> int:
        try:
            queued = self._alerting.enqueue(articles)
        except WatcherError as e:  # the rules have not seen them: caught up at the next start
            log_event(log, logging.ERROR, "alerts not queued", error=str(e))
            return 0
        if queued:
            self.outbox.wake()
        return len(queued)

    async def poll(self, names: Iterable[str] | None = None) -> list[PassResult]:
        """One pass now over the named sources (default: every enabled one), due or not."""
        sources = self._select(names)
        passes = [self._pass(source) for source in sources]
        results = list(await asyncio.gather(*passes))
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

    async def _pass(self, source: SourceSettings) -> PassResult:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await poll_source(source, self.policy(source), self._context())
        finally:
            if task is not None:
                self._inflight.discard(task)

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
        self._outbox_task = asyncio.create_task(self.outbox.run())
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        sources = [s for s in self.settings.sources if s.enabled]
        for source in sources:
            self._schedule(source)
        log_event(log, logging.INFO, "daemon started", sources=len(sources))
        await stop.wait()
        await self._shutdown()

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
        source = self.settings.source(name)
        try:
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                return
