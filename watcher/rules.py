"""Keyword rules: compiled once from ``[[rules]]``, then matched against stories; pure.

    rules   = compile_rules(settings.rules)          # once; a bad pattern is a ConfigError
    matches = match_story(rules, view, now=now)      # StoryView -> one Match per rule that fires

How a rule decides, in this order; the first step that fails means "no match":

1. Scope. When ``sources`` is given, some member of the story came from one of them; likewise
   ``outlets`` and ``categories`` (compared folded, see 6). Every list given must be satisfied.
2. Reach. The story has been carried by at least ``min_outlets`` distinct outlets.
3. Exclude wins. No ``exclude`` term is found, whatever else is.
4. All. Every ``all`` term is found.
5. Any. When ``any`` or ``regex`` is given, at least one ``any`` term or ``regex`` pattern is
   found (the patterns are alternatives to the keywords). A rule with only ``all`` skips this.

How a term is found:

6. Folding. Text and terms are NFKC-normalized, lower-cased and converted Traditional to
   Simplified (OpenCC t2s): ``烏克蘭`` finds ``乌克兰``, ``ＵＫＲＡＩＮＥ`` finds ``Ukraine``.
7. Edges. A term edge that is a Latin letter or digit must sit on a word boundary
   (``Ukraine`` does not find ``Ukrainian``, ``G7`` does not find ``G77``); a CJK edge needs
   none (``乌克兰`` finds ``乌克兰局势``; ``iPhone`` finds ``新iPhone发布``).
8. Words and phrases. An unquoted term of several words is found when each word is found,
   anywhere in the fields searched; a quoted term (``'"climate change"'``) only as that phrase,
   its words in order with any run of whitespace between them.
9. Fields. Terms are searched in ``title`` and ``text`` unless ``fields`` names others
   (``outlet``, ``categories``, ``link``); a term found in any searched field counts.
10. Patterns. A ``regex`` pattern is searched case-insensitively in the folded text of each
    field; the pattern itself is converted to Simplified, and it sees ASCII punctuation (NFKC
    turns ``（`` into ``(``).

How it stays fast (the results are those of the steps above, literally applied): a text is
NFKC-normalized only around the characters that need it, title and text share one OpenCC call,
and one pass per field over every literal word of the rules finds which words occur at all, so
a term's pattern runs only where its words are (for a Latin edge or a phrase's whitespace).

Each Match names the terms found (the rule's own spelling, in the rule's order: ``all``, then
``any``, then ``regex``) and where they are in the original title and text, for highlighting.

What this module does not do: it reads no store and no settings file, sends nothing, keeps no
state between calls and does not decide whether a story already alerted (the outbox does).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, cached_property, lru_cache
from typing import NamedTuple

import opencc

from watcher.errors import ConfigError
from watcher.models import Highlight, Match, RuleField, StoryView
from watcher.settings import RuleSettings

MAX_HIGHLIGHTS = 50
"""Spans kept per field and rule: enough to mark a title and an excerpt."""

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
_BEFORE = rf"(?<![^\W_{_CJK}])"  # no Latin letter or digit just before
_AFTER = rf"(?![^\W_{_CJK}])"  # ... or just after
_LATIN = re.compile(rf"[^\W_{_CJK}]")
_SEPARATOR = "\x00"  # between outlets (or categories): no phrase or word runs across it
_HIGHLIGHTED: tuple[RuleField, ...] = ("title", "text")

# Characters NFKC keeps and never joins to what precedes them (NFKC_Quick_Check=Yes, ccc=0): a
# text may be normalized in pieces cut just before any of them (UAX #15, stable code points).
# Chosen blocks, checked against unicodedata by tests/test_rules.py; others are looked at.
_STABLE = (
    r"\u0000-\u007f\u00a1-\u00a7\u00a9\u00ab-\u00ae\u00b0-\u00b1\u00b6-\u00b7\u00bb\u00bf-\u00ff"
    r"\u2010\u2012-\u2016\u2018-\u2023\u2027-\u202e\u2030-\u2032\u2500-\u25ff\u3001-\u3029"
    r"\u3041-\u3096\u30a1-\u30fa\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
)
# ... of which these never combine with what follows either (no letters, no < = >): where a
# character's NFKD is made of these alone (，-> , …-> ...), NFKC replaces it, whatever is around.
_INERT = re.compile(
    r"[\u0000-\u003b\u003f-\u0040\u005b-\u0060\u007b-\u007f\u2010\u2012-\u2016\u2018-\u2023"
    r"\u2027-\u202e\u2030-\u2032\u2500-\u25ff\u3001-\u3029\u3400-\u4dbf\u4e00-\u9fff]*"
)
# The full-width punctuation of Chinese text (all inert in NFKD), replaced before looking further.
_PUNCTUATION = tuple((c, unicodedata.normalize("NFKD", c)) for c in "，（）：？；！…\u3000")
_UNSTABLE = re.compile(f"[^{_STABLE}]")
_UNSTABLE_RUN = re.compile(f"[^{_STABLE}]+")
_SIGMA = "\u03a3"  # the one character whose lower case depends on its neighbours


# --- folding --------------------------------------------------------------------------------------


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """OpenCC t2s: Traditional characters and phrases to Simplified."""
    if text.isascii():  # no t2s entry holds an ASCII character
        return text
    return str(_converter().convert(text))


def fold(text: str) -> str:
    """``text`` as rules compare it: NFKC, lower case, Simplified."""
    return to_simplified(_nfkc(text).lower())


def fold_with_offsets(text: str) -> tuple[str, list[int]] | None:
    """``fold(text)`` built so that each folded character knows its original offset.

    Returns (folded, owners) with ``owners[i]`` the index in ``text`` of folded character
    ``i``; None in the rare text whose Simplified form changes length (no highlights then).
    """
    lowered, owners = _lowered_by_character(text)
    simplified = _same_length(lowered, to_simplified(lowered))
    if simplified is None:
        return None
    return simplified, list(range(len(text))) if owners is None else owners


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, normalizing only where the text needs it."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    text = _without_punctuation(text)
    replaced_all = True
    for char in _unstable_characters(text):
        replacement = _inert_nfkd(char)
        if replacement is None:
            replaced_all = False
        else:
            text = text.replace(char, replacement)
    return text if replaced_all else _nfkc_in_pieces(text)


def _without_punctuation(text: str) -> str:
    """``text`` with the common full-width punctuation normalized (exactly as NFKC would)."""
    for char, replacement in _PUNCTUATION:
        text = text.replace(char, replacement)
    return text


@cache
def _inert_nfkd(char: str) -> str | None:
    """The NFKD of ``char`` when it is made of inert characters only, else None."""
    decomposed = unicodedata.normalize("NFKD", char)
    return decomposed if _INERT.fullmatch(decomposed) else None


def _nfkc_in_pieces(text: str) -> str:
    """NFKC of each run of unstable characters with the stable one before it; the rest kept."""
    pieces: list[str] = []
    done = 0
    for run in _UNSTABLE_RUN.finditer(text):
        start = max(run.start() - 1, 0)
        pieces += (text[done:start], unicodedata.normalize("NFKC", text[start : run.end()]))
        done = run.end()
    pieces.append(text[done:])
    return "".join(pieces)


def _unstable_characters(text: str) -> set[str]:
    """The characters of ``text`` outside the stable blocks (none when it is NFKC already)."""
    return set() if unicodedata.is_normalized("NFKC", text) else set(_UNSTABLE.findall(text))


@cache
def _nfkc_of(char: str) -> str:
    return unicodedata.normalize("NFKC", char)


def _lowered_by_character(text: str) -> tuple[str, list[int] | None]:
    """Each character NFKC-normalized, then lower-cased; owners as in fold_with_offsets.

    Owners are None where folded and original characters pair one for one. Only the
    characters NFKC changes are replaced; lower case is taken character by character
    (the whole text's only when the text is NFKC already and keeps its length).
    """
    if unicodedata.is_normalized("NFKC", text):
        lowered = text.lower()
        return (lowered, None) if len(lowered) == len(text) else _lowered_one_by_one(text)
    normalized = _without_punctuation(text)
    widened = [c for c, nfkc in _PUNCTUATION if len(nfkc) != 1 and c in text]
    for char in _unstable_characters(normalized):
        if (nfkc := _nfkc_of(char)) != char:
            normalized = normalized.replace(char, nfkc)
            if len(nfkc) != 1:
                widened.append(char)
    lowered = normalized.lower()
    if _SIGMA in normalized or len(lowered) != len(normalized):
        return _lowered_one_by_one(text)
    return lowered, _widened_owners(text, widened) if widened else None


def _widened_owners(text: str, widened: Sequence[str]) -> list[int]:
    """Owners when the ``widened`` characters normalize to several (``…`` -> ``...``)."""
    owners: list[int] = []
    done = 0
    for hit in re.finditer("|".join(map(re.escape, sorted(widened))), text):
        owners += range(done, hit.start())
        owners += [hit.start()] * len(_nfkc_of(hit.group()))
        done = hit.end()
    owners += range(done, len(text))
    return owners


def _lowered_one_by_one(text: str) -> tuple[str, list[int]]:
    pieces = [unicodedata.normalize("NFKC", c).lower() for c in text]
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


def _same_length(folded: str, simplified: str) -> str | None:
    """``simplified`` (``folded`` converted), else converted character by character, else None."""
    if len(simplified) != len(folded):
        simplified = "".join(to_simplified(c) for c in folded)
        if len(simplified) != len(folded):
            return None
    return simplified


def _simplified_pair(title: str, text: str) -> tuple[str, str]:
    """Both converted by one OpenCC call: t2s maps no phrase across a newline."""
    if "\n" in title:
        return to_simplified(title), to_simplified(text)
    head, _, tail = to_simplified(f"{title}\n{text}").partition("\n")
    return head, tail


# --- compiling ------------------------------------------------------------------------------------


class Probe(NamedTuple):
    """One pattern of a term, and the literal words any match of it contains."""

    pattern: re.Pattern[str]
    words: tuple[str, ...]  # empty for a ``regex`` pattern: no word is known
    plain: bool  # a match is the one word, no boundary: found exactly where the word is


@dataclass(frozen=True)
class Term:
    """A term as configured, and the probes whose patterns must all be found for it to count."""

    text: str
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class CompiledRule:
    """A ``[[rules]]`` entry ready to match: terms compiled, scope folded."""

    name: str
    any: tuple[Term, ...]
    all: tuple[Term, ...]
    exclude: tuple[Term, ...]
    regex: tuple[Term, ...]
    fields: tuple[RuleField, ...]
    sources: frozenset[str]
    outlets: frozenset[str]
    categories: frozenset[str]
    min_outlets: int
    channels: tuple[str, ...]
    scanner: _Scanner | None = dataclasses.field(default=None, compare=False, repr=False)
    """Finds the words of every rule compiled with this one (by compile_rules)."""

    @cached_property
    def words(self) -> frozenset[str]:
        """Every literal word of the terms (not of ``regex``), for one pass over each field."""
        terms = (*self.any, *self.all, *self.exclude)
        return frozenset(word for term in terms for probe in term.probes for word in probe.words)


def compile_rules(rules: Sequence[RuleSettings]) -> list[CompiledRule]:
    """Compile every rule once; a pattern Python cannot compile is a ConfigError naming it."""
    compiled = [compile_rule(rule, index) for index, rule in enumerate(rules)]
    scanner = _scanner(frozenset().union(*(rule.words for rule in compiled)))
    return [dataclasses.replace(rule, scanner=scanner) for rule in compiled]


def compile_rule(rule: RuleSettings, index: int = 0) -> CompiledRule:
    """Compile one rule; ``index`` is its place in ``[[rules]]`` (for the error's key)."""
    return CompiledRule(
        name=rule.name,
        any=_terms(rule.any, f"rules.{index}.any"),
        all=_terms(rule.all, f"rules.{index}.all"),
        exclude=_terms(rule.exclude, f"rules.{index}.exclude"),
        regex=tuple(_compile_pattern(rule, index, j) for j in range(len(rule.regex))),
        fields=tuple(dict.fromkeys(rule.fields)),
        sources=frozenset(rule.sources),
        outlets=frozenset(fold(o).strip() for o in rule.outlets),
        categories=frozenset(fold(c).strip() for c in rule.categories),
        min_outlets=rule.min_outlets,
        channels=rule.channels,
    )


def _terms(terms: Sequence[str], key: str) -> tuple[Term, ...]:
    compiled = []
    for j, term in enumerate(terms):
        try:
            compiled.append(compile_term(term))
        except ValueError as e:
            raise ConfigError(f"{key}.{j}", str(e)) from e
    return tuple(compiled)


def compile_term(term: str) -> Term:
    """A keyword, several words (each must be found) or a "quoted phrase" as patterns.

    ValueError when nothing is left to look for once the term is folded.
    """
    stripped = term.strip()
    quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] == '"'
    words = fold(stripped[1:-1] if quoted else stripped).split()
    if not words:
        raise ValueError(f"the term {term!r} has nothing to look for")
    if quoted:
        return Term(term, (_words_probe(words),))
    return Term(term, tuple(dict.fromkeys(_words_probe([w]) for w in words)))


def _words_probe(words: Sequence[str]) -> Probe:
    """Words in order, whitespace between; word boundaries at Latin edges only."""
    head = _BEFORE if _LATIN.match(words[0][0]) else ""
    tail = _AFTER if _LATIN.match(words[-1][-1]) else ""
    pattern = re.compile(head + r"\s+".join(re.escape(w) for w in words) + tail)
    return Probe(pattern, tuple(words), len(words) == 1 and not head and not tail)


def _compile_pattern(rule: RuleSettings, index: int, j: int) -> Term:
    pattern = rule.regex[j]
    try:
        compiled = re.compile(to_simplified(pattern), re.IGNORECASE)
    except re.error as e:
        key = f"rules.{index}.regex.{j}"
        raise ConfigError(key, f"rule {rule.name!r}: not a regular expression: {e}") from e
    return Term(pattern, (Probe(compiled, (), False),))


@dataclass(frozen=True)
class _Scanner:
    """One pass over a field tells which of the rules' words it contains."""

    words: frozenset[str]
    pattern: re.Pattern[str] | None
    hidden: frozenset[str]
    """Words a reported match may hide (they overlap another word): looked up on their own."""


@lru_cache(maxsize=64)
def _scanner(words: frozenset[str]) -> _Scanner:
    if not words:
        return _Scanner(words, None, frozenset())
    longest_first = sorted(words, key=lambda w: (-len(w), w))
    pattern = re.compile("|".join(map(re.escape, longest_first)))
    return _Scanner(words, pattern, _overlapping(longest_first))


def _overlapping(words: Sequence[str]) -> frozenset[str]:
    """Words that can overlap another's occurrence: one within the other, or end on start."""
    starting: dict[str, set[str]] = {}
    for word in words:
        for end in range(1, len(word) + 1):
            starting.setdefault(word[:end], set()).add(word)
    known = set(words)
    found: set[str] = set()
    for word in words:
        for start in range(len(word)):
            tail = word[start:]
            others = starting.get(tail, set()) | {tail[:n] for n in range(1, len(tail) + 1)}
            if others := (others & known) - {word}:
                found |= others | {word}
    return frozenset(found)


# --- matching -------------------------------------------------------------------------------------


class _Folded:
    """The fields of one StoryView, folded on first use and shared by every rule."""

    def __init__(self, view: StoryView, scanner: _Scanner) -> None:
        self.view = view
        self.scanner = scanner
        self._fields: dict[RuleField, str] = {}
        self._lowered: dict[RuleField, str] = {}  # title and text before t2s
        self._scanned: dict[RuleField, set[str]] = {}
        self._words: dict[tuple[RuleField, ...], set[str]] = {}
        self._mapped: dict[RuleField, tuple[str, list[int] | None] | None] = {}

    @cached_property
    def outlets(self) -> frozenset[str]:
        return frozenset(fold(o).strip() for o in self.view.outlets)

    @cached_property
    def categories(self) -> frozenset[str]:
        return frozenset(fold(c).strip() for c in self.view.categories)

    def field(self, name: RuleField) -> str:
        """The field folded (title and text together: one OpenCC call for both)."""
        if name not in self._fields:
            if name in _HIGHLIGHTED:
                title = self._lowered["title"] = _nfkc(self.view.title).lower()
                text = self._lowered["text"] = _nfkc(self.view.text).lower()
                self._fields["title"], self._fields["text"] = _simplified_pair(title, text)
            else:
                self._fields[name] = fold(_raw_field(self.view, name))
        return self._fields[name]

    def words(self, fields: tuple[RuleField, ...]) -> set[str]:
        """The rules' words found in any of ``fields`` (one scan per field for all words)."""
        if fields not in self._words:
            self._words[fields] = set().union(*(self._scan(f) for f in fields))
        return self._words[fields]

    def _scan(self, name: RuleField) -> set[str]:
        if name not in self._scanned:
            text, scanner = self.field(name), self.scanner
            found = set(scanner.pattern.findall(text)) if scanner.pattern else set()
            found.update(w for w in scanner.hidden - found if w in text)
            self._scanned[name] = found
        return self._scanned[name]

    def finds(self, term: Term, fields: tuple[RuleField, ...]) -> bool:
        """True when every probe of ``term`` is found in at least one of ``fields``."""
        words = self.words(fields)
        for probe in term.probes:
            if probe.plain:
                if probe.words[0] not in words:
                    return False
            elif not words.issuperset(probe.words) or not any(
                probe.pattern.search(self.field(f)) for f in fields
            ):
                return False
        return True

    def mapped(self, name: RuleField) -> tuple[str, list[int] | None] | None:
        """The field folded, with owners into the original (None: one for one); for highlights."""
        if name not in self._mapped:
            raw = _raw_field(self.view, name)
            self._mapped[name] = self._with_offsets(name, raw) if raw else None
        return self._mapped[name]

    def _with_offsets(self, name: RuleField, raw: str) -> tuple[str, list[int] | None] | None:
        lowered, owners = _lowered_by_character(raw)
        folded = self.field(name)  # the same conversion when the field folded alike, as usual
        simplified = folded if lowered == self._lowered[name] else to_simplified(lowered)
        same_length = _same_length(lowered, simplified)
        return None if same_length is None else (same_length, owners)


def _raw_field(view: StoryView, name: RuleField) -> str:
    if name == "outlet":
        return _SEPARATOR.join(view.outlets)
    if name == "categories":
        return _SEPARATOR.join(view.categories)
    if name == "link":
        return view.link or ""
    return view.title if name == "title" else view.text


def match_story(rules: Sequence[CompiledRule], view: StoryView, *, now: datetime) -> list[Match]:
    """One Match per rule that fires on ``view``, in the rules' order (see the module doc)."""
    folded = _Folded(view, _scanner_of(rules))
    matches = []
    for rule in rules:
        found = _found_terms(rule, folded)
        if found is not None:
            matches.append(_match(rule, folded, found, now))
    return matches


def _scanner_of(rules: Sequence[CompiledRule]) -> _Scanner:
    """The scanner the rules were compiled with (any subset of them shares it), else one made."""
    shared = rules[0].scanner if rules else None
    if shared is not None and all(rule.words <= shared.words for rule in rules):
        return shared
    return _scanner(frozenset().union(*(rule.words for rule in rules)))


def _is_in_scope(rule: CompiledRule, folded: _Folded) -> bool:
    view = folded.view
    return (
        (not rule.sources or not rule.sources.isdisjoint(view.sources))
        and (not rule.outlets or not rule.outlets.isdisjoint(folded.outlets))
        and (not rule.categories or not rule.categories.isdisjoint(folded.categories))
        and (rule.min_outlets <= 1 or len(set(view.outlets)) >= rule.min_outlets)
    )


def _found_terms(rule: CompiledRule, folded: _Folded) -> list[Term] | None:
    """The terms that make ``rule`` fire, steps 1-5 of the module doc; None if it does not."""
    if not _is_in_scope(rule, folded):
        return None
    fields = rule.fields
    if any(folded.finds(term, fields) for term in rule.exclude):
        return None
    if not all(folded.finds(term, fields) for term in rule.all):
        return None
    alternatives = [t for t in (*rule.any, *rule.regex) if folded.finds(t, fields)]
    if (rule.any or rule.regex) and not alternatives:
        return None
    return [*rule.all, *alternatives]


def _match(rule: CompiledRule, folded: _Folded, found: list[Term], now: datetime) -> Match:
    view = folded.view
    searched = [f for f in _HIGHLIGHTED if f in rule.fields]
    highlights = [h for f in searched for h in _highlights(f, folded.mapped(f), found)]
    return Match(
        rule=rule.name,
        story_id=view.story_id,
        article_id=view.article_id,
        terms=tuple(t.text for t in found),
        highlights=tuple(highlights),
        outlet_count=len(set(view.outlets)),
        matched_at=now,
    )


def _highlights(
    field: RuleField, mapped: tuple[str, list[int] | None] | None, found: Sequence[Term]
) -> Iterator[Highlight]:
    """Spans of the original field where the found terms occur, merged, at most MAX_HIGHLIGHTS."""
    if mapped is None:
        return
    folded, owners = mapped
    spans: list[tuple[int, int, str]] = []
    for term in found:
        for probe in term.probes:
            for hit in itertools.islice(probe.pattern.finditer(folded), MAX_HIGHLIGHTS):
                start, last = hit.start(), hit.end() - 1
                if last >= start:
                    first, last = (start, last) if owners is None else (owners[start], owners[last])
                    spans.append((first, last + 1, term.text))
    for start, end, text in _merged(spans)[:MAX_HIGHLIGHTS]:
        yield Highlight(field=field, start=start, end=end, term=text)


def _merged(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans joined (the first term named), sorted by start."""
    merged: list[tuple[int, int, str]] = []
    for start, end, text in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, text))
    return merged
