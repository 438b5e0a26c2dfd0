"""Sample alerts for the render, email and webhook tests, built as the pipeline will build them.

sample_alert("ops-mail")       a Traditional-script story matched by Simplified terms
hostile_alert("ops-mail")      a title and link that try to inject markup and scripts
second_alert("ops-mail")       another story, for digests
golden(name, actual)           compare with tests/data/alerts/<name>; WATCHER_UPDATE_GOLDEN=1
                               writes the file instead
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from watcher.alerts import new_alert
from watcher.models import Alert, StoryView
from watcher.rules import compile_rules, match_story
from watcher.settings import RuleSettings

from .conftest import DATA

GOLDEN = DATA / "alerts"
NOW = datetime(2026, 11, 3, 5, 20, 20, tzinfo=UTC)

UKRAINE = RuleSettings(name="ukraine", any=("乌克兰", "Ukraine", '"Black Sea"'))

SAMPLE_VIEW = StoryView(
    story_id="s-20261103-0001",
    article_id="a-zaobao-0001",
    title="烏克蘭總統：黑海糧食協議\n將再延長120天",
    text=(
        "（中央社基輔3日綜合外電報導）烏克蘭總統澤倫斯基今天表示，黑海糧食協議將再延長120天。"
        "聯合國與土耳其斡旋的這項協議讓烏克蘭得以經由黑海出口穀物。"
        "Officials in Kyiv said the Black Sea corridor had shipped 10 million tonnes so far, "
        "and that Ukraine expects more ships next week. "
        "分析人士指出，協議延長有助於穩定全球糧價。" * 2
    ),
    link="https://www.example.org/news/烏克蘭-糧食?id=1&src=rss",
    published_at=datetime(2026, 11, 3, 4, 58, tzinfo=UTC),
    outlets=("中央社", "联合早报", "路透"),
    categories=("国际",),
    sources=("cna",),
)

HOSTILE_VIEW = StoryView(
    story_id="s-evil",
    title='<script>alert("x")</script> Ukraine @everyone **bold** <b>&amp; [x](javascript:y)',
    text='Ukraine <img src=x onerror=alert(1)> "quoted" & <a href="javascript:alert(1)">x</a>',
    link="javascript:alert(document.cookie)",
    published_at=None,
    outlets=("Evil <Outlet>",),
)

SECOND_VIEW = StoryView(
    story_id="s-20261103-0002",
    title="Ukraine grain exports resume",
    text="Ships left Odesa on Tuesday.",
    link="https://www.example.org/en/grain",
    published_at=datetime(2026, 11, 3, 5, 1, tzinfo=UTC),
    outlets=("Reuters",),
)


def _alert(view: StoryView, channel: str) -> Alert:
    match = match_story(compile_rules([UKRAINE]), view, now=NOW)[0]
    return new_alert(match, view, channel, now=NOW)


def sample_alert(channel: str) -> Alert:
    """The ordinary alert: Traditional text, Simplified terms, three outlets."""
    return _alert(SAMPLE_VIEW, channel)


def hostile_alert(channel: str) -> Alert:
    """An alert whose title, text, outlet and link carry markup and script."""
    return _alert(HOSTILE_VIEW, channel)


def second_alert(channel: str) -> Alert:
    """Another alert on the same channel, for digests."""
    return _alert(SECOND_VIEW, channel)


def golden(name: str, actual: str) -> str:
    """The golden file's text (written from ``actual`` when WATCHER_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if os.environ.get("WATCHER_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode())
    return path.read_bytes().decode()
