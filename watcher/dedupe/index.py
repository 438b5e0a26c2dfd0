"""The LSH index: int items under their band keys and sampled shingles; query, insert, remove.

    keys  = index_keys(sig)         64 band keys (2 digest values each) + 1 in 4 sampled shingles
    index.insert(item, sig)         pending in a dict until merged into sorted numpy arrays
    found = index.query_items(sig)  sorted items sharing a band, or two sampled shingles

The merged keys live in sorted numpy arrays (key, item): ~1-1.5 KB an article and no Python
object per key, so the index is rebuilt from stored signatures in seconds per 100k articles.
A query is one vectorized lookup for all its keys; what it finds is combined in Python
(sets and a Counter), cheaper than numpy for the few dozen items a query finds.

Does not: know what an item is (the book maps items to articles) or score candidates.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from watcher.dedupe.shingles import U64, mix, mix_in_place
from watcher.dedupe.signature import Signature

BANDS: Final = 64  # LSH: 64 bands of 2 rows, so a pair is a candidate with probability
ROWS: Final = 2  # 1 - (1 - J**2)**64: J 0.15 -> 77%, 0.2 -> 93%, 0.25 -> 98%, 0.3 -> 99.8%
CONTAINMENT_KEY_EVERY: Final = 4  # of the sampled shingles, those indexed (1 in 32 in all)

_BAND_SALT: Final = mix(np.arange(1, BANDS + 1, dtype=np.uint64))
_MERGE_AT: Final = 1024  # pending items before they are merged into the sorted arrays
_SAMPLE_SALT: Final = np.uint64(0x5A5A5A5A00000000)
_NARROW: Final = 32  # needles in slots wider than this are looked up apart (shared keys)

Ints = npt.NDArray[np.int32] | npt.NDArray[np.int64]
Places = npt.NDArray[np.intp]


def band_keys(signatures: Sequence[Signature]) -> U64:
    """The LSH keys of each signature, shape (n, ``BANDS``): each band's ``ROWS`` values salted."""
    if not signatures:
        return np.empty((0, BANDS), dtype=np.uint64)
    values = np.stack([s.values for s in signatures])[:, : BANDS * ROWS]
    pairs = np.ascontiguousarray(values).view(np.uint64)  # ROWS == 2: one uint64 per band
    return pairs ^ _BAND_SALT


def index_keys(signature: Signature, bands: U64 | None = None) -> U64:
    """Everything an article is indexed under: its LSH bands, and one sampled shingle in 4.

    The sampled shingles find a short item inside a long text (containment), whose Jaccard
    is too low for the bands to find it; salted so they never equal a band key.
    """
    if bands is None:
        values = signature.values[: BANDS * ROWS]
        if values.dtype == np.uint32 and values.flags.c_contiguous:
            bands = values.view(np.uint64) ^ _BAND_SALT  # band_keys, without the stacking
        else:
            bands = band_keys([signature])[0]
    some = signature.sample[signature.sample % np.uint32(CONTAINMENT_KEY_EVERY) == 0]
    salted = some.astype(np.uint64)
    salted |= _SAMPLE_SALT
    return np.concatenate((bands, mix_in_place(salted)))


class LshIndex:
    """An index of int items under their ``index_keys``: insert, query, remove.

    Merged keys live in two sorted numpy arrays (key, item), the items as int32 while they
    fit. A directory of the keys' top bits gives each key's slot (~8 keys), so a lookup
    touches one or two cache lines instead of a 23-step binary search. New items wait in a
    dict until ``_MERGE_AT`` of them (or a quarter of the index) are merged. Removed items
    are filtered out of answers and dropped at the next merge.
    """

    def __init__(self) -> None:
        self._padded: U64 = np.zeros(1, dtype=np.uint64)  # the keys, then zeros (see _merge)
        self._keys: U64 = self._padded[:0]
        self._items: Ints = np.empty(0, dtype=np.int32)
        # keys with top bits p sit at [bounds[p, 0], bounds[p, 1])
        self._shift = np.uint64(63)
        self._bounds: npt.NDArray[np.int64] = np.zeros((2, 2), dtype=np.int64)
        self._steps: Places = np.arange(1)
        self._pending: dict[int, int] = {}  # a key's first pending item
        self._pending_more: dict[int, list[int]] = {}  # and its later ones
        self._pending_items: list[tuple[int, U64]] = []
        self._dead: set[int] = set()
        self._live: set[int] = set()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def insert(self, key: int, signature: Signature, bands: U64 | None = None) -> None:
        """Index ``key`` under ``index_keys`` (``bands``: those keys, when already computed)."""
        if signature.is_empty or key in self._live:
            return
        bands = index_keys(signature) if bands is None else bands
        self._live.add(key)
        self._pending_items.append((key, bands))
        self._hold(key, bands.tolist())
        if len(self._pending_items) >= max(_MERGE_AT, len(self._live) // 4):
            self._merge()

    def _hold(self, item: int, keys: list[int]) -> None:
        """Put a pending item under its keys (twice under a key it lists twice)."""
        fresh = dict.fromkeys(keys, item)
        if len(fresh) != len(keys):  # a repeated key (a 2**-64 chance): one at a time
            for key in keys:
                if key in self._pending:
                    self._pending_more.setdefault(key, []).append(item)
                else:
                    self._pending[key] = item
            return
        for key in fresh.keys() & self._pending.keys():  # shared with an earlier item
            del fresh[key]
            self._pending_more.setdefault(key, []).append(item)
        self._pending.update(fresh)

    def insert_many(self, keys: Sequence[int], signatures: Sequence[Signature]) -> None:
        """Index many keys at once (start-up): one sort for all of them."""
        chosen = [(k, s) for k, s in zip(keys, signatures, strict=True) if not s.is_empty]
        chosen = [(k, s) for k, s in chosen if k not in self._live]
        if not chosen:
            return
        self._live.update(k for k, _ in chosen)
        bands = band_keys([s for _, s in chosen])
        self._pending_items.extend(
            (k, index_keys(s, b)) for (k, s), b in zip(chosen, bands, strict=True)
        )
        self._merge()

    def _merge(self) -> None:
        """Fold the pending items into the sorted arrays: a linear merge, not a re-sort."""
        keys = self._keys
        items: npt.NDArray[Any] = self._items  # int32 or int64, made int32 again if it fits
        if self._dead:
            alive = ~np.isin(items, np.fromiter(self._dead, dtype=np.int64))
            keys, items = keys[alive], items[alive]
            # an item removed while still pending must not come back with the merge
            self._pending_items = [(k, b) for k, b in self._pending_items if k not in self._dead]
            self._dead.clear()
        if self._pending_items:
            new_keys = np.concatenate([bands for _, bands in self._pending_items])
            lengths = [len(bands) for _, bands in self._pending_items]
            new_items = np.repeat([key for key, _ in self._pending_items], lengths)
            order = np.argsort(new_keys, kind="stable")
            new_keys, new_items = new_keys[order], new_items[order].astype(np.int64)
            at = np.searchsorted(keys, new_keys, side="right")
            if items.dtype != np.int64 and not _fits_int32(new_items):
                items = items.astype(np.int64)
            keys = np.insert(keys, at, new_keys)
            items = np.insert(items, at, new_items)
        self._shift = np.uint64(64 - max(1, int(keys.size).bit_length() - 3))
        prefixes = (keys >> self._shift).astype(np.intp)
        counts = np.bincount(prefixes, minlength=1 << (64 - int(self._shift)))
        ends = np.cumsum(counts)
        self._bounds = np.stack((ends - counts, ends), axis=1)
        widest = int(counts.max())  # a lookup reads that far past a slot's start
        self._padded = np.concatenate((keys, np.zeros(widest, dtype=np.uint64)))
        self._keys = self._padded[: keys.size]
        self._items = items.astype(np.int32) if _fits_int32(items) else items.astype(np.int64)
        self._steps = np.arange(widest)
        self._pending.clear()
        self._pending_more.clear()
        self._pending_items.clear()

    def query(self, signature: Signature, bands: U64 | None = None) -> set[int]:
        """Items sharing a band, or two indexed sampled shingles (``bands``: its index keys).

        One shared shingle is not enough: a common phrase ("中国外交部") is in hundreds of
        articles and would make each of them a candidate.
        """
        return set(self.query_items(signature, bands))

    def query_items(self, signature: Signature, bands: U64 | None = None) -> list[int]:
        """What ``query`` finds, sorted."""
        if signature.is_empty:
            return []
        keys = index_keys(signature) if bands is None else bands
        items, needles = self._search(keys)
        split = bisect_left(needles, BANDS)  # the needles come in order, bands first
        found = set(items[:split])
        sampled = items[split:]
        if self._pending:
            wanted = keys.tolist()
            pending, more = self._pending, self._pending_more
            hits = pending.keys() & wanted[:BANDS]
            found.update(map(pending.__getitem__, hits))
            for needle in hits & more.keys():
                found.update(more[needle])
            hits = pending.keys() & wanted[BANDS:]
            sampled.extend(map(pending.__getitem__, hits))
            for needle in hits & more.keys():
                sampled.extend(more[needle])
        if len(sampled) > 1:
            found.update(item for item, count in Counter(sampled).items() if count >= 2)
        if self._dead:
            found -= self._dead
        return sorted(found)

    def _search(self, needles: U64) -> tuple[list[int], list[int]]:
        """Items under the needles in the arrays, each with its needle's place, ascending."""
        bounds = self._bounds[(needles >> self._shift).view(np.int64)]
        lo, hi = bounds[:, 0], bounds[:, 1]
        widths = hi - lo
        width = int(widths.max(initial=0))
        if width <= _NARROW:
            return self._match(needles, lo, hi, width)
        narrow = np.flatnonzero(widths <= _NARROW)  # the others share a slot with a common key
        wide = np.flatnonzero(widths > _NARROW)
        items, places = self._match(needles[narrow], lo[narrow], hi[narrow], _NARROW)
        more, others = self._match(needles[wide], lo[wide], hi[wide], width)
        back = [int(narrow[p]) for p in places] + [int(wide[p]) for p in others]
        found = sorted(zip(back, items + more, strict=True))
        return [item for _, item in found], [place for place, _ in found]

    def _match(
        self, needles: U64, lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64], width: int
    ) -> tuple[list[int], list[int]]:
        """``_search`` over needles whose slots are at most ``width`` keys wide."""
        if width == 0 or not needles.size:
            return [], []
        at = lo[:, None] + self._steps[:width]
        match = self._padded[at] == needles[:, None]
        match &= at < hi[:, None]
        places, columns = match.nonzero()
        return self._items[at[places, columns]].tolist(), places.tolist()

    def remove(self, key: int) -> None:
        """Forget ``key``; unknown keys are ignored."""
        if key in self._live:
            self._live.discard(key)
            self._dead.add(key)


def _fits_int32(values: Ints) -> bool:
    """True when every value fits int32 (half the memory of int64)."""
    info = np.iinfo(np.int32)
    return not values.size or (info.min <= int(values.min()) and int(values.max()) <= info.max)
