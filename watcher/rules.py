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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import NamedTuple

from watcher.errors import ConfigError
from watcher.folding import (
    fold,
    fold_title_text,
    lowered_by_character,
    nfkc,
    same_length,
    to_simplified,
)
from watcher.models import Article, Highlight, Match, RuleField, StoryView
from watcher.plaintext import article_text
from watcher.settings import RuleSettings

MAX_HIGHLIGHTS = 50
"""Spans kept per field and rule: enough to mark a title and an excerpt."""

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
_BEFORE = rf"(?<![^\W_{_CJK}])"  # no Latin letter or digit just before
_AFTER = rf"(?![^\W_{_CJK}])"  # ... or just after
_LATIN = re.compile(rf"[^\W_{_CJK}]")
_SEPARATOR = "\x00"  # between outlets (or categories): no phrase or word runs across it
_HIGHLIGHTED: tuple[RuleField, ...] = ("title", "text")

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
                folded = self.view.folded or fold_title_text(self.view.title, self.view.text)
                self._fields["title"], self._fields["text"] = folded
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
        lowered, owners = lowered_by_character(raw)
        folded = self.field(name)  # the same conversion when the field folded alike, as usual
        before_t2s = nfkc(_raw_field(self.view, name)).lower()  # as fold_title_text had it
        simplified = folded if lowered == before_t2s else to_simplified(lowered)
        kept = same_length(lowered, simplified)
        return None if kept is None else (kept, owners)


def fold_article(article: Article) -> tuple[str, str]:
    """An article's title and text folded as the rules compare them (``StoryView.folded``).

    The costly part of matching (NFKC and OpenCC over the whole text), done where the
    article is parsed when that is another process.
    """
    return fold_title_text(article.title, article_text(article))


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
