"""The outbox: queued alerts delivered once per story x rule x channel, through outages and crashes.

    outbox = Outbox(store, settings.channels, settings.outbox, clock=clock)
    await outbox.deliver_due()            one round (what `watcher poll` does after its passes)
    task = create_task(outbox.run())      the daemon: a round, then sleep until something is due
                                          or ``wake()`` (new alerts were queued)
    outbox.stop(); await task             no new message starts; the one in flight finishes

One round:
    recover sends a crash cut off: rows left ``sending`` by another outbox, past the lease
        interrupted = "resend": pending again, same message (same key, same Message-ID)
        interrupted = "hold":   failed, with a last error saying so, for a human to retry
    for each channel with pending alerts (channels in parallel, one message at a time in each):
        skip while the channel backs off after a failure, or in its quiet hours (held)
        plan_messages (pure):
            a retry keeps the message it was first tried in (its key is fixed at the claim)
            new alerts: one message each; with ``digest``, one message once the oldest has
                waited that long; past the rate limit's free slots, one digest of the backlog
            order: fewest attempts first, then oldest, so a poisoned alert blocks no other
            the rate limit takes the first free slots; the rest wait for a slot to open
        for each message:
            store.claim_alerts       sending, attempts + 1, message key: committed first
            notifier.send(_digest)   DeliveryError -> back-off (retry_min doubling to
                                     retry_max); failed after give_up_after (kept, retryable)
            store.mark_alerts_sent   committed after

Guarantee: at least once per channel, and once in all but one case: a crash (kill -9, power
loss) after a message left and before ``sent`` was committed. Then the row is ``sending`` with
its attempt counted, and the channel's ``interrupted`` setting decides: ``resend`` sends the
same message again with the same idempotency key (``Idempotency-Key`` header and payload field,
email ``Message-ID`` and ``X-Watcher-Idempotency-Key``), so a receiver that keeps one message
per key shows it once; ``hold`` never sends it again by itself (at most once). A clean stop
(SIGTERM) finishes the message in flight, and a cancelled send is released at once.

A DeliveryError is data here: it becomes the alert's ``last_error`` and a back-off, and never
reaches a source's poll (the pipeline only queues).

Does not: evaluate rules or build alerts (``alerting.py``), render or transport messages
(``watcher.alerts``), or read a global clock (``clock`` is injected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from watcher.alerts import Notifier, digest_key, open_notifier, quiet_until
from watcher.errors import DeliveryError, WatcherError
from watcher.log import log_event
from watcher.models import Alert
from watcher.settings import ChannelSettings, OutboxSettings
from watcher.store import Store
from watcher.store.rows import OutboxEntry

log = logging.getLogger("watcher.outbox")
Clock = Callable[[], datetime]
Message = tuple[OutboxEntry, ...]
_Outcome = Literal["sent", "failed", "skipped", "stopped"]

MAX_DIGEST = 100  # alerts in one digest message; a longer backlog goes in several
LEASE_MARGIN = timedelta(seconds=60)  # a send older than the channel's timeout + this is dead
MIN_SLEEP_S = 0.1
MAX_SLEEP_S = 30.0  # also picks up alerts queued by another process (`backfill --alerts`)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def backoff(settings: OutboxSettings, attempts: int) -> timedelta:
    """The wait after ``attempts`` failures in a row: retry_min doubling, at most retry_max."""
    doublings = min(max(attempts - 1, 0), 30)
    return min(settings.retry_min * (1 << doublings), settings.retry_max)


# --- planning (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to send on one channel now, and when something else becomes due there."""

    messages: tuple[Message, ...]
    wake_at: datetime | None
    waiting: int


def plan_messages(
    channel: ChannelSettings,
    entries: Sequence[OutboxEntry],
    now: datetime,
    sent: Sequence[datetime] = (),
) -> Plan:
    """The messages to send on ``channel`` now, from its pending ``entries``; see the module doc.

    ``sent``: when the channel's messages within the last ``rate_period`` went.
    """
    quiet = quiet_until(channel, now)
    if quiet is not None:
        return Plan((), quiet, len(entries))
    due = [e for e in entries if _next_at(e) <= now]
    wake = min((_next_at(e) for e in entries if _next_at(e) > now), default=None)
    retries = _retry_groups(due)
    fresh = sorted((e for e in due if e.message_key is None), key=_age)
    slots = _free_slots(channel, now, sent)
    fresh_messages: list[Message]
    if channel.digest is not None:
        fresh_messages, digest_at = _digests(fresh, channel.digest, now)
        wake = _earliest(wake, digest_at)
    elif slots is not None and len(retries) + len(fresh) > slots:
        fresh_messages = _chunked(fresh)  # a backlog past the limit goes as a digest
    else:
        fresh_messages = [(e,) for e in fresh]
    messages = sorted([*retries, *fresh_messages], key=_priority)
    if slots is not None and len(messages) > slots:
        messages = messages[: max(slots, 0)]
        wake = _earliest(wake, _slot_opens(channel, now, sent))
    waiting = len(entries) - sum(len(m) for m in messages)
    return Plan(tuple(messages), wake, waiting)


def _next_at(entry: OutboxEntry) -> datetime:
    return entry.delivery.next_attempt_at or entry.created_at


def _age(entry: OutboxEntry) -> tuple[datetime, str]:
    return entry.created_at, entry.key


def _priority(message: Message) -> tuple[int, datetime, str]:
    attempts = max(e.delivery.attempts for e in message)
    return attempts, min(e.created_at for e in message), message[0].key


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _retry_groups(due: Sequence[OutboxEntry]) -> list[Message]:
    """Alerts tried before, grouped by the message they were first tried in."""
    groups: dict[str, list[OutboxEntry]] = {}
    for entry in due:
        if entry.message_key is not None:
            groups.setdefault(entry.message_key, []).append(entry)
    return [tuple(sorted(g, key=_age)) for g in groups.values()]


def _chunked(entries: Sequence[OutboxEntry]) -> list[Message]:
    return [tuple(entries[i : i + MAX_DIGEST]) for i in range(0, len(entries), MAX_DIGEST)]


def _digests(
    fresh: Sequence[OutboxEntry], every: timedelta, now: datetime
) -> tuple[list[Message], datetime | None]:
    """All new alerts in one message once the oldest has waited ``every``; else when that is."""
    if not fresh:
        return [], None
    ready_at = fresh[0].created_at + every
    return (_chunked(fresh), None) if ready_at <= now else ([], ready_at)


def _free_slots(channel: ChannelSettings, now: datetime, sent: Sequence[datetime]) -> int | None:
    if not channel.rate_limit:
        return None
    since = now - channel.rate_period
    return channel.rate_limit - sum(1 for at in sent if at > since)


def _slot_opens(channel: ChannelSettings, now: datetime, sent: Sequence[datetime]) -> datetime:
    since = now - channel.rate_period
    recent = [at for at in sent if at > since]
    return (min(recent) if recent else now) + channel.rate_period


# --- delivering -----------------------------------------------------------------------------------


@dataclass
class Round:
    """What one round did: alerts sent (in how many messages), alerts failed, alerts waiting."""

    sent: int = 0
    messages: int = 0
    failed: int = 0
    waiting: int = 0

    def add(self, other: Round) -> None:
        """Add ``other``'s counts to these."""
        self.sent += other.sent
        self.messages += other.messages
        self.failed += other.failed
        self.waiting += other.waiting


@dataclass
class _ChannelState:
    failures: int = 0
    retry_at: datetime | None = None


@dataclass
class Outbox:
    """Delivers queued alerts on every configured channel (see the module doc)."""

    store: Store
    channels: Sequence[ChannelSettings]
    settings: OutboxSettings = field(default_factory=OutboxSettings)
    clock: Clock = utc_now
    notifiers: Mapping[str, Notifier] | None = None
    notifier_factory: Callable[[ChannelSettings], Notifier] = open_notifier
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.channels}
        self._notifiers: dict[str, Notifier] = dict(self.notifiers or {})
        self._opened: list[Notifier] = []
        self._states = {name: _ChannelState() for name in self._by_name}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._in_flight: set[str] = set()
        self.wake_at: datetime | None = None

    def wake(self) -> None:
        """New alerts were queued: start a round now rather than at the next due time."""
        self._wakeup.set()

    def stop(self) -> None:
        """Start no new message; ``run`` returns once the message in flight is done."""
        self._stopping = True
        self._wakeup.set()

    async def run(self, max_sleep_s: float = MAX_SLEEP_S) -> None:
        """Deliver round after round until ``stop``; store trouble is logged and retried."""
        log_event(log, logging.INFO, "outbox started", channels=len(self.channels))
        while not self._stopping:
            self._wakeup.clear()
            try:
                await self.deliver_due()
            except WatcherError as e:
                log_event(log, logging.ERROR, "outbox round failed", error=str(e))
            except Exception as e:  # a bug: loud, and the loop goes on
                log_event(log, logging.CRITICAL, "outbox round crashed", error=repr(e))
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._sleep_s(max_sleep_s))
        log_event(log, logging.INFO, "outbox stopped")

    def _sleep_s(self, max_sleep_s: float) -> float:
        if self.wake_at is None:
            return max_sleep_s
        wait = (self.wake_at - self.clock()).total_seconds()
        return min(max(wait, MIN_SLEEP_S), max_sleep_s)

    async def deliver_due(self) -> Round:
        """One round over every channel: recover cut-off sends, then send what is due."""
        now = self.clock()
        self.wake_at = self._recover(now)
        pending: dict[str, list[OutboxEntry]] = {}
        for entry in self.store.list_alerts(state="pending"):
            pending.setdefault(entry.delivery.channel, []).append(entry)
        names = [name for name in pending if name in self._by_name]
        rounds = await asyncio.gather(*(self._channel_round(n, pending[n], now) for n in names))
        total = Round()
        for done, wake_at in rounds:
            total.add(done)
            self.wake_at = _earliest(self.wake_at, wake_at)
        return total

    async def _channel_round(
        self, name: str, entries: list[OutboxEntry], now: datetime
    ) -> tuple[Round, datetime | None]:
        channel, state = self._by_name[name], self._states[name]
        if state.retry_at is not None and now < state.retry_at:
            return Round(waiting=len(entries)), state.retry_at
        since = now - channel.rate_period
        sent = self.store.messages_sent(name, since=since) if channel.rate_limit else []
        plan = plan_messages(channel, entries, now, sent)
        done = Round(waiting=plan.waiting)
        for index, message in enumerate(plan.messages):
            outcome = "stopped" if self._stopping else await self._send(channel, message)
            if outcome == "sent":
                done.sent += len(message)
                done.messages += 1
            elif outcome == "failed":
                done.failed += len(message)
                done.waiting += sum(len(m) for m in plan.messages[index + 1 :])
                return done, _earliest(plan.wake_at, self._states[name].retry_at)
            elif outcome == "stopped":
                done.waiting += sum(len(m) for m in plan.messages[index:])
                break
        return done, plan.wake_at

    async def _send(self, channel: ChannelSettings, message: Message) -> _Outcome:
        """Claim, send and record one message; on failure the channel backs off."""
        keys = [e.key for e in message]
        alerts = [e.alert for e in message]
        message_key = message[0].message_key or digest_key(alerts)
        claimed = self.store.claim_alerts(
            keys, message_key=message_key, owner=self.owner, now=self.clock()
        )
        if not claimed:  # another outbox has it: not ours to send
            return "skipped"
        self._in_flight.update(keys)
        try:
            await self._deliver(channel, alerts)
        except DeliveryError as e:
            self._failed(channel, message, str(e))
            return "failed"
        except asyncio.CancelledError:
            self._cut_off(channel, keys, self.clock())
            raise
        except Exception as e:  # a bug in a notifier: loud, recorded, retried like a failure
            log_event(log, logging.CRITICAL, "notifier crashed", channel=channel.name,
                      error=repr(e))  # fmt: skip
            self._failed(channel, message, f"{type(e).__name__}: {e}")
            return "failed"
        finally:
            self._in_flight.difference_update(keys)
        self.store.mark_alerts_sent(keys, now=self.clock())
        self._states[channel.name] = _ChannelState()
        log_event(log, logging.INFO, "alert sent", channel=channel.name, key=message_key,
                  alerts=len(keys), rules=sorted({a.rule for a in alerts}))  # fmt: skip
        return "sent"

    async def _deliver(self, channel: ChannelSettings, alerts: Sequence[Alert]) -> None:
        notifier = self._notifier(channel)
        if len(alerts) == 1:
            await notifier.send(alerts[0])
        else:
            await notifier.send_digest(alerts)

    def _notifier(self, channel: ChannelSettings) -> Notifier:
        if channel.name not in self._notifiers:
            opened = self.notifier_factory(channel)
            self._notifiers[channel.name] = opened
            self._opened.append(opened)
        return self._notifiers[channel.name]

    def _failed(self, channel: ChannelSettings, message: Message, error: str) -> None:
        now = self.clock()
        attempts = max(e.delivery.attempts for e in message) + 1
        first = min(e.created_at for e in message)
        give_up = now - first >= self.settings.give_up_after
        retry_at = now + backoff(self.settings, attempts)
        self.store.release_alerts(
            [e.key for e in message], error=error, next_attempt_at=retry_at, failed=give_up
        )
        state = self._states[channel.name]
        state.failures += 1
        state.retry_at = now + backoff(self.settings, state.failures)
        log_event(log, logging.WARNING, "alert not sent", channel=channel.name, error=error,
                  attempts=attempts, alerts=len(message), gave_up=give_up,
                  retry_at=None if give_up else retry_at.isoformat())  # fmt: skip

    def _cut_off(self, channel: ChannelSettings, keys: Sequence[str], now: datetime) -> None:
        """A send was cancelled mid-way: release it at once, as a crash would be on restart."""
        hold = channel.interrupted == "hold"
        self.store.release_alerts(keys, error=_interrupted_error(hold, now),
                                  next_attempt_at=now, failed=hold)  # fmt: skip

    def _recover(self, now: datetime) -> datetime | None:
        """Release sends another outbox began and never finished; return when the next expires."""
        wake: datetime | None = None
        for entry in self.store.list_alerts(state="sending"):
            channel = self._by_name.get(entry.delivery.channel)
            if channel is None or entry.key in self._in_flight or entry.sending_at is None:
                continue
            expires = entry.sending_at + channel.timeout + LEASE_MARGIN
            if expires > now:
                wake = _earliest(wake, expires)
                continue
            hold = channel.interrupted == "hold"
            self.store.release_alerts([entry.key], error=_interrupted_error(hold, entry.sending_at),
                                      next_attempt_at=now, failed=hold)  # fmt: skip
            log_event(log, logging.WARNING, "alert send was interrupted", key=entry.key,
                      channel=channel.name, resend=not hold)  # fmt: skip
        return wake

    async def aclose(self) -> None:
        """Close the notifiers this outbox opened."""
        for notifier in self._opened:
            await notifier.aclose()
        self._opened.clear()
        self._notifiers = dict(self.notifiers or {})


# --- listing: `watcher alerts` --------------------------------------------------------------------

TITLE_SHOWN = 60


def alert_json(entry: OutboxEntry) -> dict[str, object]:
    """The JSON object ``watcher alerts --json`` prints for one alert."""
    delivery, alert = entry.delivery, entry.alert
    return {
        "key": entry.key,
        "state": entry.state,
        "channel": delivery.channel,
        "rule": alert.rule,
        "story_id": alert.story_id,
        "article_id": alert.article_id,
        "title": alert.title,
        "link": alert.link,
        "attempts": delivery.attempts,
        "created_at": entry.created_at.isoformat(),
        "next_attempt_at": _iso(delivery.next_attempt_at) if entry.state == "pending" else None,
        "sending_at": _iso(entry.sending_at),
        "sent_at": _iso(delivery.sent_at),
        "message_key": entry.message_key,
        "last_error": delivery.last_error,
    }


def alert_lines(entries: Sequence[OutboxEntry], channels: Collection[str]) -> list[str]:
    """What ``watcher alerts`` prints: a row per alert, and below it why it is not sent yet."""
    header = ("STATE", "CHANNEL", "RULE", "QUEUED", "TRIES", "NEXT/SENT", "KEY", "TITLE")
    table = _table([header, *(_alert_row(e) for e in entries)])
    lines = table[:1]
    for entry, line in zip(entries, table[1:], strict=True):
        lines.append(line)
        if entry.state == "sent":
            continue
        if entry.delivery.channel not in channels:
            lines.append("    channel not configured: kept until it is again")
        if entry.delivery.last_error:
            lines.append(f"    last error: {entry.delivery.last_error}")
    return lines


def _alert_row(entry: OutboxEntry) -> tuple[str, ...]:
    delivery = entry.delivery
    when = {
        "pending": delivery.next_attempt_at,
        "sending": entry.sending_at,
        "sent": delivery.sent_at,
        "failed": None,
    }[entry.state]
    title = entry.alert.title
    shown = title if len(title) <= TITLE_SHOWN else title[: TITLE_SHOWN - 1] + "…"
    return (entry.state, delivery.channel, entry.alert.rule, _when(entry.created_at),
            str(delivery.attempts), _when(when), entry.key, shown)  # fmt: skip


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def _interrupted_error(hold: bool, at: datetime) -> str:
    when = at.astimezone(UTC).isoformat(timespec="seconds")
    if hold:
        return (
            f"interrupted while sending at {when}: it may or may not have arrived; not sent "
            "again (interrupted = hold); `watcher alerts --retry KEY` sends it"
        )
    return f"interrupted while sending at {when}; sent again with the same idempotency key"
