"""Reading and replaying the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

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
        deadline = time.monotonic() + timeout_seconds
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError("timed out reading the dead-letter topic")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue
                    try:
                        letter = decode(DeadLetter, record.value)
                    except ContractError:
                        continue
                    yield StoredLetter(record.partition, record.offset, letter)
    finally:
        consumer.close()


def replay(
    settings: Settings,
    *,
    reason: str | None = None,
    stage: str | None = None,
    dry_run: bool = False,
) -> list[StoredLetter]:
    """Send matching letters' original messages back to the topic they came from."""
    selected = [
        stored
        for stored in read_letters(settings)
        if (reason is None or stored.letter.reason == reason)
        and (stage is None or stored.letter.stage == stage)
    ]
    if dry_run or not selected:
        return selected
    producer = make_producer(settings, client_id="newsflow-dlq-replay")
    try:
        futures = [
            producer.send(
                stored.letter.source_topic,
                key=stored.letter.key.encode() if stored.letter.key else None,
                value=stored.letter.value.encode("utf-8"),
            )
            for stored in selected
        ]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()
    return selected
