"""The store contract for stories, signatures and members, run against every backend."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.errors import StoreError
from watcher.models import Article
from watcher.store import SqliteStore, Store
from watcher.store.migrations import MIGRATIONS
from watcher.store.rows import MemberRow, SignatureRow, StoryReach, time_key

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


# -- SQLite only: story rows kept up to date member by member ------------------------------------

OUTLETS = ("早报", "路透", "CNA", "RFI")
CATEGORIES = ("国际", "World", "亚洲", "Asia", "")
SOURCES = ("zaobao", "reuters", "cna", None)
TIMES = (T0, T0 + timedelta(hours=1), T0 - timedelta(hours=1), None)  # few: ties are common


def random_articles(rng: random.Random, count: int) -> list[Article]:
    """Articles with ids that prefix each other (n1, n10), shared times, repeated categories."""
    return [
        Article(id=f"n{i}", format="link", title=f"t{i}", outlet=rng.choice(OUTLETS),
                published_at=rng.choice(TIMES), source=rng.choice(SOURCES),
                categories=[rng.choice(CATEGORIES) for _ in range(rng.randint(0, 3))])
        for i in range(count)
    ]  # fmt: skip


StoryFacts = tuple[str, str, list[str], int, list[str], list[str]]


def reference_stories(
    conn: sqlite3.Connection, articles: dict[str, Article]
) -> dict[str, StoryFacts]:
    """Each story recomputed from its members: canonical, first key, outlets, size, etc."""
    members: dict[str, list[tuple[str, str, str]]] = {}
    query = "SELECT story_id, published_key, assigned_at, article_id FROM story_members"
    for story_id, key, assigned_at, article_id in conn.execute(query):
        members.setdefault(story_id, []).append((key, assigned_at, article_id))
    found: dict[str, StoryFacts] = {}
    for story_id, rows in members.items():
        rows.sort(key=lambda r: (r[0] == "", r))
        ordered = [articles[r[2]] for r in rows]
        categories = [c for a in ordered for c in a.categories]
        sources = [a.source for a in ordered if a.source is not None]
        found[story_id] = (rows[0][2], rows[0][0], unique(a.outlet for a in ordered), len(rows),
                           unique(categories), unique(sources))  # fmt: skip
    return found


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def stored_stories(conn: sqlite3.Connection) -> dict[str, StoryFacts]:
    query = (
        "SELECT id, canonical_id, first_published_key, outlets, size, categories, sources "
        "FROM stories"
    )
    return {
        row[0]: (row[1], row[2], json.loads(row[3]), row[4], json.loads(row[5]), json.loads(row[6]))
        for row in conn.execute(query)
    }


def reach_of(facts: dict[str, StoryFacts]) -> dict[str, StoryReach]:
    return {k: StoryReach(tuple(f[2]), tuple(f[4]), tuple(f[5])) for k, f in facts.items()}


def random_batches(rng: random.Random, articles: list[Article]) -> Iterator[list[MemberRow]]:
    """The articles in random order and batches, each joining one of five stories; now and
    then an article already assigned is put in a story again (alone or twice in a batch)."""
    order = rng.sample(articles, len(articles))
    done: list[Article] = []
    while order:
        batch = [order.pop() for _ in range(min(len(order), rng.randint(1, 6)))]
        if done and rng.random() < 0.15:
            batch.append(rng.choice(done))
        if rng.random() < 0.1:
            batch.append(batch[0])
        done.extend(batch)
        yield [MemberRow(a.id, f"s{rng.randrange(5)}", None, 1.0, time_key(a.published_at))
               for a in batch]  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_story_rows_equal_a_recompute_after_each_batch(tmp_path: Path, seed: int) -> None:
    """Members in random orders and batches: rows and reach equal a recompute from members."""
    rng = random.Random(seed)
    articles = random_articles(rng, 40)
    by_id = {a.id: a for a in articles}
    path = tmp_path / "w.db"
    with SqliteStore(path) as opened, closing(sqlite3.connect(path)) as conn:
        opened.add_articles(articles)
        for batch in random_batches(rng, articles):
            opened.save_stories([], batch)
            expected = reference_stories(conn, by_id)
            assert expected == stored_stories(conn)
            assert reach_of(expected) == opened.story_reach([*expected, "unknown"])


class RollBackError(Exception):
    """Raised inside a batch to roll it back."""


@pytest.mark.parametrize("seed", range(6))
def test_story_rows_stay_right_across_rollbacks_and_two_writers(tmp_path: Path, seed: int) -> None:
    """Rows a store remembers writing are read again: batches rolled back, and another store
    on the same file writing in turn, still leave rows equal to a recompute from members."""
    rng = random.Random(seed)
    articles = random_articles(rng, 40)
    by_id = {a.id: a for a in articles}
    path = tmp_path / "w.db"
    with SqliteStore(path) as one, SqliteStore(path) as two, closing(sqlite3.connect(path)) as conn:
        one.add_articles(articles)
        for batch in random_batches(rng, articles):
            writer = rng.choice((one, two))
            if rng.random() < 0.25:
                with pytest.raises(RollBackError), writer.batch("a pass that fails"):
                    writer.save_stories([], batch)
                    raise RollBackError
            else:
                writer.save_stories([], batch)
            expected = reference_stories(conn, by_id)
            assert expected == stored_stories(conn)


def test_an_earlier_member_moves_outlets_categories_and_sources_to_the_front(
    tmp_path: Path,
) -> None:
    """A late arrival published first becomes canonical; its outlet, category, source lead."""
    path = tmp_path / "w.db"
    with SqliteStore(path) as opened:
        opened.add_articles([
            Article(id="b", format="link", title="b", outlet="路透", source="reuters",
                    categories=["World", "亚洲"], published_at=T0 + timedelta(hours=1)),
            Article(id="a", format="link", title="a", outlet="早报", source="zaobao",
                    categories=["亚洲", "国际"], published_at=T0),
        ])  # fmt: skip
        opened.save_stories([], [member("b", "b", T0 + timedelta(hours=1))])
        opened.save_stories([], [member("a", "b", T0, "b")])
        story = opened.get_story("b")
        reach = opened.story_reach(["b"])["b"]
    assert story is not None
    expected = StoryReach(("早报", "路透"), ("亚洲", "国际", "World"), ("zaobao", "reuters"))
    assert (("a", T0), expected) == ((story.canonical_id, story.first_published_at), reach)


def test_an_article_assigned_again_leaves_its_old_story(store: Store) -> None:
    """An article put in another story: both are recomputed; a story left empty is dropped."""
    store.save_stories([], [member("a", "a", T0), member("b", "a", T0, "a")])
    store.save_stories([], [member("c", "c", None)])
    store.save_stories([], [member("a", "c", T0, "c"), member("c", "c", None)])
    left, joined = store.get_story("a"), store.get_story("c")
    assert left is not None and joined is not None
    assert ((["路透"], "b"), (["早报", "CNA"], "a")) == (
        (left.outlets, left.canonical_id), (joined.outlets, joined.canonical_id))  # fmt: skip
    store.save_stories([], [member("b", "c", T0, "c")])
    assert (None, ("早报", "路透", "CNA")) == (store.get_story("a"),
                                               store.story_reach(["c"])["c"].outlets)  # fmt: skip


def test_a_member_of_an_unstored_article_is_a_store_error(store: Store) -> None:
    """save_stories refuses a member whose article is not stored, and stores nothing."""
    with pytest.raises(StoreError, match="'zz'"):
        store.save_stories([], [member("a", "a", T0), member("zz", "a", T0)])
    assert 0 == store.count_stories()


@pytest.mark.parametrize("seed", range(3))
def test_migration_5_fills_story_rows_from_members(tmp_path: Path, seed: int) -> None:
    """Stories written by version 4 get the rows a recompute gives, and keep growing right."""
    rng = random.Random(seed)
    articles = random_articles(rng, 40)
    by_id = {a.id: a for a in articles}
    path = tmp_path / "w.db"
    with SqliteStore(path, migrations=MIGRATIONS[:4]) as old:
        old.add_articles(articles)
    assigned = ["2024-05-01T09:00:00+00:00", "2024-05-01T09:00:00.000001+00:00"]
    with closing(sqlite3.connect(path)) as conn, conn:  # as version 4 wrote them
        for a in articles[:30]:
            story = f"s{rng.randrange(5)}"
            conn.execute("INSERT INTO stories VALUES (?, ?, '', '[]', 0, 'x', 'x') "
                         "ON CONFLICT DO NOTHING", (story, story))  # fmt: skip
            conn.execute("INSERT INTO story_members VALUES (?, ?, NULL, 1.0, ?, ?)",
                         (a.id, story, time_key(a.published_at), rng.choice(assigned)))  # fmt: skip
    with SqliteStore(path) as new, closing(sqlite3.connect(path)) as conn:
        assert reference_stories(conn, by_id) == stored_stories(conn)
        late = articles[30:]
        stories = [f"s{rng.randrange(5)}" for _ in late]
        new.save_stories([], [MemberRow(a.id, s, None, 1.0, time_key(a.published_at))
                              for a, s in zip(late, stories, strict=True)])  # fmt: skip
        assert reference_stories(conn, by_id) == stored_stories(conn)
