"""The story book: the articles held for matching, their index and their stories.

    decision = book.assign(article_id, sig, at)   query, decide, then hold the article
    book.add(members); book.evict(before)         the window the caller needs

Does not: read or write the store, or choose which days to hold (``watcher.stories`` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from watcher.dedupe.decision import Decision, Member, decide_among
from watcher.dedupe.index import LshIndex, index_keys
from watcher.dedupe.shingles import U64
from watcher.dedupe.signature import Signature
from watcher.settings import DedupSettings


class StoryBook:
    """The articles held in memory for matching: the LSH index and each one's story.

    ``assign`` is the whole decision for one new article: query the index, keep candidates
    within the window, pick the best (``decide``), then index the article too. A new story's
    id is the id of the article that starts it. Memory is what was added and not evicted:
    callers add the window they need and ``evict`` what falls out of it.

    Copies (equal signatures: one body in many feeds) share one entry in the index, a
    *group* named by the key of the first of them: a query finds a group exactly when it
    would find each copy, and the group is scored once (``decide_among``). The group leaves
    the index with its last member.
    """

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings
        self._index = LshIndex()
        self._members: dict[int, Member] = {}
        self._keys: dict[str, int] = {}
        self._next_key = 0
        self._groups: dict[int, int] = {}  # fingerprint -> group (the key of its first member)
        self._copies: dict[int, list[int]] = {}  # group -> the keys of its later members
        self._group_of: dict[int, int] = {}  # key of a later member -> its group

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._keys

    def add(self, members: Sequence[Member]) -> None:
        """Hold these members (already assigned) for matching; known ids are skipped."""
        fresh = [m for m in members if m.article_id not in self._keys]
        keys = list(range(self._next_key, self._next_key + len(fresh)))
        self._next_key += len(fresh)
        for key, member in zip(keys, fresh, strict=True):
            self._members[key] = member
            self._keys[member.article_id] = key
        if len(fresh) == 1:
            self._hold(keys[0], fresh[0].signature)
        elif fresh:
            firsts = [
                k for k, m in zip(keys, fresh, strict=True) if self._join_group(k, m.signature)
            ]
            self._index.insert_many(firsts, [self._members[k].signature for k in firsts])

    def candidates(self, signature: Signature, bands: U64 | None = None) -> list[Member]:
        """Members sharing an LSH band with the signature."""
        groups = self._index.query_items(signature, bands)
        return [self._members[k] for k in sorted(k for g in groups for k in self._held(g))]

    def assign(self, article_id: str, signature: Signature, at: datetime | None) -> Decision:
        """Decide the story of a new article and hold it for the next ones."""
        known = self._keys.get(article_id)
        if known is not None:  # assigned before: the same answer again
            member = self._members[known]
            return Decision(member.story_id if member.story_id != article_id else None)
        if at is None:  # undated: no window to compare within, a story of its own
            return Decision(None)
        bands = index_keys(signature)
        families = [self._family(g) for g in self._index.query_items(signature, bands)]
        decision = decide_among(signature, at, families, self.settings)
        key = self._next_key
        self._next_key += 1
        self._members[key] = Member(article_id, decision.story_id or article_id, at, signature)
        self._keys[article_id] = key
        self._hold(key, signature, bands)
        return decision

    def _hold(self, key: int, signature: Signature, bands: U64 | None = None) -> None:
        """Index a new member, or add it to the group of its copies."""
        if self._join_group(key, signature):
            self._index.insert(key, signature, bands)

    def _join_group(self, key: int, signature: Signature) -> bool:
        """Add a new member to the group of an equal signature; True when it starts a group."""
        if signature.is_empty:  # never indexed, never found
            return True
        fingerprint = _fingerprint(signature)
        group = self._groups.get(fingerprint)
        if group is None:
            self._groups[fingerprint] = key
            return True
        if self._family(group)[0] != signature:  # a hash collision: a group of its own
            return True
        self._group_of[key] = group
        self._copies.setdefault(group, []).append(key)
        return False

    def _held(self, group: int) -> list[int]:
        """The keys of the members of a group, oldest first."""
        first = [group] if group in self._members else []
        return first + self._copies.get(group, [])

    def _family(self, group: int) -> tuple[Signature, list[Member]]:
        """A group's signature and its members."""
        members = [self._members[k] for k in self._held(group)]
        return members[0].signature, members

    def forget(self, article_ids: Iterable[str]) -> None:
        """Stop holding these articles (unknown ids are ignored)."""
        for article_id in article_ids:
            key = self._keys.pop(article_id, None)
            if key is None:
                continue
            signature = self._members.pop(key).signature
            group = self._group_of.pop(key, key)
            if group != key:
                copies = self._copies[group]
                copies.remove(key)
                if not copies:
                    del self._copies[group]
            if group in self._members or group in self._copies:
                continue  # the group's other members keep it in the index
            self._index.remove(group)
            fingerprint = None if signature.is_empty else _fingerprint(signature)
            if fingerprint is not None and self._groups.get(fingerprint) == group:
                del self._groups[fingerprint]

    def evict(self, before: datetime) -> int:
        """Forget members published before ``before``; return how many."""
        gone = [m.article_id for m in self._members.values() if m.published_at is None
                or m.published_at < before]  # fmt: skip
        self.forget(gone)
        return len(gone)


def _fingerprint(signature: Signature) -> int:
    """A hash of everything a decision reads from a signature (equal ones hash equal)."""
    parts = (signature.values, signature.numbers, signature.sample)
    return hash((signature.size, *(part.tobytes() for part in parts)))
