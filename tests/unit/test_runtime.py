"""Delivery rules of the stage runtime, with in-memory stand-ins for the Kafka clients."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition

from newsflow.contracts import DeadLetter, RawPage, decode, encode
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.runtime import Done, Failed, Inbound, Output, Result, Stage, StageRunner
from newsflow.settings import Settings
from newsflow.urls import url_id

IN, OUT, DLQ = "in.v1", "out.v1", "dlq.v1"


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeConsumer:
    batches: list[list[Record]]
    commits: list[dict[TopicPartition, Any]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Record]]:
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        return {TopicPartition(IN, 0): batch}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(IN, 0)}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 10)

    def position(self, tp: TopicPartition) -> int:
        return 4


class Future:
    def get(self, timeout: float | None = None) -> None:
        return None


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    flushed: int = 0

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        self.sent.append((topic, key, value))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1


def page(n: int) -> RawPage:
    url = f"https://example.org/news/{n}"
    return RawPage(
        id=url_id(url), url=url, fetched_url=url, outlet="example", http_status=200, html="<p>x</p>"
    )


def record(offset: int, value: bytes | None) -> Record:
    return Record(IN, 0, offset, b"k", value)


class ScriptedStage(Stage[RawPage]):
    """Fails each URL as scripted, a given number of times, then succeeds."""

    name = "scripted"
    input_model = RawPage

    def __init__(self, failures: dict[str, list[Exception]]) -> None:
        self.failures = failures
        self.calls = 0

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        self.calls += 1
        results: list[Result] = []
        for item in batch:
            planned = self.failures.get(item.message.url, [])
            if planned:
                error = planned.pop(0)
                if isinstance(error, TransientError):
                    raise error
                if isinstance(error, PermanentError | RetryableError):
                    results.append(Failed(error))
                    continue
                raise error
            results.append(Done((Output(OUT, item.message.id, item.message),)))
        return results


def runner(
    stage: Stage[RawPage], consumer: FakeConsumer, producer: FakeProducer
) -> StageRunner[RawPage]:
    settings = Settings(worker_max_retries=2, worker_retry_backoff_seconds=0)
    return StageRunner(
        stage,
        settings=settings,
        consumer=consumer,
        producer=producer,
        input_topic=IN,
        dead_letter_topic=DLQ,
    )


def letters(producer: FakeProducer) -> list[DeadLetter]:
    return [decode(DeadLetter, value) for topic, _, value in producer.sent if topic == DLQ]


def test_outputs_are_written_before_the_offset_is_committed() -> None:
    consumer = FakeConsumer([[record(0, encode(page(0))), record(1, encode(page(1)))]])
    producer = FakeProducer()
    runner(ScriptedStage({}), consumer, producer).run_once()
    assert [t for t, _, _ in producer.sent] == [OUT, OUT]
    assert producer.flushed == 1
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 2


def test_invalid_message_is_dead_lettered_with_reason_and_original_value() -> None:
    consumer = FakeConsumer([[record(7, b'{"schema_version": 1, "url": 3}')]])
    producer = FakeProducer()
    runner(ScriptedStage({}), consumer, producer).run_once()
    (letter,) = letters(producer)
    assert letter.reason == "invalid_message"
    assert letter.error_kind == "permanent"
    assert (letter.source_topic, letter.partition, letter.offset) == (IN, 0, 7)
    assert letter.value == '{"schema_version": 1, "url": 3}'
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 8


def test_a_newer_producers_field_is_ignored_another_schema_version_dead_lettered() -> None:
    original = page(0)
    newer = json.dumps({**original.model_dump(mode="json"), "added_later": "x"}).encode()
    v99 = json.dumps({**page(1).model_dump(mode="json"), "schema_version": 99}).encode()
    consumer = FakeConsumer([[record(0, newer), record(1, v99)]])
    producer = FakeProducer()
    runner(ScriptedStage({}), consumer, producer).run_once()
    (output,) = [decode(RawPage, value) for topic, _, value in producer.sent if topic == OUT]
    assert output == original  # passed on without the field it did not know
    (letter,) = letters(producer)
    assert (letter.reason, letter.offset) == ("invalid_message", 1)
    assert "schema_version" in letter.detail
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 2


def test_permanent_error_goes_straight_to_dead_letters() -> None:
    bad = page(1)
    stage = ScriptedStage({bad.url: [PermanentError("empty_text", "no body")]})
    consumer = FakeConsumer([[record(0, encode(page(0))), record(1, encode(bad))]])
    producer = FakeProducer()
    runner(stage, consumer, producer).run_once()
    (letter,) = letters(producer)
    assert (letter.reason, letter.url, letter.attempts) == ("empty_text", bad.url, 1)
    assert stage.calls == 1


def test_retryable_error_is_retried_then_succeeds() -> None:
    flaky = page(1)
    stage = ScriptedStage({flaky.url: [RetryableError("busy")]})
    consumer = FakeConsumer([[record(0, encode(flaky))]])
    producer = FakeProducer()
    runner(stage, consumer, producer).run_once()
    assert letters(producer) == []
    assert [t for t, _, _ in producer.sent] == [OUT]
    assert stage.calls == 2


def test_retries_are_bounded() -> None:
    flaky = page(1)
    stage = ScriptedStage({flaky.url: [RetryableError("busy")] * 5})
    consumer = FakeConsumer([[record(0, encode(flaky))]])
    producer = FakeProducer()
    runner(stage, consumer, producer).run_once()
    (letter,) = letters(producer)
    assert (letter.error_kind, letter.attempts) == ("retries_exhausted", 3)


def test_transient_error_rewinds_without_committing() -> None:
    p = page(1)
    stage = ScriptedStage({p.url: [TransientError("elasticsearch_unavailable")]})
    consumer = FakeConsumer([[record(5, encode(p))], [record(5, encode(p))]])
    producer = FakeProducer()
    run = runner(stage, consumer, producer)
    assert run.run_once() == 0
    assert consumer.seeks == [(TopicPartition(IN, 0), 5)]
    assert consumer.commits == []
    assert run.run_once() == 1
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 6


def test_a_crashing_message_is_isolated_from_its_batch() -> None:
    bug = page(2)
    stage = ScriptedStage({bug.url: [ZeroDivisionError("bug")] * 10})
    consumer = FakeConsumer([[record(i, encode(page(i))) for i in range(4)]])
    producer = FakeProducer()
    runner(stage, consumer, producer).run_once()
    (letter,) = letters(producer)
    assert letter.url == bug.url
    assert letter.reason == "unexpected_error"
    assert sum(1 for t, _, _ in producer.sent if t == OUT) == 3


@pytest.mark.parametrize("value", [None, b"", b"not json"])
def test_undecodable_values_never_crash_the_runner(value: bytes | None) -> None:
    consumer = FakeConsumer([[record(0, value)]])
    producer = FakeProducer()
    runner(ScriptedStage({}), consumer, producer).run_once()
    assert letters(producer)[0].reason == "invalid_message"


def _sample(run: StageRunner[RawPage], name: str, **labels: str) -> float:
    value = run.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_count_messages_failures_and_lag() -> None:
    bad = page(1)
    stage = ScriptedStage({bad.url: [PermanentError("empty_text", "no body")]})
    consumer = FakeConsumer([[record(0, encode(page(0))), record(1, encode(bad))]])
    run = runner(stage, consumer, FakeProducer())
    run.run_once()
    assert _sample(run, "newsflow_messages_in_total", stage="scripted", topic=IN) == 2
    assert _sample(run, "newsflow_messages_out_total", stage="scripted", topic=OUT) == 1
    failed = {"stage": "scripted", "kind": "permanent", "reason": "empty_text"}
    assert _sample(run, "newsflow_messages_failed_total", **failed) == 1
    assert _sample(run, "newsflow_batch_seconds_count", stage="scripted") == 1
    lag = {"stage": "scripted", "topic": IN, "partition": "0"}
    assert _sample(run, "newsflow_consumer_lag", **lag) == 6
    assert stage.metrics is run.metrics  # stages count their own outcomes on it


def test_transient_failures_are_counted_as_requeued() -> None:
    p = page(1)
    stage = ScriptedStage({p.url: [TransientError("elasticsearch_unavailable")]})
    run = runner(stage, FakeConsumer([[record(5, encode(p))]]), FakeProducer())
    run.run_once()
    labels = {"stage": "scripted", "kind": "transient", "reason": "elasticsearch_unavailable"}
    assert _sample(run, "newsflow_messages_failed_total", **labels) == 1


def test_health_follows_the_poll_loop() -> None:
    run = runner(ScriptedStage({}), FakeConsumer([]), FakeProducer())
    run.run_once()
    ok, details = run.health()
    assert ok and details["stage"] == "scripted"
    run.last_poll -= run.settings.worker_health_max_poll_gap + 1  # as if stuck in a batch
    assert run.health()[0] is False
    run.last_poll = time.monotonic()
    run.stop()
    assert run.health()[0] is False
