"""Stories for stored articles: the dedupe stage run against the store.

    assigner = StoryAssigner(store, settings.dedup)    loads nothing yet
    assigner.assign(articles)                           right after store.add_articles(...)
        for article in articles, oldest first:
            load the days within the window around it   stored signatures -> StoryBook
            sign it; decide: join the best story or start one
        store.save_stories(signatures, members)         one transaction per call
    restory(store, settings.dedup)                      forget every story, assign all again

The index holds whole UTC days of stored signatures, loaded the first time an article needs
them and dropped least-recently-used past the days one article's window spans plus
``SPARE_DAYS``: memory follows the window, not the archive nor how long the daemon has run,
and a restart rebuilds exactly what it needs from the store (nothing is recomputed unless the
signature scheme changed, which ``restory`` handles).

Does not: write the archive, send alerts, or change an article; a stored assignment is final
until ``restory``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice

from watcher.dedupe import Member, Signature, Signed, Signer, StoryBook
from watcher.log import log_event
from watcher.models import Article, Story
from watcher.settings import DedupSettings
from watcher.store import Store
from watcher.store.rows import MemberRow, SignatureRow, time_from_key, time_key

SPARE_DAYS = 3
"""Days held beyond those one article's window spans (2 * window + 1 or 2), so that an item
a little older than the others reloads nothing. A daemon that held 64 days, as it did, kept
64 days of every source's signatures (about 2.4 KB each) once it had run that long."""
BATCH = 500
log = logging.getLogger("watcher.stories")


@dataclass(frozen=True)
class Assignment:
    """Where one article went: its story, and the member it matched (None: it started it)."""

    article_id: str
    story_id: str
    matched_id: str | None
    similarity: float

    @property
    def starts_story(self) -> bool:
        """True when the article is the first of its story."""
        return self.matched_id is None


class StoryAssigner:
    """Assigns stories to new articles, holding the days of signatures the window needs."""

    def __init__(self, store: Store, settings: DedupSettings) -> None:
        self.store = store
        self.settings = settings
        self.signer = Signer(settings)
        self.book = StoryBook(settings)
        self._days: OrderedDict[date, list[str]] = OrderedDict()

    def assign(self, articles: Iterable[Article], signed: Signed | None = None) -> list[Assignment]:
        """Assign each article not assigned yet, oldest first, and store the decisions.

        ``signed`` holds signatures made elsewhere (a parse worker) under a scheme; they are
        used when the scheme is this assigner's, else the articles are signed here.
        """
        batch = sorted(articles, key=_age)
        given = signed.signatures if signed is not None and signed.scheme == self.signer.scheme \
            else {}  # fmt: skip
        unsigned = [a for a in batch if a.id not in given]
        made = dict(zip((a.id for a in unsigned), self.signer.sign_articles(unsigned), strict=True))
        signatures = [given.get(a.id) or made[a.id] for a in batch]
        sig_rows: list[SignatureRow] = []
        members: list[MemberRow] = []
        done: list[Assignment] = []
        for article, signature in zip(batch, signatures, strict=True):
            self._load_around(article.published_at)
            if article.id in self.book:
                continue
            decision = self.book.assign(article.id, signature, article.published_at)
            story_id = decision.story_id or article.id
            key = time_key(article.published_at)
            sig_rows.append(SignatureRow(article.id, self.signer.scheme, signature.size,
                                         signature.to_bytes(), key))  # fmt: skip
            members.append(MemberRow(article.id, story_id, decision.matched_id,
                                     decision.similarity, key))  # fmt: skip
            done.append(Assignment(article.id, story_id, decision.matched_id,
                                   decision.similarity))  # fmt: skip
            self._remember(article)
        if members:
            self.store.save_stories(sig_rows, members)
        return done

    def forget(self, article_ids: Iterable[str]) -> None:
        """Drop these articles from memory: their assignment was rolled back with its pass."""
        self.book.forget(article_ids)

    def assign_pending(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Assign every stored article that has no story yet; return how many.

        ``progress(done, total)`` is called after each batch.
        """
        ids = self.store.unassigned_article_ids()
        count = 0
        for chunk in _chunks(_articles(self.store, ids), BATCH):
            count += len(self.assign(chunk))
            if progress is not None:
                progress(count, len(ids))
        return count

    def _load_around(self, at: datetime | None) -> None:
        if at is None:
            return
        first = (at - self.settings.window).astimezone(UTC).date()
        last = (at + self.settings.window).astimezone(UTC).date()
        day = first
        while day <= last:
            if day in self._days:
                self._days.move_to_end(day)
            else:
                self._load_day(day)
            day += timedelta(days=1)
        while len(self._days) > (last - first).days + 1 + SPARE_DAYS:
            _, ids = self._days.popitem(last=False)
            self.book.forget(ids)

    def _load_day(self, day: date) -> None:
        start = datetime.combine(day, time(), tzinfo=UTC)
        rows = list(self.store.iter_signatures(self.signer.scheme, since=start,
                                               until=start + timedelta(days=1)))  # fmt: skip
        members = [_member(row) for row in rows]
        self.book.add(members)
        self._days[day] = [m.article_id for m in members]

    def _remember(self, article: Article) -> None:
        if article.published_at is not None:
            day = article.published_at.astimezone(UTC).date()
            self._days.setdefault(day, []).append(article.id)


def restory(store: Store, settings: DedupSettings) -> tuple[int, int]:
    """Forget every story and assign all stored articles again, oldest first.

    Returns (stories before, stories after). Signatures are recomputed: the boilerplate
    rules or the scheme may have changed along with the thresholds.
    """
    before = store.clear_stories()
    assigner = StoryAssigner(store, settings)
    assigned = 0
    for chunk in _chunks(store.iter_articles(), BATCH):
        assigned += len(assigner.assign(chunk))
    after = store.count_stories()
    log_event(log, logging.INFO, "stories recomputed", articles=assigned, before=before,
              after=after)  # fmt: skip
    return before, after


def _member(row: SignatureRow) -> Member:
    signature = Signature.from_bytes(row.minhash, row.size)
    return Member(row.article_id, row.story_id or row.article_id,
                  time_from_key(row.published_key), signature)  # fmt: skip


def _age(article: Article) -> tuple[bool, datetime, str]:
    at = article.published_at
    return (at is None, at or datetime.min.replace(tzinfo=UTC), article.id)


def _articles(store: Store, ids: list[str]) -> Iterator[Article]:
    for article_id in ids:
        article = store.get_article(article_id)
        if article is not None:
            yield article


def _chunks(items: Iterable[Article], size: int) -> Iterator[list[Article]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def story_json(story: Story) -> dict[str, object]:
    """The JSON object ``watcher stories --json`` prints for one story."""
    return {
        "id": story.id,
        "canonical": story.canonical_id,
        "outlets": story.outlets,
        "articles": [
            {
                "id": m.article_id,
                "outlet": m.outlet,
                "title": m.title,
                "link": m.link,
                "published": m.published_at.isoformat() if m.published_at else None,
                "origin": m.origin,
                "similarity": round(m.similarity, 3),
            }
            for m in story.members
        ],
    }


def story_lines(story: Story) -> list[str]:
    """The text ``watcher stories`` prints for one story: a heading, then a line per copy."""
    first = story.first_published_at.isoformat(timespec="minutes") if story.first_published_at \
        else "undated"  # fmt: skip
    title = next((m.title for m in story.members if m.article_id == story.canonical_id), "")
    lines = [f"{first}  {len(story.outlets)} outlets, {len(story.members)} articles  {title}"]
    for m in story.members:
        when = m.published_at.isoformat(timespec="minutes") if m.published_at else "undated"
        lines.append(f"    {when}  {m.outlet}  {m.title}  {m.link or m.origin or ''}")
    return lines
