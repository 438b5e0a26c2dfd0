"""Stories against a real store: assignment, restart, restory, and the two commands."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher import archive
from watcher.backfill import backfill, find_dump_files
from watcher.cli import main
from watcher.dedupe import Signed, sign_articles
from watcher.models import Article
from watcher.settings import DedupSettings
from watcher.store import Store, open_store
from watcher.stories import SPARE_DAYS, StoryAssigner, restory

from .conftest import DATA

ARTICLES = DATA / "dedupe" / "articles"


def read(*names: str) -> list[Article]:
    return [archive.read_file(ARTICLES / name, origin=name) for name in names]


def stored(tmp_path: Path, articles: list[Article]) -> Store:
    store = open_store(tmp_path / "watcher.db")
    store.add_articles(articles)
    return store


def test_wire_copies_join_one_story(tmp_path: Path) -> None:
    """Three outlets' copies of one wire item: one story, canonical the earliest (财联社)."""
    articles = read("a1_36kr.md", "a2_stcn.md", "a3_cls.md")
    with stored(tmp_path, articles) as store:
        done = StoryAssigner(store, DedupSettings()).assign(articles)
        stories = list(store.iter_stories())
    actual = ([d.starts_story for d in done], len(stories), stories[0].outlets)
    assert ([True, False, False], 1, ["财联社", "36kr", "证券时报网"]) == actual


def test_a_restart_rebuilds_the_index_from_stored_signatures(tmp_path: Path) -> None:
    """After a restart the next copy joins the story stored before, with nothing recomputed."""
    first, second = read("c1_cna.md", "c2_rfi.md")
    with stored(tmp_path, [first, second]) as store:
        StoryAssigner(store, DedupSettings()).assign([first])
        [later] = StoryAssigner(store, DedupSettings()).assign([second])
    assert (first.id, first.id) == (later.story_id, later.matched_id)


def test_assigning_twice_changes_nothing(tmp_path: Path) -> None:
    """Articles already in a story are skipped on a second call."""
    articles = read("e1_reuters.md", "e2_zaobao.md")
    with stored(tmp_path, articles) as store:
        StoryAssigner(store, DedupSettings()).assign(articles)
        again = StoryAssigner(store, DedupSettings()).assign(articles)
        assert ([], 1) == (again, store.count_stories())


def test_pending_articles_are_caught_up(tmp_path: Path) -> None:
    """assign_pending gives a story to every stored article that has none."""
    with stored(tmp_path, read("d1_voa.md", "d2_cdt.md", "r1_cna.md")) as store:
        count = StoryAssigner(store, DedupSettings()).assign_pending()
        assert (3, 2, []) == (count, store.count_stories(), store.unassigned_article_ids())


def test_restory_applies_new_thresholds(tmp_path: Path) -> None:
    """With the threshold at 1.0 and containment off, restory splits an edited copy's story."""
    articles = read("e1_reuters.md", "e2_zaobao.md")
    with stored(tmp_path, articles) as store:
        StoryAssigner(store, DedupSettings()).assign(articles)
        strict = DedupSettings(threshold=1.0, containment=1.0, containment_min_shingles=10**9)
        assert (1, 2) == restory(store, strict)


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "watcher.toml"
    config.write_text('[watcher]\ndata_dir = "data"\nlog_level = "warning"\n', encoding="utf-8")
    return config


def _backfill_fixtures(config: Path) -> None:
    with open_store(config.parent / "data" / "watcher.db") as store:
        backfill(store, find_dump_files([ARTICLES]), workers=1)
        StoryAssigner(store, DedupSettings()).assign_pending()


def test_stories_json_lists_each_story_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watcher stories --json --min-outlets 3`: the wire story, its three articles' fields."""
    config = _config(tmp_path)
    _backfill_fixtures(config)
    code = main(["--config", str(config), "stories", "--json", "--min-outlets", "3"])
    lines = capsys.readouterr().out.splitlines()
    story = json.loads(lines[0])
    actual = (code, len(lines), sorted(a["origin"] for a in story["articles"]),
              sorted(story["articles"][0]))  # fmt: skip
    expected = (0, 1, ["a1_36kr.md", "a2_stcn.md", "a3_cls.md"],
                ["id", "link", "origin", "outlet", "published", "similarity", "title"])  # fmt: skip
    assert expected == actual


def test_stories_since_and_text_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--since 2022-06-01` keeps the June 2022 story; the text form names both outlets."""
    config = _config(tmp_path)
    _backfill_fixtures(config)
    code = main(["--config", str(config), "stories", "--since", "2022-06-01"])
    out = capsys.readouterr().out
    assert (0, True, True) == (code, "36kr" in out, "观察者网" in out)


def test_stories_refuses_a_bad_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --since that is no date or duration is a usage error (exit 2) naming the value."""
    code = main(["--config", str(_config(tmp_path)), "stories", "--since", "yesterday"])
    assert (2, True) == (code, "'yesterday'" in capsys.readouterr().err)


def test_restory_command_reports_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`watcher restory` recomputes and prints the story counts before and after."""
    config = _config(tmp_path)
    _backfill_fixtures(config)
    code = main(["--config", str(config), "restory"])
    out = capsys.readouterr().out
    assert (0, "stories recomputed: 19 before, 19 now") == (code, out.strip())


def test_signatures_made_while_parsing_are_used_when_their_scheme_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given signatures of the assigner's scheme are used as made; another scheme's are not."""
    articles = read("a1_36kr.md", "a2_stcn.md", "a3_cls.md")
    signed = sign_articles(articles, DedupSettings())
    with stored(tmp_path, articles) as store:
        assigner = StoryAssigner(store, DedupSettings())
        signing: list[int] = []
        real = assigner.signer.sign_articles
        monkeypatch.setattr(assigner.signer, "sign_articles",
                            lambda batch: signing.append(len(batch)) or real(batch))  # fmt: skip
        given = assigner.assign(articles, signed)
        other = Signed("another scheme", signed.signatures)
        again = StoryAssigner(open_store(tmp_path / "b.db"), DedupSettings())
        again.store.add_articles(articles)
        monkeypatch.setattr(again.signer, "sign_articles",
                            lambda batch: signing.append(len(batch)) or real(batch))  # fmt: skip
        resigned = again.assign(articles, other)
        again.store.close()
    assert signing == [0, 3]  # nothing signed with a matching scheme, everything without
    assert [(a.story_id, a.matched_id) for a in given] == [
        (a.story_id, a.matched_id) for a in resigned
    ]


def _daily(day: int, rng: random.Random, text: str | None = None) -> Article:
    """An article of its own text (600 random CJK characters), published on day ``day``."""
    body = text or "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(600))
    at = datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
    return Article(
        id=f"d{day}-{len(body)}-{body[:4]}",
        format="link",
        title=f"第{day}天",
        outlet=f"o{day % 3}",
        published_at=at,
        body_html=f"<p>{body}</p>",
        text=body,
    )


def test_days_held_follow_the_window_not_how_long_it_ran(tmp_path: Path) -> None:
    """Sixty days of articles, one a day, a one-day window: the days held stay few, and an
    evicted day comes back from the store when an item needs it (its copy joins its story)."""
    rng = random.Random(5)
    settings = DedupSettings(window=timedelta(days=1))
    articles = [_daily(day, rng) for day in range(60)]
    with stored(tmp_path, articles) as store:
        assigner = StoryAssigner(store, settings)
        held = []
        for article in articles:
            assigner.assign([article])
            held.append((len(assigner._days), len(assigner.book)))
        copy = _daily(3, rng, text=articles[3].text)  # a copy of day 3's, long evicted
        late = copy.model_copy(update={"id": "copy-of-day-3", "outlet": "other"})
        store.add_articles([late])
        [joined] = assigner.assign([late])
    bound = 2 * 1 + 2 + SPARE_DAYS
    assert max(days for days, _ in held) <= bound
    assert max(size for _, size in held) <= bound
    assert (articles[3].id, articles[3].id) == (joined.story_id, joined.matched_id)
