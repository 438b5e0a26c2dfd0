"""The outbox: once per story x rule x channel through outages, restarts and kills.

Real SQLite, a real webhook receiver (``feed_server``) and a real SMTP server (aiosmtpd), all on
127.0.0.1; the clock is injected, so back-off, quiet hours, digests and rate limits need no wait.
A kill is a BaseException thrown through the outbox at the moment named (nothing after it runs,
as after kill -9), then a new Store and Outbox on the same file; one test kills a real process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from watcher.alerts import Notifier, idempotency_key, open_notifier
from watcher.cli import main
from watcher.daemon import Daemon
from watcher.fetch import Fetcher
from watcher.models import Alert, Delivery, Match
from watcher.outbox import Outbox, Round, backoff, plan_messages
from watcher.settings import (
    ChannelSettings,
    EmailChannelSettings,
    OutboxSettings,
    WebhookChannelSettings,
    load_settings,
)
from watcher.store import Store, open_store
from watcher.store.rows import OutboxEntry

from .feedserver import FeedServer, Reply, Request
from .test_daemon import WIRE
from .test_email import Inbox, free_port
from .test_pipeline import rss

T0 = datetime(2026, 11, 3, 5, 0, tzinfo=UTC)


@dataclass
class Clock:
    """An injected clock, moved by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        """The time now."""
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the time on by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


class Killed(BaseException):
    """Stands for kill -9: nothing catches it, nothing after it runs."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the store file lives; each test opens (and reopens) it."""
    return tmp_path / "data" / "watcher.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    """A real SQLite store."""
    with open_store(db) as opened:
        yield opened


def hook(server: FeedServer, **extra: Any) -> WebhookChannelSettings:
    """A generic webhook channel posting to ``server``'s /hook."""
    values = {"name": "hook", "type": "webhook", "url": server.url("/hook"), "timeout": "5s"}
    return WebhookChannelSettings.model_validate({**values, **extra})


def mail(port: int, **extra: Any) -> EmailChannelSettings:
    """A plain-SMTP email channel to 127.0.0.1:port."""
    values = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port,
              "starttls": False, "sender": "watcher@example.org",
              "recipients": ["ops@example.org"], "timeout": "5s"}  # fmt: skip
    return EmailChannelSettings.model_validate({**values, **extra})


@contextmanager
def smtp_on(inbox: Inbox, port: int) -> Iterator[None]:
    """aiosmtpd on exactly ``port`` (the one the channel was refused on before)."""
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def queue(
    store: Store, channel: str, story: str = "s1", *, at: datetime = T0, title: str = ""
) -> Alert:
    """Queue the alert of story x "ukraine" x channel, as the rules stage does."""
    alert = Alert(key=idempotency_key(story, "ukraine", channel), channel=channel, rule="ukraine",
                  story_id=story, title=title or f"乌克兰 {story}", terms=("乌克兰",),
                  created_at=at)  # fmt: skip
    match = Match(rule="ukraine", story_id=story, terms=("乌克兰",), outlet_count=1, matched_at=at)
    store.enqueue_alerts([(match, [alert])])
    return alert


def outbox(store: Store, channel: ChannelSettings, clock: Clock, **extra: Any) -> Outbox:
    """An Outbox for one channel with the default retry settings."""
    return Outbox(store, [channel], OutboxSettings(), clock=clock, **extra)


def deliver(box: Outbox) -> Round:
    """One round, then the notifiers closed (each asyncio.run has its own loop)."""

    async def go() -> Round:
        try:
            return await box.deliver_due()
        finally:
            await box.aclose()

    return asyncio.run(go())


def states(store: Store) -> list[tuple[str, int]]:
    return [(e.state, e.delivery.attempts) for e in store.list_alerts()]


def posted_keys(server: FeedServer) -> list[str]:
    """The Idempotency-Key of every POST the receiver answered with 200."""
    return [r.headers["idempotency-key"] for r in server.requests_to("/hook")]


# --- planning (pure) ------------------------------------------------------------------------------


def entry(key: str, at: datetime = T0, *, attempts: int = 0, message: str | None = None,
          next_at: datetime | None = None) -> OutboxEntry:  # fmt: skip
    alert = Alert(key=key, channel="c", rule="r", story_id=key, title=key, created_at=at)
    delivery = Delivery(key=key, channel="c", attempts=attempts, next_attempt_at=next_at or at)
    return OutboxEntry(alert, delivery, at, message_key=message)


def channel(**extra: Any) -> WebhookChannelSettings:
    return WebhookChannelSettings.model_validate(
        {"name": "c", "type": "webhook", "url": "http://127.0.0.1:9/", **extra}
    )


def shape(messages: Sequence[Sequence[OutboxEntry]]) -> list[list[str]]:
    return [[e.key for e in m] for m in messages]


def test_plan_holds_everything_in_quiet_hours() -> None:
    """23:30 in Shanghai with quiet hours 23:00-07:00: nothing now, wake at 07:00 local."""
    night = datetime(2026, 11, 3, 15, 30, tzinfo=UTC)
    plan = plan_messages(channel(quiet_hours="23:00-07:00", timezone="Asia/Shanghai"),
                         [entry("a", night)], night)  # fmt: skip
    assert ((), datetime(2026, 11, 3, 23, 0, tzinfo=UTC), 1) == (plan.messages, plan.wake_at,
                                                                 plan.waiting)  # fmt: skip


def test_plan_digest_waits_for_the_oldest_to_age() -> None:
    """digest = 10m: at +5m nothing (wake at +10m); at +10m one message with both alerts."""
    entries = [entry("a", T0), entry("b", T0 + timedelta(minutes=1))]
    early = plan_messages(channel(digest="10m"), entries, T0 + timedelta(minutes=5))
    ready = plan_messages(channel(digest="10m"), entries, T0 + timedelta(minutes=10))
    assert ([], T0 + timedelta(minutes=10)) == (shape(early.messages), early.wake_at)
    assert [["a", "b"]] == shape(ready.messages)


def test_plan_rate_limit_folds_a_backlog_into_one_digest() -> None:
    """rate_limit = 2 and 5 alerts due: one digest of all five, not two of them alone."""
    entries = [entry(k, T0 + timedelta(seconds=i)) for i, k in enumerate("abcde")]
    plan = plan_messages(channel(rate_limit=2), entries, T0 + timedelta(minutes=1))
    assert [list("abcde")] == shape(plan.messages)


def test_plan_rate_limit_spent_waits_for_a_slot() -> None:
    """Two messages in the last hour with rate_limit = 2: nothing now; wake when one ages out."""
    now = T0 + timedelta(minutes=30)
    sent = [T0 - timedelta(minutes=20), T0 + timedelta(minutes=10)]
    plan = plan_messages(channel(rate_limit=2), [entry("a", T0)], now, sent)
    assert ([], T0 + timedelta(minutes=40), 1) == (shape(plan.messages), plan.wake_at,
                                                   plan.waiting)  # fmt: skip


def test_plan_fewest_attempts_first_and_retries_keep_their_message() -> None:
    """A twice-failed digest goes after a new alert, and still as the same two alerts."""
    old = [entry(k, T0, attempts=2, message="d1") for k in ("a", "b")]
    plan = plan_messages(channel(), [*old, entry("c", T0 + timedelta(hours=1))],
                         T0 + timedelta(hours=2))  # fmt: skip
    assert [["c"], ["a", "b"]] == shape(plan.messages)


def test_plan_backed_off_alert_waits_for_its_time() -> None:
    """An alert whose next attempt is later is not sent; the plan wakes then."""
    later = T0 + timedelta(minutes=5)
    plan = plan_messages(channel(), [entry("a", T0, attempts=1, message="a", next_at=later)], T0)
    assert ([], later) == (shape(plan.messages), plan.wake_at)


def test_backoff_doubles_up_to_the_cap() -> None:
    """30 s, 1 min, 2 min ... never more than retry_max (1 h)."""
    waits = [backoff(OutboxSettings(), n).total_seconds() for n in (1, 2, 3, 8, 40)]
    assert [30, 60, 120, 3600, 3600] == waits


# --- channel down -> kept -> channel up -> once ---------------------------------------------------


def test_webhook_down_then_up_across_a_restart_delivers_once(
    feed_server: FeedServer, db: Path, store: Store
) -> None:
    """A 503 keeps the alert pending with its error; after a restart and the back-off, one POST."""
    feed_server.route("/hook", Reply(503, b"maintenance"), Reply(200, b"ok"))
    alert = queue(store, "hook")
    clock = Clock()
    first = deliver(outbox(store, hook(feed_server), clock))
    (kept,) = store.list_alerts()
    assert (0, 1, "pending", 1) == (first.sent, first.failed, kept.state, kept.delivery.attempts)
    assert "answered HTTP 503: maintenance" in (kept.delivery.last_error or "")
    store.close()
    with open_store(db) as restarted:  # a new process: new Store, new Outbox
        clock.advance(seconds=10)
        early = deliver(outbox(restarted, hook(feed_server), clock))
        clock.advance(seconds=21)
        box = outbox(restarted, hook(feed_server), clock)
        rounds = [deliver(box).sent for _ in range(3)]
        assert (0, [1, 0, 0]) == (early.sent, rounds)
        assert [("sent", 2)] == states(restarted)
    assert [alert.key, alert.key] == posted_keys(feed_server)  # the 503, then the one delivery


def test_smtp_down_then_up_across_a_restart_delivers_once(db: Path, store: Store) -> None:
    """Connection refused keeps the mail; the server comes up, a new outbox sends it once."""
    port = free_port()
    alert = queue(store, "mail")
    clock = Clock()
    deliver(outbox(store, mail(port), clock))
    (kept,) = store.list_alerts()
    assert "connection refused" in (kept.delivery.last_error or "")
    inbox = Inbox()
    with smtp_on(inbox, port), open_store(db) as again:
        clock.advance(minutes=1)
        sent = [deliver(outbox(again, mail(port), clock)).sent for _ in range(2)]
    message = inbox.received[0][2]
    assert ([1, 0], 1) == (sent, len(inbox.received))
    expected = (f"<watcher.{alert.key}@example.org>", alert.key)
    assert expected == (message["Message-ID"], message["X-Watcher-Idempotency-Key"])


# --- kills ----------------------------------------------------------------------------------------


@dataclass
class Crashing:
    """A notifier whose process dies (Killed) just before, or just after, the real one sends."""

    real: Notifier
    after: bool

    @property
    def channel(self) -> str:
        """The real notifier's channel."""
        return self.real.channel

    async def send(self, alert: Alert) -> None:
        """Die, before or after the real send."""
        if self.after:
            await self.real.send(alert)
        raise Killed

    async def send_digest(self, alerts: Sequence[Alert]) -> None:
        """Die, before or after the real send."""
        if self.after:
            await self.real.send_digest(alerts)
        raise Killed

    async def aclose(self) -> None:
        """Close the real notifier."""
        await self.real.aclose()


def die_while_sending(store: Store, channel: ChannelSettings, clock: Clock, *, after: bool) -> None:
    """One round that is killed before or after the message leaves."""
    box = outbox(
        store, channel, clock, notifier_factory=lambda c: Crashing(open_notifier(c), after)
    )
    with pytest.raises(Killed):
        deliver(box)


def test_kill_after_the_message_left_resends_it_with_the_same_key(
    feed_server: FeedServer, db: Path, store: Store
) -> None:
    """Killed before `sent` was recorded: left `sending`; after the lease, sent again, same key."""
    feed_server.route("/hook", Reply(200, b"ok"))
    alert = queue(store, "hook")
    clock = Clock()
    die_while_sending(store, hook(feed_server), clock, after=True)
    store.close()
    with open_store(db) as restarted:
        left = states(restarted)
        clock.advance(seconds=30)  # the lease (timeout + 60 s) has not run out: maybe alive
        early = deliver(outbox(restarted, hook(feed_server), clock)).sent
        clock.advance(seconds=60)
        late = deliver(outbox(restarted, hook(feed_server), clock)).sent
        assert ([("sending", 1)], 0, 1, [("sent", 2)]) == (left, early, late, states(restarted))
    bodies = [json.loads(r.body)["idempotency_key"] for r in feed_server.requests_to("/hook")]
    assert ([alert.key] * 2, [alert.key] * 2) == (posted_keys(feed_server), bodies)


def test_kill_after_the_message_left_with_hold_never_resends_by_itself(
    feed_server: FeedServer, db: Path, store: Store, tmp_path: Path
) -> None:
    """interrupted = hold: marked failed with the reason; sent again only when asked."""
    feed_server.route("/hook", Reply(200, b"ok"))
    queue(store, "hook")
    clock, channel = Clock(), hook(feed_server, interrupted="hold")
    die_while_sending(store, channel, clock, after=True)
    clock.advance(minutes=5)
    rounds = [deliver(outbox(store, channel, clock)).sent for _ in range(2)]
    (held,) = store.list_alerts()
    assert ([0, 0], "failed", 1) == (rounds, held.state, len(feed_server.requests))
    assert "(interrupted = hold); `watcher alerts --retry KEY` sends it" in str(
        held.delivery.last_error
    )
    store.retry_alerts([held.key], now=clock())
    assert (1, 2) == (deliver(outbox(store, channel, clock)).sent, len(feed_server.requests))


def test_kill_before_the_message_left_sends_it_once(
    feed_server: FeedServer, db: Path, store: Store
) -> None:
    """Killed after the claim, before anything left: the restart sends it, once."""
    feed_server.route("/hook", Reply(200, b"ok"))
    queue(store, "hook")
    clock = Clock()
    die_while_sending(store, hook(feed_server), clock, after=False)
    store.close()
    with open_store(db) as restarted:
        clock.advance(minutes=2)
        sent = [deliver(outbox(restarted, hook(feed_server), clock)).sent for _ in range(2)]
        assert ([1, 0], [("sent", 2)]) == (sent, states(restarted))
    assert 1 == len(feed_server.requests)


def test_a_real_kill_mid_send_then_a_restart_resends_the_same_key(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """`watcher run` killed (SIGKILL) while the webhook holds the POST; the next outbox resends."""
    feed_server.feed("/s.xml", rss([("w1", "普京警告拜登", WIRE)]))
    feed_server.route("/hook", Reply(200, b"ok", delay_s=5), Reply(200, b"ok"))
    process = start_daemon(write_config(tmp_path, feed_server))
    wait_for(lambda: bool(feed_server.requests_to("/hook")), limit_s=20)
    process.kill()
    process.wait(timeout=10)
    close_pipes(process)
    with open_store(tmp_path / "data" / "watcher.db") as store:
        left = states(store)
        settings = load_settings(tmp_path / "watcher.toml", env={})
        clock = Clock(datetime.now(UTC) + timedelta(minutes=2))
        box = Outbox(store, settings.channels, settings.outbox, clock=clock)
        sent = deliver(box).sent
        assert ([("sending", 1)], 1, [("sent", 2)]) == (left, sent, states(store))
    keys = posted_keys(feed_server)
    assert (2, 1) == (len(keys), len(set(keys)))


# --- quiet hours, digests, rate limits ------------------------------------------------------------


def test_quiet_hours_hold_the_alert_and_send_it_after(
    feed_server: FeedServer, store: Store
) -> None:
    """23:30 in Shanghai, quiet 23:00-07:00: held (no request); sent at 07:00."""
    feed_server.route("/hook", Reply(200, b"ok"))
    night = datetime(2026, 11, 3, 15, 30, tzinfo=UTC)
    queue(store, "hook", at=night)
    clock = Clock(night)
    channel = hook(feed_server, quiet_hours="23:00-07:00", timezone="Asia/Shanghai")
    box = outbox(store, channel, clock)
    held = deliver(box)
    morning = datetime(2026, 11, 3, 23, 0, tzinfo=UTC)
    assert (0, 1, morning, []) == (held.sent, held.waiting, box.wake_at, feed_server.requests)
    clock.now = morning
    assert 1 == deliver(box).sent


def test_a_digest_groups_alerts_into_one_mail(store: Store) -> None:
    """digest = 10m: three alerts wait, then go as one message listing every key."""
    inbox, port = Inbox(), free_port()
    alerts = [queue(store, "mail", f"s{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]
    clock = Clock(T0 + timedelta(minutes=5))
    with smtp_on(inbox, port):
        box = outbox(store, mail(port, digest="10m"), clock)
        early = deliver(box)
        clock.now = T0 + timedelta(minutes=10)
        ready = deliver(box)
    message = inbox.received[0][2]
    assert ((0, 3), (3, 1), 1) == ((early.sent, early.waiting), (ready.sent, ready.messages),
                                   len(inbox.received))  # fmt: skip
    assert [a.key for a in alerts] == message["X-Watcher-Alert-Keys"].split()


def test_rate_limit_holds_the_next_message_until_a_slot_opens(
    feed_server: FeedServer, store: Store
) -> None:
    """rate_limit = 1 per hour: the second alert waits an hour after the first message."""
    feed_server.route("/hook", Reply(200, b"ok"))
    queue(store, "hook", "s1")
    clock = Clock()
    box = outbox(store, hook(feed_server, rate_limit=1, rate_period="1h"), clock)
    first = deliver(box).sent
    queue(store, "hook", "s2", at=T0 + timedelta(minutes=1))
    clock.advance(minutes=2)
    held = deliver(box).sent
    wake = box.wake_at
    clock.advance(hours=1)
    assert (1, 0, T0 + timedelta(hours=1), 1) == (first, held, wake, deliver(box).sent)


# --- failures that last -------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_given_up_alert_is_kept_shown_and_retried_by_hand(
    feed_server: FeedServer, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failing past give_up_after: failed, listed with its error; --retry sends it once."""
    feed_server.route("/hook", Reply(500, b"broken"), Reply(200, b"ok"))
    alert = queue(store, "hook")
    clock = Clock(T0 + timedelta(days=3))
    deliver(outbox(store, hook(feed_server), clock))
    config = str(write_config(tmp_path, feed_server))
    listed = (main(["--config", config, "alerts"]), capsys.readouterr().out.splitlines())
    retried = (main(["--config", config, "alerts", "--retry", alert.key[:8]]),
               capsys.readouterr().out)  # fmt: skip
    assert 0 == listed[0]
    assert "pending 0  sending 0  sent 0  failed 1" == listed[1][0]
    assert listed[1][2].startswith(f"failed  hook     ukraine  {T0:%Y-%m-%d %H:%M:%S}  1")
    assert alert.key in listed[1][2]
    port = feed_server.port
    expected = f"    last error: channel 'hook': 127.0.0.1:{port} answered HTTP 500: broken"
    assert expected == listed[1][3]
    assert (0, "1 alerts due now (`watcher run` sends them)\n") == retried
    clock.now = datetime.now(UTC) + timedelta(seconds=1)  # the command stamps the real time
    assert 1 == deliver(outbox(store, hook(feed_server), clock)).sent


@pytest.mark.usefixtures("cli_env")
def test_alerts_json_and_filters(
    feed_server: FeedServer, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints one object per alert with its key and state; --state filters."""
    sent, pending = queue(store, "hook", "s1"), queue(store, "hook", "s2")
    store.claim_alerts([sent.key], message_key=sent.key, owner="o", now=T0)
    store.mark_alerts_sent([sent.key], now=T0)
    config = str(write_config(tmp_path, feed_server))
    main(["--config", config, "alerts", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    main(["--config", config, "alerts", "--state", "pending", "--json"])
    only = [json.loads(line)["key"] for line in capsys.readouterr().out.splitlines()]
    assert [(sent.key, "sent"), (pending.key, "pending")] == [(r["key"], r["state"]) for r in rows]
    assert [pending.key] == only


@pytest.mark.usefixtures("cli_env")
def test_retry_of_an_unknown_key_exits_2(
    feed_server: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--retry with a key no waiting alert has is a usage error naming it."""
    config = str(write_config(tmp_path, feed_server))
    code = main(["--config", config, "alerts", "--retry", "deadbeef00"])
    expected = "watcher: no one failed or pending alert has the key 'deadbeef00'\n"
    assert (2, expected) == (code, capsys.readouterr().err)


def test_a_poisoned_alert_blocks_no_other(feed_server: FeedServer, store: Store) -> None:
    """The receiver refuses one alert for good; the next one still gets through."""

    def answer(request: Request) -> Reply:
        return Reply(400, b"bad payload") if b"POISON" in request.body else Reply(200, b"ok")

    feed_server.route("/hook", answer)
    queue(store, "hook", "bad", title="POISON")
    good = queue(store, "hook", "good", at=T0 + timedelta(seconds=1))
    clock = Clock(T0 + timedelta(minutes=1))
    box = outbox(store, hook(feed_server), clock)
    first = deliver(box)
    clock.advance(seconds=31)
    second = deliver(box)
    assert ((0, 1), (1, 1)) == ((first.sent, first.failed), (second.sent, second.failed))
    assert [good.key] == [e.key for e in store.list_alerts(state="sent")]


# --- stopping -------------------------------------------------------------------------------------


def test_stop_finishes_the_message_in_flight_and_starts_no_other(
    feed_server: FeedServer, store: Store
) -> None:
    """stop() during a slow POST: that alert is sent and recorded, the next is not begun."""
    feed_server.route("/hook", Reply(200, b"ok", delay_s=1.0))
    recent = datetime.now(UTC) - timedelta(minutes=1)
    queue(store, "hook", "s1", at=recent)
    queue(store, "hook", "s2", at=recent + timedelta(seconds=1))

    async def go() -> None:
        box = Outbox(store, [hook(feed_server)])
        task = asyncio.create_task(box.run())
        await async_wait_for(lambda: bool(feed_server.requests), limit_s=10)
        box.stop()
        await asyncio.wait_for(task, timeout=10)
        await box.aclose()

    asyncio.run(go())
    assert ([("sent", 1), ("pending", 0)], 1) == (states(store), len(feed_server.requests))


def test_a_cancelled_send_is_released_at_once(feed_server: FeedServer, store: Store) -> None:
    """A send cancelled mid-way (grace time over) is pending again, with the reason, not stuck."""
    feed_server.route("/hook", Reply(200, b"ok", delay_s=5))
    queue(store, "hook")

    async def go() -> None:
        box = outbox(store, hook(feed_server), Clock())
        task = asyncio.create_task(box.deliver_due())
        await async_wait_for(lambda: bool(feed_server.requests), limit_s=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await box.aclose()

    asyncio.run(go())
    (entry,) = store.list_alerts()
    assert ("pending", 1) == (entry.state, entry.delivery.attempts)
    assert str(entry.delivery.last_error).startswith("interrupted while sending at ")


# --- the daemon and the commands ------------------------------------------------------------------


def write_config(tmp_path: Path, server: FeedServer, *, rule: str = "any = ['普京']") -> Path:
    """A config: source /s.xml (1 s interval), rule "ukraine" on channel "hook" (/hook)."""
    config = tmp_path / "watcher.toml"
    config.write_text(
        f'[watcher]\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
        f'[[sources]]\nname = "s"\nurl = "{server.url("/s.xml")}"\noutlet = "S"\n'
        'interval = "1s"\n'
        f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{server.url("/hook")}"\n'
        f"[[rules]]\nname = 'ukraine'\n{rule}\nchannels = ['hook']\n",
        encoding="utf-8",
    )
    return config


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "--config", str(config), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def close_pipes(process: subprocess.Popen[bytes]) -> str:
    """Close the process's pipes; return what it wrote to stderr."""
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    return err


def wait_for(condition: Any, *, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


async def async_wait_for(condition: Any, *, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def test_poll_alerts_once_per_story_however_many_copies(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """A story's first copy: one POST; its copy from a second outlet: nothing more."""
    feed_server.feed("/s.xml", rss([("w1", "普京警告拜登", WIRE)]))
    feed_server.feed("/t.xml", rss([]))
    feed_server.route("/hook", Reply(200, b"ok"))
    config = write_config(tmp_path, feed_server)
    text = config.read_text(encoding="utf-8")
    copy = f'[[sources]]\nname = "t"\nurl = "{feed_server.url("/t.xml")}"\noutlet = "T"\n'
    config.write_text(text.replace("[[channels]]", copy + "[[channels]]"), encoding="utf-8")
    settings = load_settings(config, env={})

    async def poll() -> int:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            return sum(r.alerts for r in await Daemon(settings, store, fetcher).poll())

    first = asyncio.run(poll())
    feed_server.feed("/t.xml", rss([("w2", "普京严厉警告拜登！", WIRE)]))
    second = asyncio.run(poll())
    (story,) = list(store.iter_stories())
    assert ((1, 0), ["S", "T"], 1) == ((first, second), story.outlets,
                                       len(feed_server.requests_to("/hook")))  # fmt: skip


def test_a_channel_down_never_fails_the_poll(
    feed_server: FeedServer, store: Store, tmp_path: Path
) -> None:
    """The webhook answers 503: the pass is still "updated", the source has no failure, and the
    alert waits with the receiver's answer as its last error."""
    feed_server.feed("/s.xml", rss([("w1", "普京警告拜登", WIRE)]))
    feed_server.route("/hook", Reply(503, b"down for maintenance"))
    settings = load_settings(write_config(tmp_path, feed_server), env={})

    async def poll() -> list[str]:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            return [r.outcome for r in await Daemon(settings, store, fetcher).poll()]

    outcomes = asyncio.run(poll())
    state = store.get_source_state("s")
    (entry,) = store.list_alerts()
    assert (["updated"], 0, None) == (outcomes, state and state.consecutive_failures,
                                      state and state.last_error)  # fmt: skip
    waiting = (entry.state, "down for maintenance" in str(entry.delivery.last_error))
    assert ("pending", True) == waiting


def test_sigterm_finishes_the_delivery_in_flight_and_exits_0(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """`watcher run` given SIGTERM during a slow POST: that alert is sent and recorded; exit 0."""
    feed_server.feed("/s.xml", rss([("w1", "普京警告拜登", WIRE)]))
    feed_server.route("/hook", Reply(200, b"ok", delay_s=1.5))
    process = start_daemon(write_config(tmp_path, feed_server))
    wait_for(lambda: bool(feed_server.requests_to("/hook")), limit_s=20)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=15)
    stderr = close_pipes(process)
    assert 0 == code, stderr
    with open_store(tmp_path / "data" / "watcher.db") as store:
        assert ([("sent", 1)], 1) == (states(store), len(feed_server.requests_to("/hook")))
    assert "outbox stopped" in stderr


@pytest.mark.usefixtures("cli_env")
def test_test_alert_sends_a_sample_mail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`watcher test-alert mail` sends one message and prints its idempotency key."""
    inbox, port = Inbox(), free_port()
    config = mail_config(tmp_path, port)
    with smtp_on(inbox, port):
        code = main(["--config", str(config), "test-alert", "mail"])
    out = capsys.readouterr().out
    subject = inbox.received[0][2]["Subject"]
    key = inbox.received[0][2]["X-Watcher-Idempotency-Key"]
    assert (0, f"sent a test alert on mail (idempotency key {key})\n") == (code, out)
    assert "[watcher] test-alert: watcher test alert: this channel works" == subject


@pytest.mark.usefixtures("cli_env")
def test_test_alert_reports_the_exact_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: exit 1, and the message names the channel, server and refusal."""
    port = free_port()
    code = main(["--config", str(mail_config(tmp_path, port)), "test-alert", "mail"])
    expected = (
        f"watcher: test alert not sent: channel 'mail': cannot connect to 127.0.0.1:{port}: "
        "connection refused\n"
    )
    assert (1, expected) == (code, capsys.readouterr().err)


@pytest.mark.usefixtures("cli_env")
def test_test_alert_of_an_unknown_channel_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A channel name the config does not have: exit 2, naming the configured ones."""
    code = main(["--config", str(mail_config(tmp_path, 25)), "test-alert", "nope"])
    expected = "watcher: no such channel: nope (configured: mail)\n"
    assert (2, expected) == (code, capsys.readouterr().err)


def mail_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "watcher.toml"
    config.write_text(
        f'[watcher]\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
        f'[[channels]]\nname = "mail"\ntype = "email"\nhost = "127.0.0.1"\nport = {port}\n'
        'starttls = false\nsender = "watcher@example.org"\nrecipients = ["ops@example.org"]\n'
        'timeout = "5s"\n',
        encoding="utf-8",
    )
    return config
