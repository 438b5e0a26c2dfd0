"""Rules over the stories of new articles: an alert per story x rule x channel, once; rules test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watcher.alerting import Alerting, firing_lines, replay, replay_story
from watcher.cli import main
from watcher.models import Article
from watcher.rules import CompiledRule, compile_rules
from watcher.settings import RuleSettings
from watcher.store import Store, open_store
from watcher.store.rows import MemberRow, time_key

from .conftest import DATA

T0 = datetime(2026, 11, 3, 5, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
TEXT = "乌克兰总统表示，黑海粮食协议将再延长120天。"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store."""
    with open_store(tmp_path / "data" / "watcher.db") as opened:
        yield opened


def rules(**fields: Any) -> list[CompiledRule]:
    """One rule "ukraine" (乌克兰 or Ukraine) to mail and hook, with ``fields`` changed."""
    values: dict[str, Any] = {"name": "ukraine", "any": ("乌克兰", "Ukraine"),
                              "channels": ("mail", "hook"), **fields}  # fmt: skip
    return compile_rules([RuleSettings.model_validate(values)])


def arrive(
    store: Store,
    id: str,
    story: str,
    outlet: str,
    *,
    text: str = TEXT,
    source: str = "s",
    n: int = 0,
) -> Article:
    """Store an article and put it into ``story`` (as the pipeline does before the rules)."""
    at = T0 + timedelta(minutes=n)
    article = Article(id=id, format="hexo", title=f"{outlet}: {text[:8]}", text=text,
                      outlet=outlet, published_at=at, source=source,
                      link=f"https://example.org/{id}")  # fmt: skip
    store.add_articles([article])
    matched = None if id == story else story
    store.save_stories([], [MemberRow(id, story, matched, 1.0, time_key(at))])
    return article


def keys(store: Store) -> list[tuple[str, str, str | None]]:
    return [(e.delivery.channel, e.alert.story_id, e.alert.article_id) for e in store.list_alerts()]


# --- once per story x rule x channel --------------------------------------------------------------


def test_the_first_copy_alerts_each_channel_once(store: Store) -> None:
    """A matching story's first article queues one alert per channel of the rule."""
    queued = Alerting(store, rules(), clock=lambda: NOW).enqueue([arrive(store, "a", "a", "早报")])
    assert [("mail", "a", "a"), ("hook", "a", "a")] == [(q.channel, q.story_id, q.article_id)
                                                        for q in queued]  # fmt: skip
    assert (["乌克兰"], NOW) == (list(queued[0].terms), queued[0].created_at)


def test_later_copies_never_alert_again(store: Store) -> None:
    """Copies from other outlets join the story and queue nothing more, even after a restart."""
    Alerting(store, rules()).enqueue([arrive(store, "a", "a", "早报")])
    again = Alerting(store, rules())  # a new process
    later = [again.enqueue([arrive(store, x, "a", x, n=i)]) for i, x in enumerate("bcd", 1)]
    assert ([[], [], []], 2) == (later, len(store.list_alerts()))


def test_min_outlets_fires_once_when_the_story_reaches_n(store: Store) -> None:
    """min_outlets = 2: nothing for one outlet (twice), one alert on the second, none after."""
    alerting = Alerting(store, rules(min_outlets=2, channels=("mail",)))
    fired = [
        len(alerting.enqueue([arrive(store, id, "a", outlet, n=i)]))
        for i, (id, outlet) in enumerate(
            [("a", "早报"), ("b", "早报"), ("c", "路透"), ("d", "CNA")]
        )
    ]
    (entry,) = store.list_alerts()
    assert ([0, 0, 1, 0], "c", ("早报", "路透")) == (fired, entry.alert.article_id,
                                                     entry.alert.outlets)  # fmt: skip


def test_a_story_alerts_when_a_later_copy_first_matches(store: Store) -> None:
    """The first copy says nothing that matches; the copy that does brings the alert."""
    alerting = Alerting(store, rules(channels=("mail",)))
    first = alerting.enqueue([arrive(store, "a", "a", "早报", text="黑海粮食协议延长。")])
    second = alerting.enqueue([arrive(store, "b", "a", "路透", n=1)])
    assert (0, ["b"]) == (len(first), [a.article_id for a in second])


def test_one_batch_with_two_copies_alerts_once(store: Store) -> None:
    """Two copies of one story in one pass: one alert per channel, from the older copy."""
    batch = [arrive(store, "b", "a", "路透", n=1), arrive(store, "a", "a", "早报")]
    queued = Alerting(store, rules(channels=("mail",))).enqueue(batch)
    assert ["a"] == [a.article_id for a in queued]


def test_scope_counts_every_member_of_the_story(store: Store) -> None:
    """sources = ["zaobao"]: a story only Reuters carried waits; the Zaobao copy fires it."""
    alerting = Alerting(store, rules(sources=("zaobao",), channels=("mail",)))
    first = alerting.enqueue([arrive(store, "a", "a", "路透", source="reuters")])
    second = alerting.enqueue([arrive(store, "b", "a", "早报", source="zaobao", n=1)])
    assert (0, 1) == (len(first), len(second))


def test_a_rule_without_channels_records_only_its_match(store: Store) -> None:
    """A rule with no channels matches (kept as a match) and queues no alert."""
    queued = Alerting(store, rules(channels=())).enqueue([arrive(store, "a", "a", "早报")])
    assert ([], {("a", "ukraine")}) == (queued, store.matched_rules(["a"]))


def test_no_rules_still_marks_articles_seen(store: Store) -> None:
    """With no rules the articles are marked seen: adding a rule later never alerts on them."""
    Alerting(store, []).enqueue([arrive(store, "a", "a", "早报")])
    assert [] == store.unchecked_article_ids()


def test_catch_up_after_a_kill_between_stories_and_rules(store: Store) -> None:
    """Articles stored and assigned, then a kill: the next start's catch-up queues their alerts."""
    arrive(store, "a", "a", "早报")
    arrive(store, "b", "a", "路透", n=1)
    alerting = Alerting(store, rules(channels=("mail",)))
    assert (1, 0, ["a"]) == (alerting.catch_up(), alerting.catch_up(),
                             [e.alert.article_id for e in store.list_alerts()])  # fmt: skip


def test_an_article_in_no_story_waits_for_the_catch_up(store: Store) -> None:
    """An article the stories have not taken yet is not marked seen: nothing is lost."""
    article = Article(id="x", format="hexo", title="乌克兰", outlet="早报", source="s",
                      published_at=T0)  # fmt: skip
    store.add_articles([article])
    alerting = Alerting(store, rules())
    assert [] == alerting.enqueue([article])
    store.save_stories([], [MemberRow("x", "x", None, 1.0, time_key(T0))])
    assert 2 == alerting.catch_up()


# --- replay: `watcher rules test` -----------------------------------------------------------------


def test_replay_fires_on_the_member_that_reaches_min_outlets(store: Store) -> None:
    """Replayed member by member, min_outlets = 2 fires on the second outlet's copy, once."""
    for i, (id, outlet) in enumerate([("a", "早报"), ("b", "早报"), ("c", "路透"), ("d", "CNA")]):
        arrive(store, id, "a", outlet, n=i)
    story = store.get_story("a")
    assert story is not None
    articles = [a for m in story.members if (a := store.get_article(m.article_id))]
    firings = replay_story(rules(min_outlets=2), story, articles, now=NOW)
    assert [("c", 2)] == [(f.match.article_id, f.match.outlet_count) for f in firings]


def test_firing_lines_mark_the_matched_terms(store: Store) -> None:
    """The printed firing shows the rule, outlets, channels and the terms in brackets."""
    arrive(store, "a", "a", "早报", text="Ukraine: 乌克兰总统表示，协议将再延长。")
    ((_, (firing,)),) = list(replay(store, rules(), now=NOW))
    lines = firing_lines(firing)
    expected = [
        "2026-11-03T05:00+00:00  ukraine  1 outlets: 早报  -> mail, hook",
        "    早报: [Ukraine]:",
        "    matched: 乌克兰, Ukraine",
        "    [Ukraine]: [乌克兰]总统表示，协议将再延长。",
        "    story a  article a  https://example.org/a",
    ]
    assert expected == lines


# --- the commands ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, rule: str) -> Path:
    """A config with its store in tmp_path/data, one webhook channel and ``rule``."""
    config = tmp_path / "watcher.toml"
    config.write_text(
        f'[watcher]\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
        '[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
        f"[[rules]]\n{rule}\nchannels = ['hook']\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.usefixtures("cli_env")
def test_rules_test_prints_what_would_have_fired(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watcher rules test --since all` prints each firing with marked terms, then a summary."""
    arrive(store, "a", "a", "早报")
    arrive(store, "z", "z", "早报", text="与此无关的新闻。")
    config = write_config(tmp_path, "name = 'ukraine'\nany = ['烏克蘭']")
    code = main(["--config", str(config), "rules", "test", "--since", "all"])
    out = capsys.readouterr().out.splitlines()
    assert (0, "    matched: 烏克蘭") == (code, out[2])
    assert "2 stories in the store; 1 alerts would have fired (ukraine 1)" == out[-1]
    assert [] == store.list_alerts()  # a test run queues nothing


@pytest.mark.usefixtures("cli_env")
def test_rules_test_of_an_unknown_rule_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--rule` naming no configured rule is a usage error naming it."""
    config = write_config(tmp_path, "name = 'ukraine'\nany = ['乌克兰']")
    code = main(["--config", str(config), "rules", "test", "--rule", "nope"])
    assert (2, "watcher: no such rule: nope\n") == (code, capsys.readouterr().err)


@pytest.mark.usefixtures("cli_env")
def test_backfill_queues_alerts_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backfill` queues no alert; `backfill --alerts` of more dumps queues theirs only."""
    dumps = Path(shutil.copytree(DATA / "dumps", tmp_path / "dumps"))
    config = write_config(tmp_path, "name = 'xiaomi'\nany = ['小米']")
    zaker = dumps / "Rock-Candy-Tea__RSSHUB-PAGE" / "post"
    moved = Path(shutil.move(zaker, tmp_path / "later"))
    assert 0 == main(["--config", str(config), "backfill", "--no-progress", str(dumps)])
    with open_store(tmp_path / "data" / "watcher.db") as opened:
        before = opened.list_alerts()
    capsys.readouterr()
    assert 0 == main(["--config", str(config), "backfill", "--no-progress", "--alerts", str(moved)])
    out = capsys.readouterr().out
    with open_store(tmp_path / "data" / "watcher.db") as opened:
        after = [(e.alert.rule, e.delivery.channel, e.state) for e in opened.list_alerts()]
    assert ([], [("xiaomi", "hook", "pending")]) == (before, after)
    assert "alerts: 1 queued (`watcher run` sends them)" in out
