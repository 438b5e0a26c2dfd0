"""The rules run against the stories of newly stored articles; what fires goes into the outbox.

    alerting = Alerting(store, compile_rules(settings.rules), clock=clock)
    alerting.enqueue(new_articles)            right after their stories are assigned
        story_of = store.article_story_ids(ids)          articles not in a story wait (catch_up)
        reach    = store.story_reach(stories)            every member's outlets, categories, sources
        done     = store.matched_rules(stories)          a story matches a rule once, ever
        for each article, oldest first:
            view = its title, text and link + its story's reach
            for match in match_story(rules not matched yet, view):
                alerts += new_alert(match, view, channel) for each of the rule's channels
        store.enqueue_alerts(matches + alerts, checked=articles)   one transaction: nothing
                                                                   half-recorded after a kill
    alerting.catch_up()                       polled articles stored before a kill, never seen
    replay(store, rules, since=...)           `watcher rules test`: what would have fired
    firing_lines(firing, mark=("[", "]"))     ... printed with the matched terms marked
    sample_alert(channel, now=now)            `watcher test-alert`: a made-up alert, new key

Which article's words: the one that just arrived. The story's reach is the union over every
member so far, so ``min_outlets = 3`` fires when the third outlet's copy arrives, once, and a
fourth copy alerts no one again (the match and the idempotency key are both taken).

Does not: send anything or decide when (``outbox.py``), decide story membership (stories), or
read settings (the caller compiles the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from watcher.alerts import new_alert
from watcher.alerts.render import excerpt, marked, squeeze
from watcher.log import log_event
from watcher.models import Alert, Article, Highlight, Match, Story, StoryView
from watcher.plaintext import article_text
from watcher.rules import CompiledRule, match_story
from watcher.store import Store
from watcher.store.rows import StoryReach

log = logging.getLogger("watcher.alerting")
Clock = Callable[[], datetime]
BATCH = 500  # articles evaluated per transaction when catching up


def story_view(
    article: Article,
    story_id: str,
    reach: StoryReach,
    folded: tuple[str, str] | None = None,
) -> StoryView:
    """What the rules see: the article's title, text and link, and its story's reach.

    ``folded``: ``rules.fold_article(article)``, when the parse did it already.
    """
    return StoryView(
        story_id=story_id,
        article_id=article.id,
        title=article.title,
        text=article_text(article),
        link=article.link,
        published_at=article.published_at,
        outlets=reach.outlets or (article.outlet,),
        categories=reach.categories,
        sources=reach.sources,
        folded=folded,
    )


def _age(article: Article) -> tuple[bool, datetime, str]:
    at = article.published_at
    return (at is None, at or datetime.min.replace(tzinfo=UTC), article.id)


class Alerting:
    """Evaluates the rules for new articles' stories and queues the alerts (see the module doc)."""

    def __init__(
        self, store: Store, rules: Sequence[CompiledRule], *, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self._clock = clock or (lambda: datetime.now(UTC))

    def enqueue(
        self, articles: Sequence[Article], folded: Mapping[str, tuple[str, str]] | None = None
    ) -> list[Alert]:
        """Evaluate the stories of ``articles`` (stored and assigned); return the alerts queued.

        ``folded``: some articles' ``rules.fold_article``, by id, made where they were parsed.
        """
        story_of = self.store.article_story_ids(a.id for a in articles)
        assigned = sorted((a for a in articles if a.id in story_of), key=_age)
        if not assigned:
            return []
        pairs = self._evaluate(assigned, story_of, folded or {}) if self.rules else []
        queued = self.store.enqueue_alerts(pairs, checked=[a.id for a in assigned])
        if pairs:
            log_event(log, logging.INFO, "rules matched", matches=len(pairs), alerts=len(queued),
                      rules=sorted({m.rule for m, _ in pairs}))  # fmt: skip
        return queued

    def _evaluate(
        self,
        articles: list[Article],
        story_of: dict[str, str],
        folded: Mapping[str, tuple[str, str]],
    ) -> list[tuple[Match, list[Alert]]]:
        stories = set(story_of.values())
        reach = self.store.story_reach(stories)
        done = self.store.matched_rules(stories)
        now = self._clock()
        pairs: list[tuple[Match, list[Alert]]] = []
        for article in articles:
            story_id = story_of[article.id]
            rules = [r for r in self.rules if (story_id, r.name) not in done]
            if not rules:
                continue
            reached = reach.get(story_id, StoryReach((), (), ()))
            view = story_view(article, story_id, reached, folded.get(article.id))
            for match, rule in _matched(rules, view, now):
                done.add((story_id, rule.name))
                alerts = [new_alert(match, view, ch, now=now) for ch in rule.channels]
                pairs.append((match, alerts))
        return pairs

    def enqueue_ids(self, article_ids: Iterable[str]) -> int:
        """``enqueue`` for stored articles given by id, in batches; return the alerts queued."""
        queued = 0
        batch: list[Article] = []
        for article_id in article_ids:
            article = self.store.get_article(article_id)
            if article is not None:
                batch.append(article)
            if len(batch) >= BATCH:
                queued += len(self.enqueue(batch))
                batch = []
        return queued + (len(self.enqueue(batch)) if batch else 0)

    def catch_up(self) -> int:
        """Evaluate polled articles a kill left unseen by the rules; return the alerts queued."""
        ids = self.store.unchecked_article_ids()
        if not ids:
            return 0
        queued = self.enqueue_ids(ids)
        log_event(log, logging.INFO, "rules caught up", articles=len(ids), alerts=queued)
        return queued


def _matched(
    rules: Sequence[CompiledRule], view: StoryView, now: datetime
) -> Iterator[tuple[Match, CompiledRule]]:
    by_name = {r.name: r for r in rules}
    for match in match_story(rules, view, now=now):
        yield match, by_name[match.rule]


# --- replay: `watcher rules test` -----------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    """A rule that would have fired on a story: the match, what it saw, where it would go."""

    match: Match
    view: StoryView
    channels: tuple[str, ...]


@dataclass
class _Reach:
    outlets: dict[str, None] = field(default_factory=dict)
    categories: dict[str, None] = field(default_factory=dict)
    sources: dict[str, None] = field(default_factory=dict)

    def add(self, article: Article) -> StoryReach:
        self.outlets[article.outlet] = None
        self.categories.update(dict.fromkeys(article.categories))
        if article.source is not None:
            self.sources[article.source] = None
        return StoryReach(tuple(self.outlets), tuple(self.categories), tuple(self.sources))


def replay_story(
    rules: Sequence[CompiledRule], story: Story, articles: Sequence[Article], *, now: datetime
) -> list[Firing]:
    """The rules over ``story`` as its members arrived (``articles`` in story order).

    Each rule fires at most once, on the first member that makes it match, with the reach
    the story had then: what the daemon would have done.
    """
    reach = _Reach()
    fired: set[str] = set()
    firings: list[Firing] = []
    for article in articles:
        view = story_view(article, story.id, reach.add(article))
        waiting = [r for r in rules if r.name not in fired]
        if not waiting:
            break
        for match, rule in _matched(waiting, view, now):
            fired.add(rule.name)
            firings.append(Firing(match, view, rule.channels))
    return firings


def replay(
    store: Store,
    rules: Sequence[CompiledRule],
    *,
    since: datetime | None = None,
    now: datetime | None = None,
) -> Iterator[tuple[Story, list[Firing]]]:
    """Every stored story first published since ``since``, with what would have fired on it."""
    at = now or datetime.now(UTC)
    for story in store.iter_stories(since=since):
        members = [store.get_article(m.article_id) for m in story.members]
        articles = [a for a in members if a is not None]
        yield story, replay_story(rules, story, articles, now=at)


def firing_lines(firing: Firing, mark: tuple[str, str] = ("[", "]"), width: int = 160) -> list[str]:
    """What ``watcher rules test`` prints for one firing, matched terms wrapped in ``mark``."""
    match, view = firing.match, firing.view
    title_spans = [(h.start, h.end) for h in match.highlights if h.field == "title"]
    text_spans = [(h.start, h.end) for h in match.highlights if h.field == "text"]
    title, title_marks = squeeze(view.title, title_spans)
    text, text_marks = excerpt(view.text, text_spans, width)
    when = view.published_at.isoformat(timespec="minutes") if view.published_at else "undated"
    to = ", ".join(firing.channels) or "no channel"
    lines = [
        f"{when}  {match.rule}  {match.outlet_count} outlets: {', '.join(view.outlets)}  -> {to}",
        "    " + marked(title, title_marks, str, *mark),
        f"    matched: {', '.join(match.terms)}",
    ]
    if text_marks:
        lines.append("    " + marked(text, text_marks, str, *mark))
    lines.append(
        f"    story {match.story_id}  article {match.article_id}  {view.link or ''}".rstrip()
    )
    return lines


def sample_alert(channel: str, *, now: datetime) -> Alert:
    """A made-up alert for ``watcher test-alert``, under a new key each time (none is dropped)."""
    story_id = f"watcher-test-{now.astimezone(UTC):%Y%m%dT%H%M%S%f}"
    title = "watcher test alert: this channel works"
    view = StoryView(
        story_id=story_id,
        title=title,
        text="This message was sent by `watcher test-alert`. No story matched anything.",
        link="https://example.org/watcher-test-alert",
        published_at=now,
        outlets=("watcher",),
    )
    start = title.index("test alert")
    highlight = Highlight(field="title", start=start, end=start + 10, term="test alert")
    match = Match(rule="test-alert", story_id=story_id, terms=("test alert",),
                  highlights=(highlight,), outlet_count=1, matched_at=now)  # fmt: skip
    return new_alert(match, view, channel, now=now)
