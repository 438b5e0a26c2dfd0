"""Rules: one case per precedence step and matching rule of watcher.rules' docstring."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher import folding
from watcher.errors import ConfigError
from watcher.folding import fold, fold_with_offsets, to_simplified
from watcher.models import Article, StoryView
from watcher.rules import compile_rules, fold_article, match_story
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
    "fold: full-width term": ({"any": ["ＧＲＡＩＮ"]}, {}, ("ＧＲＡＩＮ",)),
    "fold: accent composed by NFKC": ({"any": ["café"]}, {"text": "cafe\u0301 talks"}, ("café",)),
    "fold: Hangul jamo composed by NFKC": (
        {"any": ["각"]},
        {"text": "\u1100\u1161\u11a8 뉴스"},
        ("각",),
    ),
    "fold: a phrase converted as a phrase": ({"any": ["深沉"]}, {"title": "夜色深沈"}, ("深沉",)),
    "fold: found only after folding": ({"any": ["台湾"]}, {"text": "（臺灣）、…"}, ("台湾",)),
    "fold: final sigma": ({"any": ["ΟΔΟΣ"]}, {"text": "η οδός ΟΔΟΣ."}, ("ΟΔΟΣ",)),
    "fold: title with a line break": ({"any": ["局势"]}, {"title": "烏克蘭\n局勢"}, ("局势",)),
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
    "edge: Latin term between CJK": ({"any": ["GDP"]}, {"text": "中国GDP增长"}, ("GDP",)),
    "edge: Latin term inside a Latin word by CJK": (
        {"any": ["GDP"]},
        {"text": "中国GDPR法规"},
        None,
    ),
    "edge: full-width Latin by CJK": ({"any": ["G7"]}, {"text": "Ｇ７峰会"}, ("G7",)),
    "edge: boundary found after another hit": (
        {"any": ["grain"]},
        {"text": "grains, then grain"},
        ("grain",),
    ),
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
    "phrase: not across title and text": (
        {"any": ['"协议 黑海"']},
        {"title": "新协议", "text": "黑海 粮食"},
        None,
    ),
    "words: in title and text apart": (
        {"any": ["协议 黑海"]},
        {"title": "新协议", "text": "黑海 粮食"},
        ("协议 黑海",),
    ),
    "words: overlapping terms both found": (
        {"any": ["港府", "香港"]},
        {"title": "香港府", "text": ""},
        ("港府", "香港"),
    ),
    "words: a term inside another": (
        {"any": ["香港政府", "港"]},
        {"title": "香港政府", "text": ""},
        ("香港政府", "港"),
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


def test_rules_compiled_apart_or_as_a_subset_match_alike() -> None:
    """Rules from separate compile_rules calls, or a subset of one, find the same terms."""
    settings = [
        RuleSettings(name="a", any=("grain", "足球")),
        RuleSettings(name="b", any=("乌克兰",), exclude=("足球",)),
        RuleSettings(name="c", all=("黑海",), regex=("官员|officials",)),
    ]
    together = compile_rules(settings)
    apart = [rule for setting in settings for rule in compile_rules([setting])]
    view = StoryView(**BASE_VIEW)
    expected = [("a", ("grain",)), ("c", ("黑海", "官员|officials"))]
    assert [expected, expected, expected] == [
        [(m.rule, m.terms) for m in match_story(rules, view, now=NOW)]
        for rules in (together[::2], apart[::2], [together[0], apart[2]])
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


@pytest.mark.parametrize(("rule", "view"), [(r, v) for r, v, _ in CASES.values()], ids=CASES)
def test_a_view_folded_beforehand_matches_alike(rule: dict[str, Any], view: dict[str, Any]) -> None:
    """A StoryView carrying fold_article's title and text (a parse worker's) gives the same
    matches, highlights included, as one the rules fold themselves."""
    compiled = compile_rules([RuleSettings(name="r", **rule)])
    plain = StoryView(**{**BASE_VIEW, **view})
    article = Article(id="a1", format="link", title=plain.title, outlet="联合早报",
                      body_html="<p>ignored: the text is given</p>", text=plain.text)  # fmt: skip
    folded = plain.model_copy(update={"folded": fold_article(article)})
    assert match_story(compiled, plain, now=NOW) == match_story(compiled, folded, now=NOW)


def test_the_rules_read_a_folded_view_from_its_folded_fields() -> None:
    """Given folded fields, the rules search those (so a worker's folding is what counts)."""
    rule = compile_rules([RuleSettings(name="r", any=("香港",))])
    view = StoryView(**BASE_VIEW, folded=("香港", "x"))
    assert [("r", ("香港",))] == [(m.rule, m.terms) for m in match_story(rule, view, now=NOW)]


def test_highlights_of_a_word_term_mark_each_word() -> None:
    """An unquoted term of several words highlights each of its words where found."""
    view = StoryView(story_id="s", title="deal on the Black Sea")
    match = match_story(compile_rules([RuleSettings(name="r", any=("sea deal",))]), view, now=NOW)
    expected = ["deal", "Sea"]
    assert expected == [view.title[h.start : h.end] for h in match[0].highlights]


def test_highlights_after_characters_that_widen() -> None:
    """Characters NFKC widens (…, ﬁ) and ones it joins (e + accent) keep spans on the original."""
    view = StoryView(story_id="s", title="……ﬁnal：烏克蘭", text="cafe\u0301……乌克兰 ΑΣ")
    rule = RuleSettings(name="r", any=("乌克兰", "final", "café"))
    match = match_story(compile_rules([rule]), view, now=NOW)[0]
    expected = [
        ("title", "ﬁnal", "final"),
        ("title", "烏克蘭", "乌克兰"),
        ("text", "乌克兰", "乌克兰"),
    ]
    shown = {"title": view.title, "text": view.text}
    assert expected == [
        (h.field, shown[h.field][h.start : h.end], h.term) for h in match.highlights
    ]


def test_fold_is_nfkc_lower_simplified() -> None:
    """fold() gives the text rules compare: NFKC, lower case, Simplified."""
    assert "台湾 abc(1)" == fold("臺灣 ＡＢＣ（１）")


def test_fold_with_offsets_maps_expanded_characters() -> None:
    """A ligature that NFKC expands maps both its letters to its one original offset."""
    expected = ("file 台湾", [0, 0, 1, 2, 3, 4, 5])
    assert expected == fold_with_offsets("ﬁle 臺灣")


# Characters where NFKC or lower case is not one character in, one out, or not context-free.
TRICKY = [
    "\u0301", "\u0308", "\u0344", "\u0f73", "\u3099", "\u309a", "\u1100", "\u1161", "\u11a8",
    "\u00a0", "\u3000", "\u200d", "\n", "ﬁ", "…", "Σ", "Ϲ", "İ", "ẞ", "Ａ", "ａ", "𝔱", "ℌ", "①",
    "㈱", "½", "™", "ｶ", "ﾟ", "≮", "<", "e", "か", "가", "臺", "灣", "乾", "，", "（", "😀",
    " ", "a",
]  # fmt: skip


def _nfkc_lower_by_character(text: str) -> tuple[str, list[int]]:
    pieces = [unicodedata.normalize("NFKC", c).lower() for c in text]
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TRICKY), max_size=12).map("".join))
def test_fold_is_the_spec_literally_applied(text: str) -> None:
    """fold and fold_with_offsets equal NFKC -> lower -> t2s applied whole and char by char."""
    if len(text) == len(text.lower()) and unicodedata.is_normalized("NFKC", text):
        by_character: tuple[str, list[int]] = (text.lower(), list(range(len(text))))
    else:
        by_character = _nfkc_lower_by_character(text)
    expected = (
        to_simplified(unicodedata.normalize("NFKC", text).lower()),
        (to_simplified(by_character[0]), by_character[1]),
    )
    assert expected == (fold(text), fold_with_offsets(text))


def _canonical_pairs() -> tuple[set[int], set[int]]:
    """First and second characters of every canonical two-character decomposition."""
    firsts, seconds = set(range(0x1100, 0x1113)), set(range(0x1161, 0x1176))
    seconds |= set(range(0x11A8, 0x11C3))  # Hangul jamo compose by algorithm, not by table
    firsts |= set(range(0xAC00, 0xD7A4))
    for code in range(0x110000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            firsts.add(int(parts[0], 16))
            seconds.add(int(parts[1], 16))
    return firsts, seconds


def test_stable_blocks_never_change_or_combine() -> None:
    """Characters folding treats as stable are NFKC-stable starters that join no predecessor,
    and the inert ones join no successor either (the premises of normalizing in pieces)."""
    firsts, seconds = _canonical_pairs()
    stable = [c for c in map(chr, range(0x10000)) if not folding._UNSTABLE.match(c)]
    inert = [c for c in stable if folding._INERT.fullmatch(c)]
    wrong_stable = [
        c
        for c in stable
        if unicodedata.normalize("NFKC", c) != c or unicodedata.combining(c) or ord(c) in seconds
    ]
    wrong_inert = [c for c in inert if ord(c) in firsts]
    punctuation = [(c, folding._inert_nfkd(c)) for c, _ in folding._PUNCTUATION]
    assert ([], [], True) == (
        wrong_stable,
        wrong_inert,
        all(nfkd == unicodedata.normalize("NFKC", c) for c, nfkd in punctuation),
    )


def test_simplified_conversion_keeps_lengths_and_lines() -> None:
    """t2s keeps each line apart and its length, so title and text can share one call."""
    title, text = "發展與經濟：烏克蘭局勢", "深沈的夜色\n乾燥天氣，頭髮"
    joined = to_simplified(f"{title}\n{text}")
    expected = (to_simplified(title), to_simplified(text), len(title) + 1 + len(text))
    assert expected == (*joined.split("\n", 1), len(joined))


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
