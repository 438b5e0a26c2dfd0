"""One source, one pass: fetch -> parse -> normalize -> archive -> store (-> stories -> rules).

    state   = store.source_state(source)
    result  = await fetch(source, state)             FetchError -> failure recorded, back-off
    if result is 304, or its body hashes as last time:
        state = success (validators kept), next check scheduled; done
    feed, articles = parse_entries(body, ...)        parse + normalize, in a process pool when the
                                                     daemon has one; ParseError -> failure recorded;
                                                     an entry that fails is logged and skipped
    new, changed = split by id against the store     the same item again is no new article
    (with a parse pool: the new articles' files, rendered by the worker while parsing, are
     written by a worker too, and only noted in the transaction below)
    with store.batch():                              ONE transaction for all that follows
        archive.write_articles(new + changed)        atomic, before the commit, so a kill
                                                     never leaves a stored article without
                                                     its file; not flushed: their ids go
                                                     into archive_pending, and flush_archive
                                                     (every few seconds) flushes many passes'
                                                     files at once; repair_archive rewrites
                                                     them after a crash
        store.add_articles(new); store.upsert(changed)
        assign_stories(new)                          near-duplicates join their story
        enqueue_alerts(new)                          rules over their stories -> the outbox;
                                                     nothing is sent here
        state = success, next check from interval, ttl, max-age, skipHours/Days
    (rolled back: forget_stories(new), so the stories stage holds nothing unstored)

Never raises for a source's own trouble: a bad feed becomes the source's error state, and the
other sources go on. Does not schedule (the daemon does) and reads no clock (``now`` is given).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import select
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from watcher import archive
from watcher.dedupe import Signed, sign_articles
from watcher.errors import ArchiveError, FetchError, ParseError, StoreError
from watcher.log import log_event
from watcher.models import Article, FetchResult, ParsedFeed, SourceState
from watcher.normalize import normalize_entry
from watcher.parse import parse_feed
from watcher.polling import (
    PollPolicy,
    next_check_after_success,
    state_after_failure,
    state_after_success,
)
from watcher.rules import fold_article
from watcher.settings import DedupSettings, SourceSettings
from watcher.store import Store

log = logging.getLogger("watcher.pipeline")

Fetch = Callable[[SourceSettings, SourceState], Awaitable[FetchResult]]
"""Fetch one source given its state (validators, current URL); raises FetchError."""

Outcome = Literal["updated", "not_modified", "unchanged", "failed"]


@dataclass(frozen=True)
class Saved:
    """An article a pass stored, as its result names it (the article itself is in the store).

    A result keeps no whole Article: a cycle over 1,000 feeds would hold all 20,000 of them.
    """

    id: str
    title: str
    link: str | None

    @classmethod
    def of(cls, article: Article) -> Saved:
        """The name of a stored article."""
        return cls(article.id, article.title, article.link)


@dataclass
class PassResult:
    """What one pass over one source did, and the source's state after it (None: not saved)."""

    source: str
    outcome: Outcome
    new: list[Saved] = field(default_factory=list)
    changed: list[Saved] = field(default_factory=list)
    state: SourceState | None = None
    error: str | None = None
    entry_errors: list[str] = field(default_factory=list)
    duplicates: int = 0  # new articles that joined an existing story
    alerts: int = 0  # alerts queued for the stories of the new articles


AssignStories = Callable[[list[Article], Signed | None], set[str]]
"""Put newly stored articles into stories (with the signatures the parse made, if any);
return the ids of those that start a story."""

Folded = Mapping[str, tuple[str, str]]
"""Articles' title and text folded for the rules (``rules.fold_article``), by article id."""

EnqueueAlerts = Callable[[list[Article], Folded], int]
"""Run the rules over the stories of newly stored, assigned articles; return alerts queued.

The folded title and text of those the parse folded already are given beside them.

It only queues (the outbox delivers), so a channel that is down never fails a pass.
"""


@dataclass(frozen=True)
class Parsed:
    """A feed body read and its entries normalized: the CPU-bound part of a pass."""

    feed: ParsedFeed  # without its entries: they are ``articles`` now
    articles: list[Article]
    entry_errors: list[str]
    signed: Signed | None = None  # the articles' story signatures, when dedup was given
    folded: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Each article's title and text folded for the rules, when asked for (by article id)."""
    files: dict[str, tuple[Path, bytes]] = field(default_factory=dict)
    """Each article's archive file and bytes, when an archive root was given (by article id;
    an article whose path is at fault has none: the pass writes it, and reports the fault)."""


def parse_entries(
    body: bytes,
    headers: dict[str, str],
    url: str,
    source: SourceSettings,
    now: datetime,
    dedup: DedupSettings | None = None,
    archive_root: Path | None = None,
    fold_for_rules: bool = False,
) -> Parsed:
    """Parse a feed body and normalize its entries; ParseError if it is no feed.

    With ``dedup`` the articles are signed for the stories stage too, with ``archive_root``
    their archive files are rendered, and with ``fold_for_rules`` their title and text are
    folded for the rules (in the same worker, so the event loop's process does not). A plain
    function of picklable arguments, so a process pool can run it.
    """
    feed = parse_feed(body, headers, url)
    articles: list[Article] = []
    errors: list[str] = []
    for index, entry in enumerate(feed.entries):
        try:
            articles.append(normalize_entry(entry, feed, source, now=now))
        except (ValueError, ParseError) as e:
            errors.append(f"entry {index}: {e}")
    unique = list({a.id: a for a in articles}.values())  # an item listed twice yields one
    signed = sign_articles(unique, dedup) if dedup is not None else None
    files = _plan_files(archive_root, unique) if archive_root is not None else {}
    folded = {a.id: fold_article(a) for a in unique} if fold_for_rules else {}
    feed = feed.model_copy(update={"entries": []})
    return Parsed(feed, unique, errors, signed, folded=folded, files=files)


def _plan_files(root: Path, articles: list[Article]) -> dict[str, tuple[Path, bytes]]:
    try:  # all at once, the usual case: each folder is resolved once
        return dict(zip((a.id for a in articles), archive.plan_files(root, articles), strict=True))
    except ArchiveError:  # one at a time, to leave out only those at fault
        pass
    planned: dict[str, tuple[Path, bytes]] = {}
    for article in articles:
        try:
            (planned[article.id],) = archive.plan_files(root, [article])
        except ArchiveError:  # left to the pass, which writes it itself and reports the fault
            continue
    return planned


def write_archive_files(root: Path, planned: list[tuple[Path, bytes]]) -> None:
    """Write planned archive files, not flushed (a plain function: a parse worker runs it)."""
    archive.write_files(root, planned, durable=False)


def prepare_worker(daemon_pid: int) -> None:
    """Set up a process of a parse pool: it exits as soon as the daemon ``daemon_pid`` is gone.

    A pool worker blocks reading its task queue, whose write end it holds itself, and it
    holds the pool forkserver's liveness pipe too: killed with SIGKILL, the daemon would leave
    both running, keeping its stdout open. A thread of the worker waits for the daemon's exit
    (a pidfd on Linux, else a check each second) and ends the worker.
    """
    threading.Thread(target=_exit_with, args=(daemon_pid,), daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+: look each second
        while _is_running(pid):
            time.sleep(1.0)
    else:
        select.select([handle], [], [])  # readable once the process has exited
    os._exit(0)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's: not ours any more
        return True
    return True


RunCpu = Callable[..., Awaitable[Parsed]]
"""Runs ``parse_entries`` with its arguments, in a process pool or right here."""

WriteFiles = Callable[[Path, list[tuple[Path, bytes]]], Awaitable[None]]
"""Runs ``write_archive_files`` in a process pool."""


async def run_here(func: Callable[..., Parsed], *args: object) -> Parsed:
    """Run a CPU-bound step in this process (the default: no pool)."""
    return func(*args)


@dataclass(frozen=True)
class PassContext:
    """What every pass needs besides its source: the store, where the archive goes, the clock.

    A pass's writes are one store transaction (``store.batch``): the articles, their stories
    (``assign_stories``), the alerts queued (``enqueue_alerts``) and the source's state are
    stored together or not at all. The archive files are written before that commit, so a
    kill never leaves a stored article without its file; with ``archive_first_only`` only the
    articles that start a story are written, after the assignment and still before the commit.
    """

    store: Store
    fetch: Fetch
    archive_root: Path | None
    now: datetime
    rng: random.Random
    assign_stories: AssignStories | None = None
    archive_first_only: bool = False
    enqueue_alerts: EnqueueAlerts | None = None
    run_cpu: RunCpu = run_here
    forget_stories: Callable[[list[str]], None] | None = None
    """Undo ``assign_stories`` for these article ids (their pass was rolled back)."""
    dedup: DedupSettings | None = None
    """How to sign articles for ``assign_stories`` while parsing (else it signs them)."""
    write_files: WriteFiles | None = None
    """With a parse pool: the parse renders the archive files and this writes the new ones
    (off the event loop's process), before the pass's transaction."""
    fold_for_rules: bool = False
    """The parse folds each article's title and text for ``enqueue_alerts`` (with a parse
    pool and rules: the folding is most of the rules' cost)."""

    @property
    def first_only(self) -> bool:
        """Only the articles that start a story are archived (after their assignment)."""
        return self.archive_first_only and self.assign_stories is not None


async def poll_source(source: SourceSettings, policy: PollPolicy, ctx: PassContext) -> PassResult:
    """Run one pass over ``source``; its failures end up in its state, never as exceptions."""
    state = ctx.store.get_source_state(source.name) or SourceState(name=source.name)
    try:
        result = await ctx.fetch(source, state)
    except FetchError as e:
        return _failed(source, state, policy, ctx, e.message, e.status, e.retry_after_s)
    if result.not_modified or result.body is None:
        return _done(source, state, result, policy, ctx, "not_modified", body_hash=None)
    body_hash = hashlib.blake2b(result.body, digest_size=16).hexdigest()
    if body_hash == state.body_hash:
        return _done(source, state, result, policy, ctx, "unchanged", body_hash=body_hash)
    try:
        parsed = await ctx.run_cpu(
            parse_entries, result.body, result.headers, result.final_url, source, ctx.now,
            ctx.dedup if ctx.assign_stories is not None else None, _files_root(ctx),
            ctx.fold_for_rules and ctx.enqueue_alerts is not None,
        )  # fmt: skip
    except ParseError as e:
        return _failed(source, state, policy, ctx, e.message, result.status, None)
    next_at = next_check_after_success(policy, ctx.now, ctx.rng, result=result, feed=parsed.feed)
    after = state_after_success(
        state, result, next_at, body_hash=body_hash, configured_url=source.url
    )
    new, changed = _split(parsed, ctx)
    written = [a.id for a in new if a.id in parsed.files]
    if written and ctx.write_files is not None and ctx.archive_root is not None:
        try:
            await ctx.write_files(ctx.archive_root, [parsed.files[i] for i in written])
        except ArchiveError as e:  # the archive folder is unwritable: no progress
            return _failed(source, state, policy, ctx, str(e), result.status, None)
    else:
        written = []
    passed = PassResult(source.name, "updated", entry_errors=parsed.entry_errors, state=after)
    try:
        with ctx.store.batch(f"save the pass over source {source.name!r}"):
            _save(parsed, ctx, passed, new, changed, set(written))
            ctx.store.put_source_state(after)
    except BaseException as e:
        # Nothing of the pass is stored: the stories stage must not remember its articles.
        if ctx.forget_stories is not None and new:
            ctx.forget_stories([a.id for a in new])
        if isinstance(e, ArchiveError):  # the archive folder is unwritable: no progress
            return _failed(source, state, policy, ctx, str(e), result.status, None)
        raise
    passed.new = [Saved.of(a) for a in new]
    passed.changed = [Saved.of(a) for a in changed]
    log_event(log, logging.INFO, "source updated", source=source.name, new=len(new),
              changed=len(changed), entries=len(parsed.articles))  # fmt: skip
    return passed


def _files_root(ctx: PassContext) -> Path | None:
    """Where the parse renders the archive files: only when a pool writes them too."""
    return None if ctx.write_files is None or ctx.first_only else ctx.archive_root


def _split(parsed: Parsed, ctx: PassContext) -> tuple[list[Article], list[Article]]:
    """The parsed articles not stored yet, and those stored with a change since."""
    new: list[Article] = []
    changed: list[Article] = []
    known = ctx.store.known_ids(a.id for a in parsed.articles)
    for article in parsed.articles:
        if article.id not in known:
            new.append(article)
            continue
        stored = ctx.store.get_article(article.id)
        if stored is not None and article.published_confidence == "missing":
            # An item with no date is stamped with the fetch time: keep the first one seen,
            # or every pass would look like a change.
            article = article.model_copy(update={"published_at": stored.published_at})
        if _has_changed(stored, article):
            changed.append(article)
    return new, changed


def _save(
    parsed: Parsed,
    ctx: PassContext,
    passed: PassResult,
    new: list[Article],
    changed: list[Article],
    written: set[str],
) -> None:
    """Store the new and changed articles, archive, assign, alert (``written``: files done)."""
    if not ctx.first_only:
        _archive(ctx, [*(a for a in new if a.id not in written), *changed])
        if written:
            ctx.store.add_archive_pending(written)
    ctx.store.add_articles(new)
    for article in changed:
        ctx.store.upsert_article(article)
    if ctx.assign_stories is not None and new:
        starting = ctx.assign_stories(new, parsed.signed)
        passed.duplicates = len(new) - len(starting)
        if ctx.enqueue_alerts is not None:
            passed.alerts = ctx.enqueue_alerts(new, parsed.folded)
        if ctx.first_only:
            _archive(ctx, [*(a for a in new if a.id in starting), *changed])


def _archive(ctx: PassContext, articles: list[Article]) -> None:
    """Write the files, unflushed, and note them in the pass's transaction for the next flush."""
    if ctx.archive_root is not None and articles:
        archive.write_articles(ctx.archive_root, articles, durable=False)
        ctx.store.add_archive_pending(a.id for a in articles)


def flush_archive(store: Store, root: Path) -> int:
    """Flush the archive files passes wrote (one syncfs for all), then forget them; how many.

    The ids are read before the flush: each one's file was written before its pass committed,
    so the flush covers it. Files of passes that commit meanwhile wait for the next flush.
    """
    ids = store.archive_pending_ids()
    if ids:
        archive.flush(root)
        store.clear_archive_pending(ids)
    return len(ids)


def repair_archive(store: Store, root: Path) -> int:
    """Write again, durably, the files a crash may have left unflushed; return how many."""
    ids = store.archive_pending_ids()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        articles = [a for a in map(store.get_article, chunk) if a is not None]
        archive.write_articles(root, articles)
        store.clear_archive_pending(chunk)
    if ids:
        log_event(log, logging.INFO, "archive repaired", files=len(ids))
    return len(ids)


def _has_changed(stored: Article | None, fresh: Article) -> bool:
    if stored is None:
        return True
    keys = ("title", "link", "body_html", "head_image", "published_at")
    return any(getattr(stored, k) != getattr(fresh, k) for k in keys)


def _done(
    source: SourceSettings,
    state: SourceState,
    result: FetchResult,
    policy: PollPolicy,
    ctx: PassContext,
    outcome: Outcome,
    *,
    body_hash: str | None,
) -> PassResult:
    next_at = next_check_after_success(policy, ctx.now, ctx.rng, result=result)
    after = state_after_success(
        state, result, next_at, body_hash=body_hash, configured_url=source.url
    )
    ctx.store.put_source_state(after)
    log_event(log, logging.DEBUG, "source not changed", source=source.name, outcome=outcome)
    return PassResult(source.name, outcome, state=after)


def _failed(
    source: SourceSettings,
    state: SourceState,
    policy: PollPolicy,
    ctx: PassContext,
    message: str,
    status: int | None,
    retry_after_s: float | None,
) -> PassResult:
    failed = state_after_failure(
        state, policy, message, ctx.now, ctx.rng, status=status, retry_after_s=retry_after_s
    )
    try:
        ctx.store.put_source_state(failed)
    except StoreError as e:  # the error is still reported; the store's own trouble is logged
        log_event(log, logging.ERROR, "source state not saved", source=source.name, error=str(e))
        failed_state: SourceState | None = None
    else:
        failed_state = failed
    log_event(log, logging.WARNING, "source failed", source=source.name, error=message,
              failures=failed.consecutive_failures, paused=failed.paused)  # fmt: skip
    return PassResult(source.name, "failed", error=message, state=failed_state)
