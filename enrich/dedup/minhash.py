"""MinHash signatures over shingle hashes, LSH band keys, and the estimators that verify.

Signatures are computed with 32-bit values (for the LSH bands) and stored as their top 16
bits (b-bit MinHash): 128 permutations cost 256 bytes per article, and a chance collision of
two 16-bit values (1/65,536) moves a Jaccard estimate by far less than its sampling error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from enrich.dedup.text import U64, _mix64

U32 = npt.NDArray[np.uint32]
U16 = npt.NDArray[np.uint16]

EMPTY = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class Signature:
    """A set's MinHash: full 32-bit values (transient) and the stored 16-bit form."""

    full: U32
    size: int  # number of distinct shingles in the set

    @property
    def stored(self) -> U16:
        return (self.full >> np.uint32(16)).astype(np.uint16)


class MinHasher:
    """``num_perm`` universal hash permutations; LSH over ``bands`` × ``rows`` of them.

    Permutation parameters come from a fixed seed so that signatures made by any process,
    before or after a restart, are comparable.
    """

    def __init__(self, num_perm: int = 128, bands: int = 32, rows: int = 2, seed: int = 5):
        if bands * rows > num_perm:
            raise ValueError("bands * rows must not exceed num_perm")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.bands = bands
        self.rows = rows
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._band_mult = rng.integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
        self._band_tag = np.arange(bands, dtype=np.uint64) << np.uint64(32)

    def views(self, shingles: U64, keeps: list[npt.NDArray[np.bool_] | None]) -> list[Signature]:
        """MinHash of all ``shingles``, then of the ones each mask of ``keeps`` keeps (None:
        all), permuting each shingle once."""
        unique = _unique(shingles)
        if unique.size == 0:
            empty = Signature(np.full(self.num_perm, EMPTY, dtype=np.uint32), 0)
            return [empty] * (1 + len(keeps))
        # In place: each temporary of a thousand shingles × 128 permutations is a megabyte,
        # and allocating three of them cost several times the arithmetic.
        permuted = np.multiply(unique[:, None], self._a[None, :])
        permuted += self._b
        permuted >>= np.uint64(32)
        whole = Signature(permuted.min(axis=0).astype(np.uint32), int(unique.size))
        out = [whole]
        for keep in keeps:
            if keep is None or keep.all():
                out.append(whole)
                continue
            kept = _unique(shingles[keep])
            if kept.size == 0:
                out.append(Signature(np.full(self.num_perm, EMPTY, dtype=np.uint32), 0))
                continue
            rows = np.searchsorted(unique, kept)
            out.append(Signature(permuted[rows].min(axis=0).astype(np.uint32), int(kept.size)))
        return out

    def band_keys(self, sig: Signature) -> U64:
        """One uint64 per band: band number in the high 32 bits, hash of its rows below."""
        rows = sig.full[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        acc = (rows * self._band_mult[None, :]).sum(axis=1, dtype=np.uint64)
        return self._band_tag | (_mix64(acc) >> np.uint64(32))


def _unique(values: U64) -> U64:
    """Sorted distinct values: a sort and a mask, cheaper than ``np.unique`` on the few
    thousand hashes of one article."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    distinct = np.empty(ordered.size, dtype=bool)
    distinct[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=distinct[1:])
    return ordered[distinct]


def jaccard(a: U16, b: U16) -> float:
    """Estimated Jaccard similarity of two stored signatures."""
    return float(np.count_nonzero(a == b)) / a.size


def jaccard_many(query: U16, candidates: U16) -> npt.NDArray[np.float64]:
    """Estimated Jaccard of ``query`` against each row of ``candidates``."""
    counts = np.count_nonzero(candidates == query[None, :], axis=1)
    return np.asarray(counts, dtype=np.float64) / query.size


def containment(j: float, size_a: int, size_b: int) -> float:
    """Estimated |A∩B| / min(|A|, |B|) from a Jaccard estimate and the two set sizes.

    |A∩B| = J / (1 + J) · (|A| + |B|): an extended or trimmed copy has a low Jaccard but a
    containment near 1.
    """
    small = min(size_a, size_b)
    if small <= 0:
        return 0.0
    return min(1.0, j / (1.0 + j) * (size_a + size_b) / small)
