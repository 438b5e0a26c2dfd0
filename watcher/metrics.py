"""In-process metrics: counters, gauges and histograms with labels, in Prometheus text format.

    metrics = WatcherMetrics()                    the daemon's instruments, declared once
    fetch = metrics.instrument_fetch(fetcher)     counts and times every fetch
    metrics.observe_pass(...)                     after each pass
    metrics.registry.render()                     what GET /metrics answers (format 0.0.4)

``Metrics`` is the registry: anyone may add an instrument with ``counter``, ``gauge`` or
``histogram`` (declaring the same name again returns the same instrument). ``WatcherMetrics``
declares the ones the daemon records; their names and help texts are the metrics reference
(docs/operations.md), and the alert ones are an extension point for the outbox (issue 5).

Does not: serve HTTP (``watcher.server`` does), read the store, or keep history; no I/O.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, ParamSpec, TypeVar

from watcher import __version__
from watcher.errors import FetchError
from watcher.models import FetchResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0)
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
P = ParamSpec("P")
M = TypeVar("M", bound="Metric")
LabelKey = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: ``3``, ``0.25``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class Metric:
    """One named instrument with a fixed set of label names; samples keyed by label values."""

    kind: ClassVar[str] = "untyped"
    reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"metric {name!r}: not a Prometheus metric name")
        for label in labels:
            if not _LABEL.fullmatch(label) or label.startswith("__") or label in self.reserved:
                raise ValueError(f"metric {name!r}: {label!r} is not a usable label name")
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> LabelKey:
        if set(labels) != set(self.labels):
            want = ", ".join(self.labels) or "no labels"
            raise ValueError(f"metric {self.name!r}: takes {want}, got {', '.join(labels)}")
        return tuple(str(labels[n]) for n in self.labels)

    def remove(self, **labels: object) -> None:
        """Drop the sample with these label values (a source removed by a reload)."""
        key = self._key(labels)
        with self._lock:
            self._drop(key)

    def _drop(self, key: LabelKey) -> None:
        raise NotImplementedError

    def lines(self) -> Iterator[str]:
        """The sample lines of this metric, sorted by label values."""
        raise NotImplementedError

    def render(self) -> str:
        """HELP and TYPE lines, then every sample."""
        head = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        return "\n".join([*head, *self.lines()]) + "\n"


class _Scalar(Metric):
    """A metric with one float per label set (counter, gauge)."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelKey, float] = {}

    def value(self, **labels: object) -> float:
        """The current value for these label values (0 if never touched)."""
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0.0)

    def _add(self, amount: float, labels: Mapping[str, object]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def _drop(self, key: LabelKey) -> None:
        self._values.pop(key, None)

    def lines(self) -> Iterator[str]:
        """The sample lines of this metric, sorted by label values."""
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels_text(self.labels, key)} {format_value(value)}"


class Counter(_Scalar):
    """A count that only goes up (restarts from 0 with the process)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        """Add ``amount`` (at least 0) to the count for these label values."""
        if amount < 0:
            raise ValueError(f"metric {self.name!r}: a counter cannot go down ({amount})")
        self._add(amount, labels)

    def advance_to(self, total: float, **labels: object) -> None:
        """Raise the count to ``total`` when that is higher (a count kept elsewhere, e.g. the
        store's sent alerts); never lowers it."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = max(self._values.get(key, 0.0), float(total))


class Gauge(_Scalar):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        """Set the value for these label values."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        """Add ``amount`` to the value for these label values."""
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        """Subtract ``amount`` from the value for these label values."""
        self._add(-amount, labels)


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"
    reserved = frozenset({"le"})

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        bounds = sorted(set(buckets))
        if not bounds or any(math.isnan(b) for b in bounds):
            raise ValueError(f"metric {name!r}: buckets must be numbers")
        self.buckets = (*(b for b in bounds if not math.isinf(b)), math.inf)
        self._counts: dict[LabelKey, list[int]] = {}
        self._sums: dict[LabelKey, float] = {}

    def observe(self, value: float, **labels: object) -> None:
        """Count one observation (seconds, bytes ...) for these label values."""
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: object) -> int:
        """How many observations were made for these label values."""
        key = self._key(labels)
        with self._lock:
            return self._counts[key][-1] if key in self._counts else 0

    def _drop(self, key: LabelKey) -> None:
        self._counts.pop(key, None)
        self._sums.pop(key, None)

    def lines(self) -> Iterator[str]:
        """Buckets (``le``), ``_sum`` and ``_count`` for each label set, sorted."""
        with self._lock:
            items = sorted((key, list(c), self._sums[key]) for key, c in self._counts.items())
        names = (*self.labels, "le")
        for key, counts, total in items:
            for bound, n in zip(self.buckets, counts, strict=True):
                labels = _labels_text(names, (*key, format_value(bound)))
                yield f"{self.name}_bucket{labels} {n}"
            yield f"{self.name}_sum{_labels_text(self.labels, key)} {format_value(total)}"
            yield f"{self.name}_count{_labels_text(self.labels, key)} {counts[-1]}"


class Metrics:
    """The registry: every instrument by name, rendered together; collectors run first."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._collectors: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def _declare(self, kind: type[M], name: str, make: Callable[[], M]) -> M:
        with self._lock:
            found = self._metrics.get(name)
            if found is None:
                found = self._metrics[name] = make()
        if not isinstance(found, kind):
            raise ValueError(f"metric {name!r} is already a {found.kind}")
        made = make()
        if found.labels != made.labels:
            raise ValueError(f"metric {name!r} already has labels {', '.join(found.labels)}")
        return found

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """The counter called ``name``, declared now if new."""
        return self._declare(Counter, name, lambda: Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        """The gauge called ``name``, declared now if new."""
        return self._declare(Gauge, name, lambda: Gauge(name, help, labels))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        """The histogram called ``name``, declared now if new."""
        return self._declare(Histogram, name, lambda: Histogram(name, help, labels, buckets))

    def get(self, name: str) -> Metric | None:
        """The instrument called ``name``, or None."""
        return self._metrics.get(name)

    def __iter__(self) -> Iterator[Metric]:
        return iter(list(self._metrics.values()))

    def on_collect(self, collector: Callable[[], None]) -> None:
        """Run ``collector`` before each render (to refresh gauges read from elsewhere)."""
        self._collectors.append(collector)

    def render(self) -> str:
        """Every instrument in Prometheus text format 0.0.4, in declaration order."""
        for collect in list(self._collectors):
            collect()
        return "".join(metric.render() for metric in self)


class WatcherMetrics:
    """The daemon's instruments; their names and help texts are the metrics reference."""

    def __init__(self, registry: Metrics | None = None) -> None:
        r = self.registry = registry if registry is not None else Metrics()
        self.info = r.gauge("watcher_build_info", "Always 1; the running version.", ("version",))
        self.info.set(1, version=__version__)
        self.fetches = r.counter(
            "watcher_fetches_total",
            "Fetches by source and HTTP status ('error' when no response came).",
            ("source", "status"),
        )
        self.fetch_seconds = r.histogram(
            "watcher_fetch_duration_seconds",
            "Time one fetch took, response or error.",
            buckets=FETCH_BUCKETS,
        )
        self.passes = r.counter(
            "watcher_passes_total",
            "Passes by source and outcome (updated, not_modified, unchanged, failed).",
            ("source", "outcome"),
        )
        self.pass_seconds = r.histogram(
            "watcher_pass_duration_seconds",
            "Time one pass over one source took, by outcome.",
            ("outcome",),
            PASS_BUCKETS,
        )
        self.items_new = r.counter(
            "watcher_items_new_total", "New articles stored, by source.", ("source",)
        )
        self.items_updated = r.counter(
            "watcher_items_updated_total",
            "Stored articles whose content changed, by source.",
            ("source",),
        )
        self.duplicates = r.counter(
            "watcher_duplicates_collapsed_total",
            "New articles that joined an existing story, by source.",
            ("source",),
        )
        self.stories = r.gauge("watcher_stories", "Stories in the store.")
        self._declare_sources(r)
        self._declare_alerts(r)

    def _declare_sources(self, r: Metrics) -> None:
        self.failures = r.gauge(
            "watcher_source_consecutive_failures",
            "Failed passes in a row, by source (0 after a success).",
            ("source",),
        )
        self.last_success = r.gauge(
            "watcher_source_last_success_timestamp_seconds",
            "Unix time of the last successful fetch, by source.",
            ("source",),
        )
        self.silent = r.gauge(
            "watcher_source_silent",
            "1 when a source has brought nothing new for far longer than its usual rhythm.",
            ("source",),
        )

    def _declare_alerts(self, r: Metrics) -> None:
        # Read from the outbox table at each scrape (``observe_alerts``): the store is the
        # record of what was sent, so the figures survive restarts and count every process.
        self.alerts_sent = r.counter(
            "watcher_alerts_sent_total", "Alerts delivered, by channel.", ("channel",)
        )
        self.alerts_failed = r.counter(
            "watcher_alerts_failed_total",
            "Alerts given up on after their retries, by channel.",
            ("channel",),
        )
        self.alerts_pending = r.gauge(
            "watcher_alerts_pending", "Alerts waiting in the outbox, by channel.", ("channel",)
        )

    def observe_fetch(self, source: str, status: int | None, seconds: float) -> None:
        """Count one fetch by its HTTP status (None: no response) and time it."""
        self.fetches.inc(source=source, status="error" if status is None else str(status))
        self.fetch_seconds.observe(seconds)

    def observe_pass(
        self, source: str, outcome: str, *, new: int, updated: int, duplicates: int, seconds: float
    ) -> None:
        """Count one pass over ``source``: its outcome, articles new and updated, duplicates."""
        self.passes.inc(source=source, outcome=outcome)
        self.pass_seconds.observe(seconds, outcome=outcome)
        self.items_new.inc(new, source=source)
        self.items_updated.inc(updated, source=source)
        self.duplicates.inc(duplicates, source=source)

    def observe_source(
        self,
        source: str,
        *,
        consecutive_failures: int,
        last_success_at: datetime | None,
        silent: bool | None = None,
    ) -> None:
        """Set a source's gauges from its state (``silent`` None: leave that gauge as it is)."""
        self.failures.set(consecutive_failures, source=source)
        if last_success_at is not None:
            self.last_success.set(last_success_at.timestamp(), source=source)
        if silent is not None:
            self.silent.set(1 if silent else 0, source=source)

    def observe_alerts(self, counts: Mapping[tuple[str, Any], int]) -> None:
        """Set the alert figures from the outbox's counts by (channel, state)."""
        for channel in {c for c, _ in counts}:
            waiting = counts.get((channel, "pending"), 0) + counts.get((channel, "sending"), 0)
            self.alerts_pending.set(waiting, channel=channel)
            self.alerts_sent.advance_to(counts.get((channel, "sent"), 0), channel=channel)
            self.alerts_failed.advance_to(counts.get((channel, "failed"), 0), channel=channel)

    def forget_source(self, source: str) -> None:
        """Drop a source's per-source gauges (after a reload removed it; counters stay)."""
        for gauge in (self.failures, self.last_success, self.silent):
            gauge.remove(source=source)

    def instrument_fetch(
        self,
        fetch: Callable[P, Awaitable[FetchResult]],
        clock: Callable[[], float] = time.perf_counter,
    ) -> Callable[P, Awaitable[FetchResult]]:
        """``fetch`` that counts every call by status and times it (FetchError re-raised)."""

        async def timed(*args: P.args, **kwargs: P.kwargs) -> FetchResult:
            started = clock()
            try:
                result = await fetch(*args, **kwargs)
            except FetchError as e:
                self.observe_fetch(e.source, e.status, clock() - started)
                raise
            self.observe_fetch(result.source, result.status, clock() - started)
            return result

        return timed
