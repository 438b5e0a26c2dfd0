"""A story row's reach, grown a member at a time: outlets, categories and sources in member order.

    reach = Reach.from_columns(outlets, categories, sources, firsts)     the story row as stored
    reach.add(member_key(...), outlet, categories, source)               for each new member
    reach.columns()                                                      back to the row

Members sort undated last, then by published_key, assigned_at and article_id (the ``ORDER BY``
of a story's members); a category also sorts by its index in its member's list. Each name sits
beside its first member, ``[article_id, position]``, and ``firsts`` keeps those members'
published_key and assigned_at, so a new member places each name it brings first by comparing
keys: the lists come out as a recompute from every member would give them, also when the new
member was published before the others (backfill, restory, a late copy). The row grows with
the story's distinct names, not with its members.

Does not: read or write a database (the backend reads the row and writes the columns back).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MemberKey = tuple[int, str, str, str]
"""Where a member sorts in its story: (undated 0 or 1, published_key, assigned_at, article_id).

Tuples of str compare as SQLite's BINARY collation does: code point order is UTF-8 byte order.
"""

KINDS: Final = ("outlet", "category", "source")
"""The lists of a story's reach, in the order of its columns."""

_TEXT: Final = json.JSONEncoder(ensure_ascii=False).encode  # made once: called per story
_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def member_key(published_key: str, assigned_at: str, article_id: str) -> MemberKey:
    """The order key of a story member."""
    return (int(published_key == ""), published_key, assigned_at, article_id)


def _names(
    outlet: str, categories: Sequence[str], source: str | None
) -> Iterator[tuple[str, str, int]]:
    yield "outlet", outlet, 0
    for position, category in enumerate(categories):
        yield "category", category, position
    if source is not None:
        yield "source", source, 0


def _empty() -> dict[str, list[Any]]:
    return {kind: [] for kind in KINDS}


@dataclass
class Reach:
    """Outlets, categories and sources in member order, each name beside its first member.

    ``names[kind][i]`` first came with member ``firsts[kind][i] = [article_id, position]``;
    ``members[article_id]`` is that member's ``[published_key, assigned_at]``.
    """

    names: dict[str, list[str]] = field(default_factory=_empty)
    firsts: dict[str, list[list[Any]]] = field(default_factory=_empty)
    members: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_columns(cls, outlets: str, categories: str, sources: str, firsts: str) -> Reach:
        """The reach a story row stored (its JSON columns; ``firsts`` '{}' for none yet)."""
        texts = (outlets, categories, sources)
        names = {kind: json.loads(text) for kind, text in zip(KINDS, texts, strict=True)}
        stored = json.loads(firsts)
        members = stored.pop("members", {})
        return cls(names, stored or _empty(), members)

    def add(
        self, key: MemberKey, outlet: str, categories: Sequence[str], source: str | None
    ) -> None:
        """Place the names of one more member: those it has before their first member so far."""
        self.members[key[3]] = [key[1], key[2]]
        for kind, name, position in _names(outlet, categories, source):
            self._place(kind, name, (*key, position))

    def _first_key(self, first: list[Any]) -> tuple[Any, ...]:
        article_id, position = first
        published_key, assigned_at = self.members[article_id]
        return (int(published_key == ""), published_key, assigned_at, article_id, position)

    def _place(self, kind: str, name: str, key: tuple[Any, ...]) -> None:
        names, firsts = self.names[kind], self.firsts[kind]
        if name in names:
            index = names.index(name)
            if self._first_key(firsts[index]) <= key:
                return
            del names[index], firsts[index]
        end = len(names)
        if end and key < self._first_key(firsts[end - 1]):  # else it comes last: the usual case
            end = bisect_right(firsts, key, hi=end - 1, key=self._first_key)
        names.insert(end, name)
        firsts.insert(end, [key[3], key[4]])

    def canonical(self) -> tuple[str, str]:
        """The story's earliest member and its published_key; the story must have a member."""
        article_id = self.firsts["outlet"][0][0]
        return article_id, self.members[article_id][0]

    def columns(self) -> tuple[str, str, str, str]:
        """The JSON of the row's outlets, categories, sources and firsts columns."""
        outlets, categories, sources = (_TEXT(self.names[kind]) for kind in KINDS)
        kept = dict.fromkeys(first[0] for kind in KINDS for first in self.firsts[kind])
        members = {article_id: self.members[article_id] for article_id in kept}
        return outlets, categories, sources, _COMPACT({**self.firsts, "members": members})
