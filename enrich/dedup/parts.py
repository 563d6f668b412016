"""Every story's parts in a few flat arrays, to score an article against all its candidates.

At a million articles in the window an article has ~500 candidate stories and ~800 parts
(centroid and members). Gathering each part's own arrays, scattered over the heap, and
binary-searching every term cost more than anything else dedup does per article. Here a
story's parts lie side by side in one table; a query gathers its candidates' ranges at once
and finds its terms through a small hash table, with the arithmetic of a plain dot product
(the same products summed in the same order, so the same scores to the last bit).

The table is derived state, rebuilt from the stories: the clusterer marks a story ``stale``
whenever its parts change or it goes, and the table catches up before the next query. It
holds the only copy of the terms: the clusterer points a story's parts at their entries
(views), so an entry, once written, is never written again; dead entries are dropped by
copying the live ones to new arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]
Parts = Sequence[tuple[U64, F32]]
A = TypeVar("A", bound=np.generic)

_ENTITY_BIT = np.uint64(1)  # the low bit of a term's hash: set for entity terms
# Odd multipliers for the query's hash table (Fibonacci hashing); the first that puts every
# query term in a slot of its own is used.
_MULTIPLIERS = (
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0xD6E8FEB86659FD93,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
)


class QueryTerms:
    """An article's vector as a hash table: which of many term ids it holds, and its weight."""

    def __init__(self, ids: U64, weights: F64) -> None:
        bits = max(8, int(ids.size).bit_length() + 6)  # ~1.5% full: rarely a collision
        while True:
            for mult in _MULTIPLIERS:
                self.mult, self.shift = np.uint64(mult), np.uint64(64 - bits)
                slots = self._slots(ids)
                if np.unique(slots).size == slots.size:
                    break
            else:
                bits += 1
                continue
            break
        self.ids = np.zeros(1 << bits, dtype=np.uint64)
        self.weights = np.zeros(1 << bits, dtype=np.float64)
        self.used = np.zeros(1 << bits, dtype=np.bool_)
        self.ids[slots], self.weights[slots], self.used[slots] = ids, weights, True

    def _slots(self, ids: U64) -> Ints:
        return ((ids * self.mult) >> self.shift).astype(np.intp)

    def find(self, ids: U64) -> tuple[Bools, F64]:
        """Whether each id is a query term, and its query weight (0 where not)."""
        slots = self._slots(ids)
        hit = self.used[slots] & (self.ids[slots] == ids)
        return hit, self.weights[slots]


class PartsTable:
    """The parts of every story, by story id: term ids, weights, and where each part starts."""

    def __init__(self) -> None:
        self.slot: dict[str, int] = {}
        self.free: list[int] = []
        self.start = np.zeros(0, dtype=np.intp)  # by slot: where its entries begin…
        self.length = np.zeros(0, dtype=np.intp)  # …and how many there are
        self.ids = np.zeros(0, dtype=np.uint64)
        self.w = np.zeros(0, dtype=np.float32)
        self.first = np.zeros(0, dtype=np.bool_)  # an entry that starts a part
        self.used = 0  # entries written, live or not
        self.live = 0
        self.stale: set[str] = set()

    @property
    def nbytes(self) -> int:
        arrays = (self.start, self.length, self.ids, self.w, self.first)
        return sum(int(a.nbytes) for a in arrays) + len(self.slot) * 100

    def entries(self, sid: str) -> tuple[U64, F32]:
        """A story's term ids and weights, its parts one after the other (views)."""
        slot = self.slot[sid]
        start, end = int(self.start[slot]), int(self.start[slot] + self.length[slot])
        return self.ids[start:end], self.w[start:end]

    def refresh(self, parts_of: Callable[[str], Parts | None]) -> list[str]:
        """Catch up with the stale stories: ``parts_of`` gives a story's parts, None if gone.
        Returns the stories whose entries moved: the stale ones, or every one when the
        table was copied to new arrays.

        All at once (after a restore, every story is stale): one copy of all their arrays.
        """
        if not self.stale:
            return []
        sids: list[str] = []
        every: list[tuple[U64, F32]] = []
        sizes: list[int] = []
        for sid in sorted(self.stale):
            self._drop(sid)
            parts = parts_of(sid)
            if parts is None:
                continue
            kept = [(ids, w) for ids, w in parts if ids.size]
            sids.append(sid)
            every.extend(kept)
            sizes.append(sum(ids.size for ids, _ in kept))
        self.stale = set()
        if not sids:
            return []
        size = sum(sizes)
        moved = self.used + size > self.ids.size
        if moved:
            self._grow(size)
        at = self.used
        if every:
            self.ids[at : at + size] = np.concatenate([ids for ids, _ in every])
            self.w[at : at + size] = np.concatenate([w for _, w in every])
            lengths = np.fromiter((ids.size for ids, _ in every), dtype=np.intp, count=len(every))
            self.first[at : at + size] = False
            self.first[at + np.cumsum(lengths) - lengths] = True
        for sid, n in zip(sids, sizes, strict=True):
            self._place(sid, at, n)
            at += n
        self.used = at
        self.live += size
        return list(self.slot) if moved else sids

    def _drop(self, sid: str) -> None:
        slot = self.slot.pop(sid, None)
        if slot is not None:
            self.live -= int(self.length[slot])
            self.length[slot] = 0
            self.free.append(slot)

    def _place(self, sid: str, start: int, length: int) -> None:
        if self.free:
            slot = self.free.pop()
        else:
            slot = len(self.slot)
            if slot >= self.start.size:
                self.start = _resized(self.start, max(256, 2 * self.start.size))
                self.length = _resized(self.length, self.start.size)
        self.slot[sid] = slot
        self.start[slot], self.length[slot] = start, length

    def _grow(self, size: int) -> None:
        """New arrays with room for ``size`` more entries and a quarter more free, without
        the dead entries once they are a quarter of the live ones. The old arrays stay as
        they are (the stories' parts view them until they are pointed at the new ones, which
        costs ~20 µs a story: paid once per a quarter of the table written)."""
        if self.used - self.live >= self.live // 4:
            slots = np.fromiter(self.slot.values(), dtype=np.intp, count=len(self.slot))
            lengths = self.length[slots]
            index = ranges(self.start[slots], lengths)
            self.start[slots] = np.cumsum(lengths) - lengths
        else:
            index = np.arange(self.used, dtype=np.intp)
        need = index.size + size
        capacity = max(need + need // 4, 1024)
        self.ids = _gathered(self.ids, index, capacity)
        self.w = _gathered(self.w, index, capacity)
        self.first = _gathered(self.first, index, capacity)
        self.used = int(index.size)

    def scores(self, query: QueryTerms, sids: Sequence[str]) -> tuple[F64, Ints]:
        """Per story: its best dot product over its parts, and how many entity terms it
        shares with the query (an entity counted once however many parts hold it)."""
        count = len(sids)
        slots = np.fromiter(map(self.slot.__getitem__, sids), dtype=np.intp, count=count)
        lengths = self.length[slots]
        index = ranges(self.start[slots], lengths)
        ids = self.ids[index]
        first = self.first[index]
        hit, weight = query.find(ids)
        contrib = np.where(hit, weight * self.w[index].astype(np.float64), 0.0)
        part_of = np.cumsum(first) - 1
        per_part = np.bincount(part_of, contrib)
        story_of = np.repeat(np.arange(count), lengths)
        best = np.zeros(count, dtype=np.float64)
        np.maximum.at(best, story_of[np.flatnonzero(first)], per_part)
        shared = np.zeros(count, dtype=np.intp)
        entity = hit & ((ids & _ENTITY_BIT) == _ENTITY_BIT)
        if entity.any():
            pairs = set(zip(story_of[entity].tolist(), ids[entity].tolist(), strict=True))
            owners = np.fromiter((owner for owner, _ in pairs), dtype=np.intp, count=len(pairs))
            shared = np.bincount(owners, minlength=count).astype(np.intp)
        return best, shared


def ranges(starts: Ints, lengths: Ints) -> Ints:
    """The indexes ``start .. start + length`` of every range, one after the other."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    index: Ints = np.arange(total, dtype=np.intp) + np.repeat(starts - (ends - lengths), lengths)
    return index


def _gathered(array: npt.NDArray[A], index: Ints, size: int) -> npt.NDArray[A]:
    """``array[index]`` at the start of a new array of ``size`` (the rest unset: every entry
    is written before it is read)."""
    out = np.empty(size, dtype=array.dtype)
    np.take(array, index, out=out[: index.size])
    return out


def _resized(array: npt.NDArray[A], size: int) -> npt.NDArray[A]:
    out = np.zeros(size, dtype=array.dtype)
    out[: array.size] = array
    return out
