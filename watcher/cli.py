"""The ``watcher`` command: the only place that turns errors into exit codes.

    0 ok    1 partial failure (some files or sources failed, the rest went on)    2 usage or config

Builds ``Settings`` once and passes slices down; nothing below reads a global config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from watcher import __version__, archive
from watcher.alerting import Alerting, firing_lines, replay, sample_alert
from watcher.alerts import Notifier, open_notifier
from watcher.backfill import BackfillReport, backfill, find_dump_files
from watcher.daemon import Daemon
from watcher.errors import ArchiveError, ConfigError, DeliveryError, WatcherError
from watcher.fetch import Fetcher
from watcher.health import RECENT_ITEMS, Silence, find_silence
from watcher.log import log_event, setup_logging
from watcher.models import Alert, ArchiveFormat, SourceState
from watcher.outbox import alert_json, alert_lines
from watcher.pipeline import PassResult
from watcher.rules import compile_rules
from watcher.settings import Settings, SourceSettings, load_settings, parse_duration
from watcher.store import Store, open_store
from watcher.store.rows import OutboxState
from watcher.stories import StoryAssigner, restory, story_json, story_lines

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("watcher.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="watcher", description="Follow news feeds and keep them as a news-dump archive."
    )
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: $WATCHER_CONFIG)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cmd = commands.add_parser("backfill", help="import news-dump folders into the store")
    cmd.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders (or files)")
    cmd.add_argument("--no-progress", action="store_true", help="no progress line on a TTY")
    cmd.add_argument(
        "--alerts", action="store_true", help="run the rules on the imported stories, queue alerts"
    )
    cmd.set_defaults(run=run_backfill)

    cmd = commands.add_parser("export", help="write stored articles as a dump archive")
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="archive folder")
    cmd.add_argument(
        "--format",
        choices=["hexo", "link", "jekyll", "early"],
        help="write every article in this format (default: the format it came in)",
    )
    cmd.set_defaults(run=run_export)

    cmd = commands.add_parser("run", help="the daemon: poll every source until SIGINT/SIGTERM")
    cmd.set_defaults(run=run_daemon)

    cmd = commands.add_parser("poll", help="one pass over sources now, print what was found")
    cmd.add_argument("names", nargs="*", metavar="SOURCE", help="default: every enabled one")
    cmd.set_defaults(run=run_poll)

    cmd = commands.add_parser("sources", help="a table of every source and its polling state")
    cmd.set_defaults(run=run_sources)

    cmd = commands.add_parser("stories", help="list stories: copies of one article across outlets")
    cmd.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="first published at or after: a date/time (UTC if no zone) or '3d'",
    )
    cmd.add_argument("--min-outlets", type=int, default=1, metavar="N", help="at least N outlets")
    cmd.add_argument("--json", action="store_true", help="one JSON object per story and line")
    cmd.set_defaults(run=run_stories)

    cmd = commands.add_parser("restory", help="recompute every story (after a [dedup] change)")
    cmd.set_defaults(run=run_restory)

    _add_alert_commands(commands)

    cmd = commands.add_parser("check-config", help="load the config and report what it holds")
    cmd.set_defaults(run=run_check_config)
    return parser


def _add_alert_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("alerts", help="the alert outbox: pending, sent, failed (and why)")
    cmd.add_argument("--state", choices=["pending", "sending", "sent", "failed"])
    cmd.add_argument("--channel", metavar="NAME", help="only alerts to this channel")
    cmd.add_argument("--rule", metavar="NAME", help="only alerts of this rule")
    cmd.add_argument("--since", type=_since, metavar="WHEN", help="queued at or after WHEN")
    cmd.add_argument("--limit", type=int, default=50, metavar="N", help="newest N (0: all)")
    cmd.add_argument("--json", action="store_true", help="one JSON object per alert and line")
    cmd.add_argument("--retry", nargs="+", metavar="KEY", help="send these alerts again now")
    cmd.add_argument("--retry-failed", action="store_true", help="send every failed one again")
    cmd.set_defaults(run=run_alerts)

    cmd = commands.add_parser("test-alert", help="send a sample alert on a channel now")
    cmd.add_argument("channel", metavar="CHANNEL", help="the name of a [[channels]] entry")
    cmd.set_defaults(run=run_test_alert)

    cmd = commands.add_parser("rules", help="keyword rules: try them on stored stories")
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub = actions.add_parser("test", help="print what the rules would have fired, terms marked")
    sub.add_argument("--since", type=_since_or_all, default="7d", metavar="WHEN",
                     help="first published at or after WHEN (default 7d; 'all')")  # fmt: skip
    sub.add_argument("--rule", action="append", metavar="NAME", help="only this rule (repeat)")
    sub.set_defaults(run=run_rules_test)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``watcher`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors and 0 on --help
        return int(e.code or 0)
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"watcher: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.watcher.log_level, settings.watcher.log_format)
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    try:
        return run(args, settings)
    except ConfigError as e:
        print(f"watcher: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except WatcherError as e:
        print(f"watcher: {e}", file=sys.stderr)
        return EXIT_PARTIAL


def _open(settings: Settings) -> Store:
    return open_store(settings.store_url)


def run_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher backfill DIR...``: import dump folders; exit 1 if any file failed."""
    missing = [str(d) for d in args.dirs if not d.exists()]
    if missing:
        print(f"watcher: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    files = find_dump_files(args.dirs)
    show = _progress_printer(sys.stderr, enabled=not args.no_progress)
    log_event(log, logging.INFO, "backfill started", files=len(files))
    with _open(settings) as store:
        shown = _story_progress(sys.stderr, enabled=not args.no_progress)
        stories = _BackfillStories(store, settings, shown, alerts=args.alerts)
        report = backfill(store, files, progress=show, assign_stories=stories)
    _print_summary(report, sys.stdout)
    if args.alerts:
        print(f"alerts: {stories.queued} queued (`watcher run` sends them)")
    log_event(
        log,
        logging.INFO,
        "backfill finished",
        imported=report.imported,
        known=report.known,
        failed=len(report.failures),
        skipped=len(report.skipped),
    )
    return EXIT_PARTIAL if report.failures else EXIT_OK


class _BackfillStories:
    """Backfill's last step: stories for the imported articles, then (``--alerts``) the rules."""

    def __init__(
        self, store: Store, settings: Settings, shown: Callable[[int, int], None], *, alerts: bool
    ) -> None:
        self.store, self.shown, self.queued = store, shown, 0
        self.stories = StoryAssigner(store, settings.dedup)
        rules = compile_rules(settings.rules) if alerts else None
        self.alerting = Alerting(store, rules) if rules is not None else None

    def __call__(self) -> int:
        """Assign stories to what has none; run the rules on those articles; return assigned."""
        ids = self.store.unassigned_article_ids() if self.alerting is not None else []
        assigned = self.stories.assign_pending(self.shown)
        if self.alerting is not None:
            self.queued = self.alerting.enqueue_ids(ids)
        return assigned


class _Progress:
    """A progress line redrawn in place on a TTY; a log event every 5 s otherwise."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream, self.enabled, self.last = stream, enabled, 0.0

    def show(self, line: str, *, finished: bool, event: str, **kv: object) -> None:
        """Redraw ``line``, or log ``event`` with ``kv`` when the stream is no terminal."""
        if self.stream.isatty():
            if self.enabled:
                print(f"\r{line}", end="\n" if finished else "", file=self.stream, flush=True)
        elif finished or time.monotonic() - self.last >= 5:
            self.last = time.monotonic()
            log_event(log, logging.INFO, event, **kv)


def _progress_printer(stream: TextIO, *, enabled: bool) -> Callable[[BackfillReport], None]:
    """Backfill progress: files done, imported, known, failed and the rate."""
    progress = _Progress(stream, enabled=enabled)

    def show(report: BackfillReport) -> None:
        line = (
            f"{report.done}/{report.total} files  imported {report.imported}  "
            f"known {report.known}  failed {len(report.failures)}  {report.rate:,.0f} files/s"
        )
        progress.show(line, finished=report.done >= report.total, event="backfill progress",
                      done=report.done, total=report.total, imported=report.imported,
                      rate=round(report.rate))  # fmt: skip

    return show


def _story_progress(stream: TextIO, *, enabled: bool) -> Callable[[int, int], None]:
    """Story assignment progress: articles done of those without a story."""
    progress = _Progress(stream, enabled=enabled)

    def show(done: int, total: int) -> None:
        progress.show(f"stories: {done}/{total} articles", finished=done >= total,
                      event="stories progress", done=done, total=total)  # fmt: skip

    return show


def _print_summary(report: BackfillReport, stream: TextIO) -> None:
    print(
        f"imported {report.imported}, already known {report.known}, "
        f"failed {len(report.failures)}, skipped {len(report.skipped)} (not news dumps) "
        f"in {time.monotonic() - report.started_at:.1f}s",
        file=stream,
    )
    if report.storied:
        print(f"stories: {report.storied} articles assigned", file=stream)
    for _, reason in report.failures:
        print(f"failed: {reason}", file=stream)
    for _, reason in report.skipped:
        print(f"skipped: {reason}", file=stream)


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher export --out DIR``: write stored articles at their archive paths."""
    fmt: ArchiveFormat | None = args.format
    written: set[Path] = set()
    failed = reused = 0
    with _open(settings) as store:
        for article in store.iter_articles():
            laid_out = archive.convert(article, fmt) if fmt else article
            try:
                path = archive.write_article(args.out, laid_out)
            except ArchiveError as e:
                failed += 1
                print(f"failed: {article.id}: {e}", file=sys.stderr)
                continue
            if path in written:
                reused += 1
                log_event(log, logging.WARNING, "export path reused", path=str(path),
                          article=article.id)  # fmt: skip
            written.add(path)
    print(f"wrote {len(written)} files to {args.out}, failed {failed}")
    if reused:
        print(f"{reused} articles shared a path with an earlier one; the last written is kept")
    return EXIT_PARTIAL if failed else EXIT_OK


def run_daemon(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher run``: poll until a signal; finish the passes in flight and exit 0."""
    del args  # no options of its own
    if not any(s.enabled for s in settings.sources):
        log_event(log, logging.WARNING, "no enabled source", config=str(settings.config_file))
    with _open(settings) as store:
        asyncio.run(_run_daemon(settings, store))
    return EXIT_OK


async def _run_daemon(settings: Settings, store: Store) -> None:
    async with Fetcher(settings.http, settings.rsshub) as fetcher:
        await Daemon(settings, store, fetcher).run()


def run_poll(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher poll [SOURCE...]``: one pass now; exit 1 if any source failed."""
    names: list[str] | None = args.names or None
    unknown = [n for n in names or [] if n not in {s.name for s in settings.sources}]
    if unknown:
        print(f"watcher: no such source: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    with _open(settings) as store:
        results = asyncio.run(_poll(settings, store, names))
    for result in results:
        detail = result.error or f"{len(result.new)} new, {len(result.changed)} changed"
        print(f"{result.source}: {result.outcome}: {detail}")
        for article in result.new:
            print(f"  + {article.title}  {article.link or ''}")
        if result.alerts:
            print(f"  {result.alerts} alerts queued")
    return EXIT_PARTIAL if any(r.outcome == "failed" for r in results) else EXIT_OK


async def _poll(settings: Settings, store: Store, names: list[str] | None) -> list[PassResult]:
    async with Fetcher(settings.http, settings.rsshub) as fetcher:
        return await Daemon(settings, store, fetcher).poll(names)


def run_sources(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher sources``: each source's last check, status, error, failures, next check."""
    del args  # no options of its own
    now = datetime.now(UTC)
    with _open(settings) as store:
        counts = store.count_articles_by_source()
        rows = []
        for source in settings.sources:
            recent = store.recent_published_at(source.name, limit=RECENT_ITEMS)
            silence = find_silence(recent, now)
            state = store.get_source_state(source.name)
            rows.append(_source_row(source, state, counts.get(source.name, 0), silence))
    headers = ("SOURCE", "STATUS", "LAST CHECK", "NEXT CHECK", "FAILS", "ITEMS", "LAST ERROR")
    for line in _table([headers, *rows]):
        print(line)
    return EXIT_OK


def _source_row(
    source: SourceSettings, state: SourceState | None, items: int, silence: Silence | None
) -> tuple[str, ...]:
    status = "disabled" if not source.enabled else _status(state)
    if silence is not None and status.startswith("ok"):
        status = f"silent {silence.quiet_for.days}d"  # nothing new for far past its rhythm
    return (
        source.name,
        status,
        _when(state.last_checked_at if state else None),
        _when(state.next_check_at if state and source.enabled and not state.paused else None),
        str(state.consecutive_failures if state else 0),
        str(items),
        (state.last_error or "")[:80] if state else "",
    )


def _status(state: SourceState | None) -> str:
    if state is None:
        return "never checked"
    if state.paused:
        return "paused"
    if state.consecutive_failures:
        return "failing"
    return "ok" if state.last_status is None else f"ok ({state.last_status})"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def run_check_config(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher check-config``: the config loaded; say what it holds and where data goes."""
    del args  # no options of its own
    print(f"config: {settings.config_file or '(defaults and WATCHER_* environment only)'}")
    print(f"store: {settings.store_url}")
    print(f"archive: {settings.archive_path}")
    enabled = sum(1 for s in settings.sources if s.enabled)
    print(f"sources: {len(settings.sources)} ({enabled} enabled)")
    print(f"rules: {len(settings.rules)}, channels: {len(settings.channels)}")
    print("ok")
    return EXIT_OK


def _since(text: str) -> datetime:
    """``--since``: an ISO date or time (UTC when it names no zone), or a duration ago."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is no date, time or duration") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _since_or_all(text: str) -> datetime | None:
    """``--since`` of ``rules test``: as ``_since``, or ``all`` for every story."""
    return None if text.strip().lower() == "all" else _since(text)


def run_stories(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher stories``: stories and their members, as text or JSON lines."""
    with _open(settings) as store:
        for story in store.iter_stories(since=args.since, min_outlets=args.min_outlets):
            if args.json:
                print(json.dumps(story_json(story), ensure_ascii=False))
            else:
                print("\n".join(story_lines(story)))
    return EXIT_OK


def run_restory(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher restory``: forget every story and assign all stored articles again."""
    del args  # no options of its own
    with _open(settings) as store:
        before, after = restory(store, settings.dedup)
    print(f"stories recomputed: {before} before, {after} now")
    return EXIT_OK


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher alerts``: the outbox, newest last, with each last error; ``--retry``."""
    with _open(settings) as store:
        if args.retry or args.retry_failed:
            return _retry_alerts(store, args.retry)
        counts = store.count_alerts()
        entries = store.list_alerts(state=args.state, channel=args.channel, rule=args.rule,
                                    since=args.since, limit=args.limit or None)  # fmt: skip
    if args.json:
        for entry in entries:
            print(json.dumps(alert_json(entry), ensure_ascii=False))
        return EXIT_OK
    states: tuple[OutboxState, ...] = ("pending", "sending", "sent", "failed")
    print("  ".join(f"{state} {counts.get(state, 0)}" for state in states))
    for line in alert_lines(entries, {c.name for c in settings.channels}):
        print(line)
    return EXIT_OK


def _retry_alerts(store: Store, keys: list[str] | None) -> int:
    """Make the named alerts (by key or a unique prefix of 8+), or every failed one, due now."""
    resolved: list[str] | None = None
    if keys:
        waiting = [e.key for s in ("failed", "pending") for e in store.list_alerts(state=s)]
        resolved = []
        for key in keys:
            found = [k for k in waiting if k.startswith(key.lower())] if len(key) >= 8 else []
            if len(found) != 1:
                print(f"watcher: no one failed or pending alert has the key {key!r}",
                      file=sys.stderr)  # fmt: skip
                return EXIT_USAGE
            resolved += found
    count = store.retry_alerts(resolved, now=datetime.now(UTC))
    print(f"{count} alerts due now (`watcher run` sends them)")
    return EXIT_OK


def run_test_alert(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher test-alert CHANNEL``: send a sample alert now; exit 1 with the exact failure."""
    channel = next((c for c in settings.channels if c.name == args.channel), None)
    if channel is None:
        names = ", ".join(c.name for c in settings.channels) or "none"
        print(f"watcher: no such channel: {args.channel} (configured: {names})", file=sys.stderr)
        return EXIT_USAGE
    alert = sample_alert(channel.name, now=datetime.now(UTC))
    try:
        asyncio.run(_send_now(open_notifier(channel), alert))
    except DeliveryError as e:
        print(f"watcher: test alert not sent: {e}", file=sys.stderr)
        return EXIT_PARTIAL
    print(f"sent a test alert on {channel.name} (idempotency key {alert.key})")
    return EXIT_OK


async def _send_now(notifier: Notifier, alert: Alert) -> None:
    try:
        await notifier.send(alert)
    finally:
        await notifier.aclose()


def run_rules_test(args: argparse.Namespace, settings: Settings) -> int:
    """``watcher rules test``: what the rules would have fired on stored stories, terms marked."""
    rules = compile_rules(settings.rules)
    unknown = sorted(set(args.rule or ()) - {r.name for r in rules})
    if unknown:
        print(f"watcher: no such rule: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    rules = [r for r in rules if not args.rule or r.name in args.rule]
    if not rules:
        print("no rules configured (add [[rules]] to the config)")
        return EXIT_OK
    mark = ("\x1b[7m", "\x1b[27m") if sys.stdout.isatty() else ("[", "]")
    fired: Counter[str] = Counter()
    stories = 0
    with _open(settings) as store:
        for _, firings in replay(store, rules, since=args.since):
            stories += 1
            for firing in firings:
                fired[firing.match.rule] += 1
                print("\n".join(firing_lines(firing, mark)))
    since = f"since {args.since:%Y-%m-%d %H:%M} UTC" if args.since else "in the store"
    per_rule = ", ".join(f"{r.name} {fired[r.name]}" for r in rules)
    print(f"{stories} stories {since}; {fired.total()} alerts would have fired ({per_rule})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
