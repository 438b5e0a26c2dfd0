"""Metrics: the registry's instruments and their Prometheus text, and the daemon's instruments."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime

import pytest

from watcher import __version__
from watcher.errors import FetchError
from watcher.metrics import Metrics, WatcherMetrics, format_value
from watcher.models import FetchResult

from .conftest import ROOT
from .promtext import parse_prometheus

NOW = datetime(2026, 11, 3, 5, 20, tzinfo=UTC)


def test_counter_renders_help_type_and_samples_sorted() -> None:
    """A counter renders HELP, TYPE, then one line per label set in label order."""
    registry = Metrics()
    fetches = registry.counter("x_total", "Things done.", ("source",))
    fetches.inc(source="b")
    fetches.inc(2, source="a")
    expected = (
        '# HELP x_total Things done.\n# TYPE x_total counter\nx_total{source="a"} 2\n'
        'x_total{source="b"} 1\n'
    )
    assert expected == registry.render()


def test_label_values_and_help_are_escaped() -> None:
    """Backslash, quote and newline in a label value (and help) come back after parsing."""
    registry = Metrics()
    gauge = registry.gauge("g", "Two\nlines \\ here.", ("title",))
    odd = 'a "quoted"\\ name\nwith a newline'
    gauge.set(1.5, title=odd)
    family = parse_prometheus(registry.render())["g"]
    expected = ("Two\nlines \\ here.", 1.5)
    assert expected == (family.help, family.value("g", title=odd))


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    """Observations land in every bucket at or above them; +Inf, _sum and _count follow."""
    registry = Metrics()
    hist = registry.histogram("h_seconds", "Time.", ("kind",), buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        hist.observe(value, kind="x")
    family = parse_prometheus(registry.render())["h_seconds"]
    buckets = [family.value("h_seconds_bucket", kind="x", le=le) for le in ("0.1", "1", "+Inf")]
    expected = ([1, 2, 3], 5.55, 3)
    actual = (
        buckets,
        family.value("h_seconds_sum", kind="x"),
        family.value("h_seconds_count", kind="x"),
    )
    assert expected == actual


def test_wrong_labels_name_the_metric() -> None:
    """Using a metric with labels it was not declared with is a ValueError naming it."""
    counter = Metrics().counter("c_total", "C.", ("source",))
    with pytest.raises(ValueError, match="c_total") as info:
        counter.inc(channel="mail")
    assert "metric 'c_total': takes source, got channel" == str(info.value)


def test_counter_cannot_go_down() -> None:
    """A negative increment of a counter is refused."""
    counter = Metrics().counter("c_total", "C.")
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(-1)
    assert 0.0 == counter.value()


@pytest.mark.parametrize(
    ("name", "labels"), [("bad-name", ()), ("ok", ("__reserved",)), ("ok", ("with space",))]
)
def test_bad_names_are_refused(name: str, labels: tuple[str, ...]) -> None:
    """Metric and label names outside the Prometheus grammar are refused."""
    with pytest.raises(ValueError) as info:
        Metrics().gauge(name, "G.", labels)
    assert str(info.value).startswith(f"metric {name!r}: ")


def test_histogram_refuses_le_label() -> None:
    """A histogram cannot have a label called le (its buckets use it)."""
    with pytest.raises(ValueError, match="'le'"):
        Metrics().histogram("h", "H.", ("le",))
    assert "le" in Metrics().histogram("h2", "H.").reserved


def test_declaring_again_returns_the_same_instrument() -> None:
    """The same name and kind gives the same instrument; another kind is an error."""
    registry = Metrics()
    first = registry.counter("c_total", "C.")
    assert first is registry.counter("c_total", "C.")
    with pytest.raises(ValueError, match="already a counter"):
        registry.gauge("c_total", "C.")
    with pytest.raises(ValueError, match="already has labels"):
        registry.counter("c_total", "C.", ("source",))


def test_collectors_run_before_render() -> None:
    """A collector registered with on_collect refreshes a gauge at each render."""
    registry = Metrics()
    gauge = registry.gauge("stories", "Stories.")
    counts = iter([3, 5])
    registry.on_collect(lambda: gauge.set(next(counts)))
    registry.render()
    expected = 5.0
    assert expected == parse_prometheus(registry.render())["stories"].value("stories")


def test_remove_drops_one_series() -> None:
    """remove() drops the series of one label set and keeps the others."""
    registry = Metrics()
    gauge = registry.gauge("g", "G.", ("source",))
    gauge.set(1, source="a")
    gauge.set(2, source="b")
    gauge.remove(source="a")
    expected = {("g", (("source", "b"),)): 2.0}
    assert expected == parse_prometheus(registry.render())["g"].samples


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0.25, "0.25"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (1e20, "1e+20")],
)
def test_format_value(value: float, text: str) -> None:
    """Sample values are written the way Prometheus reads them."""
    assert text == format_value(value)


def test_format_nan() -> None:
    """NaN is written NaN."""
    assert "NaN" == format_value(math.nan)


# --- the daemon's instruments ---------------------------------------------------------------------


def test_watcher_metrics_render_parses_with_help_for_every_family() -> None:
    """Every declared instrument renders with a TYPE and a non-empty HELP; build_info is 1."""
    metrics = WatcherMetrics()
    families = parse_prometheus(metrics.registry.render())
    assert [] == [name for name, f in families.items() if not f.help]
    assert 1.0 == families["watcher_build_info"].value("watcher_build_info", version=__version__)


def test_observe_pass_counts_outcome_items_and_duplicates() -> None:
    """A pass adds to passes, new and updated items and duplicates, and times the pass."""
    metrics = WatcherMetrics()
    metrics.observe_pass("a", "updated", new=3, updated=1, duplicates=2, seconds=0.2)
    metrics.observe_pass("a", "not_modified", new=0, updated=0, duplicates=0, seconds=0.01)
    f = parse_prometheus(metrics.registry.render())
    actual = (
        f["watcher_passes_total"].value("watcher_passes_total", source="a", outcome="updated"),
        f["watcher_items_new_total"].value("watcher_items_new_total", source="a"),
        f["watcher_items_updated_total"].value("watcher_items_updated_total", source="a"),
        f["watcher_duplicates_collapsed_total"].value(
            "watcher_duplicates_collapsed_total", source="a"
        ),
        f["watcher_pass_duration_seconds"].value(
            "watcher_pass_duration_seconds_count", outcome="not_modified"
        ),
    )
    assert (1, 3, 1, 2, 1) == actual


def test_observe_source_and_forget_source() -> None:
    """A source's gauges follow its state, and forget_source drops them (counters stay)."""
    metrics = WatcherMetrics()
    metrics.observe_pass("gone", "failed", new=0, updated=0, duplicates=0, seconds=0.1)
    metrics.observe_source("gone", consecutive_failures=4, last_success_at=NOW, silent=True)
    metrics.observe_source("kept", consecutive_failures=0, last_success_at=None, silent=False)
    metrics.forget_source("gone")
    f = parse_prometheus(metrics.registry.render())
    actual = (
        sorted(f["watcher_source_consecutive_failures"].samples),
        len(f["watcher_source_last_success_timestamp_seconds"].samples),
        f["watcher_passes_total"].value("watcher_passes_total", source="gone", outcome="failed"),
    )
    expected = ([("watcher_source_consecutive_failures", (("source", "kept"),))], 0, 1.0)
    assert expected == actual


def test_alert_instruments_are_declared_for_the_outbox() -> None:
    """The alert metrics exist (an extension point) and count by channel."""
    metrics = WatcherMetrics()
    metrics.alerts_sent.inc(channel="mail")
    metrics.alerts_failed.inc(channel="hook")
    metrics.alerts_pending.set(4, channel="mail")
    f = parse_prometheus(metrics.registry.render())
    actual = (
        f["watcher_alerts_sent_total"].value("watcher_alerts_sent_total", channel="mail"),
        f["watcher_alerts_failed_total"].value("watcher_alerts_failed_total", channel="hook"),
        f["watcher_alerts_pending"].value("watcher_alerts_pending", channel="mail"),
    )
    assert (1, 1, 4) == actual


def _result(source: str, status: int) -> FetchResult:
    return FetchResult(
        source=source,
        url="http://127.0.0.1/a",
        final_url="http://127.0.0.1/a",
        status=status,
        fetched_at=NOW,
    )


def test_instrument_fetch_counts_statuses_and_errors() -> None:
    """The wrapped fetch counts each answer by status, an error without one as 'error'."""
    metrics = WatcherMetrics()
    ticks = iter(float(n) for n in range(100))
    answers: list[FetchResult | FetchError] = [
        _result("a", 200),
        _result("a", 304),
        FetchError("a", "refused"),
        FetchError("a", "HTTP 503", status=503),
    ]

    async def fetch(source: str) -> FetchResult:
        answer = answers.pop(0)
        if isinstance(answer, FetchError):
            raise answer
        return answer

    timed = metrics.instrument_fetch(fetch, clock=lambda: next(ticks))

    async def go() -> int:
        errors = 0
        for _ in range(4):
            try:
                await timed("a")
            except FetchError:
                errors += 1
        return errors

    errors = asyncio.run(go())
    family = parse_prometheus(metrics.registry.render())["watcher_fetches_total"]
    counts = {dict(labels)["status"]: v for (_, labels), v in family.samples.items()}
    expected = (2, {"200": 1.0, "304": 1.0, "error": 1.0, "503": 1.0}, 4)
    assert expected == (errors, counts, metrics.fetch_seconds.count())


def test_every_metric_is_in_the_reference() -> None:
    """docs/operations.md lists every declared metric with its type and labels."""
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = {
        m[0]: (m[1], m[2])
        for m in re.findall(r"^\| `(\w+)` \| (\w+) \| ([\w, -]+) \|", doc, flags=re.MULTILINE)
    }
    declared = {m.name: (m.kind, ", ".join(m.labels) or "-") for m in WatcherMetrics().registry}
    assert declared == rows
