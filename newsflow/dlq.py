"""Reading and replaying the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from newsflow.contracts import ContractError, DeadLetter, decode
from newsflow.kafka_io import MAX_MESSAGE_BYTES, make_producer, security_config
from newsflow.settings import Settings


@dataclass(frozen=True)
class StoredLetter:
    partition: int
    offset: int
    letter: DeadLetter


def read_letters(settings: Settings, *, timeout_seconds: float = 30.0) -> Iterator[StoredLetter]:
    """Every dead letter currently on the topic, oldest first, without joining a group."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **security_config(settings),
    )
    try:
        partitions = consumer.partitions_for_topic(settings.topic_dead_letters) or set()
        tps = [TopicPartition(settings.topic_dead_letters, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        for partition, offset, letter in _read_to(consumer, tps, end, timeout_seconds):
            if letter is not None:
                yield StoredLetter(partition, offset, letter)
    finally:
        consumer.close()


def _read_to(
    consumer: KafkaConsumer,
    tps: Sequence[TopicPartition],
    end: dict[TopicPartition, int],
    timeout_seconds: float,
) -> Iterator[tuple[int, int, DeadLetter | None]]:
    """Every record from the consumer's positions up to ``end``: (partition, offset, letter),
    the letter ``None`` where the value is not a valid dead letter."""
    deadline = time.monotonic() + timeout_seconds
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out reading the dead-letter topic")
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                    continue
                try:
                    letter: DeadLetter | None = decode(DeadLetter, record.value)
                except ContractError:
                    letter = None
                yield record.partition, record.offset, letter


def select_letters(
    settings: Settings, *, reason: str | None = None, stage: str | None = None
) -> list[StoredLetter]:
    """The letters on the topic with this reason and from this stage (``None``: any)."""
    return [
        stored
        for stored in read_letters(settings)
        if (reason is None or stored.letter.reason == reason)
        and (stage is None or stored.letter.stage == stage)
    ]


def send_back(
    settings: Settings,
    letters: Sequence[StoredLetter],
    *,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Send each letter's original message back to the topic it came from.

    ``progress`` is called for each message the broker acknowledged.
    """
    if not letters:
        return
    producer = make_producer(settings, client_id="newsflow-dlq-replay")
    try:
        futures = [
            producer.send(
                stored.letter.source_topic,
                key=stored.letter.key.encode() if stored.letter.key else None,
                value=stored.letter.value.encode("utf-8"),
            )
            for stored in letters
        ]
        for future in futures:
            future.get(timeout=60)
            if progress is not None:
                progress(1)
    finally:
        producer.close()


def replay(
    settings: Settings,
    *,
    reason: str | None = None,
    stage: str | None = None,
    dry_run: bool = False,
) -> list[StoredLetter]:
    """Send matching letters' original messages back to the topic they came from."""
    selected = select_letters(settings, reason=reason, stage=stage)
    if not dry_run:
        send_back(settings, selected)
    return selected


@dataclass(frozen=True)
class ReplayRun:
    """What one :func:`replay_new_letters` run did: letters read, and replayed by reason."""

    read: int
    replayed: dict[str, int]


def replay_new_letters(
    settings: Settings,
    *,
    error_kinds: tuple[str, ...] = ("retries_exhausted",),
    group_id: str = "newsflow-maintenance-dlq",
    timeout_seconds: float = 60.0,
) -> ReplayRun:
    """Replay the letters that arrived since the last run, of the given error kinds.

    Why only ``retries_exhausted`` by default: those failed for a passing reason (a service
    down for longer than the retries); ``permanent`` ones would fail the same way again and
    wait for a fix and a manual ``newsflow dlq replay``. The group's committed offsets mark
    what earlier runs read, and are committed only after the replayed messages are
    acknowledged, so a crash replays a letter twice rather than never (the sinks are
    idempotent). A letter that fails again comes back as a new letter: at most once per run.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **security_config(settings),
    )
    replayed: dict[str, int] = {}
    read = 0
    try:
        partitions = consumer.partitions_for_topic(settings.topic_dead_letters) or set()
        tps = [TopicPartition(settings.topic_dead_letters, p) for p in sorted(partitions)]
        if not tps:
            return ReplayRun(0, {})
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        for tp in tps:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        selected: list[StoredLetter] = []
        for partition, offset, letter in _read_to(consumer, tps, end, timeout_seconds):
            read += 1
            if letter is not None and letter.error_kind in error_kinds:
                selected.append(StoredLetter(partition, offset, letter))
        send_back(settings, selected)
        for stored in selected:
            replayed[stored.letter.reason] = replayed.get(stored.letter.reason, 0) + 1
        consumer.commit({tp: OffsetAndMetadata(end[tp], "", -1) for tp in tps})
    finally:
        consumer.close()
    return ReplayRun(read=read, replayed=replayed)
