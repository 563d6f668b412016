"""The loop every stage runs: poll a batch, process it, write outputs, then commit.

A stage only says what to do with a batch of input messages (``Stage.process``); this module
owns delivery: decoding against the input contract, bounded retries with backoff, the
dead-letter topic, rewinding on transient failures, and committing offsets only after every
output and dead letter of the batch has been acknowledged by the broker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Generic, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from newsflow.contracts import ContractError, DeadLetter, Message, decode, encode
from newsflow.errors import PermanentError, RetryableError, StageError, TransientError
from newsflow.observability import StageMetrics
from newsflow.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Inbound(Generic[M]):
    """One consumed record with its decoded message."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    message: M

    @property
    def url(self) -> str | None:
        url = getattr(self.message, "url", None)
        return url if isinstance(url, str) else None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset} url={self.url}"


@dataclass(frozen=True)
class Output:
    topic: str
    key: str
    message: Message


@dataclass(frozen=True)
class Done:
    """The message was handled; ``outputs`` (possibly none) are to be produced."""

    outputs: tuple[Output, ...] = ()


@dataclass(frozen=True)
class Failed:
    error: StageError


Result = Done | Failed


class Stage(ABC, Generic[M]):
    """A pipeline stage: knows its input contract and what to do with a batch."""

    name: str
    input_model: type[M]
    # True when the stage keeps state over the whole stream: its input must have one partition.
    single_owner: bool = False
    # Set by the runner: stage-specific counters (dedup outcomes, index errors) go here.
    metrics: StageMetrics | None = None

    @abstractmethod
    def process(self, batch: Sequence[Inbound[M]]) -> Sequence[Result]:
        """Return one result per input, in order; raise ``TransientError`` to requeue all."""

    def close(self) -> None:
        """Release resources when the worker stops."""

    def after_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Every output of the batch is acknowledged; ``offsets``: next offset per partition.

        Called after the commit (whether or not the commit itself succeeded): a stateful stage
        may persist its state together with these offsets here.
        """

    def on_partitions_assigned(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The group gave this worker ``partitions``; return offsets to seek to (default none:
        resume from the committed offsets)."""
        return {}


class StageRebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the stage about assignments and seeks where it asks; set ``consumer`` before use."""

    def __init__(self, stage: Stage[Any]) -> None:
        self.stage = stage
        self.consumer: KafkaConsumer | None = None

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("stage %s: partitions revoked: %s", self.stage.name, sorted(revoked or ()))

    def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(assigned or ())
        log.info("stage %s: partitions assigned: %s", self.stage.name, partitions)
        assert self.consumer is not None, "set listener.consumer before polling"
        # This runs on the client's IO thread: no blocking consumer calls here (a metadata
        # lookup would deadlock). The single-partition check runs before the first poll.
        seeks = self.stage.on_partitions_assigned(partitions)
        for tp, offset in seeks.items():
            log.info(
                "stage %s: %s[%d]: seeking to %d", self.stage.name, tp.topic, tp.partition, offset
            )
            self.consumer.seek(tp, offset)


@dataclass
class RunStats:
    consumed: int = 0
    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class StageRunner(Generic[M]):
    def __init__(
        self,
        stage: Stage[M],
        *,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        input_topic: str,
        dead_letter_topic: str,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.input_topic = input_topic
        self.dead_letter_topic = dead_letter_topic
        self.stats = RunStats()
        self.stop_event = threading.Event()
        self.metrics = StageMetrics(stage.name)
        stage.metrics = self.metrics
        self.started = time.monotonic()
        self.last_poll = 0.0  # monotonic; 0 until the first poll
        self._next_lag_check = 0.0

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self, *, idle_timeout: float | None = None, max_messages: int | None = None
    ) -> RunStats:
        """Process until stopped, idle for ``idle_timeout`` seconds, or ``max_messages`` read."""
        last_activity = time.monotonic()
        while not self.stop_event.is_set():
            count = self.run_once()
            now = time.monotonic()
            if count:
                last_activity = now
            elif idle_timeout is not None and now - last_activity >= idle_timeout:
                break
            if max_messages is not None and self.stats.consumed >= max_messages:
                break
        return self.stats

    def run_once(self, poll_timeout_ms: int = 1000) -> int:
        records = self.consumer.poll(
            timeout_ms=poll_timeout_ms, max_records=self.settings.worker_batch_size
        )
        self.last_poll = time.monotonic()
        self.metrics.polled()
        self._update_lag()
        raw = [record for partition_records in records.values() for record in partition_records]
        if not raw:
            return 0
        started = time.perf_counter()
        try:
            self._handle_batch(raw)
        except TransientError as exc:
            self._rewind(raw, exc)
            return 0
        self.metrics.batch_seconds.labels(self.stage.name).observe(time.perf_counter() - started)
        for tp, partition_records in records.items():
            self.metrics.consumed(tp.topic, len(partition_records))
        self.stats.consumed += len(raw)
        self.stats.batches += 1
        return len(raw)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the loop polls: a stuck batch or a dead loop turns it unhealthy."""
        now = time.monotonic()
        since = now - (self.last_poll or self.started)
        ok = not self.stop_event.is_set() and since <= self.settings.worker_health_max_poll_gap
        return ok, {
            "stage": self.stage.name,
            "seconds_since_poll": round(since, 1),
            "consumed": self.stats.consumed,
            "assigned": sorted(f"{tp.topic}[{tp.partition}]" for tp in self._assignment()),
        }

    def _assignment(self) -> set[Any]:
        try:
            return set(self.consumer.assignment())
        except Exception:  # a closed consumer
            return set()

    def _update_lag(self) -> None:
        """Consumer lag per assigned partition, at most every ``worker_lag_interval`` s."""
        now = time.monotonic()
        if now < self._next_lag_check:
            return
        self._next_lag_check = now + self.settings.worker_lag_interval_seconds
        assigned = list(self._assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned)
            for tp in assigned:
                position = self.consumer.position(tp)
                if position is not None and tp in ends:
                    self.metrics.lag(tp.topic, tp.partition, ends[tp] - position)
        except KafkaError as exc:  # metrics must never stop the stage
            log.debug("stage %s: lag check failed: %s", self.stage.name, exc)

    def stop(self) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "stage %s: signal %d received, finishing the current batch", self.stage.name, signum
            )
            self.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    # -- one batch ------------------------------------------------------------------------

    def _handle_batch(self, raw: Sequence[Any]) -> None:
        letters: list[DeadLetter] = []
        inbound: list[Inbound[M]] = []
        for record in raw:
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            try:
                message = decode(self.stage.input_model, record.value)
            except ContractError as exc:
                where = f"{record.topic}[{record.partition}]@{record.offset} url=None"
                log.error("stage %s: %s: invalid message: %s", self.stage.name, where, exc)
                letters.append(self._letter_for_record(record, key, "invalid_message", str(exc)))
                continue
            inbound.append(
                Inbound(record.topic, record.partition, record.offset, key, record.value, message)
            )

        results = self._process_with_retries(inbound)
        outputs: list[Output] = []
        for item, (result, attempts) in zip(inbound, results, strict=True):
            if isinstance(result, Done):
                outputs.extend(result.outputs)
                self.stats.outcomes["ok"] += 1
                continue
            kind = "permanent" if isinstance(result.error, PermanentError) else "retries_exhausted"
            log.error(
                "stage %s: %s: %s after %d attempt(s): %s",
                self.stage.name,
                item.where,
                kind,
                attempts,
                result.error,
            )
            letters.append(self._letter(item, result.error, kind, attempts))
        for letter in letters:
            self.metrics.failed(letter.error_kind, letter.reason)
        self.stats.outcomes["dead_lettered"] += len(letters)
        self._write_and_commit(raw, outputs, letters)

    def _process_with_retries(self, batch: Sequence[Inbound[M]]) -> list[tuple[Result, int]]:
        final: dict[int, tuple[Result, int]] = {}
        pending = list(range(len(batch)))
        attempt = 0
        while pending:
            attempt += 1
            results = self._process_isolating_bugs([batch[i] for i in pending])
            retry: list[int] = []
            for index, result in zip(pending, results, strict=True):
                if (
                    isinstance(result, Failed)
                    and isinstance(result.error, RetryableError)
                    and attempt <= self.settings.worker_max_retries
                ):
                    log.warning(
                        "stage %s: %s: retrying (attempt %d): %s",
                        self.stage.name,
                        batch[index].where,
                        attempt,
                        result.error,
                    )
                    retry.append(index)
                else:
                    final[index] = (result, attempt)
            pending = retry
            if pending:
                self.stats.outcomes["retried"] += len(pending)
                time.sleep(self.settings.worker_retry_backoff_seconds * 2 ** (attempt - 1))
        return [final[i] for i in range(len(batch))]

    def _process_isolating_bugs(self, batch: Sequence[Inbound[M]]) -> Sequence[Result]:
        """Run the stage; if it crashes on a batch, find the message that makes it crash."""
        if not batch:
            return []
        try:
            results = self.stage.process(batch)
        except (StageError, KafkaError) as exc:
            if isinstance(exc, TransientError):
                raise
            if isinstance(exc, KafkaError):
                raise TransientError("kafka_error", str(exc)) from exc
            return [Failed(exc)] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("stage %s: %s: unexpected error", self.stage.name, batch[0].where)
                return [Failed(RetryableError("unexpected_error", f"{type(exc).__name__}: {exc}"))]
            return [r for item in batch for r in self._process_isolating_bugs([item])]
        if len(results) != len(batch):
            raise RuntimeError(
                f"stage {self.stage.name} returned {len(results)} results for {len(batch)}"
            )
        return results

    def _write_and_commit(
        self, raw: Sequence[Any], outputs: Sequence[Output], letters: Sequence[DeadLetter]
    ) -> None:
        try:
            futures = [
                self.producer.send(out.topic, key=out.key.encode(), value=encode(out.message))
                for out in outputs
            ]
            futures += [
                self.producer.send(
                    self.dead_letter_topic,
                    key=(letter.key or "").encode() or None,
                    value=encode(letter),
                )
                for letter in letters
            ]
            self.producer.flush(timeout=60)
            for future in futures:
                future.get(timeout=60)
        except KafkaError as exc:
            raise TransientError("produce_failed", str(exc)) from exc
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in raw:
            tp = TopicPartition(record.topic, record.partition)
            next_offset = record.offset + 1
            if tp not in offsets or offsets[tp].offset < next_offset:
                offsets[tp] = OffsetAndMetadata(next_offset, "", -1)
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # Outputs are written; a redelivery after a rebalance is absorbed by idempotent sinks.
            log.warning(
                "stage %s: commit failed, batch may be redelivered: %s", self.stage.name, exc
            )
        self.stats.outcomes["produced"] += len(outputs)
        for out in outputs:
            self.metrics.produced(out.topic)
        self.stage.after_commit({tp: meta.offset for tp, meta in offsets.items()})

    def _rewind(self, raw: Sequence[Any], exc: TransientError) -> None:
        first: dict[TopicPartition, int] = {}
        for record in raw:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        for tp, offset in first.items():
            log.warning(
                "stage %s: %s[%d]@%d: transient failure, requeueing %d message(s): %s",
                self.stage.name,
                tp.topic,
                tp.partition,
                offset,
                len(raw),
                exc,
            )
            self.consumer.seek(tp, offset)
        self.stats.outcomes["requeued"] += len(raw)
        self.metrics.failed("transient", exc.reason, len(raw))
        self.stop_event.wait(self.settings.worker_retry_backoff_seconds * 4)

    # -- dead letters -----------------------------------------------------------------------

    def _letter(self, item: Inbound[M], error: StageError, kind: str, attempts: int) -> DeadLetter:
        return DeadLetter(
            stage=self.stage.name,
            source_topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            key=item.key,
            value=(item.value or b"").decode("utf-8", "replace"),
            url=item.url,
            error_kind="permanent" if kind == "permanent" else "retries_exhausted",
            reason=error.reason,
            detail=error.detail[:2000],
            attempts=attempts,
        )

    def _letter_for_record(
        self, record: Any, key: str | None, reason: str, detail: str
    ) -> DeadLetter:
        return DeadLetter(
            stage=self.stage.name,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=(record.value or b"").decode("utf-8", "replace"),
            error_kind="permanent",
            reason=reason,
            detail=detail[:2000],
        )
