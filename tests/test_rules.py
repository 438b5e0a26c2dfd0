"""Rules: one case per precedence step and matching rule of watcher.rules' docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.errors import ConfigError
from watcher.models import StoryView
from watcher.rules import compile_rules, fold, fold_with_offsets, match_story
from watcher.settings import RuleSettings, load_settings

NOW = datetime(2026, 11, 3, 5, 20, tzinfo=UTC)

BASE_VIEW: dict[str, Any] = {
    "story_id": "s1",
    "article_id": "a1",
    "title": "乌克兰局势：黑海粮食协议延长",
    "text": "Ukraine and Russia agreed to extend the Black Sea grain deal, officials said.",
    "link": "https://www.example.org/world/ukraine-grain",
    "outlets": ("联合早报",),
    "categories": ("国际",),
    "sources": ("zaobao",),
}


def matched(rule: dict[str, Any], **view: Any) -> tuple[str, ...] | None:
    """The terms the rule found in BASE_VIEW changed by ``view``, or None when it did not fire."""
    compiled = compile_rules([RuleSettings(name="r", **rule)])
    found = match_story(compiled, StoryView(**{**BASE_VIEW, **view}), now=NOW)
    return found[0].terms if found else None


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[str, ...] | None]] = {
    # 1. scope
    "scope: source listed": ({"any": ["乌克兰"], "sources": ["zaobao"]}, {}, ("乌克兰",)),
    "scope: source not listed": ({"any": ["乌克兰"], "sources": ["rfi"]}, {}, None),
    "scope: outlet folded (Traditional)": (
        {"any": ["乌克兰"], "outlets": ["聯合早報"]},
        {},
        ("乌克兰",),
    ),
    "scope: outlet not carried": ({"any": ["乌克兰"], "outlets": ["路透"]}, {}, None),
    "scope: category": ({"any": ["乌克兰"], "categories": ["體育"]}, {}, None),
    "scope: every list must hold": (
        {"any": ["乌克兰"], "sources": ["zaobao"], "categories": ["体育"]},
        {},
        None,
    ),
    # 2. reach
    "reach: too few outlets": (
        {"any": ["乌克兰"], "min_outlets": 3},
        {"outlets": ("联合早报", "路透")},
        None,
    ),
    "reach: enough distinct outlets": (
        {"any": ["乌克兰"], "min_outlets": 3},
        {"outlets": ("联合早报", "路透", "中央社")},
        ("乌克兰",),
    ),
    "reach: a repeated outlet counts once": (
        {"any": ["乌克兰"], "min_outlets": 2},
        {"outlets": ("路透", "路透")},
        None,
    ),
    # 3. exclude wins
    "exclude beats any and all": (
        {"any": ["乌克兰"], "all": ["grain"], "exclude": ["黑海"]},
        {},
        None,
    ),
    "exclude not found": ({"any": ["乌克兰"], "exclude": ["足球"]}, {}, ("乌克兰",)),
    # 4. all
    "all: every term needed": ({"all": ["乌克兰", "足球"]}, {}, None),
    "all: every term found": ({"all": ["乌克兰", "grain"]}, {}, ("乌克兰", "grain")),
    # 5. any (and regex as its alternative)
    "any: one is enough": ({"any": ["足球", "grain"]}, {}, ("grain",)),
    "any: none found": ({"any": ["足球", "football"]}, {}, None),
    "any with all: both needed": ({"any": ["足球"], "all": ["乌克兰"]}, {}, None),
    "regex stands in for any": (
        {"any": ["足球"], "regex": [r"grain\s+deal"]},
        {},
        (r"grain\s+deal",),
    ),
    "regex alone": ({"regex": [r"officials?\s+said"]}, {}, (r"officials?\s+said",)),
    "order: all, then any, then regex": (
        {"any": ["grain"], "all": ["乌克兰"], "regex": ["黑."]},
        {},
        ("乌克兰", "grain", "黑."),
    ),
    # 6. folding
    "fold: Traditional term, Simplified text": ({"any": ["烏克蘭"]}, {}, ("烏克蘭",)),
    "fold: Simplified term, Traditional text": (
        {"any": ["乌克兰"]},
        {"title": "烏克蘭局勢", "text": ""},
        ("乌克兰",),
    ),
    "fold: case": ({"any": ["UKRAINE"]}, {}, ("UKRAINE",)),
    "fold: full-width Latin": ({"any": ["ukraine"]}, {"text": "ＵＫＲＡＩＮＥ news"}, ("ukraine",)),
    # 7. edges
    "edge: Latin word boundary": ({"any": ["Ukrain"]}, {}, None),
    "edge: Ukraine is not Ukrainian": ({"any": ["Ukraine"]}, {"text": "Ukrainian ports"}, None),
    "edge: G7 is not G77": ({"any": ["G7"]}, {"text": "the G77 met"}, None),
    "edge: CJK as a substring": ({"any": ["粮食"]}, {}, ("粮食",)),
    "edge: Latin inside CJK text": (
        {"any": ["iPhone"]},
        {"title": "新iPhone发布", "text": ""},
        ("iPhone",),
    ),
    "edge: CJK then Latin edge": ({"any": ["华为Mate"]}, {"title": "华为Mate60发布"}, None),
    # 8. words and phrases
    "words: each word, any order": ({"any": ["deal Black"]}, {}, ("deal Black",)),
    "words: one word missing": ({"any": ["deal wheat"]}, {}, None),
    "phrase: in order": ({"any": ['"black sea grain"']}, {}, ('"black sea grain"',)),
    "phrase: out of order": ({"any": ['"deal grain"']}, {}, None),
    "phrase: any whitespace between": (
        {"any": ['"black sea"']},
        {"text": "the Black \n  Sea"},
        ('"black sea"',),
    ),
    # 9. fields
    "fields: outlet not searched by default": ({"any": ["联合早报"]}, {}, None),
    "fields: outlet when asked": (
        {"any": ["聯合早報"], "fields": ["outlet"]},
        {},
        ("聯合早報",),
    ),
    "fields: link when asked": (
        {"any": ["ukraine-grain"], "fields": ["link"]},
        {},
        ("ukraine-grain",),
    ),
    "fields: categories when asked": ({"any": ["国际"], "fields": ["categories"]}, {}, ("国际",)),
    "fields: title only": ({"any": ["grain"], "fields": ["title"]}, {}, None),
    "fields: exclude looks in the same fields": (
        {"any": ["乌克兰"], "exclude": ["grain"], "fields": ["title"]},
        {},
        ("乌克兰",),
    ),
    # 10. patterns
    "regex: written in Traditional": (
        {"regex": ["烏克蘭.{0,2}勢"]},
        {},
        ("烏克蘭.{0,2}勢",),
    ),
    "regex: case-insensitive": ({"regex": ["BLACK SEA"]}, {}, ("BLACK SEA",)),
    "regex: sees NFKC punctuation": ({"regex": [r"局势:"]}, {"title": "乌克兰局势：x"}, ("局势:",)),
}


@pytest.mark.parametrize(("rule", "view", "expected"), CASES.values(), ids=CASES)
def test_rule_decides(
    rule: dict[str, Any], view: dict[str, Any], expected: tuple[str, ...] | None
) -> None:
    """Each precedence step and matching rule gives the terms found, or no match."""
    assert expected == matched(rule, **view)


def test_every_rule_that_fires_gives_a_match_in_order() -> None:
    """match_story returns one Match per firing rule, in the rules' order, stamped with now."""
    rules = compile_rules(
        [
            RuleSettings(name="b", any=("grain",)),
            RuleSettings(name="none", any=("足球",)),
            RuleSettings(name="a", any=("乌克兰",)),
        ]
    )
    found = match_story(rules, StoryView(**BASE_VIEW), now=NOW)
    expected = [("b", "s1", "a1", 1, NOW), ("a", "s1", "a1", 1, NOW)]
    assert expected == [
        (m.rule, m.story_id, m.article_id, m.outlet_count, m.matched_at) for m in found
    ]


def test_highlights_point_into_the_original_text() -> None:
    """Spans are offsets of the original (Traditional, full-width) title and text."""
    view = StoryView(story_id="s", title="快訊：烏克蘭與ＵＫＲＡＩＮＥ", text="A Black  Sea deal")
    rule = RuleSettings(name="r", any=("乌克兰", "Ukraine", '"black sea"'))
    match = match_story(compile_rules([rule]), view, now=NOW)[0]
    expected = [
        ("title", "烏克蘭", "乌克兰"),
        ("title", "ＵＫＲＡＩＮＥ", "Ukraine"),
        ("text", "Black  Sea", '"black sea"'),
    ]
    shown = {"title": view.title, "text": view.text}
    assert expected == [
        (h.field, shown[h.field][h.start : h.end], h.term) for h in match.highlights
    ]


def test_highlights_of_a_word_term_mark_each_word() -> None:
    """An unquoted term of several words highlights each of its words where found."""
    view = StoryView(story_id="s", title="deal on the Black Sea")
    match = match_story(compile_rules([RuleSettings(name="r", any=("sea deal",))]), view, now=NOW)
    expected = ["deal", "Sea"]
    assert expected == [view.title[h.start : h.end] for h in match[0].highlights]


def test_fold_is_nfkc_lower_simplified() -> None:
    """fold() gives the text rules compare: NFKC, lower case, Simplified."""
    assert "台湾 abc(1)" == fold("臺灣 ＡＢＣ（１）")


def test_fold_with_offsets_maps_expanded_characters() -> None:
    """A ligature that NFKC expands maps both its letters to its one original offset."""
    expected = ("file 台湾", [0, 0, 1, 2, 3, 4, 5])
    assert expected == fold_with_offsets("ﬁle 臺灣")


def test_compile_bad_pattern_names_rule_and_key() -> None:
    """A pattern that slipped past settings is a ConfigError naming rules.N.regex.M."""
    good = RuleSettings(name="ok", any=("x",))
    bad = RuleSettings.model_construct(
        name="broken", any=(), all=(), exclude=(), regex=("(unclosed",), fields=("title",),
        sources=(), outlets=(), categories=(), min_outlets=1, channels=(),
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        compile_rules([good, bad])
    assert ("rules.1.regex.0", True) == (info.value.key, "'broken'" in info.value.message)


def _config_error(tmp_path: Path, rules: str) -> ConfigError:
    path = tmp_path / "watcher.toml"
    path.write_text(rules, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    return info.value


RULE_ERRORS = {
    "bad regex": ("regex = ['(unclosed']", "rules.0.regex.0", "not a regular expression"),
    "regex matching nothing at all": ("regex = ['x*']", "rules.0.regex.0", "empty text"),
    "blank term": ("any = ['ok', '  ']", "rules.0.any.1", "must not be blank"),
    "empty quoted phrase": ("any = ['\"\"']", "rules.0.any.0", "must not be blank"),
    "unknown field": ("any = ['x']\nfields = ['body']", "rules.0.fields.0", "Input should be"),
    "no fields": ("any = ['x']\nfields = []", "rules.0.fields", "at least 1"),
    "min_outlets zero": ("any = ['x']\nmin_outlets = 0", "rules.0.min_outlets", "greater"),
    "unknown source": ("any = ['x']\nsources = ['nowhere']", "rules.0.sources.0", "no source"),
}


@pytest.mark.parametrize(("body", "key", "words"), RULE_ERRORS.values(), ids=RULE_ERRORS)
def test_bad_rule_setting_names_the_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    """Each bad rule setting is a ConfigError at load time naming the dotted key."""
    error = _config_error(tmp_path, f"[[rules]]\nname = 'r'\n{body}\n")
    assert (key, True) == (error.key, words in error.message)


def test_regex_alone_is_a_rule() -> None:
    """A rule with only a regex (no any or all) is valid."""
    assert ("p",) == RuleSettings(name="r", regex=("p",)).regex
