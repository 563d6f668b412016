"""Delivery rules of the stage runtime, with in-memory stand-ins for the Kafka clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from newsflow import runtime as runtime_module
from newsflow.contracts import DeadLetter, RawPage, decode, encode
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.runtime import (
    Deferred,
    Done,
    Failed,
    Inbound,
    Output,
    PartitionProgress,
    Result,
    Stage,
    StageRunner,
    within_bytes,
)
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


@dataclass
class Future:
    error: KafkaError | None = None

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class FakeProducer:
    """Records what was sent and flushed, in order; refuses as a producer and broker would:
    over ``max_request_size`` when sending, over a topic's limit or as told when confirming."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    flushed: int = 0
    events: list[str] = field(default_factory=list)
    max_request_size: int | None = None
    topic_limits: dict[str, int] = field(default_factory=dict)
    failing: dict[str, KafkaError] = field(default_factory=dict)

    # Like kafka-python's idempotent producer: a broker's refusal fails every record after it.
    fatal: KafkaError | None = None
    renewals: int = 0

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        if self.max_request_size is not None and len(value) > self.max_request_size:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        self.events.append(f"send {topic}")
        if self.fatal is not None:
            return Future(self.fatal)
        if topic in self.failing:
            return Future(self.failing[topic])
        if len(value) > self.topic_limits.get(topic, len(value)):
            self.fatal = MessageSizeTooLargeError("refused by the broker")
            return Future(self.fatal)
        self.sent.append((topic, key, value))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1
        self.events.append("flush")

    def renewed(self) -> FakeProducer:
        """The runner's replacement producer: this one, out of its fatal state."""
        self.fatal = None
        self.renewals += 1
        return self

    def close(self, timeout: float | None = None) -> None:
        pass


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
        producer_factory=producer.renewed,
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


# -- outcomes in bounded time ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _poison_batch() -> tuple[ScriptedStage, FakeConsumer, RawPage]:
    bad = page(1).model_copy(update={"html": "<div></div>" * 1000})
    stage = ScriptedStage({bad.url: [PermanentError("empty_text", "no body")]})
    batch = [record(0, encode(page(0))), record(1, encode(bad)), record(2, encode(page(2)))]
    return stage, FakeConsumer([batch]), bad


def test_dead_letters_are_confirmed_before_any_output_is_sent() -> None:
    stage, consumer, _ = _poison_batch()
    producer = FakeProducer()
    runner(stage, consumer, producer).run_once()
    assert producer.events == [f"send {DLQ}", "flush", f"send {OUT}", f"send {OUT}", "flush"]
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 3


def test_a_transiently_failing_letter_rewinds_before_anything_is_produced() -> None:
    stage, consumer, _ = _poison_batch()
    producer = FakeProducer(failing={DLQ: KafkaTimeoutError("broker away")})
    run = runner(stage, consumer, producer)
    assert run.run_once() == 0
    assert [t for t, _, _ in producer.sent] == []
    assert consumer.commits == [] and consumer.seeks == [(TopicPartition(IN, 0), 0)]
    labels = {"stage": "scripted", "reason": "dead_letter_failed"}
    assert _sample(run, "newsflow_batch_rewinds_total", **labels) == 1
    assert _sample(run, "newsflow_rewinds_in_a_row", stage="scripted") == 1


def test_a_letter_over_the_topic_limit_is_cut_and_the_batch_goes_on() -> None:
    bad = page(1).model_copy(update={"html": '<div class="x"></div>' * 5000})
    stage = ScriptedStage({bad.url: [PermanentError("empty_text", "no body")]})
    consumer = FakeConsumer([[record(0, encode(page(0))), record(1, encode(bad))]])
    producer = FakeProducer(max_request_size=50_000)
    run = runner(stage, consumer, producer)
    run.letter_max_bytes = 40_000
    run.run_once()
    (letter,) = letters(producer)
    assert letter.value_truncated and letter.value_bytes == len(encode(bad))
    assert encode(bad).decode().startswith(letter.value) and len(letter.value) > 30_000
    assert [t for t, _, _ in producer.sent].count(OUT) == 1
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 2
    assert _sample(run, "newsflow_dead_letters_truncated_total", stage="scripted", how="truncated")


@pytest.mark.parametrize("refusal", ["producer", "broker"])
def test_a_letter_refused_for_good_is_sent_as_a_reference_not_retried(refusal: str) -> None:
    stage, consumer, bad = _poison_batch()
    size = len(encode(bad))  # the letter is larger: it carries the original and more
    producer = (
        FakeProducer(max_request_size=size)
        if refusal == "producer"
        else FakeProducer(topic_limits={DLQ: size})
    )
    run = runner(stage, consumer, producer)
    assert run.run_once() == 3
    (letter,) = letters(producer)
    assert (letter.value, letter.value_truncated, letter.offset) == ("", True, 1)
    assert letter.value_bytes == size and letter.reason == "empty_text"
    assert [t for t, _, _ in producer.sent].count(OUT) == 2
    assert consumer.seeks == [] and consumer.commits[0][TopicPartition(IN, 0)].offset == 3
    how = {"stage": "scripted", "how": "reference_only"}
    assert _sample(run, "newsflow_dead_letters_truncated_total", **how) == 1
    assert producer.renewals == 1  # the refusal left the producer unusable


def test_a_reference_the_topic_still_refuses_rewinds_with_a_backoff() -> None:
    stage, consumer, _ = _poison_batch()
    producer = FakeProducer(topic_limits={DLQ: 10})
    run = runner(stage, consumer, producer)
    assert run.run_once() == 0
    assert consumer.commits == [] and [t for t, _, _ in producer.sent] == []
    assert run.last_rewind_reason == "dead_letter_refused"


def test_an_output_too_large_for_a_message_dead_letters_its_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    large = page(1).model_copy(update={"html": "<p>long</p>" * 2000})
    consumer = FakeConsumer(
        [[record(0, encode(page(0))), record(1, encode(large)), record(2, encode(page(2)))]]
    )
    monkeypatch.setattr(runtime_module, "OUTPUT_MAX_BYTES", 10_000)
    producer = FakeProducer()
    runner(ScriptedStage({}), consumer, producer).run_once()
    (letter,) = letters(producer)
    assert (letter.reason, letter.offset) == ("output_too_large", 1)
    assert [t for t, _, _ in producer.sent].count(OUT) == 2


def test_an_output_the_broker_refuses_dead_letters_its_input() -> None:
    large = page(1).model_copy(update={"html": "<p>long</p>" * 2000})
    batch = [record(0, encode(page(0))), record(1, encode(large)), record(2, encode(page(2)))]
    consumer = FakeConsumer([batch])
    producer = FakeProducer(topic_limits={OUT: 5_000})
    run = runner(ScriptedStage({}), consumer, producer)
    assert run.run_once() == 3
    (letter,) = letters(producer)
    assert (letter.reason, letter.offset, letter.error_kind) == ("output_refused", 1, "permanent")
    # The output failed along with the refused one (the producer's fatal state) went again.
    outputs = [decode(RawPage, v).url for t, _, v in producer.sent if t == OUT]
    assert sorted(outputs) == [page(0).url, page(2).url]
    assert producer.renewals == 2  # after the batch, and after the refused output alone
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 3
    assert run.stats.outcomes["ok"] == 2 and run.stats.outcomes["produced"] == 2


def test_only_the_refused_letter_becomes_a_reference() -> None:
    bad = page(1).model_copy(update={"html": "<div></div>" * 1000})
    also_bad = page(2)
    stage = ScriptedStage(
        {url: [PermanentError("empty_text", "no body")] for url in (bad.url, also_bad.url)}
    )
    consumer = FakeConsumer([[record(0, encode(bad)), record(1, encode(also_bad))]])
    producer = FakeProducer(topic_limits={DLQ: len(encode(bad))})
    runner(stage, consumer, producer).run_once()
    by_offset = {letter.offset: letter for letter in letters(producer)}
    assert (by_offset[0].value, by_offset[0].value_truncated) == ("", True)
    assert by_offset[1].value == encode(also_bad).decode() and not by_offset[1].value_truncated
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 2


def test_rewinds_back_off_exponentially_up_to_a_cap_and_reset_on_success() -> None:
    settings = Settings(worker_retry_backoff_seconds=0.5, worker_rewind_max_backoff_seconds=30)
    p = page(1)
    stage = ScriptedStage({p.url: [TransientError("elasticsearch_unavailable")] * 2})
    consumer = FakeConsumer([[record(5, encode(p))]] * 3)
    run = StageRunner(
        stage,
        settings=settings,
        consumer=consumer,
        producer=FakeProducer(),
        input_topic=IN,
        dead_letter_topic=DLQ,
    )
    assert [run.rewind_backoff(n) for n in (1, 2, 3, 4, 5, 6, 100)] == [2, 4, 8, 16, 30, 30, 30]
    run.stop_event.set()  # the backoff waits on it: do not sleep in the test
    run.run_once()
    run.run_once()
    assert run.health()[1]["requeued"]["batches_in_a_row"] == 2
    run.stop_event.clear()
    assert run.run_once() == 1
    assert "requeued" not in run.health()[1]
    assert _sample(run, "newsflow_rewinds_in_a_row", stage="scripted") == 0
    labels = {"stage": "scripted", "reason": "elasticsearch_unavailable"}
    assert _sample(run, "newsflow_batch_rewinds_total", **labels) == 2


def test_health_turns_unhealthy_when_batches_keep_failing() -> None:
    p = page(1)
    stage = ScriptedStage({p.url: [TransientError("elasticsearch_unavailable")]})
    run = runner(stage, FakeConsumer([[record(5, encode(p))]]), FakeProducer())
    run.run_once()
    ok, details = run.health()
    assert ok and details["requeued"]["reason"] == "elasticsearch_unavailable"
    assert run.failing_since is not None
    run.failing_since -= run.settings.worker_stall_seconds + 1
    ok, details = run.health()
    assert not ok and details["requeued"]["batches_in_a_row"] == 1


def test_stall_is_the_time_with_lag_and_no_committed_progress() -> None:
    clock = FakeClock()
    progress = PartitionProgress(clock)
    a, b = TopicPartition(IN, 0), TopicPartition(IN, 1)
    progress.observe({a: 0, b: 0})
    clock.now += 3600  # caught up for an hour: not stalled
    progress.observe({a: 5, b: 0})
    assert progress.stalls() == {a: 0.0}
    clock.now += 50
    assert progress.stall_seconds(a) == 50 and progress.stall_seconds(b) == 0
    progress.committed([a])  # progress, still lagging
    clock.now += 20
    progress.observe({a: 3, b: 0})
    assert progress.stall_seconds(a) == 20
    progress.observe({a: 0, b: 0})
    assert progress.stalls() == {}
    assert progress.observe({b: 2}) == [a]  # revoked
    clock.now += 5
    assert progress.stalls() == {b: 5.0}


def test_health_names_a_stalled_partition_and_the_metric_shows_it() -> None:
    p = page(1)
    stage = ScriptedStage({p.url: [TransientError("elasticsearch_unavailable")] * 99})
    consumer = FakeConsumer([[record(4, encode(p))]])  # lag: end 10, position 4
    run = runner(stage, consumer, FakeProducer())
    clock = FakeClock()
    run.progress = PartitionProgress(clock)
    run.run_once()
    stall = {"stage": "scripted", "topic": IN, "partition": "0"}
    assert _sample(run, "newsflow_partition_stall_seconds", **stall) == 0
    clock.now += run.settings.worker_stall_seconds + 1
    run.failing_since = None  # only the partition's stall speaks here
    ok, details = run.health()
    assert not ok
    assert details["stalled_partitions"] == {f"{IN}[0]": run.settings.worker_stall_seconds + 1}
    assert _sample(run, "newsflow_partition_stall_seconds", **stall) == 121
    run.progress.committed([TopicPartition(IN, 0)])
    assert run.health()[0] is True


class TimeBoundStage(Stage[RawPage]):
    """Handles the first ``room`` messages of a batch and defers the rest (its time is up)."""

    name = "timebound"
    input_model = RawPage

    def __init__(self, room: int) -> None:
        self.room = room

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        return [
            Done((Output(OUT, item.message.id, item.message),)) if i < self.room else Deferred()
            for i, item in enumerate(batch)
        ]


def test_deferred_messages_are_neither_produced_nor_committed_but_read_again() -> None:
    batch = [
        record(0, encode(page(0))),
        record(1, b"not json"),
        record(2, encode(page(2))),
        record(3, b"not json either"),
    ]
    consumer = FakeConsumer([batch])
    producer = FakeProducer()
    run = runner(TimeBoundStage(room=1), consumer, producer)
    assert run.run_once() == 2
    # Done up to the first deferred message (offset 2): what comes before it is final, the
    # invalid message at 1 included; from it on, everything waits for the next batch.
    assert [t for t, _, _ in producer.sent] == [DLQ, OUT]
    assert [letter.offset for letter in letters(producer)] == [1]
    assert consumer.commits[0][TopicPartition(IN, 0)].offset == 2
    assert consumer.seeks == [(TopicPartition(IN, 0), 2)]
    assert run.stats.outcomes["deferred"] == 2
    assert run.stats.consumed == 2


def test_a_batch_deferred_from_its_first_message_commits_nothing() -> None:
    consumer = FakeConsumer([[record(4, encode(page(4))), record(5, encode(page(5)))]])
    producer = FakeProducer()
    assert runner(TimeBoundStage(room=0), consumer, producer).run_once() == 0
    assert producer.sent == [] and consumer.commits == []
    assert consumer.seeks == [(TopicPartition(IN, 0), 4)]


# -- the pipeline -----------------------------------------------------------------------------


@dataclass
class LogConsumer:
    """One partition read as kafka-python reads it: a position that polls advance and seeks
    set, and commits; ``reset_at_poll``: that poll first puts the position back at the
    committed offset, as a rebalance does. Polls, seeks and commits go to ``events``."""

    values: list[bytes]
    events: list[str] = field(default_factory=list)
    reset_at_poll: int | None = None
    at: int = 0
    polls: int = 0
    commits: list[int] = field(default_factory=list)
    seeks: list[int] = field(default_factory=list)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Record]]:
        self.polls += 1
        if self.polls == self.reset_at_poll:
            self.at = self.commits[-1] if self.commits else 0
        chunk = self.values[self.at : self.at + (max_records or len(self.values))]
        records = [Record(IN, 0, self.at + i, b"k", value) for i, value in enumerate(chunk)]
        self.at += len(records)
        self.events.append(f"poll {len(records)}")
        return {TopicPartition(IN, 0): records} if records else {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        offset = offsets[TopicPartition(IN, 0)].offset
        self.commits.append(offset)
        self.events.append(f"commit {offset}")

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset
        self.seeks.append(offset)
        self.events.append(f"seek {offset}")

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(IN, 0)}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, len(self.values))

    def position(self, tp: TopicPartition) -> int:
        return self.at


class PipelinedStage(ScriptedStage):
    """``ScriptedStage``, pipelined; notes the offsets of each batch and where it ran; defers
    the messages of its first batch from ``defer_from`` on."""

    name = "pipelined"
    pipelined = True

    def __init__(
        self, failures: dict[str, list[Exception]] | None = None, defer_from: int | None = None
    ) -> None:
        super().__init__(failures or {})
        self.defer_from = defer_from
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        self.batches.append([item.offset for item in batch])
        self.threads.add(threading.current_thread().name)
        results = list(super().process(batch))
        if self.defer_from is not None:
            results[self.defer_from :] = [Deferred()] * (len(results) - self.defer_from)
            self.defer_from = None
        return results


class FlakyProducer(FakeProducer):
    """Its first ``failing_sends`` records are not acknowledged (a broker away)."""

    def __init__(self, failing_sends: int) -> None:
        super().__init__()
        self.failing_sends = failing_sends

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        if self.failing_sends:
            self.failing_sends -= 1
            self.events.append(f"send {topic}")
            return Future(KafkaTimeoutError("no acknowledgement"))
        return super().send(topic, key, value)


def pipelined_runner(
    stage: Stage[RawPage], pages: int, producer: FakeProducer, batch_size: int = 2, **consumer: Any
) -> tuple[StageRunner[RawPage], LogConsumer]:
    log = LogConsumer([encode(page(n)) for n in range(pages)], events=producer.events, **consumer)
    settings = Settings(
        worker_max_retries=2, worker_retry_backoff_seconds=0, worker_batch_size=batch_size
    )
    run = StageRunner(
        stage,
        settings=settings,
        consumer=log,
        producer=producer,
        input_topic=IN,
        dead_letter_topic=DLQ,
        producer_factory=producer.renewed,
    )
    return run, log


def produced_urls(producer: FakeProducer) -> list[str]:
    return [decode(RawPage, value).url for topic, _, value in producer.sent if topic == OUT]


SEND = f"send {OUT}"


def test_the_next_batch_is_read_and_processed_while_the_last_ones_outputs_are_in_flight() -> None:
    producer = FakeProducer()
    stage = PipelinedStage()
    run, _ = pipelined_runner(stage, 4, producer)
    assert run.pipelined
    assert run.run(max_messages=4, idle_timeout=5).consumed == 4
    assert producer.events == [
        "poll 2",  # batch 1, handed to the stage
        "poll 2",  # batch 2, handed to the stage while it works on batch 1
        SEND,  # batch 1's outputs, sent and not yet confirmed
        SEND,
        "poll 0",
        "flush",  # batch 2 processed: batch 1 confirmed and committed before batch 2 is sent
        "commit 2",
        SEND,
        SEND,
        "poll 0",
        "flush",
        "commit 4",
    ]
    assert produced_urls(producer) == [page(n).url for n in range(4)]
    assert stage.batches == [[0, 1], [2, 3]]
    assert stage.threads and threading.main_thread().name not in stage.threads


def test_a_transient_failure_of_a_batch_in_flight_requeues_it_and_the_next_one_unsent() -> None:
    producer = FlakyProducer(failing_sends=2)
    stage = PipelinedStage()
    run, log = pipelined_runner(stage, 4, producer)
    run.run(max_messages=4, idle_timeout=5)
    assert producer.events[:9] == [
        "poll 2",
        "poll 2",
        SEND,  # batch 1: never acknowledged
        SEND,
        "poll 0",
        "flush",  # batch 2 processed, its outputs not sent: batch 1 failed
        "seek 0",  # both read again
        "poll 2",
        "poll 2",
    ]
    assert log.commits == [2, 4]
    assert produced_urls(producer) == [page(n).url for n in range(4)]
    assert producer.events.count(SEND) == 2 + 4
    assert stage.batches == [[0, 1], [2, 3], [0, 1], [2, 3]]
    assert run.stats.outcomes["requeued"] == 4 and run.rewinds_in_a_row == 0


def test_a_transient_failure_processing_the_next_batch_commits_the_one_in_flight_first() -> None:
    producer = FakeProducer()
    stage = PipelinedStage({page(2).url: [TransientError("elasticsearch_unavailable")]})
    run, log = pipelined_runner(stage, 4, producer)
    run.run(max_messages=4, idle_timeout=5)
    assert producer.events[:8] == [
        "poll 2",
        "poll 2",
        SEND,
        SEND,
        "poll 0",
        "flush",  # batch 2 failed: batch 1, in flight, is finished first
        "commit 2",
        "seek 2",
    ]
    assert log.commits == [2, 4]
    assert produced_urls(producer) == [page(n).url for n in range(4)]
    assert run.last_rewind_reason == "elasticsearch_unavailable"


def test_a_deferred_message_sends_its_partition_back_and_the_next_batch_drops_its_part() -> None:
    producer = FakeProducer()
    stage = PipelinedStage(defer_from=1)
    run, log = pipelined_runner(stage, 6, producer, batch_size=3)
    run.run(max_messages=6, idle_timeout=5)
    # Batch 1 is done up to offset 1; batch 2 (3-5) was processed meanwhile, but comes after
    # the deferred messages: dropped, and read again after them.
    assert log.seeks == [1]
    assert stage.batches[:3] == [[0, 1, 2], [3, 4, 5], [1, 2, 3]]
    assert log.commits == [1, 4, 6]
    assert produced_urls(producer) == [page(n).url for n in range(6)]
    assert run.stats.outcomes["deferred"] == 2
    assert run.stats.consumed == 6


def test_records_read_again_after_a_rebalance_are_not_processed_twice() -> None:
    producer = FakeProducer()
    stage = PipelinedStage()
    # The third poll finds the position back at the committed offset (0): batches 1 and 2 are
    # in the pipeline, uncommitted.
    run, log = pipelined_runner(stage, 4, producer, reset_at_poll=3)
    run.run(max_messages=4, idle_timeout=5)
    assert stage.batches == [[0, 1], [2, 3]]
    assert produced_urls(producer) == [page(n).url for n in range(4)]
    assert log.commits == [2, 4]
    assert "seek 4" in producer.events  # past what the pipeline holds


def test_an_output_the_broker_refuses_is_dead_lettered_before_its_batch_commits() -> None:
    producer = FakeProducer(topic_limits={OUT: 5_000})
    large = page(1).model_copy(update={"html": "<p>long</p>" * 2000})
    stage = PipelinedStage()
    run, log = pipelined_runner(stage, 4, producer)
    log.values[1] = encode(large)
    run.run(max_messages=4, idle_timeout=5)
    (letter,) = letters(producer)
    assert (letter.reason, letter.offset) == ("output_refused", 1)
    assert sorted(produced_urls(producer)) == [page(n).url for n in (0, 2, 3)]
    assert producer.events.index(f"send {DLQ}") < producer.events.index("commit 2")
    assert log.commits == [2, 4]


class OneOwner(PipelinedStage):
    single_owner = True


def test_a_single_owner_stays_sequential() -> None:
    producer = FakeProducer()
    stage = OneOwner()
    run, _ = pipelined_runner(stage, 4, producer)
    assert not run.pipelined
    run.run(max_messages=4, idle_timeout=5)
    assert producer.events == [
        "poll 2",
        SEND,
        SEND,
        "flush",
        "commit 2",
        "poll 2",
        SEND,
        SEND,
        "flush",
        "commit 4",
    ]
    assert stage.threads == {threading.main_thread().name}


def test_pipelining_can_be_turned_off() -> None:
    producer = FakeProducer()
    run, _ = pipelined_runner(PipelinedStage(), 4, producer)
    off = StageRunner(
        PipelinedStage(),
        settings=run.settings.model_copy(update={"worker_pipelining": False}),
        consumer=run.consumer,
        producer=producer,
        input_topic=IN,
        dead_letter_topic=DLQ,
    )
    assert run.pipelined and not off.pipelined


def test_lag_counts_what_the_pipeline_holds_uncommitted(monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = pipelined_runner(PipelinedStage(), 6, FakeProducer())
    run.settings = run.settings.model_copy(update={"worker_lag_interval_seconds": 0})
    lags: list[int] = []
    monkeypatch.setattr(run.metrics, "lag", lambda topic, partition, value: lags.append(value))
    run.run(max_messages=6, idle_timeout=5)
    # After each turn: batch 1 read (position 2), batch 2 read and batch 1 sent (position 4),
    # then the batches committed one by one; the position alone would say 4, 2, 0, 0, 0.
    assert lags == [6, 6, 4, 2, 0]


# --- batches bounded in bytes -----------------------------------------------------------------


def sized(partition: int, offset: int, size: int) -> Record:
    return Record(IN, partition, offset, b"k", b"x" * size)


def test_a_batch_takes_from_each_partition_in_turn_until_its_bytes_are_spent() -> None:
    one, two = TopicPartition(IN, 0), TopicPartition(IN, 1)
    polled = {
        one: [sized(0, 10, 40), sized(0, 11, 40), sized(0, 12, 40)],
        two: [sized(1, 5, 10), sized(1, 6, 10)],
    }
    taken, left = within_bytes(polled, 100)
    assert [(r.partition, r.offset) for r in taken] == [(0, 10), (0, 11), (1, 5), (1, 6)]
    assert left == {one: 12}
    taken, left = within_bytes(polled, 45)
    assert [(r.partition, r.offset) for r in taken] == [(0, 10)]
    assert left == {one: 11, two: 5}
    assert within_bytes(polled, 1)[0] == [polled[one][0]]  # one at least, however heavy
    assert within_bytes(polled, 10_000) == ([*polled[one], *polled[two]], {})
    assert within_bytes({}, 10) == ([], {})


def test_heavy_pages_are_read_in_smaller_batches_each_once_and_in_order() -> None:
    producer = FakeProducer()
    stage = PipelinedStage()
    run, log = pipelined_runner(stage, 6, producer, batch_size=4)
    run.settings = run.settings.model_copy(
        update={"worker_batch_max_bytes": 2 * len(log.values[0]) + 1}
    )
    assert run.run(max_messages=6, idle_timeout=5).consumed == 6
    assert stage.batches == [[0, 1], [2, 3], [4, 5]]
    assert log.seeks == [2, 4]  # the rest of each poll, read again
    assert log.commits[-1] == 6
    assert produced_urls(producer) == [page(n).url for n in range(6)]
