"""The store contract for matches, the alert outbox and rule checks, run against every backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.errors import StoreError
from watcher.models import Alert, Article, Match
from watcher.store import SqliteStore, Store
from watcher.store.migrations import MIGRATIONS
from watcher.store.rows import MemberRow, time_key

from .conftest import Opener

T0 = datetime(2026, 11, 3, 5, 0, tzinfo=UTC)


@pytest.fixture
def store(reopen: Opener) -> Iterator[Store]:
    """An open store with one story "a" of articles a (早报) and b (路透), and c on its own."""
    with reopen() as opened:
        opened.add_articles([
            article("a", "早报", T0, source="zaobao", categories=["国际"]),
            article("b", "路透", T0 + timedelta(hours=1), source="reuters", categories=["World"]),
            article("c", "CNA", T0, source=None),
        ])  # fmt: skip
        opened.save_stories([], [member("a", "a", T0), member("b", "a", T0 + timedelta(hours=1))])
        opened.save_stories([], [member("c", "c", T0)])
        yield opened


def article(
    id: str, outlet: str, at: datetime, *, source: str | None, categories: list[str] | None = None
) -> Article:
    return Article(id=id, format="hexo", title=f"title {id}", outlet=outlet, published_at=at,
                   source=source, categories=categories or [])  # fmt: skip


def member(id: str, story: str, at: datetime) -> MemberRow:
    return MemberRow(id, story, None if id == story else story, 1.0, time_key(at))


def match(story: str = "a", rule: str = "ukraine", article_id: str = "a") -> Match:
    return Match(rule=rule, story_id=story, article_id=article_id, terms=("乌克兰",),
                 outlet_count=2, matched_at=T0)  # fmt: skip


def alert(channel: str, story: str = "a", rule: str = "ukraine", at: datetime = T0) -> Alert:
    return Alert(key=f"{story}-{rule}-{channel}", channel=channel, rule=rule, story_id=story,
                 title=f"title {story}", created_at=at)  # fmt: skip


def keys(store: Store, **filters: object) -> list[str]:
    return [e.key for e in store.list_alerts(**filters)]  # type: ignore[arg-type]


# --- queueing -------------------------------------------------------------------------------------


def test_a_first_match_queues_its_alerts_and_marks_articles_checked(store: Store) -> None:
    """One match with two channels: two pending alerts, the articles checked, the match kept."""
    queued = store.enqueue_alerts([(match(), [alert("mail"), alert("hook")])], checked=["a", "b"])
    assert ["a-ukraine-mail", "a-ukraine-hook"] == [a.key for a in queued]
    assert ["a-ukraine-hook", "a-ukraine-mail"] == sorted(keys(store, state="pending"))
    assert {("a", "ukraine")} == store.matched_rules(["a", "c"])
    assert [] == store.unchecked_article_ids()


def test_a_story_matches_a_rule_once(store: Store) -> None:
    """The same story and rule again (a later copy, a new channel since) queues nothing."""
    store.enqueue_alerts([(match(), [alert("mail")])])
    again = store.enqueue_alerts([(match(article_id="b"), [alert("mail"), alert("new")])])
    assert ([], ["a-ukraine-mail"]) == ([a.key for a in again], keys(store))


def test_matches_alerts_and_checks_commit_together(store: Store) -> None:
    """A failure inside the transaction leaves no match, no alert and no check behind."""

    def checked() -> Iterator[str]:
        yield "a"
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        store.enqueue_alerts([(match(), [alert("mail")])], checked=checked())
    assert (set(), [], ["a", "b"]) == (store.matched_rules(["a"]), keys(store),
                                       store.unchecked_article_ids())  # fmt: skip


def test_the_alert_reads_back_equal(reopen: Opener, store: Store) -> None:
    """The queued Alert, highlights and times included, reads back equal after a reopen."""
    extra = {"terms": ("乌克兰",), "title_highlights": ((0, 2),), "outlets": ("早报", "路透")}
    sent = alert("mail").model_copy(update={**extra, "link": "https://x.org/"})
    store.enqueue_alerts([(match(), [sent])])
    store.close()
    with reopen() as again:
        (entry,) = again.list_alerts()
    assert (sent, "pending", 0, T0) == (entry.alert, entry.state, entry.delivery.attempts,
                                        entry.delivery.next_attempt_at)  # fmt: skip


# --- what the rules see ---------------------------------------------------------------------------


def test_story_reach_unites_every_member(store: Store) -> None:
    """A story's reach: outlets in order of publication, every category and source."""
    reach = store.story_reach(["a", "c"])
    expected = (("早报", "路透"), ("国际", "World"), ("zaobao", "reuters"))
    assert expected == tuple(reach["a"])
    assert (("CNA",), (), ()) == tuple(reach["c"])


def test_article_story_ids(store: Store) -> None:
    """Each assigned article names its story; an unknown id is left out."""
    assert {"a": "a", "b": "a", "c": "c"} == store.article_story_ids(["a", "b", "c", "zz"])


def test_unchecked_articles_are_polled_ones_in_a_story(store: Store) -> None:
    """Polled articles (with a source) in a story and not checked; backfilled ones never."""
    assert ["a", "b"] == store.unchecked_article_ids()
    store.enqueue_alerts([], checked=["a"])
    assert ["b"] == store.unchecked_article_ids()


def test_migrating_an_old_store_marks_its_articles_checked(tmp_path: Path) -> None:
    """A store made before alerts existed: after the migration no article waits for the rules."""
    path = tmp_path / "old.db"
    with SqliteStore(path, migrations=MIGRATIONS[:3]) as old:
        old.add_articles([article("x", "早报", T0, source="zaobao")])
    with closing(sqlite3.connect(path)) as conn, conn:  # the story as version 3 wrote it
        key = time_key(T0)
        conn.execute("INSERT INTO stories VALUES ('x', 'x', ?, '[\"早报\"]', 1, ?, ?)",
                     (key, key, key))  # fmt: skip
        conn.execute("INSERT INTO story_members VALUES ('x', 'x', NULL, 1.0, ?, ?)", (key, key))
    with SqliteStore(path) as new:
        assert ([], "matches, alerts outbox and rule checks (alerts)") == (
            new.unchecked_article_ids(), MIGRATIONS[3].name)  # fmt: skip


# --- the outbox -----------------------------------------------------------------------------------


def queue_two(store: Store) -> None:
    store.enqueue_alerts([(match(), [alert("mail"), alert("hook", at=T0 + timedelta(1))])])


def test_a_claim_is_all_or_nothing(store: Store) -> None:
    """Claimed alerts are sending with an attempt counted; a claim touching one fails whole."""
    queue_two(store)
    assert store.claim_alerts(["a-ukraine-mail"], message_key="m1", owner="o1", now=T0)
    refused = store.claim_alerts(["a-ukraine-mail", "a-ukraine-hook"], message_key="m2",
                                 owner="o2", now=T0)  # fmt: skip
    (sending,) = store.list_alerts(state="sending")
    assert (False, "a-ukraine-mail", 1, "m1", "o1", T0) == (
        refused, sending.key, sending.delivery.attempts, sending.message_key,
        sending.claimed_by, sending.sending_at)  # fmt: skip
    assert ["a-ukraine-hook"] == keys(store, state="pending")


def test_sent_and_released_alerts(store: Store) -> None:
    """Sent: status and time; released: pending with its error and next attempt, or failed."""
    queue_two(store)
    for key in ("a-ukraine-mail", "a-ukraine-hook"):
        store.claim_alerts([key], message_key=key, owner="o", now=T0)
    store.mark_alerts_sent(["a-ukraine-mail"], now=T0 + timedelta(seconds=1))
    store.release_alerts(["a-ukraine-hook"], error="boom", next_attempt_at=T0 + timedelta(1))
    sent, pending = store.list_alerts(state="sent")[0], store.list_alerts(state="pending")[0]
    assert ("sent", T0 + timedelta(seconds=1)) == (sent.delivery.status, sent.delivery.sent_at)
    assert ("boom", T0 + timedelta(1), None, "a-ukraine-hook") == (
        pending.delivery.last_error, pending.delivery.next_attempt_at, pending.sending_at,
        pending.message_key)  # fmt: skip
    store.claim_alerts(["a-ukraine-hook"], message_key="a-ukraine-hook", owner="o", now=T0)
    store.release_alerts(["a-ukraine-hook"], error="gave up", next_attempt_at=T0, failed=True)
    assert {"sent": 1, "failed": 1} == store.count_alerts()


def test_retry_brings_back_the_whole_message(store: Store) -> None:
    """Retrying one alert of a failed digest makes every alert of that message due again."""
    queue_two(store)
    both = ["a-ukraine-mail", "a-ukraine-hook"]
    store.claim_alerts(both, message_key="digest1", owner="o", now=T0)
    store.release_alerts(both, error="down", next_attempt_at=T0, failed=True)
    later = T0 + timedelta(days=4)
    assert 2 == store.retry_alerts(["a-ukraine-mail"], now=later)
    due = store.list_alerts(state="pending")
    assert [(later, "digest1")] * 2 == [(e.delivery.next_attempt_at, e.message_key) for e in due]


def test_retry_of_every_failed_alert(store: Store) -> None:
    """``retry_alerts(None)`` takes only failed alerts; pending and sent ones stay as they are."""
    queue_two(store)
    store.claim_alerts(["a-ukraine-mail"], message_key="x", owner="o", now=T0)
    store.release_alerts(["a-ukraine-mail"], error="e", next_attempt_at=T0, failed=True)
    assert (1, {"pending": 2}) == (store.retry_alerts(None, now=T0), store.count_alerts())


def test_messages_sent_count_a_digest_once(store: Store) -> None:
    """Two alerts sent in one digest are one message in the rate limit's count."""
    store.enqueue_alerts([(match(), [alert("mail")]), (match("c"), [alert("mail", "c")])])
    both = ["a-ukraine-mail", "c-ukraine-mail"]
    store.claim_alerts(both, message_key="d", owner="o", now=T0)
    store.mark_alerts_sent(both, now=T0 + timedelta(minutes=1))
    expected = [T0 + timedelta(minutes=1)]
    assert expected == store.messages_sent("mail", since=T0)
    assert [] == store.messages_sent("mail", since=T0 + timedelta(minutes=2))


def test_list_filters_and_limit(store: Store) -> None:
    """Filters combine; ``limit`` keeps the newest N, still oldest first."""
    alerts = [alert("mail", at=T0 + timedelta(minutes=i), rule=f"r{i}") for i in range(4)]
    store.enqueue_alerts([(match(rule=a.rule), [a]) for a in alerts])
    assert ["a-r2-mail", "a-r3-mail"] == keys(store, limit=2)
    assert ["a-r1-mail"] == keys(store, rule="r1", channel="mail")
    assert ["a-r3-mail"] == keys(store, since=T0 + timedelta(minutes=3))
    assert [] == keys(store, channel="hook")


def test_an_unreadable_payload_is_a_store_error_naming_the_alert(
    store: Store, tmp_path: Path
) -> None:
    """A payload that no longer fits Alert is a StoreError naming the file and the key."""
    store.enqueue_alerts([(match(), [alert("mail")])])
    with closing(sqlite3.connect(tmp_path / "watcher.db")) as conn, conn:
        conn.execute("UPDATE alerts SET payload = '{\"bad\": 1}'")
    with pytest.raises(StoreError, match="alert 'a-ukraine-mail' cannot be read"):
        store.list_alerts()
