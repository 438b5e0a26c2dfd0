"""The store contract for stories, signatures and members, run against every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from watcher.models import Article
from watcher.store import Store
from watcher.store.migrations import MIGRATIONS
from watcher.store.rows import MemberRow, SignatureRow, time_key

from .conftest import Opener

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(reopen: Opener) -> Iterator[Store]:
    """An open store holding three articles a, b (same day) and c (undated)."""
    with reopen() as opened:
        later = T0 + timedelta(hours=2)
        opened.add_articles(
            [article("a", "早报", T0), article("b", "路透", later), article("c", "CNA", None)]
        )
        yield opened


def article(id: str, outlet: str, at: datetime | None) -> Article:
    return Article(id=id, format="link", title=f"title {id}", outlet=outlet, published_at=at,
                   link=f"https://example.org/{id}", origin=f"x/{id}.md")  # fmt: skip


def sig(id: str, at: datetime | None, scheme: str = "s1") -> SignatureRow:
    return SignatureRow(id, scheme, 10, bytes(range(4)) * 128, time_key(at))


def member(id: str, story: str, at: datetime | None, matched: str | None = None) -> MemberRow:
    return MemberRow(id, story, matched, 1.0 if matched is None else 0.8, time_key(at))


def test_a_story_lists_its_members_oldest_first(store: Store) -> None:
    """b joins a's story: the story lists a then b, two outlets, canonical a."""
    store.save_stories([sig("a", T0)], [member("a", "a", T0)])
    store.save_stories([sig("b", T0)], [member("b", "a", T0 + timedelta(hours=2), "a")])
    story = store.get_story("a")
    assert story is not None
    actual = (story.canonical_id, story.outlets, [m.article_id for m in story.members],
              story.members[1].matched_id, story.members[1].similarity)  # fmt: skip
    assert ("a", ["早报", "路透"], ["a", "b"], "a", 0.8) == actual


def test_an_earlier_member_becomes_canonical(store: Store) -> None:
    """When b is published before a joins b's story, a becomes canonical and outlets reorder."""
    store.save_stories([], [member("b", "b", T0 + timedelta(hours=2))])
    store.save_stories([], [member("a", "b", T0, "b")])
    story = store.get_story("b")
    assert story is not None
    assert ("a", ["早报", "路透"], T0) == (story.canonical_id, story.outlets,
                                           story.first_published_at)  # fmt: skip


def test_members_carry_the_article_fields(store: Store) -> None:
    """A member has the article's outlet, title, link, time and origin."""
    store.save_stories([], [member("a", "a", T0)])
    story = store.get_story("a")
    assert story is not None
    m = story.members[0]
    assert ("早报", "title a", "https://example.org/a", T0, "x/a.md") == (
        m.outlet, m.title, m.link, m.published_at, m.origin)  # fmt: skip


def test_signatures_are_read_back_by_scheme_and_time(store: Store) -> None:
    """iter_signatures returns assigned articles of that scheme within [since, until)."""
    store.save_stories([sig("a", T0), sig("b", T0, "old")],
                       [member("a", "a", T0), member("b", "b", T0)])  # fmt: skip
    rows = list(store.iter_signatures("s1", since=T0 - timedelta(days=1), until=T0 + timedelta(1)))
    later = list(store.iter_signatures("s1", since=T0 + timedelta(hours=1)))
    assert ([sig("a", T0)._replace(story_id="a")], []) == (rows, later)


def test_unassigned_articles_are_listed(store: Store) -> None:
    """Articles in no story are listed, undated first."""
    store.save_stories([], [member("a", "a", T0)])
    assert ["c", "b"] == store.unassigned_article_ids()


def test_stories_filter_by_since_and_outlets(store: Store) -> None:
    """--since keeps stories first published then or later; --min-outlets N drops smaller ones."""
    store.save_stories([], [member("a", "a", T0), member("b", "a", T0, "a"),
                            member("c", "c", None)])  # fmt: skip
    all_ids = [s.id for s in store.iter_stories()]
    two = [s.id for s in store.iter_stories(min_outlets=2)]
    later = [s.id for s in store.iter_stories(since=T0 + timedelta(minutes=1))]
    assert (["c", "a"], ["a"], []) == (all_ids, two, later)


def test_clear_forgets_every_story(store: Store) -> None:
    """clear_stories empties stories, members and signatures and reports how many went."""
    store.save_stories([sig("a", T0)], [member("a", "a", T0)])
    gone = store.clear_stories()
    actual = (gone, store.count_stories(), list(store.iter_signatures("s1")),
              len(store.unassigned_article_ids()))  # fmt: skip
    assert (1, 0, [], 3) == actual


def test_stories_survive_reopening(reopen: Opener, store: Store) -> None:
    """What save_stories wrote is there after the store is closed and opened again."""
    store.save_stories([sig("a", T0)], [member("a", "a", T0)])
    store.close()
    with reopen() as again:
        assert (1, 1) == (again.count_stories(), len(list(again.iter_signatures("s1"))))


def test_story_migration_is_the_third() -> None:
    """The stories migration stays where it was appended: after the two of issues 2 and 3."""
    assert "stories, story_members and signatures (dedupe)" == MIGRATIONS[2].name
