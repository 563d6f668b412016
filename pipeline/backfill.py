"""Backfill: run a stage again over a stretch of its input topic, beside the live workers.

Why: after an extractor upgrade (re-extract raw pages) or a new index mapping (re-index the
deduplicated articles) the pipeline's own sinks must be rewritten from the log. A backfill is
an ordinary stage runner in a consumer group of its own, positioned at ``since`` (or the
start) and stopped at the end offsets taken when it began, so the live workers keep their
offsets and nothing is read twice by them. The sinks are idempotent (same ids, versions),
which is what makes running both at once safe.

Which stages may be backfilled is the ``backfill`` column of ``newsflow.topology.STAGES``
(enrich and index). Not the dedup stage: it is the single owner of its state, and a second
owner would decide stories differently from the live one. Not the alert stage: its ledger
raises each alert once, so a second pass would raise none; nor the webhook stage, whose
POSTs would go out again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import TopicPartition

from newsflow import topology
from newsflow.settings import Settings
from pipeline.stages import build_runner

BACKFILL_STAGES: tuple[str, ...] = tuple(row.name for row in topology.STAGES if row.backfill)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    group_id: str
    planned: int  # messages between the start positions and the end offsets
    consumed: int
    outcomes: dict[str, int]


def backfill(
    stage_name: str,
    settings: Settings,
    *,
    since: datetime | None = None,
    on_start: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    assignment_timeout: float = 60.0,
) -> BackfillResult:
    """Process the stage's input from ``since`` (None: the beginning) to today's end offsets.

    ``on_start`` gets the number of messages planned; ``progress`` each batch's count.
    """
    if stage_name not in BACKFILL_STAGES:
        raise ValueError(f"stage {stage_name!r} cannot be backfilled; one of {BACKFILL_STAGES}")
    group_id = f"newsflow-{stage_name}-backfill-{uuid.uuid4().hex[:8]}"
    runner = build_runner(stage_name, settings, group_id=group_id)
    consumer = runner.consumer
    try:
        partitions = _assign_all(consumer, runner.input_topic, assignment_timeout)
        ends: dict[Any, int] = consumer.end_offsets(partitions)
        starts = _start_offsets(consumer, partitions, ends, since)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        planned = sum(max(ends[tp] - starts[tp], 0) for tp in partitions)
        if on_start is not None:
            on_start(planned)
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            count = runner.run_once(poll_timeout_ms=500)
            if count and progress is not None:
                progress(count)
            if runner.stop_event.is_set():
                break
        return BackfillResult(
            group_id=group_id,
            planned=planned,
            consumed=runner.stats.consumed,
            outcomes=dict(runner.stats.outcomes),
        )
    finally:
        runner.stage.close()
        consumer.close()
        runner.producer.close()


def _assign_all(consumer: Any, topic: str, timeout: float) -> list[TopicPartition]:
    """Take every partition of ``topic`` directly: a backfill needs no group rebalances, only
    a group id to commit its progress under."""
    deadline = time.monotonic() + timeout
    while not (found := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partitions found for {topic}")
        time.sleep(0.2)
    partitions = [TopicPartition(topic, p) for p in sorted(found)]
    consumer.unsubscribe()
    consumer.assign(partitions)
    return partitions


def _start_offsets(
    consumer: Any,
    partitions: list[TopicPartition],
    ends: dict[Any, int],
    since: datetime | None,
) -> dict[TopicPartition, int]:
    beginnings: dict[Any, int] = consumer.beginning_offsets(partitions)
    if since is None:
        return {tp: beginnings[tp] for tp in partitions}
    found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    # No message at or after ``since`` in a partition: nothing to do there.
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}
