"""Matching text: Traditional -> Simplified, lower case, the boilerplate rules removed.

    text = matching_text(title, body, rules)    one OpenCC call for title and body, then
                                                each rule whose literal opening occurs and
                                                whose guard (what a match needs) passes

Normalization for matching (never for display). Built-in rules first, then the configured
ones (``[dedup] boilerplate``).

Does not: shingle or hash the text (``shingles``), or keep anything but the compiled rules.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Final

import opencc

from watcher.settings import DedupSettings

# Built-in boilerplate, matched on lower-case Simplified text with the outlet's own punctuation.
# Each is a regular expression; users add their own with `[dedup] boilerplate`.
BUILTIN_BOILERPLATE: Final[tuple[str, ...]] = (
    r"获取更多rss[:：]?(?:\s*https?://\S+)*",  # feedx footer (路透, 纽约时报 ...)
    r"©[^©]{0,80}for 中国数字时代.*",  # China Digital Times footer, to the end
    r"\|\s*permalink\s*\|.*",
    r"^\s*\d{4}-\d\d-\d\dt\d\d:\d\d:\d\d(?:\.\d+)?z",  # ISO time opening 路透 and 德国之声
    r"^\s*(?:mon|tue|wed|thu|fri|sat|sun), \d\d [a-z]{3} \d{4} \d\d:\d\d:\d\d (?:gmt|[+-]\d{4})",
    r"^\s*\d\d/\d\d/\d{4} - \d\d:\d\d",  # 法广 opening
    r"^[^｜|\s]{1,12}[｜|]",  # a source named before the title: "美国之音｜..." (中国数字时代)
    r"[–-] 法国国际广播电台 - rfi$",  # 法广's title suffix
    r"路透[^\s\-—]{1,12}\d{1,2}月\d{1,2}日\s*[-—]\s*",  # 路透香港12月1日 -
    r"\(完\)",
    r"中央社[^）)]{0,40}(?:电|报导)[）)]",  # （中央社台北4日电） (the opening paren is dropped)
    r"编辑[:：][^）)]{0,40}[）)]\d{0,7}",  # CNA credits: （编辑：...）1100121
    r"译者[:：][^）)]{0,40}[）)]",
    r"延伸阅读.*",  # CNA's further reading, to the end
    r"【大纪元\d{4}年\d{1,2}月\d{1,2}日讯】",
    r"大纪元记者[^）)]{0,30}[）)]",
    r"责任编辑[:：]\s*\S{0,12}",
    r"© \d{4} afp",
    r"法新社[^）)]{0,30}电[）)]",
    r"德国之声中文网[）)]",
    r"© \d{4}年? ?德国之声版权声明.*?刑事追究。",
    r"翻译[:：][^。]{0,40}点击查看本文英文版。",
    r"the post .{0,200}? first appeared on bitter winter\.",
    r"mitbbs\.com",
    r"本文系观察者网独家稿件，未经授权，不得转载。",
    r"【文/观察者网\s*[^】]{0,12}】",
    r"观察者网讯[）)]",
    r"共享此文章[:：].*",  # iYouPort share buttons, to the end
    r"证券时报e公司讯[,，]",
    r"财联社\d{1,2}月\d{1,2}日[电讯][,，]",
    r"央视新闻[）)]",  # a wire item's source in parentheses (the opening one is punctuation)
    r"第一财经[）)]",
    r"please subscribe to the economist.*",
    r"编写/责编[:：][^）)]{0,20}[）)]",
)


# --- matching text --------------------------------------------------------------------------------


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """OpenCC t2s: Traditional characters and phrases to Simplified."""
    return str(_converter().convert(text))


@dataclass(frozen=True)
class Boilerplate:
    """The compiled boilerplate rules: built-in first, then the configured ones."""

    patterns: tuple[str, ...]
    compiled: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)
    triggers: tuple[str | None, ...] = field(repr=False, compare=False)
    """Each rule's literal opening, which a text must contain for the rule to match."""
    finder: re.Pattern[str] = field(repr=False, compare=False)
    """All the openings in one alternation: one pass finds which rules can match at all."""
    guards: tuple[Guard, ...] = field(repr=False, compare=False, default=())
    """What any match of each rule needs (see ``Guard``)."""
    always: tuple[int, ...] = field(repr=False, compare=False, default=())
    """The rules with no opening: they run on every text."""
    opened_by: dict[str, tuple[int, ...]] = field(repr=False, compare=False, default_factory=dict)
    """Per opening the finder can return, the rules it opens (their opening starts it)."""

    @classmethod
    def from_settings(cls, settings: DedupSettings) -> Boilerplate:
        """The built-in rules plus ``settings.boilerplate``."""
        patterns = (*BUILTIN_BOILERPLATE, *settings.boilerplate)
        compiled = tuple(re.compile(p, re.DOTALL) for p in patterns)
        triggers = tuple(_literal_prefix(p) for p in patterns)
        openings = sorted({t for t in triggers if t}, key=len, reverse=True)
        finder = re.compile("|".join(re.escape(t) for t in openings) or "(?!)")
        guards = tuple(Guard.of(p) for p in compiled)
        always = tuple(i for i, t in enumerate(triggers) if t is None)
        opened_by = {
            opening: tuple(i for i, t in enumerate(triggers) if t and opening.startswith(t))
            for opening in openings
        }
        return cls(patterns, compiled, triggers, finder, guards, always, opened_by)

    def strip(self, text: str) -> str:
        """``text`` with every rule's matches replaced by a space, rule after rule.

        A rule runs only when its opening occurs in the text (one pass for all openings:
        3x cheaper than trying each rule), and then only past its ``Guard``.
        """
        found = set(self.finder.findall(text))  # the longest opening wins at each place
        chosen = self.always
        if found:
            chosen = tuple(sorted({*chosen}.union(*(self.opened_by[f] for f in found))))
        for i in chosen:
            if self.guards[i].may_match(text):  # the text as the rules before left it
                text = self.compiled[i].sub(" ", text)
        return text

    @property
    def fingerprint(self) -> str:
        """A short hash of the rules, part of the signature scheme."""
        return hashlib.blake2b("\n".join(self.patterns).encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class Guard:
    """What any match of a rule needs, checked before the costlier ``sub``.

    The longest run of literal characters in the rule's top-level sequence must occur in
    the text, and a rule anchored by ``^`` (no MULTILINE) or ``\\A`` must match at its start.
    A text failing the guard is one the rule would leave as it is.
    """

    pattern: re.Pattern[str] | None = None  # anchored: only ``pattern.match`` can succeed
    literal: str = ""

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> Guard:
        """Read the guard off Python's own parse of the pattern; none when it cannot."""
        try:
            parser = importlib.import_module("re._parser")  # the parse re compiles from
            parsed = parser.parse(pattern.pattern, pattern.flags)
            nodes = [(str(op), str(value), value) for op, value in parsed.data]
            flags = int(parsed.state.flags)
        except (ImportError, AttributeError, TypeError, ValueError, re.error):
            return cls()  # another Python's internals: no guard, the rule always runs
        if flags & re.IGNORECASE:
            return cls()
        runs = [""]
        for op, _, value in nodes:
            if op == "LITERAL":
                runs[-1] += chr(value)
            elif runs[-1]:
                runs.append("")
        anchored = bool(nodes) and nodes[0][:2] in {
            ("AT", "AT_BEGINNING_STRING"),
            *((("AT", "AT_BEGINNING"),) if not flags & re.MULTILINE else ()),
        }
        return cls(pattern if anchored else None, max(runs, key=len))

    def may_match(self, text: str) -> bool:
        """False when the rule cannot match ``text``."""
        if self.literal not in text:
            return False
        return self.pattern is None or self.pattern.match(text) is not None


_META: Final = frozenset("\\.^$*+?{}[]|()")


def _literal_prefix(pattern: str) -> str | None:
    """The literal characters a match must start with ('' or None when there are none)."""
    prefix = ""
    for i, char in enumerate(pattern):
        if char in _META:
            if char in "*?{" and prefix:  # the last literal is optional or repeated
                prefix = prefix[:-1]
            if char == "|" or "|" in pattern[i:]:
                return None  # an alternation: no single opening
            break
        prefix += char
    return prefix or None


def matching_text(title: str, text: str, rules: Boilerplate) -> str:
    """Title and visible text, Traditional -> Simplified, lower case, boilerplate removed.

    The rules see the title and the text apart, so ``^`` and ``$`` anchor to each one's ends.
    """
    if not title:
        return rules.strip(to_simplified(text).lower())
    joined = to_simplified(f"{' '.join(title.split())}\n{text}").lower()
    head, _, body = joined.partition("\n")  # one conversion for both: a call costs ~5 us
    return f"{rules.strip(head)} {rules.strip(body)}"
