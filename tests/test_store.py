"""The store contract, run against every backend, then what only SQLite promises."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from watcher.errors import StoreError
from watcher.models import Article, Layout, SourceState
from watcher.store import SqliteStore, Store, open_store
from watcher.store.migrations import MIGRATIONS, Migration
from watcher.store.rows import ARTICLE_COLUMNS, SOURCE_STATE_COLUMNS, MemberRow, StoryReach
from watcher.store.sqlite import PAGE_SIZE

BACKENDS = ["sqlite"]  # "postgresql" joins when its backend lands

Opener = Callable[[], Store]
PLUS_ONE = timezone(timedelta(hours=1))


def make_article(id: str, **fields: object) -> Article:
    return Article.model_validate(
        {"id": id, "format": "link", "title": id, "outlet": "o", **fields}
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


FULL = make_article(
    "full-1",
    format="hexo",
    title="台风“海葵”登陆 🌀",
    title_written="台风'海葵'登陆",
    link="https://example.com/a?x=1&y=é",
    outlet="联合早报",
    author="",
    categories=["国际", "天气"],
    tags=["台风", ""],
    published_at=datetime(2023, 9, 3, 15, 20, 5, 123456, tzinfo=PLUS_ONE),
    published_confidence="naive",
    head_image="https://img.example.com/h.jpg",
    body_html="<p>第一段</p>\n<p>{braces} &amp; ‘quotes’</p>",
    text="第一段\n{braces} & ‘quotes’",
    source="zaobao",
    origin="2023/09/03/a.md",
    layout=Layout(
        date_style="iso_offset",
        date_text="2023-09-03T15:20:05+01:00",
        title_quote="'",
        category_indent=2,
        head_image_key="empty",
        comments=False,
        jekyll_layout="链接",
        epoch_ms=1693750805123,
    ),
)
MINIMAL = make_article("minimal-1")


@pytest.fixture(params=BACKENDS)
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Return a function that opens the same store of one backend, fresh for each test."""
    if request.param == "sqlite":
        return lambda: open_store(f"sqlite:///{tmp_path / 'store' / 'watcher.db'}")
    raise NotImplementedError(request.param)


@pytest.fixture
def store(reopen: Opener) -> Iterator[Store]:
    """An open, empty store, closed after the test."""
    with reopen() as opened:
        yield opened


# -- the contract --------------------------------------------------------------------------


def test_open_store_gives_a_store(store: Store) -> None:
    """Every backend satisfies the Store protocol."""
    assert isinstance(store, Store)


@pytest.mark.parametrize("article", [FULL, MINIMAL], ids=["full", "minimal"])
def test_article_round_trips_exactly(store: Store, article: Article) -> None:
    """An article reads back equal to the one stored, layout included."""
    store.add_articles([article])
    assert article == store.get_article(article.id)


def test_round_trip_keeps_the_utc_offset(store: Store) -> None:
    """A +01:00 time reads back as +01:00, not converted to UTC."""
    store.add_articles([FULL])
    stored = store.get_article(FULL.id)
    assert stored is not None
    assert stored.published_at is not None
    assert timedelta(hours=1) == stored.published_at.utcoffset()


def test_round_trip_keeps_none_apart_from_empty(store: Store, reopen: Opener) -> None:
    """None and "" stay distinct, also after reopening."""
    article = make_article("n", link="", author=None, head_image="", origin=None)
    store.add_articles([article])
    store.close()
    with reopen() as again:
        stored = again.get_article("n")
    assert stored is not None
    expected = ("", None, "", None)
    assert expected == (stored.link, stored.author, stored.head_image, stored.origin)


def test_get_article_of_unknown_id_is_none(store: Store) -> None:
    """An id never stored reads as None."""
    assert None is store.get_article("nope")


def test_add_articles_is_idempotent(store: Store) -> None:
    """Adding the same batch twice stores it once; the second add reports 0 new."""
    batch = [make_article(f"a{i}") for i in range(3)]
    assert store.add_articles(batch) == 3
    assert store.add_articles(batch) == 0
    assert store.count_articles() == 3


def test_add_articles_keeps_the_first_version(store: Store) -> None:
    """A known id is skipped, not overwritten, and a repeat within a batch counts once."""
    first, changed = make_article("x", title="first"), make_article("x", title="changed")
    assert store.add_articles([first, changed]) == 1
    assert store.add_articles([changed]) == 0
    assert first == store.get_article("x")


def test_add_articles_of_nothing_is_zero(store: Store) -> None:
    """An empty batch adds nothing."""
    assert store.add_articles([]) == 0


def test_add_articles_takes_a_batch_of_500(store: Store) -> None:
    """A daemon-sized batch of 500 goes in at once, from a generator."""
    assert store.add_articles(make_article(f"b{i:03}") for i in range(500)) == 500
    assert store.count_articles() == 500


def test_known_ids(store: Store) -> None:
    """known_ids returns exactly the stored ids among more than one IN-list's worth."""
    store.add_articles(make_article(f"k{i}") for i in range(0, 1200, 3))
    expected = {f"k{i}" for i in range(0, 1200, 3)}
    assert expected == store.known_ids(f"k{i}" for i in range(1200))
    assert set() == store.known_ids([])


def test_iter_orders_by_instant_then_id(store: Store) -> None:
    """Articles come by published instant (whatever the offset), then id; undated first."""
    store.add_articles(
        [
            make_article("late", published_at=at("2024-01-01T06:00:00+00:00")),
            make_article("early", published_at=at("2024-01-01T10:00:00+05:00")),
            make_article("tie-b", published_at=at("2024-01-01T05:30:00+00:00")),
            make_article("tie-a", published_at=at("2024-01-01T06:30:00+01:00")),
            make_article("undated"),
        ]
    )
    expected = ["undated", "early", "tie-a", "tie-b", "late"]
    assert expected == [a.id for a in store.iter_articles()]


def test_iter_since_is_inclusive_and_skips_undated(store: Store) -> None:
    """since keeps articles at or after the instant, whatever their offset."""
    store.add_articles(
        [
            make_article("before", published_at=at("2024-01-01T11:59:59+00:00")),
            make_article("same", published_at=at("2024-01-01T13:00:00+01:00")),
            make_article("after", published_at=at("2024-01-02T00:00:00+00:00")),
            make_article("undated"),
        ]
    )
    since = at("2024-01-01T20:00:00+08:00")
    assert [a.id for a in store.iter_articles(since=since)] == ["same", "after"]


def test_iter_streams_across_pages(store: Store) -> None:
    """Iteration crosses page boundaries without losing or repeating an article."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    count = 2 * PAGE_SIZE + 7
    store.add_articles(
        make_article(f"p{i:04}", published_at=start + timedelta(minutes=i // 2))
        for i in range(count)
    )
    expected = [f"p{i:04}" for i in range(count)]
    assert expected == [a.id for a in store.iter_articles()]


def test_iter_rejects_a_naive_since(store: Store) -> None:
    """A naive since is a bug in the caller, reported at the call."""
    with pytest.raises(ValueError, match="timezone-aware"):
        store.iter_articles(since=datetime(2024, 1, 1))


def test_upsert_article_inserts_then_replaces(store: Store) -> None:
    """upsert_article is True for a new id, then False and the new content wins."""
    changed = FULL.model_copy(update={"title": "更新", "tags": [], "layout": Layout()})
    assert (store.upsert_article(FULL), store.upsert_article(changed)) == (True, False)
    assert changed == store.get_article(FULL.id)
    assert store.count_articles() == 1


def test_source_state_round_trips(store: Store) -> None:
    """A source's state reads back equal, offsets kept, and a second put replaces it."""
    state = SourceState(
        name="zaobao",
        url="https://example.com/feed",
        etag='W/"abc"',
        last_modified="Mon, 03 Jan 2022 05:20:20 GMT",
        last_checked_at=at("2024-01-01T06:00:00+01:00"),
        next_check_at=at("2024-01-01T05:10:00+00:00"),
        last_error="HTTP 503",
        consecutive_failures=3,
        paused=True,
    )
    store.put_source_state(SourceState(name="zaobao"))
    store.put_source_state(state)
    assert state == store.get_source_state("zaobao")
    assert None is store.get_source_state("other")


def test_data_survives_reopening(store: Store, reopen: Opener) -> None:
    """What one open stores, the next open reads."""
    store.add_articles([FULL, MINIMAL])
    store.put_source_state(SourceState(name="s", consecutive_failures=1))
    store.close()
    with reopen() as again:
        assert list(again.iter_articles()) == [MINIMAL, FULL]
        assert SourceState(name="s", consecutive_failures=1) == again.get_source_state("s")


def test_a_closed_store_raises_store_error(store: Store) -> None:
    """Using a store after close is a StoreError, and closing twice is harmless."""
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.count_articles()


def test_columns_follow_the_models() -> None:
    """Every model field has a column, so no field is silently dropped."""
    assert tuple(Article.model_fields) == ARTICLE_COLUMNS
    assert tuple(SourceState.model_fields) == SOURCE_STATE_COLUMNS


# -- open_store ----------------------------------------------------------------------------


def test_unsupported_scheme_names_the_supported_ones() -> None:
    """Another scheme is a StoreError listing the supported forms, never echoing the URL."""
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://watcher:s3cret@db/watcher")
    message = str(caught.value)
    assert "'postgresql'" in message
    assert "sqlite:///" in message
    assert "s3cret" not in message


def test_sqlite_url_without_a_file_is_refused() -> None:
    """sqlite:// with no path is a StoreError, not an in-memory store."""
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite://")


def test_sqlite_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///a/b.db opens a/b.db under the working directory, creating a/."""
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///a/b.db").close()
    assert (tmp_path / "a" / "b.db").is_file()


def test_plain_path_opens_sqlite(tmp_path: Path) -> None:
    """A plain path, str or Path, opens SQLite and creates the parent folders."""
    for target in (tmp_path / "x" / "y" / "w.db", str(tmp_path / "z" / "w.db")):
        with open_store(target) as opened:
            assert SqliteStore is type(opened)
        assert Path(target).is_file()


# -- SQLite only ---------------------------------------------------------------------------


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def execute(path: Path, sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A migrated, closed SQLite store file."""
    path = tmp_path / "watcher.db"
    SqliteStore(path).close()
    return path


def tables(path: Path) -> set[object]:
    return {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}


def test_sqlite_is_in_wal_mode(db: Path) -> None:
    """The file is left in WAL mode."""
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


def test_sqlite_connection_pragmas(tmp_path: Path) -> None:
    """The store's connection runs synchronous=NORMAL with foreign keys on."""
    with SqliteStore(tmp_path / "w.db") as opened:
        conn = opened._conn  # the pragmas are per connection, so only the store's own shows them
        pragmas = {
            p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "foreign_keys")
        }
    expected = {"synchronous": 1, "foreign_keys": 1}  # 1 is NORMAL, and on
    assert expected == pragmas


ALL_TABLES = {
    "schema_migrations",
    "articles",
    "source_state",
    "stories",
    "story_members",
    "signatures",
    "matches",
    "alerts",
    "rule_checks",
    "archive_pending",
}


def test_migrations_are_recorded(db: Path) -> None:
    """Each migration is recorded with its version and name, and its tables exist."""
    recorded = query(db, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(i, m.name) for i, m in enumerate(MIGRATIONS, start=1)] == recorded
    assert ALL_TABLES == tables(db)


def test_reopening_applies_nothing(db: Path) -> None:
    """Opening a migrated file again changes nothing in schema_migrations."""
    before = query(db, "SELECT * FROM schema_migrations")
    SqliteStore(db).close()
    assert before == query(db, "SELECT * FROM schema_migrations")


def test_a_newer_schema_is_refused(db: Path) -> None:
    """A file migrated by a newer watcher is a StoreError naming the file and version."""
    future = len(MIGRATIONS) + 1
    execute(db, f"INSERT INTO schema_migrations VALUES ({future}, 'from the future', 'x')")
    with pytest.raises(StoreError) as caught:
        SqliteStore(db)
    assert str(db) in str(caught.value)
    assert f"schema version {future} is newer" in str(caught.value)


def test_a_renamed_migration_is_refused(db: Path) -> None:
    """A recorded migration whose name differs from the code's is a StoreError."""
    execute(db, "UPDATE schema_migrations SET name = 'edited' WHERE version = 1")
    with pytest.raises(StoreError, match="recorded as 'edited'"):
        SqliteStore(db)


def test_a_failing_migration_leaves_the_file_untouched(db: Path) -> None:
    """A migration that fails rolls back whole: no new table, no new version."""
    broken = Migration("broken", ("CREATE TABLE half_done (a TEXT)", "NOT SQL AT ALL"))
    with pytest.raises(StoreError, match="migrate the schema") as caught:
        SqliteStore(db, migrations=[*MIGRATIONS, broken])
    assert sqlite3.OperationalError is type(caught.value.__cause__)
    assert ALL_TABLES == tables(db)
    assert [(len(MIGRATIONS),)] == query(db, "SELECT MAX(version) FROM schema_migrations")


def test_a_corrupt_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    """A file that is not SQLite is a StoreError naming the path, the driver error chained."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"\x00\xffnot a database at all\n" * 200)
    with pytest.raises(StoreError) as caught:
        SqliteStore(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_an_unusable_folder_is_a_store_error(tmp_path: Path) -> None:
    """A parent path that is a file is a StoreError naming the path."""
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "watcher.db"
    with pytest.raises(StoreError) as caught:
        SqliteStore(path)
    assert str(path) in str(caught.value)


def test_text_sqlite_cannot_encode_is_a_store_error(tmp_path: Path) -> None:
    """A lone surrogate is a StoreError, and the batch holding it is rolled back."""
    with SqliteStore(tmp_path / "w.db") as opened:
        with pytest.raises(StoreError, match="add articles"):
            opened.add_articles([make_article("ok"), make_article("bad", title="\ud800")])
        assert opened.count_articles() == 0


def test_an_unreadable_row_is_a_store_error_naming_the_article(db: Path) -> None:
    """A row that no longer fits the model is a StoreError naming file and article id."""
    with SqliteStore(db) as opened:
        opened.add_articles([MINIMAL])
    execute(db, "UPDATE articles SET layout = '{\"gone\": 1}'")
    with SqliteStore(db) as opened, pytest.raises(StoreError, match="'minimal-1' cannot be read"):
        opened.get_article("minimal-1")


def test_migrates_from_each_old_version(tmp_path: Path) -> None:
    """A database left at each older version migrates, keeps its rows, and its stories' reach."""
    for version in range(1, len(MIGRATIONS)):
        path = tmp_path / f"v{version}.db"
        SqliteStore(path, migrations=MIGRATIONS[:version]).close()
        with closing(sqlite3.connect(path)) as conn, conn:  # a row as that version wrote it
            conn.execute(
                "INSERT INTO source_state (name, etag, consecutive_failures, paused) "
                "VALUES ('s', 'e1', 2, 0)"
            )
            if version >= 3:  # stories exist: one of two members, the later one first
                _write_old_story(conn, with_story_row=version < 5, story_column=version < 6)
        if version >= 5:  # story rows keep their reach: written as that version's store did
            with SqliteStore(path, migrations=MIGRATIONS[:version]) as old:
                old.save_stories(
                    [],
                    [
                        MemberRow("b", "b", None, 1.0, "2024-01-02T00:00:00.000000+00:00"),
                        MemberRow("a", "b", "b", 1.0, "2024-01-01T00:00:00.000000+00:00"),
                    ],
                )
        with SqliteStore(path) as new:
            state = new.get_source_state("s")
            reach = new.story_reach(["b"]) if version >= 3 else {}
        assert SourceState(name="s", etag="e1", consecutive_failures=2) == state
        expected = {"b": StoryReach(("o", "p"), ("世界", "x"), ("zb",))} if version >= 3 else {}
        assert expected == reach


def _write_old_story(conn: sqlite3.Connection, *, with_story_row: bool, story_column: bool) -> None:
    for id_, outlet, at, categories, source in (
        ("b", "p", "2024-01-02T00:00:00.000000+00:00", '["x", "世界"]', None),
        ("a", "o", "2024-01-01T00:00:00.000000+00:00", '["世界"]', "zb"),
    ):
        story = ("story_id, ", "'b', ") if story_column else ("", "")  # gone in version 6
        conn.execute(
            "INSERT INTO articles (id, format, title, outlet, categories, tags, published_key, "
            f"published_confidence, body_html, text, source, layout, {story[0]}inserted_at) "
            f"VALUES (?, 'link', ?, ?, ?, '[]', ?, 'exact', '', '', ?, '{{}}', {story[1]}?)",
            (id_, id_, outlet, categories, at, source, at),
        )
    if not with_story_row:
        return
    conn.execute("INSERT INTO stories VALUES ('b', 'b', '', '[\"p\"]', 1, 'x', 'x')")
    conn.executemany(
        "INSERT INTO story_members VALUES (?, 'b', NULL, 1.0, ?, ?)",
        [("b", "2024-01-02T00:00:00.000000+00:00", "t1"),
         ("a", "2024-01-01T00:00:00.000000+00:00", "t2")],
    )  # fmt: skip


def test_count_articles_by_source(store: Store) -> None:
    """Articles are counted per source; backfilled ones (no source) are left out."""
    store.add_articles(
        [
            make_article("a", source="zaobao"),
            make_article("b", source="zaobao"),
            make_article("c", source="rfi"),
            make_article("d"),
        ]
    )
    assert {"zaobao": 2, "rfi": 1} == store.count_articles_by_source()


def test_all_ids(store: Store) -> None:
    """all_ids is every stored article's id."""
    store.add_articles([make_article("a"), make_article("b")])
    assert frozenset({"a", "b"}) == store.all_ids()


def test_batch_commits_everything_at_its_end(db: Path) -> None:
    """Writes inside a batch are one transaction: another connection sees them only after it."""

    def seen() -> tuple[int, int]:
        with closing(sqlite3.connect(db)) as other:
            (articles,) = other.execute("SELECT COUNT(*) FROM articles").fetchone()
            (states,) = other.execute("SELECT COUNT(*) FROM source_state").fetchone()
        return articles, states

    with open_store(db) as store:
        with store.batch():
            store.add_articles([make_article("b1")])
            store.put_source_state(SourceState(name="src", consecutive_failures=2))
            assert seen() == (0, 0)
        assert seen() == (1, 1)


def test_batch_that_fails_stores_nothing(store: Store) -> None:
    """An error anywhere in a batch undoes every write made in it."""
    with pytest.raises(RuntimeError), store.batch():
        store.add_articles([make_article("b1"), make_article("b2")])
        store.put_source_state(SourceState(name="src"))
        raise RuntimeError("killed mid-pass")
    assert (0, None) == (store.count_articles(), store.get_source_state("src"))


def test_failed_write_inside_a_batch_undoes_only_itself(store: Store) -> None:
    """A write that fails inside a batch (and is handled) leaves the batch's other writes."""
    with store.batch():
        store.add_articles([make_article("b1")])
        with pytest.raises(StoreError):
            store.add_articles([make_article("b2"), make_article("b3", title="\ud800")])
        store.add_articles([make_article("b4")])
    assert store.known_ids(["b1", "b2", "b3", "b4"]) == {"b1", "b4"}
