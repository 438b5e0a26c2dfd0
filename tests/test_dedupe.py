"""Dedupe: matching text, shingles, signatures, the LSH index, decisions, a labelled grouping."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from watcher import archive
from watcher.dedupe import (
    NUM_PERM,
    Boilerplate,
    LshIndex,
    Member,
    Signature,
    Signer,
    StoryBook,
    containment,
    containments,
    decide,
    decide_among,
    features,
    features_with_sample,
    jaccard,
    matching_text,
    number_agreement,
    shingle_hashes,
)
from watcher.models import Article
from watcher.settings import DedupSettings

from .conftest import DATA

ARTICLES = DATA / "dedupe" / "articles"
RULES = Boilerplate.from_settings(DedupSettings())
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
WIRE = (
    "中国物流与采购联合会数据显示，1—10月，全国社会物流总额为261.8万亿元，同比增长10.5%，"
    "增速比上年同期提高8.0个百分点，两年年均增长6.5%。从环比数据来看，尽管10月受到疫情、"
    "国际供应链不畅等复杂因素影响，但宏观层面保供稳价政策力度进一步增强，效果逐步显现。"
)


def sign(text: str, title: str = "", **settings: object) -> Signature:
    return Signer(DedupSettings.model_validate(settings)).sign(title, text)


# --- matching text -------------------------------------------------------------------------------


def test_matching_text_converts_traditional_and_lowercases() -> None:
    """Traditional characters become Simplified and Latin letters lower case."""
    assert "这是繁体 abc" == matching_text("", "這是繁體 ABC", RULES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("（中央社記者張謙香港2日電）香港正在爆發疫情", "（香港正在爆发疫情"),
        ("【大纪元2020年12月02日讯】北京消息", "北京消息"),
        ("路透香港12月1日 - 港股周二收高", "港股周二收高"),
        ("正文。 获取更多RSS： https://feedx.net https://feedx.xyz", "正文。"),
        ("正文 © NMSLESE for 中国数字时代, get_post_time('Y'). |Permalink |No comment", "正文"),
        ("2021-01-20T04:16:09Z 路透东京1月20日 - 亚洲股市", "亚洲股市"),
    ],
)
def test_builtin_rules_strip_datelines_and_footers(text: str, expected: str) -> None:
    """Outlet datelines and feed footers are removed before shingling."""
    assert expected == "".join(matching_text("", text, RULES).split())


def test_configured_rules_extend_the_builtin_ones() -> None:
    """A pattern from [dedup] boilerplate is applied after the built-in ones."""
    rules = Boilerplate.from_settings(DedupSettings(boilerplate=(r"本报讯",)))
    assert "今天" == matching_text("", "本报讯 今天", rules).strip()


def test_signature_scheme_changes_with_the_rules() -> None:
    """Changing the boilerplate rules gives another signature scheme (stored ones go stale)."""
    plain = Signer(DedupSettings()).scheme
    extended = Signer(DedupSettings(boilerplate=("x",))).scheme
    assert (True, False) == (plain.startswith("minhash:"), plain == extended)


# --- shingles and signatures ---------------------------------------------------------------------


def test_cjk_text_gets_character_five_grams_without_punctuation() -> None:
    """'一二三四五六' (punctuation and spaces dropped) has two 5-grams."""
    assert 2 == shingle_hashes("一二，三 四。五六").size


def test_latin_text_gets_word_three_grams() -> None:
    """Five words give three word 3-grams, whatever the punctuation between them."""
    assert 3 == shingle_hashes("alpha, beta; gamma -- delta epsilon").size


def test_nfkc_folds_full_width_letters() -> None:
    """Full-width Latin letters and digits shingle like their ASCII forms."""
    assert (
        shingle_hashes("ｗｏｒｌｄ ｃｕｐ ２０２２ ｆｉｎａｌ").tolist()
        == shingle_hashes("world cup 2022 final").tolist()
    )


def test_text_without_letters_gives_an_empty_signature() -> None:
    """Punctuation only: no shingles, an empty signature that matches nothing."""
    empty = sign("。，！—— …")
    assert (True, 0.0) == (empty.is_empty, jaccard(empty, empty))


def test_numbers_are_collected() -> None:
    """The digit runs of the text are its numbers, full-width ones included."""
    _, _, numbers = features("增长１０.5%，共261项，另10项")
    _, _, ascii_numbers = features("增长10.5%，共261项")
    assert (3, ascii_numbers.tolist()) == (numbers.size, numbers.tolist())


def test_signature_round_trips_through_bytes() -> None:
    """to_bytes/from_bytes keep the digest, the size and the numbers."""
    signature = sign(WIRE)
    assert signature == Signature.from_bytes(signature.to_bytes(), signature.size)


def test_signature_bytes_of_the_wrong_length_are_refused() -> None:
    """A blob shorter than a digest is a ValueError naming the expected length."""
    with pytest.raises(ValueError, match=str(NUM_PERM * 4 + 4)):
        Signature.from_bytes(b"\0" * 10, 1)


def test_copies_in_two_scripts_are_alike() -> None:
    """A Traditional copy of a Simplified text estimates Jaccard 1."""
    simplified = sign("香港大学感染及传染病中心总监何栢良今天在电台节目上说，最差的情况仍未到来。")
    traditional = sign("香港大學感染及傳染病中心總監何栢良今天在電台節目上說，最差的情況仍未到來。")
    assert 1.0 == jaccard(simplified, traditional)


def test_containment_finds_a_short_item_inside_a_long_one() -> None:
    """A wire item folded whole into a round-up is mostly contained, though Jaccard is low."""
    other = archive.read_file(ARTICLES / "s001_seed.md").text
    short, long = sign(WIRE), sign(WIRE + other)
    assert (True, True) == (jaccard(short, long) < 0.5, containment(short, long) > 0.8)


def test_number_agreement_is_the_share_of_the_fewer_numbers() -> None:
    """Two of the three numbers of one text appear in the other: agreement 2/3."""
    a, b = sign("今天 102 家 2021 年 27 日 公司"), sign("今天 108 家 2021 年 27 日 公司 5")
    assert pytest.approx(2 / 3) == number_agreement(a, b)


# --- decisions ------------------------------------------------------------------------------------


def member(article_id: str, text: str, at: datetime, story: str | None = None) -> Member:
    return Member(article_id, story or article_id, at, sign(text))


def test_decide_joins_the_story_of_a_copy_within_the_window() -> None:
    """A copy published a day later joins the first article's story."""
    decision = decide(sign(WIRE), T0 + timedelta(days=1), [member("a", WIRE, T0)], DedupSettings())
    assert ("a", "a", False) == (decision.story_id, decision.matched_id, decision.starts_story)


def test_decide_ignores_copies_outside_the_window() -> None:
    """A copy four days apart (window 3 days) starts a story of its own."""
    decision = decide(sign(WIRE), T0 + timedelta(days=4), [member("a", WIRE, T0)], DedupSettings())
    assert decision.starts_story


def test_decide_vetoes_a_template_with_other_numbers() -> None:
    """The same sentence with other figures (a template) is not a copy."""
    other = WIRE.replace("261.8", "250.1").replace("10.5", "9.7").replace("8.0", "7.1")
    other = other.replace("6.5", "5.2").replace("1—10", "1—9")
    decision = decide(sign(other), T0, [member("a", WIRE, T0)], DedupSettings())
    assert decision.starts_story


def test_decide_picks_the_best_candidate() -> None:
    """Of two stories the new article joins the one whose member is most alike."""
    edited = WIRE[:-20] + "另有消息称，后续政策正在研究之中。"
    candidates = [member("weak", edited, T0, "s1"), member("strong", WIRE, T0, "s2")]
    decision = decide(sign(WIRE), T0, candidates, DedupSettings())
    assert ("s2", "strong") == (decision.story_id, decision.matched_id)


def test_story_book_holds_what_it_assigns_and_forgets_on_eviction() -> None:
    """The second copy joins the first; after eviction a third starts anew."""
    book = StoryBook(DedupSettings())
    first = book.assign("a", sign(WIRE), T0)
    second = book.assign("b", sign(WIRE), T0 + timedelta(hours=1))
    gone = book.evict(T0 + timedelta(days=1))
    third = book.assign("c", sign(WIRE), T0 + timedelta(days=1))
    assert (True, "a", 2, True) == (first.starts_story, second.story_id, gone, third.starts_story)


def test_story_book_leaves_undated_articles_alone() -> None:
    """An undated article starts its own story and is not held for later ones."""
    book = StoryBook(DedupSettings())
    book.assign("undated", sign(WIRE), None)
    assert (0, True) == (len(book), book.assign("b", sign(WIRE), T0).starts_story)


# --- a fixed labelled set -------------------------------------------------------------------------


def _group(path: Path) -> str:
    """Files named a*, b*, c*, d*, e* form one story per letter; every other file is alone."""
    return path.name[0] if path.name[0] in "abcde" else path.stem


def _assign(articles: list[Article], settings: DedupSettings) -> dict[str, str]:
    book = StoryBook(settings)
    signer = Signer(settings)
    story: dict[str, str] = {}
    for article in sorted(articles, key=lambda a: (a.published_at or T0, a.id)):
        decision = book.assign(article.id, signer.sign(article.title, article.text),
                               article.published_at)  # fmt: skip
        story[article.id] = decision.story_id or article.id
    return story


def _partition(labels: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for name, label in labels.items():
        groups.setdefault(label, set()).add(name)
    return {frozenset(g) for g in groups.values()}


def test_labelled_fixtures_group_as_labelled() -> None:
    """Copies (wire, script, repost, containment) are one story; related and templates are not."""
    paths = sorted(ARTICLES.glob("*.md"))
    articles = {p.name: archive.read_file(p) for p in paths}
    story = _assign(list(articles.values()), DedupSettings())
    actual = _partition({name: story[a.id] for name, a in articles.items()})
    expected = _partition({p.name: _group(p) for p in paths})
    assert expected == actual


@pytest.mark.parametrize(("first", "second"), [("s000", "s001"), ("s003", "s004")])
def test_seed_pairs_written_independently_stay_apart(first: str, second: str) -> None:
    """Seeds 000/001 and 003/004 cover one event each in their own words: two stories."""
    a, b = (archive.read_file(ARTICLES / f"{n}_seed.md") for n in (first, second))
    story = _assign([a, b], DedupSettings())
    assert story[a.id] != story[b.id]


def test_signatures_are_the_same_in_a_batch_and_alone() -> None:
    """sign_many gives each text the signature sign gives it alone."""
    signer = Signer(DedupSettings())
    texts = [("t", WIRE), ("", "。"), ("u", WIRE[:40])]
    assert [signer.sign(*t) for t in texts] == signer.sign_many(texts)


def test_digest_values_are_uint32() -> None:
    """A signature holds NUM_PERM uint32 values."""
    signature = sign(WIRE)
    assert (NUM_PERM, np.uint32) == (signature.values.size, signature.values.dtype.type)


def _random_signatures(n: int) -> list[Signature]:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 2**32, size=(n, NUM_PERM), dtype=np.uint64).astype(np.uint32)
    return [Signature(row, 100) for row in values]


def test_lsh_index_finds_items_before_and_after_merges() -> None:
    """Items are found while pending and after merging; removed ones never come back."""
    index = LshIndex()
    signatures = _random_signatures(3000)
    index.insert_many(list(range(1000)), signatures[:1000])
    for key in range(1000, 3000):
        index.insert(key, signatures[key])
    index.remove(5)
    index.insert(3000, signatures[6])  # a copy of item 6
    found = [index.query(signatures[k]) for k in (5, 6, 2999)]
    assert ([set(), {6, 3000}, {2999}], 2000) == (found, len(index) - 1000)


def test_index_forgets_an_item_removed_while_pending() -> None:
    """An item removed before its merge never comes back from a later query."""
    from watcher.dedupe import LshIndex

    signer = Signer(DedupSettings())
    text = "俄罗斯总统普京告诉美国总统拜登，引入新的前所未有的制裁可能导致两国关系彻底破裂。" * 3
    signature = signer.sign("", text)
    index = LshIndex()
    index.insert(1, signature)
    index.remove(1)
    index.insert_many([2], [signature])  # forces a merge
    assert {2} == index.query(signature)


# --- the fast paths give the plain rule's answers -------------------------------------------------


def test_decide_takes_the_next_best_when_the_best_is_vetoed() -> None:
    """A template with other figures scores highest but is vetoed: the edited copy wins."""
    template = WIRE.replace("261.8", "250.1").replace("10.5", "9.7").replace("8.0", "7.1")
    edited = WIRE[:-40] + "另有消息称，后续政策正在研究之中。"
    candidates = [member("template", template, T0), member("edited", edited, T0)]
    decision = decide(sign(WIRE), T0, candidates, DedupSettings())
    alike = [jaccard(sign(WIRE), c.signature) for c in candidates]
    assert (True, "edited") == (alike[0] > alike[1], decision.matched_id)


def test_decide_among_families_chooses_as_decide_over_their_members() -> None:
    """Copies given as one family are scored once, with the choice decide makes member by member."""
    copies = [member(f"copy{i}", WIRE, T0 + timedelta(hours=i)) for i in (3, 1, 2)]
    edited = member("edited", WIRE[:-20] + "另有消息称，后续政策正在研究之中。", T0)
    far = member("far", WIRE, T0 - timedelta(days=9))
    wire = sign(WIRE)
    families = [(wire, [*copies, far]), (edited.signature, [edited])]
    at = T0 + timedelta(days=1)
    expected = decide(wire, at, [*copies, far, edited], DedupSettings())
    actual = decide_among(wire, at, families, DedupSettings())
    assert (expected, "copy1") == (actual, actual.matched_id)


def test_containments_equal_containment_pair_by_pair() -> None:
    """The one-pass containments are containment's floats, unsorted samples included."""
    texts = [archive.read_file(p).text for p in sorted(ARTICLES.glob("*.md"))]
    signatures = [sign(t) for t in texts] + [sign(WIRE), sign(WIRE[:60])]
    shuffled = Signature(
        signatures[0].values, signatures[0].size, sample=signatures[0].sample[::-1]
    )
    for others in (signatures, [*signatures, shuffled]):
        js = [jaccard(signatures[1], b) for b in others]
        expected = [containment(signatures[1], b, j) for b, j in zip(others, js, strict=True)]
        assert expected == containments(signatures[1], others, js)


def test_story_book_copies_share_one_entry_that_outlives_the_first() -> None:
    """Three copies take one index entry; with the first forgotten a fourth joins the second."""
    book = StoryBook(DedupSettings())
    for i, name in enumerate("abc"):
        book.assign(name, sign(WIRE), T0 + timedelta(hours=i))
    entries = len(book._index)
    book.forget(["a"])
    decision = book.assign("d", sign(WIRE), T0 + timedelta(hours=5))
    assert (1, "a", "b") == (entries, decision.story_id, decision.matched_id)


def test_story_book_finds_the_same_candidates_for_copies_and_others() -> None:
    """Candidates come back one member each, in the order they were held, copies included."""
    book = StoryBook(DedupSettings())
    edited = sign(WIRE[:-20] + "另有消息称，后续政策正在研究之中。")
    book.add([Member("a", "a", T0, sign(WIRE)), Member("e", "e", T0, edited)])
    book.assign("b", sign(WIRE), T0)
    assert ["a", "e", "b"] == [m.article_id for m in book.candidates(sign(WIRE))]


def _strip_every_rule(rules: Boilerplate, text: str) -> str:
    """Boilerplate.strip as it was before guards: every opened rule runs."""
    found = set(rules.finder.findall(text))
    for trigger, pattern in zip(rules.triggers, rules.compiled, strict=True):
        if trigger is None or any(f.startswith(trigger) for f in found):
            text = pattern.sub(" ", text)
    return text


def test_rule_guards_skip_only_rules_that_cannot_match() -> None:
    """Stripping with guards gives what running every opened rule gives, on every fixture."""
    rules = Boilerplate.from_settings(DedupSettings(boilerplate=(r"(?i)ABC", r"(?m)^x\d", "港股")))
    texts = [archive.read_file(p).text.lower() for p in sorted(ARTICLES.glob("*.md"))]
    texts += ["a – 法国国际广播电台 - rfi", "正文 (完)", "x1 abc\nx2 港股", "|permalink| 尾"]
    guards = {
        p: (g.literal, g.pattern is not None)
        for p, g in zip(rules.patterns, rules.guards, strict=True)
    }
    assert ("(完)", False) == guards[r"\(完\)"]
    assert ("", False) == guards[r"(?i)ABC"]
    assert [_strip_every_rule(rules, t) for t in texts] == [rules.strip(t) for t in texts]


@pytest.mark.parametrize("text", ["１２3 and ０4.5", "x" + "9" * 30, "no digits", "2021年1月", ""])
def test_numbers_are_int_of_each_digit_run(text: str) -> None:
    """The numbers are int() of each run of ASCII or full-width digits, low 32 bits, sorted."""
    runs = re.findall("[0-9\uff10-\uff19]+", unicodedata.normalize("NFKC", text))
    expected = sorted({int(run) & 0xFFFFFFFF for run in runs})
    assert expected == features(text + " 字")[2].tolist()


def test_sample_and_count_are_numpys_unique() -> None:
    """The distinct count and the sample are those np.unique gives on the hashes."""
    hashes, count, _, sample = features_with_sample(matching_text("", WIRE * 3 + "另有消息", RULES))
    chosen = hashes[(hashes >> np.uint64(32)) % np.uint64(8) == 0].astype(np.uint32)
    expected = (np.unique(hashes.astype(np.uint32)).size, np.unique(chosen).tolist())
    assert expected == (count, sample.tolist())


def test_lsh_index_finds_items_under_a_key_many_share() -> None:
    """Items sharing sampled shingles with 150 others are found, merged and pending alike."""
    shared = np.arange(0, 64, 4, dtype=np.uint32)  # all indexed (0 modulo 4)
    signatures = [Signature(s.values, 100, sample=shared) for s in _random_signatures(160)]
    index = LshIndex()
    index.insert_many(list(range(150)), signatures[:150])
    for key in range(150, 160):
        index.insert(key, signatures[key])
    index.remove(3)
    probe = Signature(_random_signatures(161)[160].values, 100, sample=shared[:2])
    assert set(range(160)) - {3} == index.query(probe)
