"""Boilerplate learned online from the stream: lines an outlet (or many outlets) repeat.

Extraction leaves footers, promos and share prompts behind as whole lines. A line already
seen in an earlier *original* article of the same outlet is that outlet's boilerplate; a
line seen in two earlier originals of any outlets is shared boilerplate. Duplicates never
teach the filters, so a syndicated story's own paragraphs stay content however many outlets
carry it. A line of one earlier original of the outlet is either its boilerplate seen
once or that article's text; a repost of the article is told apart by the lines seen in two
originals (:meth:`BoilerplateModel.repeated`). Memory is fixed (bit arrays with two
rotating generations), whatever the number of outlets or articles.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt

from enrich.dedup.text import U64, _mix64, stable_hash64

Mask = npt.NDArray[np.bool_]


class SeenFilter:
    """Approximate set membership with forgetting: a one-hash bit array per generation.

    After ``capacity`` insertions the current generation becomes the previous one and the
    oldest is dropped, so a key is remembered for between one and two generations.
    False-positive rate ≈ capacity / 2**bits per generation.
    """

    def __init__(self, bits: int, capacity: int):
        self.bits = bits
        self.capacity = capacity
        self._shift = np.uint64(64 - bits)
        self.current = np.zeros(1 << (bits - 3), dtype=np.uint8)
        self.previous = np.zeros_like(self.current)
        self.inserted = 0

    def _positions(self, keys: U64) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
        pos = _mix64(keys) >> self._shift
        return pos >> np.uint64(3), (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8))

    def contains(self, keys: U64) -> Mask:
        byte, bit = self._positions(keys)
        hit: Mask = ((self.current[byte] | self.previous[byte]) & bit) != 0
        return hit

    def add(self, keys: U64) -> None:
        if keys.size == 0:
            return
        if self.inserted + keys.size > self.capacity:
            self.previous, self.current = self.current, self.previous
            self.current[:] = 0
            self.inserted = 0
        byte, bit = self._positions(keys)
        np.bitwise_or.at(self.current, byte, bit)
        self.inserted += int(keys.size)

    @property
    def nbytes(self) -> int:
        return int(self.current.nbytes + self.previous.nbytes)

    def dump(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.array([self.bits, self.capacity, self.inserted], dtype=np.int64),
            current=self.current,
            previous=self.previous,
        )
        return buf.getvalue()

    @classmethod
    def load(cls, data: bytes) -> SeenFilter:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            bits, capacity, inserted = (int(v) for v in z["meta"])
            out = cls(bits, capacity)
            out.current = z["current"].copy()
            out.previous = z["previous"].copy()
            out.inserted = inserted
        return out


class BoilerplateModel:
    """Per-outlet and shared line filters (see module docstring)."""

    def __init__(self, scale_bits: int = 25):
        self.outlet_seen = SeenFilter(scale_bits, 1 << (scale_bits - 4))
        self.shared_once = SeenFilter(scale_bits - 1, 1 << (scale_bits - 5))
        self.shared_twice = SeenFilter(scale_bits - 3, 1 << (scale_bits - 7))

    @staticmethod
    def _outlet_keys(outlet: str, lines: list[int]) -> U64:
        salt = np.uint64(stable_hash64(outlet) & 0xFFFFFFFF00000000)
        return np.asarray(lines, dtype=np.uint64) ^ salt

    def boilerplate(self, outlet: str, lines: list[int]) -> tuple[Mask, Mask]:
        """Which of ``lines`` this outlet has seen, and which two earlier originals of any
        outlets had (read-only).

        An outlet's own filter also holds every line of each of its earlier articles, so a
        repost of one of them looks like boilerplate through and through; its footer, unlike
        the article it repeats, has been seen in two originals. Lines seen in two originals
        alone are weaker evidence: a syndicated story whose copy was missed once looks like a
        line repeated by two originals, so the caller ignores them when they would remove
        most of an article.
        """
        if not lines:
            empty = np.zeros(0, dtype=bool)
            return empty, empty
        plain = np.asarray(lines, dtype=np.uint64)
        own = self.outlet_seen.contains(self._outlet_keys(outlet, lines))
        return own, self.shared_twice.contains(plain)

    def learn(self, outlet: str, lines: list[int]) -> None:
        """Record the lines of a new original article of ``outlet``."""
        if not lines:
            return
        plain = np.asarray(lines, dtype=np.uint64)
        again = plain[self.shared_once.contains(plain)]
        self.shared_twice.add(again)
        self.shared_once.add(plain)
        self.outlet_seen.add(self._outlet_keys(outlet, lines))

    @property
    def nbytes(self) -> int:
        return self.outlet_seen.nbytes + self.shared_once.nbytes + self.shared_twice.nbytes

    def dump(self) -> list[bytes]:
        return [f.dump() for f in (self.outlet_seen, self.shared_once, self.shared_twice)]

    @classmethod
    def load(cls, parts: list[bytes]) -> BoilerplateModel:
        out = cls.__new__(cls)
        out.outlet_seen, out.shared_once, out.shared_twice = (SeenFilter.load(p) for p in parts)
        return out
