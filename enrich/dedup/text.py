"""Text features for deduplication: lines, tokens, word shingles and stable hashes.

Every hash here is stable across processes and machines (crc32 / blake2b, never Python's
salted ``hash``), because signatures and filters are persisted and compared after restarts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]

SHINGLE_WORDS = 4
_WORD = re.compile(r"\w+")
_MASK64 = (1 << 64) - 1

# Shingles made only of these words ("one of the most", "it is not the") are shared by
# unrelated articles; dropping them keeps the Jaccard of different texts near zero.
STOPWORDS = frozenset(
    """a about after all also an and any are as at be because been before being but by can
    could did do does for from had has have he her here him his how i if in into is it its
    just more most much my no not now of on one only or other our out over said says she so
    some such than that the their them then there these they this those to up us was we were
    what when where which while who will with would you your""".split()  # noqa: SIM905
)


def stable_hash64(data: str) -> int:
    """64-bit blake2b of UTF-8 text: ids, URLs and content keys in the indexes."""
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big")


def normalize_text(text: str) -> str:
    """Case, accents-as-composed and whitespace folded: the exact-duplicate form."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def line_hashes(text: str) -> list[int]:
    """One 32-bit hash per distinct non-empty normalized line (paragraph), in order.

    Extraction leaves boilerplate (footers, promos, share prompts) as whole lines, so lines
    are the unit the boilerplate filters learn.
    """
    seen: set[int] = set()
    out: list[int] = []
    for raw in text.splitlines():
        norm = normalize_text(raw)
        if not norm:
            continue
        h = zlib.crc32(norm.encode("utf-8"))
        if h not in seen:
            seen.add(h)
            out.append(h)
    return out


def lead_without(text: str, dropped: set[int], words: int, min_words: int = 10) -> str:
    """The first lines of ``text`` holding ``words`` words, without lines whose hash (as
    :func:`line_hashes` makes it) is in ``dropped``; the whole text when fewer than
    ``min_words`` words would be left (an article made of seen lines is still about them)."""
    if not dropped:
        return text
    kept: list[str] = []
    total = 0
    for raw in text.splitlines():
        tokens = _WORD.findall(unicodedata.normalize("NFKC", raw).casefold())
        if not tokens or zlib.crc32(" ".join(tokens).encode("utf-8")) in dropped:
            continue
        kept.append(raw)
        total += len(tokens)
        if total >= words:
            break
    return "\n".join(kept) if total >= min_words else text


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """What dedup needs from one body text, computed once per article."""

    content_hash: int  # 64-bit hash of the normalized body (exact-duplicate layer)
    lines: list[int]  # distinct line hashes, in order
    line_of_shingle: npt.NDArray[np.int32]  # index into ``lines`` of each shingle's first word
    shingles: U64  # 64-bit shingle hashes (stopword-only shingles removed), not unique
    # Line hashes past the fingerprinted words: a long article's footer is there, and its
    # outlet learns it from them all the same.
    lines_after: list[int] = field(default_factory=list)


_P = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
    dtype=np.uint64,
)


def _mix64(x: U64) -> U64:
    """splitmix64 finalizer: spreads combined token hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_STOP_HASHES = frozenset(zlib.crc32(w.encode("utf-8")) for w in STOPWORDS)


# Words of a body that are fingerprinted: a long article's first thousand words identify it
# (copies, trims and extensions share their start), and the cost of dedup stays flat however
# long the page (measured: the corpus pages of the cost benchmark have a median of 1,825).
FINGERPRINT_WORDS = 1000


def features(text: str, k: int = SHINGLE_WORDS, max_words: int = FINGERPRINT_WORDS) -> TextFeatures:
    """Lines, tokens and ``k``-word shingles of ``text`` (shingles run across line breaks).

    The content hash covers the whole text; lines and shingles its first ``max_words`` words.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    per_line = [words for words in map(_WORD.findall, folded.splitlines()) if words]
    # Per word and per line, only C-level calls (map, chain, join): a body has thousands of
    # words, and a Python-level step for each of them was a third of this function's time.
    content_hash = stable_hash64(" ".join(chain.from_iterable(per_line)))
    every_line, cut = per_line, sum(map(len, per_line)) > max_words
    per_line = _first_words(per_line, max_words)
    crc = zlib.crc32
    lines: list[int] = []
    line_index: dict[int, int] = {}
    owners_per_line: list[int] = []
    for lh in _line_crcs(per_line):
        idx = line_index.get(lh)
        if idx is None:
            idx = line_index[lh] = len(lines)
            lines.append(lh)
        owners_per_line.append(idx)
    after: list[int] = []
    if cut:  # the rest starts at the last line kept, whole
        known = set(lines)
        for lh in _line_crcs(every_line[max(len(per_line) - 1, 0) :]):
            if lh not in known:
                known.add(lh)
                after.append(lh)
    all_words = list(chain.from_iterable(per_line))
    if not all_words:
        return TextFeatures(
            content_hash, lines, np.zeros(0, np.int32), np.zeros(0, np.uint64), after
        )
    distinct = list(set(all_words))
    vocab = dict(zip(distinct, map(crc, map(str.encode, distinct)), strict=True))
    hashes = list(map(vocab.__getitem__, all_words))
    toks = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
    stops = np.fromiter(map(_STOP_HASHES.__contains__, hashes), dtype=bool, count=len(hashes))
    token_line = np.repeat(np.asarray(owners_per_line, dtype=np.int32), list(map(len, per_line)))
    k = min(k, toks.size)
    n = toks.size - k + 1
    acc = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        acc = acc + toks[j : j + n] * _P[j % 4]
    shingles = _mix64(acc)
    all_stop = np.ones(n, dtype=bool)
    for j in range(k):
        all_stop &= stops[j : j + n]
    keep = ~all_stop
    return TextFeatures(content_hash, lines, token_line[:n][keep], shingles[keep], after)


def _line_crcs(per_line: list[list[str]]) -> Iterator[int]:
    """Each line's hash, as :func:`line_hashes` makes it, from the line's words."""
    return map(zlib.crc32, map(str.encode, map(" ".join, per_line)))


def _first_words(per_line: list[list[str]], limit: int) -> list[list[str]]:
    """The lines holding the first ``limit`` words, the last one cut at the limit."""
    kept: list[list[str]] = []
    total = 0
    for words in per_line:
        if total + len(words) >= limit:
            if limit > total:
                kept.append(words[: limit - total])
            return kept
        kept.append(words)
        total += len(words)
    return kept
