"""The dedup stage: articles in (one partition, one owner), deduplicated articles out.

The stage owns one :class:`DedupEngine` for the whole articles stream. The articles topic has
exactly one partition, so exactly one member of the consumer group holds it and sees every
article in log order (a second worker stands by and takes over on a rebalance).

Persistence survives ``kill -9``: after a batch's outputs are acknowledged, what changed in
the engine since the last snapshot is written, then a manifest naming it with the next input
offset per partition replaces the previous one atomically (``enrich.dedup.persist``), at most
every ``dedup_snapshot_every_seconds``. On every assignment
the stage restores the snapshot (or starts empty) and seeks to its offsets (or the start of
the log), so the inputs after the snapshot are observed again and yield the same decisions;
the index downstream is idempotent. A rewind (a transient failure: the runner seeks back
without restoring) re-reads inputs the engine has already observed: they get their recorded
decisions again (``DedupDecision.repeated``), counted as ``replay`` in the outcome metric.

The log is the state's changelog, so the worker must not start on a log it cannot rebuild
from (:func:`rebuild_gap`): with no usable snapshot, the log must still hold every article of
the dedup window (the articles topic keeps at least the window, see ``newsflow.topology``);
with one, it must still hold every article after the snapshot's offsets.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from enrich.dedup.engine import (
    DedupConfig,
    DedupDecision,
    DedupEngine,
    DedupInput,
    SnapshotFormatError,
    StoryUpdate,
)
from enrich.dedup.persist import SnapshotStore, readable
from newsflow.contracts import Article, DedupedArticle, StorySummary
from newsflow.runtime import Done, Inbound, Output, Result, Stage

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".dedup-snapshot.npz"


def dedup_input(article: Article) -> DedupInput:
    return DedupInput(
        id=article.id,
        url=article.url,
        canonical_url=article.canonical_url,
        outlet=article.outlet,
        title=article.title,
        text=article.text,
        published_at=article.published_at,
        observed_at=article.fetched_at,
    )


def story_summary(story: StoryUpdate | None) -> StorySummary | None:
    if story is None:
        return None
    return StorySummary.model_validate(story.model_dump())


def deduped_article(article: Article, decision: DedupDecision) -> DedupedArticle:
    return DedupedArticle.model_validate(
        {
            **dict(article),
            "duplicate_of": decision.duplicate_of,
            "story_id": decision.story_id,
            "dedup_reason": decision.reason,
            "version": max(article.version, decision.version),
            "story": story_summary(decision.story),
        }
    )


def passed_through(article: Article) -> DedupedArticle:
    """A page that is not an article: dedup neither observes nor decides it."""
    return DedupedArticle.model_validate(
        {
            **dict(article),
            "duplicate_of": None,
            "story_id": None,
            "dedup_reason": None,
            "story": None,
        }
    )


def snapshot_path(state_dir: Path, topic: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", topic)
    return state_dir / f"{safe}{SNAPSHOT_SUFFIX}"


def write_snapshot(path: Path, engine: DedupEngine, topic: str, offsets: dict[int, int]) -> None:
    """Engine state and next offsets, in full (a :class:`SnapshotStore` of its own)."""
    SnapshotStore(path, topic).save(engine, offsets)


def read_snapshot(path: Path, topic: str) -> tuple[DedupEngine, dict[int, int]] | None:
    return load_snapshot(SnapshotStore(path, topic))


def load_snapshot(snapshots: SnapshotStore) -> tuple[DedupEngine, dict[int, int]] | None:
    """The engine and offsets saved, or None when there are none this engine can use."""
    try:
        return snapshots.load()
    except SnapshotFormatError as exc:
        # Written by another engine version: the log from the start rebuilds the state.
        log.warning(
            "dedup: snapshot %s not usable (%s); rebuilding from the log", snapshots.path, exc
        )
        return None


def snapshot_offsets(path: Path, topic: str) -> dict[int, int] | None:
    """The next offsets of a snapshot this engine can restore, or None, without loading the
    engine (an older file that does not say its format is loaded to find out)."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes())
    if meta.get("topic") != topic:
        return None
    if "format" not in meta:
        restored = read_snapshot(path, topic)
        return None if restored is None else restored[1]
    if not readable(meta):
        return None
    return {int(p): int(o) for p, o in meta["offsets"].items()}


def rebuild_gap(
    consumer: KafkaConsumer,
    topic: str,
    resume_at: dict[int, int] | None,
    *,
    window_seconds: int,
    now: float | None = None,
) -> str | None:
    """Why the state cannot be rebuilt from ``topic``'s log, or None when it can.

    ``resume_at``: the snapshot's next offset per partition, or None without a snapshot.
    With a snapshot, every article after its offsets must still be in the log. Without one,
    the log is replayed from its start; that rebuilds the state only if nothing was deleted
    from it that is younger than the dedup window (by the records' timestamps): the log
    still starts at offset 0, or it still holds an article older than the window (what was
    deleted is older still). A log emptied by deletions cannot tell how old its articles were.
    """
    partitions = sorted(consumer.partitions_for_topic(topic) or ())
    tps = [TopicPartition(topic, p) for p in partitions]
    if not tps:
        return None
    starts: dict[Any, int] = consumer.beginning_offsets(tps)
    if resume_at is not None:
        for tp in tps:
            wanted = resume_at.get(tp.partition, 0)
            if wanted < starts[tp]:
                return (
                    f"the dedup snapshot resumes {topic}[{tp.partition}] at offset {wanted}, "
                    f"but the log now starts at {starts[tp]}: the articles in between are gone"
                )
        return None
    since = (time.time() if now is None else now) - window_seconds
    found = consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
    ends: dict[Any, int] = consumer.end_offsets(tps)
    window = f"{window_seconds / 86400:g} days"
    for tp in tps:
        start, first_in_window = starts[tp], found.get(tp)
        if start == 0:
            continue
        where = f"there is no usable dedup snapshot, and {topic}[{tp.partition}] starts at {start}"
        if first_in_window is None and ends[tp] <= start:
            return (
                f"{where} with nothing after it: its articles were deleted, and whether they "
                f"were within the dedup window ({window}) cannot be told"
            )
        if first_in_window is not None and first_in_window.offset <= start:
            return (
                f"{where}: articles within the dedup window ({window}) were deleted from the "
                f"log, so the state cannot be rebuilt from it"
            )
    return None


class DedupStage(Stage[Article]):
    name = "dedup"
    input_model = Article
    single_owner = True

    def __init__(
        self,
        *,
        input_topic: str,
        output_topic: str,
        state_dir: Path,
        snapshot_every_seconds: float = 5.0,
        window_days: float = 30,
    ) -> None:
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.path = snapshot_path(state_dir, input_topic)
        self.snapshots = SnapshotStore(self.path, input_topic)
        self.snapshot_every = snapshot_every_seconds
        self.config = DedupConfig(window_seconds=int(window_days * 86400))
        self.engine = DedupEngine(self.config)
        self.offsets: dict[int, int] = {}  # next offset per partition, as of the snapshot
        self.observed: dict[int, int] = {}  # next offset the engine has observed up to
        self.acked: dict[int, int] = {}  # next offset whose outputs are acknowledged
        self.last_write = float("-inf")  # the first acknowledged batch is saved
        self.dirty = False

    # -- assignment: restore and seek ----------------------------------------------------

    def on_partitions_assigned(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        mine = [tp for tp in partitions if tp.topic == self.input_topic]
        if not mine:
            return {}
        restored = load_snapshot(self.snapshots)
        if restored is None:
            self.engine, self.offsets = DedupEngine(self.config), {}
            log.info("dedup: no snapshot at %s; reading %s from the start", self.path, mine)
        else:
            self.engine, self.offsets = restored
            log.info(
                "dedup: restored %d observed articles from %s; resuming at %s",
                self.engine.observed,
                self.path,
                self.offsets,
            )
        self.observed = dict(self.offsets)
        self.acked = dict(self.offsets)
        self.dirty = False
        return {tp: self.offsets.get(tp.partition, 0) for tp in mine}

    # -- the batch ---------------------------------------------------------------------

    def process(self, batch: Sequence[Inbound[Article]]) -> Sequence[Result]:
        results: list[Result] = []
        for item in batch:
            article = item.message
            if article.is_article:
                decision = self.engine.observe(dedup_input(article))
                self.snapshots.note(decision)
                deduped = deduped_article(article, decision)
                if self.metrics is not None:
                    outcome = "replay" if decision.repeated else decision.reason.value
                    self.metrics.dedup_outcomes.labels(outcome).inc()
            else:
                deduped = passed_through(article)
            results.append(Done((Output(self.output_topic, deduped.id, deduped),)))
            if item.topic == self.input_topic:
                self.observed[item.partition] = max(
                    self.observed.get(item.partition, 0), item.offset + 1
                )
        return results

    def after_commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp.topic == self.input_topic:
                self.acked[tp.partition] = max(self.acked.get(tp.partition, 0), offset)
                self.dirty = True
        if time.monotonic() - self.last_write >= self.snapshot_every:
            self.save()

    def save(self) -> bool:
        """Write the snapshot if the engine has observed exactly what was acknowledged."""
        if not self.dirty or self.observed != self.acked:
            return False
        self.snapshots.save(self.engine, self.acked)
        self.offsets = dict(self.acked)
        self.last_write = time.monotonic()
        self.dirty = False
        log.debug("dedup: snapshot written at %s", self.offsets)
        return True

    def rebuild_gap(self, consumer: KafkaConsumer) -> str | None:
        """Why this worker could not rebuild its state from the log (see :func:`rebuild_gap`)."""
        resume_at = snapshot_offsets(self.path, self.input_topic)
        return rebuild_gap(
            consumer, self.input_topic, resume_at, window_seconds=self.config.window_seconds
        )

    def close(self) -> None:
        self.save()
