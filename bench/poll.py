"""Polling throughput: watcher's poll cycle against a bare httpx loop and lemon24/reader.

    python bench/poll.py [--corpus DIR] [--feeds 1000] [--items 20] [--rounds 3]
                         [--distinct] [--no-reader] [--profile FILE] [--stages] [--lean]
                         [--in-flight 16] [--parse-workers 0] [--stored N]

Serves FEEDS RSS feeds of ITEMS items each on 127.0.0.1 from a separate process
(``bench/pollserver.py``: keep-alive, ETag + Last-Modified, 304). The items are real Chinese
news bodies of about 2,000 characters (1,500-2,600 of visible text) read from the shared corpus
with ``watcher.archive``, about 171 KB per feed; every item has its own guid. ``--distinct``
shifts the CJK characters of each reuse of a body so that no two items are one story (by
default a body recurs in about 49 feeds, and stories collapse those copies).

Each round runs, every part in its own fresh process (peak RSS is per process):
    (a) bare loop   httpx.AsyncClient, 16 in flight: GET every URL (median of 3 passes), then
                    the same with If-None-Match / If-Modified-Since, all 304 (median of 3)
    (b) parse cost  parse_feed + normalize_entry over every body, one core, no I/O
    (c) watcher     ``Daemon(settings, store, fetcher).poll()`` with a fresh SQLite store,
                    stories and rules on (RULES below, no alert channel), the archive
                    written: the first cycle (everything new) ...
    (d)             ... and a second cycle in the same process, where everything answers 304
    (e) reader      lemon24/reader (pinned below) in its own venv, bench/.venv-reader (made on
                    first use): ``update_feeds(scheduled=False, workers=16)`` twice

and prints every figure (median and range over the rounds), the goals' ratios (each computed
within a round, then the median), peak RSS, the CPU seconds of each measured process (wall
time well above CPU time is waiting: fsync, the server, the other core's load) and the CPU
seconds the server process spent meanwhile. Goals: issue 3, first cycle <= 1.2 x (bare loop
+ parse cost) and 304 cycle <= 1.2 x the bare conditional loop; issue 7, first cycle <= 19 s or
>= 3x reader, 304 cycle <= 0.8 s or >= 3x reader.

watcher's settings: 16 in flight overall and per host (every feed is on one host:port here;
the default per-host cap of 2 would measure the cap, not watcher; ``--in-flight N`` sets N for
watcher, the bare loop and reader's workers alike), the default 20 s timeout,
logging at info as JSON to a file, ``--parse-workers N`` processes parsing beside the event
loop (their CPU seconds are in watcher's, their peak RSS is shown apart). After the rounds:
    --profile FILE  one more first cycle under cProfile; stats saved to FILE, top printed
    --stages        the first cycle's stages run one after another over the same bodies,
                    without HTTP, each timed on its own (no profiler overhead)
    --lean          one more first cycle with each source polled by its own ``poll([name])``
                    and its PassResult dropped, as ``watcher run`` does: the peak RSS without
                    the 20,000 articles that ``poll()``'s returned results hold
    --stored N      one more lean first cycle over a store that holds N articles already,
                    with their stories (issue 7's memory goal: 100,000): copies of the feeds'
                    items under other ids, one day earlier per copy, so that the days the
                    stories stage loads around the new items hold 60,000 of them. The store is
                    filled in a process of its own; the peak RSS is the daemon's alone

Set up reader by hand instead (the script does the same when the venv is missing):
    python3 -m venv bench/.venv-reader &&
        bench/.venv-reader/bin/pip install reader==3.26 sgmllib3k==1.0.0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import html
import io
import json
import os
import pstats
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DEFAULT_CORPUS = BENCH.parents[1] / "shared" / "corpus"
READER_VENV = BENCH / ".venv-reader"
# reader 3.26 is the version issue 7 measured; its vendored feedparser imports ``sgmllib``,
# which its metadata does not pull in (sgmllib3k provides it)
READER_PINS = ("reader==3.26", "sgmllib3k==1.0.0")
IN_FLIGHT = 16  # requests in flight for every client; --in-flight changes it
PARSE_WORKERS = 0  # watcher's [watcher] parse_workers; --parse-workers changes it
NEWEST = datetime(2026, 11, 20, tzinfo=UTC)  # items are dated one minute apart back from here
CJK_FIRST, CJK_SIZE = 0x4E00, 0x9FFF - 0x4E00 + 1
CJK_STEP = 7919  # a shift by k * CJK_STEP maps the CJK block onto itself, one to one
TIMEOUT_S = {
    "bare": 300, "parse": 900, "watcher": 1800, "stages": 1800, "reader": 1800, "setup": 600,
    "preload": 1800,
}  # fmt: skip

# --- the feeds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """One corpus article as it goes into a feed item."""

    title: str
    link: str | None
    html: str


def corpus_bodies(corpus: Path) -> list[Body]:
    """Corpus articles of 1,500-2,600 visible characters, mostly CJK, in id order."""
    from watcher import archive
    from watcher.backfill import find_dump_files
    from watcher.errors import ArchiveError

    chosen = []
    for dump in find_dump_files([corpus]):
        try:
            article = archive.read_file(dump.path)
        except ArchiveError:
            continue
        text = article.text or ""
        cjk = sum(1 for c in text if CJK_FIRST <= ord(c) < CJK_FIRST + CJK_SIZE)
        if 1500 <= len(text) <= 2600 and cjk >= 0.5 * len(text):
            chosen.append(article)
    chosen.sort(key=lambda a: a.id)
    return [Body(a.title, a.link, a.body_html) for a in chosen]


def shifted(text: str, copy: int) -> str:
    """``text`` with each CJK character moved ``copy`` steps along the CJK block."""
    return text.translate(cjk_shift(copy)) if copy else text


@functools.cache
def cjk_shift(copy: int) -> dict[int, int]:
    """The translation table that moves each CJK character ``copy * CJK_STEP`` steps."""
    shift = copy * CJK_STEP
    return {CJK_FIRST + i: CJK_FIRST + (i + shift) % CJK_SIZE for i in range(CJK_SIZE)}


def cdata(text: str) -> str:
    """``text`` as CDATA sections (a ``]]>`` inside is split across two)."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def feed_xml(index: int, items: Sequence[tuple[int, Body]], distinct: bool, pool: int) -> bytes:
    """One RSS 2.0 feed, as RSSHub writes them: bodies in CDATA descriptions."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0">\n<channel>\n'
        f"<title>bench feed {index:04d}</title>\n<link>https://feed{index:04d}.bench.invalid/</link>\n"
        f"<description>bench feed {index:04d}</description>\n<language>zh-cn</language>\n"
    ]
    for number, body in items:
        copy = number // pool if distinct else 0
        when = format_datetime(NEWEST - timedelta(minutes=number))
        link = f"<link>{html.escape(body.link)}</link>" if body.link else ""
        out.append(
            f"<item><title>{html.escape(shifted(body.title, copy))}</title>{link}"
            f"<description>{cdata(shifted(body.html, copy))}</description>"
            f'<pubDate>{when}</pubDate><guid isPermaLink="false">bench-{index:04d}-{number}</guid>'
            "</item>\n"
        )
    out.append("</channel>\n</rss>\n")
    return "".join(out).encode("utf-8")


def build_feeds(folder: Path, bodies: list[Body], feeds: int, items: int, distinct: bool) -> int:
    """Write ``feeds`` feed files into ``folder``; return their total size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for index in range(feeds):
        numbers = range(index * items, (index + 1) * items)
        chosen = [(n, bodies[n % len(bodies)]) for n in numbers]
        data = feed_xml(index, chosen, distinct, len(bodies))
        (folder / f"feed{index:04d}.xml").write_bytes(data)
        total += len(data)
    return total


# --- the server process ---------------------------------------------------------------------------


def start_server(folder: Path) -> tuple[subprocess.Popen[str], int]:
    """Start ``pollserver.py`` on ``folder``; return the process and its port."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "pollserver.py"), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("listening "):
        process.kill()
        sys.exit(f"the feed server did not start: {line!r}")
    return process, int(line.split()[1])


def stop_server(process: subprocess.Popen[str]) -> None:
    """Stop the server process started by ``start_server``."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def feed_urls(port: int, feeds: int) -> list[str]:
    """The served URL of every feed."""
    return [f"http://127.0.0.1:{port}/feed{i:04d}.xml" for i in range(feeds)]


# --- phases, each run in a child process ----------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Wall and CPU seconds of this process over a ``with`` block."""

    wall_s = cpu_s = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time() + children_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() + children_cpu_s() - self._cpu


def children_cpu_s() -> float:
    """CPU seconds of this process's ended children (a parse pool's workers, once shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def bare_pass(urls: list[str], validators: dict[str, dict[str, str]]) -> list[Any]:
    """GET every URL with a fresh client, 16 in flight; return (status, etag, lm, size) each."""
    import httpx

    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    gate = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def get(url: str) -> tuple[int, str, str, int]:
            async with gate:
                response = await client.get(url, headers=validators.get(url, {}))
            headers = response.headers
            return (response.status_code, headers.get("etag", ""),
                    headers.get("last-modified", ""), len(response.content))  # fmt: skip

        return list(await asyncio.gather(*(get(url) for url in urls)))


def check_statuses(answers: list[Any], status: int) -> None:
    """Stop unless every answer of a bare pass has ``status``."""
    statuses = Counter(a[0] for a in answers)
    if statuses != {status: len(answers)}:
        raise SystemExit(f"bare loop: not every feed answered {status}: {dict(statuses)}")


async def bare_phase(urls: list[str], passes: int = 3) -> dict[str, Any]:
    """(a) and (d)'s baseline: median of ``passes`` full and conditional passes."""
    full, conditional = [], []
    for _ in range(passes):
        with Timer() as timer:
            answers = await bare_pass(urls, {})
        full.append(timer)
    check_statuses(answers, 200)
    validators = {
        url: {"If-None-Match": etag, "If-Modified-Since": modified}
        for url, (_, etag, modified, _) in zip(urls, answers, strict=True)
    }
    for _ in range(passes):
        with Timer() as timer:
            again = await bare_pass(urls, validators)
        conditional.append(timer)
    check_statuses(again, 304)
    return {"full_s": statistics.median(t.wall_s for t in full),
            "full_cpu_s": statistics.median(t.cpu_s for t in full),
            "conditional_s": statistics.median(t.wall_s for t in conditional),
            "conditional_cpu_s": statistics.median(t.cpu_s for t in conditional),
            "bytes": sum(a[3] for a in answers), "rss_mib": peak_rss_mib()}  # fmt: skip


def bench_source(index: int, url: str) -> Any:
    """The SourceSettings of feed ``index`` as the watcher config writes it."""
    from watcher.settings import SourceSettings

    return SourceSettings(name=f"feed{index:04d}", url=url, outlet=f"outlet{index:04d}")


def parse_phase(folder: Path, urls: list[str]) -> dict[str, Any]:
    """(b): parse_feed + normalize_entry over every feed body, one core, reads excluded."""
    from watcher.normalize import normalize_entry
    from watcher.parse import parse_feed

    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    now = datetime.now(UTC)
    parse_s = normalize_s = 0.0
    articles = 0
    cpu_start = time.process_time()
    for index, url in enumerate(urls):
        body = (folder / f"feed{index:04d}.xml").read_bytes()
        source = bench_source(index, url)
        start = time.perf_counter()
        feed = parse_feed(body, headers, url)
        parsed = time.perf_counter()
        done = [normalize_entry(entry, feed, source, now=now) for entry in feed.entries]
        normalize_s += time.perf_counter() - parsed
        parse_s += parsed - start
        articles += len(done)
    return {"parse_s": parse_s, "normalize_s": normalize_s, "total_s": parse_s + normalize_s,
            "cpu_s": time.process_time() - cpu_start, "articles": articles,
            "rss_mib": peak_rss_mib()}  # fmt: skip


RULES = """
[[rules]]
name = "taiwan"
any = ["台湾", "台海", "蔡英文"]
[[rules]]
name = "hongkong"
any = ["香港", "港府"]
exclude = ["广告"]
[[rules]]
name = "pandemic"
any = ["疫情", "新冠", "封控", "核酸"]
[[rules]]
name = "ukraine"
any = ["乌克兰", "Ukraine"]
all = ["俄罗斯"]
[[rules]]
name = "courts"
any = ["法院", "判决", "起诉"]
fields = ["title"]
[[rules]]
name = "press"
any = ["记者", "新闻自由", "审查"]
min_outlets = 3
[[rules]]
name = "economy"
any = ["经济", "GDP", "通胀", "失业"]
[[rules]]
name = "protest"
regex = ["抗议|示威|游行"]
[[rules]]
name = "elections"
all = ["选举", "投票"]
[[rules]]
name = "xinjiang"
any = ["新疆", "维吾尔", "Uyghur"]
"""
"""Ten keyword rules, no channel: matches are recorded, nothing is sent."""


def watcher_config(folder: Path, urls: list[str]) -> Path:
    """A TOML config with one source per URL and RULES, data under ``folder``."""
    lines = [
        f'[watcher]\ndata_dir = "{(folder / "data").as_posix()}"\n'
        f'log_level = "info"\nlog_format = "json"\nparse_workers = {PARSE_WORKERS}\n',
        f"[http]\nmax_concurrency = {IN_FLIGHT}\nper_host_concurrency = {IN_FLIGHT}\n",
        RULES,
    ]
    for index, url in enumerate(urls):
        lines.append(
            f'[[sources]]\nname = "feed{index:04d}"\nurl = "{url}"\n'
            f'outlet = "outlet{index:04d}"\ninterval = "10m"\n'
        )
    config = folder / "watcher.toml"
    config.write_text("".join(lines), encoding="utf-8")
    return config


async def watcher_cycles(folder: Path, urls: list[str], mode: str | None) -> dict[str, Any]:
    """(c) and (d): two cycles over a fresh store in one process (``mode``: see ``poll_all``)."""
    from watcher.daemon import Daemon
    from watcher.fetch import Fetcher
    from watcher.settings import load_settings
    from watcher.store import open_store

    settings = load_settings(watcher_config(folder, urls), env={})
    profiler = cProfile.Profile() if mode is not None and mode != "lean" else None
    figures: dict[str, Any] = {}
    with open_store(settings.store_url) as store:
        async with Fetcher(settings.http, settings.rsshub) as fetcher:
            daemon = Daemon(settings, store, fetcher)
            with Timer() as first:
                figures["first"] = await poll_all(daemon, mode == "lean", profiler)
            figures["rss_first_mib"] = peak_rss_mib()
            with Timer() as second:
                figures["second"] = await poll_all(daemon, mode == "lean", None)
        figures.update(articles=store.count_articles(), stories=store.count_stories())
    if profiler is not None and mode is not None:
        profiler.dump_stats(mode)
    figures.update(first_s=first.wall_s, first_cpu_s=first.cpu_s, second_s=second.wall_s,
                   second_cpu_s=second.cpu_s, rss_mib=peak_rss_mib(),
                   rss_worker_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                   archive_files=sum(1 for _ in settings.archive_path.rglob("*.md")))  # fmt: skip
    return figures


async def poll_all(daemon: Any, lean: bool, profiler: cProfile.Profile | None) -> dict[str, int]:
    """One cycle over every source, within the time limit; the outcomes counted.

    ``daemon.poll()`` returns every PassResult (with its new articles) at the end; ``lean``
    polls each source on its own instead, all at once, and keeps only its counts.
    """

    async def one(name: str) -> Counter[str]:
        return outcomes(await daemon.poll([name]))

    if profiler is not None:
        profiler.enable()
    try:
        async with asyncio.timeout(TIMEOUT_S["watcher"] / 2):
            if not lean:
                return dict(outcomes(await daemon.poll()))
            names = [s.name for s in daemon.settings.sources]
            return dict(sum(await asyncio.gather(*map(one, names)), Counter()))
    finally:
        if profiler is not None:
            profiler.disable()


def outcomes(results: list[Any]) -> Counter[str]:
    """Counts of pass outcomes, new articles, duplicates, alerts and errors of one cycle."""
    counts = Counter(r.outcome for r in results)
    counts["new"] = sum(len(r.new) for r in results)
    counts["duplicates"] = sum(r.duplicates for r in results)
    counts["alerts"] = sum(getattr(r, "alerts", 0) for r in results)
    counts["entry_errors"] = sum(len(r.entry_errors) for r in results)
    return counts


def watcher_phase(folder: Path, urls: list[str], mode: str | None) -> dict[str, Any]:
    """Run (c) and (d) with watcher's logging going to a file in ``folder``."""
    from watcher.log import setup_logging

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "watcher.log").open("w", encoding="utf-8") as log:
        setup_logging("info", "json", stream=log)
        return asyncio.run(watcher_cycles(folder, urls, mode))


class Stages:
    """Seconds spent per stage, added up over ``with stages("name"):`` blocks."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def __call__(self, name: str) -> Stages:
        """Time the next ``with`` block under ``name``."""
        self._name = name
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        took = time.perf_counter() - self._start
        self.spent[self._name] = self.spent.get(self._name, 0.0) + took


def stages_phase(folder: Path, feeds_dir: Path, urls: list[str]) -> dict[str, Any]:
    """(f): the first cycle's stages in the pipeline's order, feed after feed, no HTTP."""
    from watcher.pipeline import flush_archive
    from watcher.settings import load_settings
    from watcher.store import open_store
    from watcher.stories import StoryAssigner

    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings(watcher_config(folder, urls), env={})
    stage = Stages()
    with Timer() as whole, open_store(settings.store_url) as store:
        assigner = StoryAssigner(store, settings.dedup)
        enqueue = alerts_enqueuer(store, settings)
        flushed = time.monotonic()
        for index, source in enumerate(settings.sources):
            body = (feeds_dir / f"feed{index:04d}.xml").read_bytes()
            one_feed_stages(stage, store, settings, source, body, assigner, enqueue)
            if time.monotonic() - flushed >= 5.0 or index == len(settings.sources) - 1:
                with stage("archive: write_articles"):
                    flush_archive(store, settings.archive_path)
                flushed = time.monotonic()
    return {**{k: round(v, 3) for k, v in stage.spent.items()}, "total_s": whole.wall_s,
            "cpu_s": whole.cpu_s, "rss_mib": peak_rss_mib()}  # fmt: skip


def alerts_enqueuer(store: Any, settings: Any) -> Callable[[list[Any]], object] | None:
    """The rules stage as the daemon runs it, or None when this tree has none yet."""
    try:
        from watcher.alerting import Alerting
        from watcher.rules import compile_rules
    except ImportError:
        return None
    return Alerting(store, compile_rules(settings.rules)).enqueue


def one_feed_stages(
    stage: Stages,
    store: Any,
    settings: Any,
    source: Any,
    body: bytes,
    assigner: Any,
    enqueue: Callable[[list[Any]], object] | None,
) -> None:
    """One feed through parse, normalize, store, archive, stories, rules and its state."""
    from watcher import archive
    from watcher.models import SourceState
    from watcher.normalize import normalize_entry
    from watcher.parse import parse_feed

    now = datetime.now(UTC)
    with stage("parse_feed"):
        feed = parse_feed(body, {"content-type": "application/rss+xml; charset=utf-8"}, source.url)
    with stage("normalize_entry"):
        by_id = {a.id: a for a in (normalize_entry(e, feed, source, now=now) for e in feed.entries)}
    with contextlib.ExitStack() as batch:  # one transaction per pass, as the pipeline does
        if hasattr(store, "batch"):
            batch.enter_context(store.batch("bench pass"))
        with stage("store: known ids + add articles + state"):
            known = store.known_ids(by_id)
            new = [a for a in by_id.values() if a.id not in known]
        with stage("archive: write_articles"):  # unflushed, noted; flushed every 5 s
            archive.write_articles(settings.archive_path, new, durable=False)
            store.add_archive_pending(a.id for a in new)
        with stage("store: known ids + add articles + state"):
            store.add_articles(new)
        with stage("stories: assign"):
            assigner.assign(new)
        if enqueue is not None:
            with stage("rules: enqueue"):
                enqueue(new)
        with stage("store: known ids + add articles + state"):
            store.get_source_state(source.name)
            store.put_source_state(SourceState(name=source.name, last_checked_at=now))
            batch.close()  # the commit, timed with the store


def preload_phase(folder: Path, feeds_dir: Path, urls: list[str], count: int) -> dict[str, Any]:
    """Fill the store of ``folder`` with ``count`` articles and their stories (no archive)."""
    from watcher.normalize import normalize_entry
    from watcher.parse import parse_feed
    from watcher.settings import load_settings
    from watcher.store import open_store
    from watcher.stories import StoryAssigner

    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings(watcher_config(folder, urls), env={})
    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    now = datetime.now(UTC)
    stored = 0
    with Timer() as took, open_store(settings.store_url) as store:
        assigner = StoryAssigner(store, settings.dedup)
        copy = 0
        while stored < count:
            copy += 1
            for index, source in enumerate(settings.sources):
                if stored >= count:
                    break
                body = (feeds_dir / f"feed{index:04d}.xml").read_bytes()
                feed = parse_feed(body, headers, urls[index])
                items = [normalize_entry(e, feed, source, now=now) for e in feed.entries]
                copies = [a.model_copy(update={
                    "id": f"{a.id}~{copy}",
                    "published_at": a.published_at - timedelta(days=copy) if a.published_at
                    else None,
                }) for a in items[: count - stored]]  # fmt: skip
                with store.batch("preload"):
                    store.add_articles(copies)
                    assigner.assign(copies)
                stored += len(copies)
        figures = {"articles": store.count_articles(), "stories": store.count_stories()}
    return {**figures, "preload_s": took.wall_s}


def run_phase(args: argparse.Namespace) -> None:
    """The child side: run one phase and print its figures as the last line (JSON)."""
    urls = args.urls.read_text(encoding="utf-8").split()
    if args.phase == "bare":
        figures = asyncio.run(bare_phase(urls))
    elif args.phase == "parse":
        figures = parse_phase(args.feeds_dir, urls)
    elif args.phase == "stages":
        figures = stages_phase(args.work, args.feeds_dir, urls)
    elif args.phase == "preload":
        figures = preload_phase(args.work, args.feeds_dir, urls, int(args.mode))
    else:  # watcher; --mode is a profile file, "lean", or absent
        figures = watcher_phase(args.work, urls, args.mode)
    print(json.dumps(figures))


# --- the parent: rounds, reader, report -----------------------------------------------------------


def child(command: list[str], timeout_s: float, what: str) -> dict[str, Any] | str:
    """Run ``command``; its last stdout line as JSON, or a string saying why there is none."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"{what}: no answer within {timeout_s:.0f} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return f"{what}: exit {done.returncode}: " + " | ".join(tail)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@dataclass(frozen=True)
class Run:
    """Where a round's phases find the feeds, their URLs, the server, and room to work."""

    root: Path
    feeds_dir: Path
    urls: Path
    server_pid: int


def phase(run: Run, name: str, work: Path, mode: str | None = None) -> Any:
    """Run one watcher-side phase in a fresh interpreter; add the server's CPU seconds."""
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--work",
               str(work), "--feeds-dir", str(run.feeds_dir), "--urls", str(run.urls),
               "--in-flight", str(IN_FLIGHT), "--parse-workers", str(PARSE_WORKERS)]  # fmt: skip
    if mode is not None:
        command += ["--mode", mode]
    return with_server_cpu(run, lambda: child(command, TIMEOUT_S[name], name))


def with_server_cpu(run: Run, go: Callable[[], dict[str, Any] | str]) -> dict[str, Any] | str:
    """``go()``'s figures plus ``server_cpu_s``, the server's CPU seconds while it ran."""
    before = process_cpu_s(run.server_pid)
    figures = go()
    if isinstance(figures, dict):
        figures["server_cpu_s"] = process_cpu_s(run.server_pid) - before
    return figures


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reader_python() -> Path | str:
    """The reader venv's python, made or completed on first use; or why there is none."""
    python = READER_VENV / "bin" / "python"
    check = [str(python), "-c", "import reader, sgmllib"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=120).returncode == 0:
        return python
    print(f"setting up {READER_VENV} with {' '.join(READER_PINS)} ...", flush=True)
    steps = [[str(python), "-m", "pip", "install", "-q", *READER_PINS], check]
    if not python.exists():
        steps.insert(0, [sys.executable, "-m", "venv", str(READER_VENV)])
    for step in steps:
        failed = setup_step(step)
        if failed is not None:
            return failed
    return python


def setup_step(command: list[str]) -> str | None:
    """Run one step of the reader venv's setup; None when it worked, else why not."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S["setup"])
    except subprocess.TimeoutExpired:
        return f"{' '.join(command)} took longer than {TIMEOUT_S['setup']} s"
    if done.returncode != 0:
        return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
    return None


def reader_phase(run: Run, python: Path, work: Path) -> dict[str, Any] | str:
    """(e): reader's two updates in its own venv, on a fresh database."""
    work.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(BENCH / "pollreader.py"), str(work / "reader.sqlite"),
               str(run.urls), "--workers", str(IN_FLIGHT)]  # fmt: skip
    return with_server_cpu(run, lambda: child(command, TIMEOUT_S["reader"], "reader"))


def one_round(number: int, run: Run, reader: Path | None) -> dict[str, Any]:
    """Run every phase once; return the figures by phase (a string where one failed)."""
    figures: dict[str, Any] = {}
    figures["bare"] = phase(run, "bare", run.root)
    figures["parse"] = phase(run, "parse", run.root)
    work = run.root / f"watcher-{number}"
    figures["watcher"] = phase(run, "watcher", work)
    shutil.rmtree(work, ignore_errors=True)
    if reader is not None:
        figures["reader"] = reader_phase(run, reader, run.root / f"reader-{number}")
        shutil.rmtree(run.root / f"reader-{number}", ignore_errors=True)
    for name, value in figures.items():
        print(f"  round {number} {name}: {shown(value)}", flush=True)
    return figures


def shown(figures: dict[str, Any] | str) -> dict[str, Any] | str:
    """Figures with floats to 3 decimals, for the per-round lines."""
    if isinstance(figures, str):
        return figures
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


# --- the report -----------------------------------------------------------------------------------


def values(rounds: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> list[float]:
    """``get`` of every round where the phases it reads succeeded."""
    found = []
    for figures in rounds:
        try:
            found.append(get(figures))
        except (KeyError, TypeError):  # a phase failed (its entry is a string) or was skipped
            continue
    return found


def spread(found: list[float], unit: str = "s") -> str:
    """``median (min-max)`` of ``found``, or n/a."""
    if not found:
        return "n/a"
    middle = statistics.median(found)
    if len(found) == 1:
        return f"{middle:.2f} {unit}"
    return f"{middle:.2f} {unit} ({min(found):.2f}-{max(found):.2f})"


FIGURES: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
    ("(a) bare httpx loop, full GET", lambda f: f["bare"]["full_s"], "s"),
    ("      its process's CPU time", lambda f: f["bare"]["full_cpu_s"], "s"),
    ("(b) parse cost: parse_feed + normalize_entry", lambda f: f["parse"]["total_s"], "s"),
    ("      of which parse_feed", lambda f: f["parse"]["parse_s"], "s"),
    ("      of which normalize_entry", lambda f: f["parse"]["normalize_s"], "s"),
    ("(c) watcher first cycle", lambda f: f["watcher"]["first_s"], "s"),
    ("      its process's CPU time", lambda f: f["watcher"]["first_cpu_s"], "s"),
    ("(d) bare loop, conditional GET (all 304)", lambda f: f["bare"]["conditional_s"], "s"),
    ("      its process's CPU time", lambda f: f["bare"]["conditional_cpu_s"], "s"),
    ("(d) watcher second cycle (all 304)", lambda f: f["watcher"]["second_s"], "s"),
    ("      its process's CPU time", lambda f: f["watcher"]["second_cpu_s"], "s"),
    ("(e) reader first update", lambda f: f["reader"]["first_s"], "s"),
    ("      its process's CPU time", lambda f: f["reader"]["first_cpu_s"], "s"),
    ("(e) reader second update (all 304)", lambda f: f["reader"]["second_s"], "s"),
    ("server CPU during the watcher phase (c+d)", lambda f: f["watcher"]["server_cpu_s"], "s"),
    ("server CPU during the reader phase (e)", lambda f: f["reader"]["server_cpu_s"], "s"),
    ("peak RSS watcher after first cycle", lambda f: f["watcher"]["rss_first_mib"], "MiB"),
    ("peak RSS watcher after both cycles", lambda f: f["watcher"]["rss_mib"], "MiB"),
    ("peak RSS reader after both updates", lambda f: f["reader"]["rss_mib"], "MiB"),
    ("peak RSS bare loop", lambda f: f["bare"]["rss_mib"], "MiB"),
    ("peak RSS parse only", lambda f: f["parse"]["rss_mib"], "MiB"),
]

RATIOS: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
    ("issue 3: first cycle / (bare + parse)",
     lambda f: f["watcher"]["first_s"] / (f["bare"]["full_s"] + f["parse"]["total_s"]), "<= 1.2"),
    ("issue 3: 304 cycle / bare conditional",
     lambda f: f["watcher"]["second_s"] / f["bare"]["conditional_s"], "<= 1.2"),
    ("issue 7: reader first / watcher first",
     lambda f: f["reader"]["first_s"] / f["watcher"]["first_s"], ">= 3 (or first <= 19 s)"),
    ("issue 7: reader 304 / watcher 304",
     lambda f: f["reader"]["second_s"] / f["watcher"]["second_s"], ">= 3 (or 304 <= 0.8 s)"),
    ("first cycle / bare full GET",
     lambda f: f["watcher"]["first_s"] / f["bare"]["full_s"], "(context)"),
    ("first cycle / parse cost",
     lambda f: f["watcher"]["first_s"] / f["parse"]["total_s"], "(context)"),
]  # fmt: skip


def report(rounds: list[dict[str, Any]]) -> None:
    """Print the figures, ratios and checks over every round."""
    print(f"\nmedian (min-max) over {len(rounds)} round(s):")
    for label, get, unit in FIGURES:
        print(f"  {label:46} {spread(values(rounds, get), unit)}")
    print("\nratios (each within its round):")
    for label, get, goal in RATIOS:
        print(f"  {label:46} {spread(values(rounds, get), 'x'):24} goal {goal}")
    last = rounds[-1]
    for name in ("bare", "parse", "watcher", "reader"):
        if isinstance(last.get(name), str):
            print(f"  {name} failed or skipped: {last[name]}")
    if isinstance(last.get("watcher"), dict):
        w = last["watcher"]
        print(f"\nwatcher (last round): {w['articles']} articles, {w['stories']} stories, "
              f"{w['archive_files']} archive files; first cycle {w['first']}; "
              f"second {w['second']}")  # fmt: skip
    if isinstance(last.get("reader"), dict):
        r = last["reader"]
        print(f"reader {r['version']} (last round): {r['entries']} entries, "
              f"{r['errors']} feeds with errors")  # fmt: skip


def print_profile(path: Path, top: int = 30) -> None:
    """The top functions of a saved cProfile, by own time and by cumulative time."""
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        print(f"\n--- profile of watcher's first cycle, top {top} by {order} ---")
        print(out.getvalue().split("\n", 6)[-1].rstrip())


def prepare(args: argparse.Namespace, root: Path) -> tuple[Path, int]:
    """Write the feeds under ``root``; return their folder and total size."""
    started = time.perf_counter()
    bodies = corpus_bodies(args.corpus)
    if len(bodies) < args.items:
        sys.exit(f"only {len(bodies)} corpus articles of about 2,000 characters in {args.corpus}")
    feeds_dir = root / "feeds"
    size = build_feeds(feeds_dir, bodies, args.feeds, args.items, args.distinct)
    kind = "distinct" if args.distinct else "reused"
    took = time.perf_counter() - started
    per_feed = size / args.feeds / 1000
    print(f"{args.feeds} feeds x {args.items} items from {len(bodies)} corpus bodies ({kind}): "
          f"{per_feed:.0f} KB per feed, {size / 1e6:.0f} MB, built in {took:.1f} s")  # fmt: skip
    return feeds_dir, size


def run_rounds(args: argparse.Namespace, run: Run) -> None:
    """Every round, the report, then the extra runs asked for."""
    reader: Path | None = None
    if not args.no_reader:
        found = reader_python()
        if isinstance(found, str):
            print(f"reader skipped: {found}")
        else:
            reader = found
    rounds = [one_round(n + 1, run, reader) for n in range(args.rounds)]
    report(rounds)
    if args.lean:
        lean = phase(run, "watcher", run.root / "watcher-lean", "lean")
        print(f"\nlean cycles (each source polled on its own, results dropped): {shown(lean)}")
    if args.stored:
        work = run.root / "watcher-stored"
        preloaded = phase(run, "preload", work, str(args.stored))
        print(f"\nstore filled beforehand: {shown(preloaded)}", flush=True)
        if not isinstance(preloaded, str):
            stored = phase(run, "watcher", work, "lean")
            print(f"lean cycles over that store (peak RSS: the daemon's): {shown(stored)}")
    if args.stages:
        stages = phase(run, "stages", run.root / "watcher-stages")
        print(f"\nstages one after another, no HTTP (seconds): {shown(stages)}")
    if args.profile is not None:
        print(f"\nprofiling one more first cycle into {args.profile} ...", flush=True)
        profiled = phase(run, "watcher", run.root / "watcher-profile", str(args.profile))
        if isinstance(profiled, str):
            print(profiled)
        else:
            print(f"profiled first cycle: {profiled['first_s']:.2f} s (cProfile overhead in it)")
            print_profile(args.profile)


def git(*args: str) -> str:
    """The output of one git command run in the bench folder."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=BENCH, timeout=30)
    return done.stdout


def tree_state() -> str:
    """The commit this run measured, and how many files differed from it."""
    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", "watcher")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    return f"{head or 'unknown'}, {len(dirty.splitlines())} files under watcher/ changed"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distinct", action="store_true", help="no two items one story")
    parser.add_argument("--no-reader", action="store_true", help="skip lemon24/reader")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="for every client")
    parser.add_argument("--parse-workers", type=int, default=PARSE_WORKERS,
                        help="watcher's parse pool size")  # fmt: skip
    parser.add_argument("--profile", type=Path, help="cProfile one more first cycle into FILE")
    parser.add_argument("--stages", action="store_true", help="time each stage, no HTTP")
    parser.add_argument("--lean", action="store_true", help="one more cycle, results dropped")
    parser.add_argument("--stored", type=int, default=0,
                        help="one more lean cycle over a store of N articles")  # fmt: skip
    # the child side (one phase in a fresh interpreter)
    choices = ["bare", "parse", "watcher", "stages", "preload"]
    parser.add_argument("--phase", choices=choices, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--feeds-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--urls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.feeds <= 10_000 or not 1 <= args.items <= 200 or not 1 <= args.rounds <= 10:
        parser.error("bounds: 1-10000 feeds, 1-200 items, 1-10 rounds")
    if not 1 <= args.in_flight <= 100:
        parser.error("bounds: 1-100 in flight")
    if not 0 <= args.stored <= 1_000_000:
        parser.error("bounds: 0-1000000 stored articles")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Build the feeds, serve them, run the rounds, print the report."""
    args = parse_args(argv)
    global IN_FLIGHT, PARSE_WORKERS  # one setting for every phase, parent and children
    IN_FLIGHT, PARSE_WORKERS = args.in_flight, args.parse_workers
    if args.phase is not None:
        run_phase(args)
        return
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus} (give --corpus)")
    with tempfile.TemporaryDirectory(prefix="watcher-bench-poll-") as tmp:
        root = Path(tmp)
        feeds_dir, _ = prepare(args, root)
        server, port = start_server(feeds_dir)
        try:
            urls_file = root / "urls.txt"
            urls_file.write_text("\n".join(feed_urls(port, args.feeds)) + "\n", encoding="utf-8")
            print(f"serving on 127.0.0.1:{port} from pid {server.pid}; {IN_FLIGHT} in flight")
            print(f"watcher tree: {tree_state()}\n", flush=True)
            run_rounds(args, Run(root, feeds_dir, urls_file, server.pid))
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
