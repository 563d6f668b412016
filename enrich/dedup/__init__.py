"""Deduplicated stories: same article, exact copy, near-duplicate, version, story cluster.

Use :class:`DedupEngine` (``observe`` one :class:`DedupInput`, get a
:class:`DedupDecision`). The engine is the whole state of the stream and is deterministic:

* **No race, by ownership.** Exactly one engine owns the state of the whole stream (one
  consumer of a single-partition dedup topic, or one member of its group holding the only
  partition). Copies arriving "at the same time" are serialized by the log, so exactly one
  becomes the original; no shared store, lock or check-and-insert is needed, and dedup costs
  well under a millisecond per article, so one owner keeps up with the stream.
* **Restarts.** :meth:`DedupEngine.snapshot` → bytes, :meth:`DedupEngine.restore`. Between
  snapshots, re-observing the inputs after the snapshot's offset rebuilds the same state
  (``observe`` uses no clock and no randomness), and re-observing an input already decided
  returns the decision it got then (``repeated``; a no-op), so at-least-once delivery and
  rewinds are safe. Without a snapshot the articles log (kept for at least the window) is
  the changelog; a worker that cannot rebuild from it refuses to start (``stage.py``).
* **Bounded memory.** Articles are kept for ``DedupConfig.window_seconds`` (30 days) in
  compact columns; boilerplate filters are fixed-size; stories stay clusterable for
  ``ClusterConfig.window_seconds`` (3 days), as compact arrays of hashed terms.
* **Arrival order does not decide stories.** An article is compared with a story's centroid
  and its first members; one that bridges two stories merges them into the older, and the
  decision's story lists ``merged_from`` (the absorbed id resolves to the survivor for as
  long as articles that name it are remembered: the alias is timed on arrival, not by the
  merging article's date).

Every name is imported on first use: ``newsflow`` imports this package for its ``dedup``
command on every start (``newsflow extract`` too), and the engine brings numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enrich.dedup.cluster import Assignment, ClusterConfig, Story, StoryClusterer
    from enrich.dedup.engine import (
        DedupConfig,
        DedupDecision,
        DedupEngine,
        DedupInput,
        StoryUpdate,
    )

_LAZY = {
    "Assignment": "enrich.dedup.cluster",
    "ClusterConfig": "enrich.dedup.cluster",
    "Story": "enrich.dedup.cluster",
    "StoryClusterer": "enrich.dedup.cluster",
    "DedupConfig": "enrich.dedup.engine",
    "DedupDecision": "enrich.dedup.engine",
    "DedupEngine": "enrich.dedup.engine",
    "DedupInput": "enrich.dedup.engine",
    "StoryUpdate": "enrich.dedup.engine",
}

__all__ = [
    "Assignment",
    "ClusterConfig",
    "DedupConfig",
    "DedupDecision",
    "DedupEngine",
    "DedupInput",
    "Story",
    "StoryClusterer",
    "StoryUpdate",
]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
