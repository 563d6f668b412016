"""The article window: compact columns and hash indexes in time-ordered segments.

Articles are appended to an active segment (numpy columns + small dict indexes). A full
segment is sealed: its indexes become sorted ``uint64`` key arrays with a directory of
buckets, so a million articles cost a few hundred bytes each and a lookup is a few
vectorized reads per segment. Eviction drops whole segments whose newest article left the
time window. Rows are addressed by a global sequence number (``seq``).
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from enrich.dedup.minhash import U16
from enrich.dedup.parts import ranges
from enrich.dedup.text import U64

I64 = npt.NDArray[np.int64]
_KINDS = ("band", "id", "url", "hash")  # one index per segment; the kind tags each key
_MASK62 = np.uint64((1 << 62) - 1)
_COLUMNS = ("sig", "size", "version", "outlet", "time", "chash", "reason")


def tag(kind: str, keys: U64) -> U64:
    """Keys of one kind in the shared index: band keys (< 2**38) as they are, the others
    with the kind in their top two bits."""
    number = _KINDS.index(kind)
    if number == 0:
        return keys
    return (keys & _MASK62) | (np.uint64(number) << np.uint64(62))


def kind_of(key: int) -> str:
    return _KINDS[key >> 62]


_FRACTION = 24  # bits of a key's uniform part that buckets can use, at most
_SPANS = 64 + 4  # the spans of keys buckets split: one per band, then one per tag


def _bucket_parts(keys: U64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per key, its span (a band's, or after the 64 bands' another kind's) and the top
    ``_FRACTION`` bits of its uniform part."""
    band = keys < np.uint64(1 << 38)
    spans = np.where(band, keys >> np.uint64(32), (keys >> np.uint64(62)) + np.uint64(64))
    fraction = np.where(band, keys >> np.uint64(8), keys >> np.uint64(38))
    fraction &= np.uint64((1 << _FRACTION) - 1)
    return spans.astype(np.int64), fraction.astype(np.int64)


def _bucket(
    parts: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], bits: int
) -> npt.NDArray[np.int64]:
    spans, fraction = parts
    bucket: npt.NDArray[np.int64] = (spans << bits) | (fraction >> (_FRACTION - bits))
    return bucket


def bucket_of(keys: U64, bits: int) -> npt.NDArray[np.int64]:
    """A non-decreasing map of tagged keys to ``_SPANS << bits`` buckets, even within each kind.

    A band key (band number above 32 uniform bits, < 2**38) goes to its band's ``2**bits``
    buckets by its top uniform bits; another kind (tag above 62 uniform bits) to the
    buckets after all bands' (64 of them, at most), by its top uniform bits. Any uint64
    maps somewhere, in order: the layout only decides how evenly.
    """
    return _bucket(_bucket_parts(keys), bits)


class Lookup:
    """The distinct keys of one lookup, sorted, and their buckets (by ``bits``), computed
    once for every index of that size."""

    __slots__ = ("_buckets", "_parts", "keys")

    def __init__(self, keys: U64):
        self.keys: U64 = np.unique(keys)
        self._parts: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
        self._buckets: dict[int, npt.NDArray[np.int64]] = {}

    def buckets(self, bits: int) -> npt.NDArray[np.int64]:
        found = self._buckets.get(bits)
        if found is None:
            if self._parts is None:  # a small window has no index large enough for buckets
                self._parts = _bucket_parts(self.keys)
            found = self._buckets[bits] = _bucket(self._parts, bits)
        return found


class SortedIndex:
    """Immutable multimap uint64 → uint32 (global seq), sorted by key.

    A large index also keeps a directory: where each bucket of keys (:func:`bucket_of`, about
    ``PER_BUCKET`` entries each) starts. A lookup reads one directory entry and the few keys
    after it per query key, where a binary search of megabytes misses the cache at nearly
    every step, in a handful of array operations (at a million articles, an article's
    lookup searches about fifteen indexes, and each operation costs a microsecond or two).
    """

    __slots__ = ("bits", "directory", "keys", "vals", "widest")
    PER_BUCKET = 16
    DIRECTED = 1 << 14  # entries from which a directory pays for itself
    KINDS = 35  # ranges of keys of an article: 32 bands, id, url, hash
    MAX_WIDTH = 256  # a bucket wider than this (keys not spread as tagged keys are): search
    _COLUMNS = np.arange(MAX_WIDTH)

    def __init__(self, keys: U64, vals: npt.NDArray[np.uint32]):
        order = np.argsort(keys, kind="stable")
        self._set(keys[order], vals[order])

    @classmethod
    def presorted(cls, keys: U64, vals: npt.NDArray[np.uint32]) -> SortedIndex:
        """An index of entries already sorted by key (as saved)."""
        index = cls.__new__(cls)
        index._set(keys, vals)
        return index

    def _set(self, keys: U64, vals: npt.NDArray[np.uint32]) -> None:
        self.keys: U64 = keys
        self.vals: npt.NDArray[np.uint32] = vals
        self.bits = self.widest = 0
        self.directory: npt.NDArray[np.uint32] | None = None
        if keys.size < self.DIRECTED:
            return
        bits = min(_FRACTION, (keys.size // (self.KINDS * self.PER_BUCKET)).bit_length())
        counts = np.bincount(bucket_of(keys, bits), minlength=_SPANS << bits)
        widest = int(counts.max())
        if widest <= self.MAX_WIDTH:
            self.bits, self.widest = bits, widest
            self.directory = (np.cumsum(counts) - counts).astype(np.uint32)  # where each starts

    def find(self, lookup: Lookup) -> list[tuple[int, int]]:
        """(key, value) of every entry whose key is one of the lookup's."""
        keys, query = self.keys, lookup.keys
        if keys.size == 0 or query.size == 0:
            return []
        if self.directory is None:
            lo = np.searchsorted(keys, query)
            np.minimum(lo, keys.size - 1, out=lo)
            hits = np.flatnonzero(keys.take(lo) == query)
            if not hits.size:
                return []
            hi = np.searchsorted(keys, query[hits], side="right")  # equal keys are adjacent
            where = ranges(lo[hits], hi - lo[hits])
        else:
            # A key's entries are in its bucket, which starts at its directory entry and
            # ends within ``widest`` entries; the entries after it (another bucket's) differ.
            near = (
                self.directory.take(lookup.buckets(self.bits))[:, None]
                + self._COLUMNS[: self.widest]
            )
            np.minimum(near, keys.size - 1, out=near)
            match = keys.take(near) == query[:, None]
            if not match.any():
                return []
            where = np.unique(near[match])  # a clipped position may repeat
        return list(zip(keys[where].tolist(), self.vals[where].tolist(), strict=True))

    @property
    def nbytes(self) -> int:
        directory = 0 if self.directory is None else self.directory.nbytes
        return int(self.keys.nbytes + self.vals.nbytes + directory)


@dataclass
class Segment:
    """Rows ``start .. start + n`` of the window, and the index entries added meanwhile."""

    start: int
    capacity: int
    num_perm: int
    ids: list[str] = field(default_factory=list)
    stories: list[str] = field(default_factory=list)
    dup_of: list[str | None] = field(default_factory=list)
    sig: U16 = field(init=False)
    size: npt.NDArray[np.uint32] = field(init=False)
    version: npt.NDArray[np.uint32] = field(init=False)
    outlet: npt.NDArray[np.uint32] = field(init=False)
    time: I64 = field(init=False)
    chash: U64 = field(init=False)
    # The decision's reason, as the engine codes it (0: not recorded, an older snapshot), so
    # an input seen again gets the decision it got the first time.
    reason: npt.NDArray[np.uint8] = field(init=False)
    max_time: int = -(2**62)
    min_time: int = 2**62
    pending: dict[int, list[int]] = field(default_factory=dict)  # tagged key → seqs
    sealed: SortedIndex | None = None
    # The pending entries in the order they were added, so a snapshot can save only the new
    # ones (see ``enrich.dedup.persist``); dropped when the segment is sealed.
    key_log: list[int] = field(default_factory=list)
    seq_log: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sig = np.zeros((self.capacity, self.num_perm), dtype=np.uint16)
        self.size = np.zeros(self.capacity, dtype=np.uint32)
        self.version = np.zeros(self.capacity, dtype=np.uint32)
        self.outlet = np.zeros(self.capacity, dtype=np.uint32)
        self.time = np.zeros(self.capacity, dtype=np.int64)
        self.chash = np.zeros(self.capacity, dtype=np.uint64)
        self.reason = np.zeros(self.capacity, dtype=np.uint8)

    @property
    def n(self) -> int:
        return len(self.ids)

    def add_keys(self, keys: Iterable[int], seq: int) -> None:
        table = self.pending
        for key in keys:
            table.setdefault(int(key), []).append(seq)
            self.key_log.append(int(key))
            self.seq_log.append(seq)

    def find(self, lookup: Lookup) -> list[tuple[int, int]]:
        if self.sealed is not None:
            return self.sealed.find(lookup)
        table = self.pending
        return [(k, s) for k in lookup.keys.tolist() for s in table.get(k, ())]

    def seal(self) -> None:
        """Trim the columns to the rows used and freeze the indexes into sorted arrays."""
        n = self.n
        self.capacity = n
        self.sig = self.sig[:n].copy()
        self.size, self.version = self.size[:n].copy(), self.version[:n].copy()
        self.outlet, self.time = self.outlet[:n].copy(), self.time[:n].copy()
        self.chash, self.reason = self.chash[:n].copy(), self.reason[:n].copy()
        keys = [k for k, seqs in self.pending.items() for _ in seqs]
        vals = [s for seqs in self.pending.values() for s in seqs]
        self.sealed = SortedIndex(
            np.asarray(keys, dtype=np.uint64), np.asarray(vals, dtype=np.uint32)
        )
        self.pending = {}
        self.key_log, self.seq_log = [], []

    def nbytes(self) -> int:
        """Approximate memory: columns, indexes and the id strings."""
        cols = sum(
            a.nbytes for a in (self.sig, self.size, self.version, self.outlet, self.time)
        ) + int(self.chash.nbytes + self.reason.nbytes)
        if self.sealed is not None:
            idx = self.sealed.nbytes
        else:
            idx = len(self.pending) * 120 + sum(len(v) * 36 for v in self.pending.values())
        strings = sum(49 + len(s) + 8 for s in self.ids) + 16 * len(self.ids)
        return int(cols + idx + strings)


class ArticleStore:
    """All articles in the window, oldest segment first; the last segment is active."""

    def __init__(self, num_perm: int, segment_rows: int = 4096, segment_span: int = 324000):
        self.num_perm = num_perm
        self.segment_rows = segment_rows  # rows of the active (dict-indexed) segment
        self.segment_span = segment_span  # seconds a sealed segment may cover after merges
        self.next_seq = 0
        self.segments: list[Segment] = [Segment(0, segment_rows, num_perm)]
        self.updated: set[int] = set()  # seqs given a new version since a snapshot took them

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    def __len__(self) -> int:
        return sum(s.n for s in self.segments)

    def locate(self, seq: int) -> tuple[Segment, int] | None:
        """The segment and row of ``seq``, or None when it was evicted."""
        starts = [s.start for s in self.segments]
        i = bisect.bisect_right(starts, seq) - 1
        if i < 0:
            return None
        seg = self.segments[i]
        row = seq - seg.start
        return (seg, row) if row < seg.n else None

    def find(self, kind: str, keys: U64) -> list[int]:
        """Distinct live seqs indexed under any of ``keys`` of ``kind``, oldest first."""
        return self.find_many({kind: keys}).get(kind, [])

    def find_many(self, queries: dict[str, U64]) -> dict[str, list[int]]:
        """Like :meth:`find` for several kinds at once: one search per segment."""
        lookup = Lookup(np.concatenate([tag(kind, keys) for kind, keys in queries.items()]))
        found: dict[str, set[int]] = {}
        for seg in self.segments:
            for key, seq in seg.find(lookup):
                found.setdefault(kind_of(key), set()).add(seq)
        first = self.segments[0].start
        return {kind: sorted(s for s in seqs if s >= first) for kind, seqs in found.items()}

    def append(
        self,
        *,
        article_id: str,
        story_id: str,
        duplicate_of: str | None,
        sig: U16,
        size: int,
        outlet: int,
        time: int,
        chash: int,
        reason: int,
        keys: dict[str, U64],
    ) -> int:
        seg = self.active
        if seg.n >= seg.capacity or (seg.n and time - seg.min_time > self.segment_span):
            seg.seal()
            self._merge_tail()
            seg = Segment(self.next_seq, self.segment_rows, self.num_perm)
            self.segments.append(seg)
        seq = self.next_seq
        self.next_seq += 1
        row = seg.n
        seg.ids.append(article_id)
        seg.stories.append(story_id)
        seg.dup_of.append(duplicate_of)
        seg.sig[row], seg.size[row], seg.version[row] = sig, size, 1
        seg.outlet[row], seg.time[row], seg.chash[row] = outlet, time, chash
        seg.reason[row] = reason
        seg.max_time, seg.min_time = max(seg.max_time, time), min(seg.min_time, time)
        for kind, values in keys.items():
            seg.add_keys(tag(kind, values).tolist(), seq)
        return seq

    def update(
        self, seq: int, *, sig: U16, size: int, chash: int, reason: int, keys: dict[str, U64]
    ) -> int:
        """A new version of an article: new content columns, new index entries; returns it."""
        found = self.locate(seq)
        assert found is not None
        seg, row = found
        seg.sig[row], seg.size[row], seg.chash[row] = sig, size, chash
        seg.reason[row] = reason
        seg.version[row] += 1
        self.updated.add(seq)
        for kind, values in keys.items():
            self.active.add_keys(tag(kind, values).tolist(), seq)
        return int(seg.version[row])

    def _merge_tail(self) -> None:
        """Keep few segments, like an LSM tree: O(log n) lookups per segment, granular eviction.

        Within one epoch (``segment_span`` seconds) the newest sealed segments merge while of
        similar size; once an epoch is over its segments become one.
        """
        span = self.segment_span
        sealed = self.segments  # the active segment was just sealed: all are sealed here
        while len(sealed) >= 2:
            a, b = sealed[-2], sealed[-1]
            if a.min_time // span != b.min_time // span or a.n > 2 * b.n:
                break
            sealed[-2:] = [_merge(a, b)]
        current = sealed[-1].min_time // span
        i = 0
        while i < len(sealed) - 1:
            j = i
            epoch = sealed[i].min_time // span
            while j + 1 < len(sealed) and sealed[j + 1].min_time // span == epoch:
                j += 1
            if epoch != current and j > i:
                merged = sealed[i]
                for other in sealed[i + 1 : j + 1]:
                    merged = _merge(merged, other)
                sealed[i : j + 1] = [merged]
            i += 1

    def evict(self, cutoff: int) -> int:
        """Drop sealed segments whose newest article is older than ``cutoff``; count rows."""
        dropped = 0
        while len(self.segments) > 1 and self.segments[0].max_time < cutoff:
            dropped += self.segments.pop(0).n
        return dropped

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.segments)

    # -- persistence ---------------------------------------------------------------------

    def dump(self) -> bytes:
        """All segments as one ``.npz`` (no pickle)."""
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        meta: dict[str, object] = {
            "num_perm": self.num_perm,
            "segment_rows": self.segment_rows,
            "segment_span": self.segment_span,
            "next_seq": self.next_seq,
            "segments": [],
        }
        for i, seg in enumerate(self.segments):
            n = seg.n
            strings = {s for s in seg.stories} | {d for d in seg.dup_of if d is not None}
            table = sorted(strings)
            where = {s: j for j, s in enumerate(table)}
            seg_meta = {
                "start": seg.start,
                "max_time": seg.max_time,
                "min_time": seg.min_time,
                "sealed": seg.sealed is not None,
                "ids": seg.ids,
                "strings": table,
                "stories": [where[s] for s in seg.stories],
                "dup_of": [-1 if d is None else where[d] for d in seg.dup_of],
            }
            meta["segments"].append(seg_meta)  # type: ignore[attr-defined]
            for name in _COLUMNS:
                arrays[f"{i}.{name}"] = getattr(seg, name)[:n]
            if seg.sealed is not None:
                arrays[f"{i}.k"], arrays[f"{i}.v"] = seg.sealed.keys, seg.sealed.vals
            else:
                pending = seg.pending
                arrays[f"{i}.k"] = np.asarray(
                    [k for k, v in pending.items() for _ in v], dtype=np.uint64
                )
                arrays[f"{i}.v"] = np.asarray(
                    [s for v in pending.values() for s in v], dtype=np.uint32
                )
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def load(cls, data: bytes) -> ArticleStore:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            store = cls(meta["num_perm"], meta["segment_rows"], meta["segment_span"])
            store.next_seq = meta["next_seq"]
            store.segments = []
            for i, sm in enumerate(meta["segments"]):
                n = len(sm["ids"])
                seg = Segment(
                    sm["start"], store.segment_rows if not sm["sealed"] else n, store.num_perm
                )
                seg.ids = list(sm["ids"])
                table = sm["strings"]
                seg.stories = [table[j] for j in sm["stories"]]
                seg.dup_of = [None if j < 0 else table[j] for j in sm["dup_of"]]
                for name in _COLUMNS:
                    if f"{i}.{name}" in z.files:  # an older dump has no reason column
                        getattr(seg, name)[:n] = z[f"{i}.{name}"]
                seg.max_time, seg.min_time = sm["max_time"], sm["min_time"]
                if sm["sealed"]:
                    seg.sealed = SortedIndex(z[f"{i}.k"], z[f"{i}.v"])
                else:
                    for k, v in zip(z[f"{i}.k"].tolist(), z[f"{i}.v"].tolist(), strict=True):
                        seg.pending.setdefault(k, []).append(v)
                store.segments.append(seg)
        return store


def rows_parts(
    seg: Segment, first: int = 0
) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, object]]:
    """Rows ``first ..`` of ``seg``: their columns, and their strings as JSON-able lists."""
    n = seg.n
    strings = sorted(set(seg.stories[first:]) | {d for d in seg.dup_of[first:] if d is not None})
    where = {s: j for j, s in enumerate(strings)}
    meta: dict[str, object] = {
        "start": seg.start,
        "first": first,
        "ids": seg.ids[first:],
        "strings": strings,
        "stories": [where[s] for s in seg.stories[first:]],
        "dup_of": [-1 if d is None else where[d] for d in seg.dup_of[first:]],
    }
    arrays = {name: getattr(seg, name)[first:n] for name in _COLUMNS}
    return arrays, meta


def append_rows(
    seg: Segment, arrays: dict[str, npt.NDArray[np.generic]], meta: dict[str, object]
) -> None:
    """Append rows saved by :func:`rows_parts` to ``seg`` (growing its columns if needed)."""
    ids = list(meta["ids"])  # type: ignore[call-overload]
    table: list[str] = meta["strings"]  # type: ignore[assignment]
    first, count = seg.n, len(ids)
    if first + count > seg.capacity:
        seg.capacity = first + count
        for name in _COLUMNS:
            old = getattr(seg, name)
            grown = np.zeros((seg.capacity, *old.shape[1:]), dtype=old.dtype)
            grown[:first] = old[:first]
            setattr(seg, name, grown)
    for name in _COLUMNS:
        getattr(seg, name)[first : first + count] = arrays[name]
    seg.ids.extend(ids)
    seg.stories.extend(table[j] for j in meta["stories"])  # type: ignore[attr-defined]
    seg.dup_of.extend(None if j < 0 else table[j] for j in meta["dup_of"])  # type: ignore[attr-defined]
    if count:
        times = seg.time[first : first + count]
        seg.max_time = max(seg.max_time, int(times.max()))
        seg.min_time = min(seg.min_time, int(times.min()))


def _merge(a: Segment, b: Segment) -> Segment:
    """One sealed segment holding the rows of consecutive sealed segments ``a`` and ``b``."""
    assert a.sealed is not None and b.sealed is not None and a.start + a.n == b.start
    out = Segment(a.start, 0, a.num_perm)
    out.ids, out.stories, out.dup_of = a.ids + b.ids, a.stories + b.stories, a.dup_of + b.dup_of
    out.capacity = out.n
    for name in _COLUMNS:
        setattr(out, name, np.concatenate([getattr(a, name), getattr(b, name)]))
    out.max_time, out.min_time = max(a.max_time, b.max_time), min(a.min_time, b.min_time)
    out.sealed = SortedIndex(
        np.concatenate([a.sealed.keys, b.sealed.keys]),
        np.concatenate([a.sealed.vals, b.sealed.vals]),
    )
    return out
