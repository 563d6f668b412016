"""The loop every stage runs: poll a batch, process it, write outputs, then commit.

A stage only says what to do with a batch of input messages (``Stage.process``); this module
owns delivery: decoding against the input contract, bounded retries with backoff, the
dead-letter topic, rewinding on transient failures, and committing offsets only after every
output and dead letter of the batch has been acknowledged by the broker.

Every message reaches an outcome: an output, or a dead letter sized to fit its topic. The
batch's dead letters are sent and confirmed before its outputs, so a failing letter rewinds
the batch without having produced anything; a record the broker refuses for good (too
large, invalid) is never retried: a refused letter goes again as a reference to its
original, a refused output becomes a dead letter. Only transient failures rewind, with a
backoff that grows; ``health`` turns unhealthy when a partition lags without progress.

A stage that allows it (``Stage.pipelined``) is run as a pipeline, so the worker is never idle
waiting for the broker and the stage never idle waiting for the worker: its ``process`` runs on
a thread of its own, one batch at a time, while the loop reads the next batch and produces the
previous one. Each batch still goes letters (confirmed), then outputs (confirmed), then its
commit, and commits stay in order: batch N is confirmed and committed before N+1's first
letter or output is sent. A transient failure rewinds the failed batch and every batch read
after it (their results are dropped, none of their outputs was sent); a deferred message sends
its partition back to it, and what later batches hold of that partition is dropped and read
again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from types import FrameType
from typing import Any, Generic, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from kafka.structs import OffsetAndMetadata

from newsflow.contracts import ContractError, DeadLetter, Message, decode, encode
from newsflow.dlq import LETTER_MAX_BYTES, fit_letter
from newsflow.errors import PermanentError, RetryableError, StageError, TransientError
from newsflow.kafka_io import MAX_MESSAGE_BYTES, make_producer
from newsflow.observability import StageMetrics
from newsflow.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

# What the producer or the broker refuses for this record however often it is sent.
REFUSED_FOR_GOOD: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
)
# An output's key and value stay under this: room for the record's headers and overhead.
OUTPUT_MAX_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
# A pipelined runner hands the stage at most this many batches at a time: the one it works on
# and the next, so it starts that one the moment it is done with the first.
PIPELINE_DEPTH = 2


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


@dataclass(frozen=True)
class Deferred:
    """The stage did not get to the message within its batch's time (its work per batch is
    bounded, so a poll never outlives the consumer's poll interval): it is not committed,
    and is read again with the next batch, as is everything after it in its partition."""


Result = Done | Failed | Deferred


@dataclass(frozen=True)
class _Letter:
    """A dead letter to send, with the original value it was cut from (if it was)."""

    letter: DeadLetter
    original: bytes | None


@dataclass(frozen=True)
class _Encoded:
    """An output, serialized, with the input it came from (to dead-letter if refused)."""

    topic: str
    key: bytes
    value: bytes
    source: Inbound[Any]


@dataclass(frozen=True)
class _Settled:
    """What becomes of a processed batch: the records it finishes (all but the deferred), and
    the outputs and letters to send for them; ``resume``: per partition, where to read again."""

    done: list[Any]
    outputs: list[_Encoded]
    letters: list[_Letter]
    resume: dict[TopicPartition, int]


@dataclass
class _Sending:
    """Records handed to the producer, not yet confirmed; ``refused``: those it refused at once."""

    records: Sequence[tuple[str, bytes | None, bytes]]
    futures: list[tuple[int, Any]]
    refused: list[int]
    failure: str


# A batch's results, each with the attempts it took, and how many retries it took in all.
_Processed = tuple[list[tuple[Result, int]], int]


@dataclass(eq=False)
class _Batch(Generic[M]):
    """A batch on its way through a pipelined runner: read, processed, sent, committed."""

    raw: list[Any]
    inbound: list[Inbound[M]]
    letters: list[_Letter]  # its invalid messages'
    # Per partition, where to read again should the batch be rewound.
    first: dict[TopicPartition, int]
    future: Future[_Processed] | None = None
    started: float | None = None  # perf_counter when its processing began
    # Per partition, from which offset on its messages are dropped (an earlier batch sent the
    # partition back there), to be read again.
    discard_from: dict[TopicPartition, int] = field(default_factory=dict)
    settled: _Settled | None = None
    sending: _Sending | None = None

    def send_back(self, tp: TopicPartition, offset: int) -> None:
        """The partition is read again from ``offset``: drop what this batch holds from it on."""
        self.discard_from[tp] = min(self.discard_from.get(tp, offset), offset)
        self.first[tp] = min(self.first.get(tp, offset), offset)


class PartitionProgress:
    """Since when each partition has had lag without committed progress: a wedge detector.

    Lags are observed between batches, when a partition's position is its committed offset;
    a commit is progress. A partition that catches up is not stalled; one that starts to lag
    is stalled from then on until it commits.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._lag: dict[TopicPartition, int] = {}
        self._since: dict[TopicPartition, float] = {}

    def observe(self, lags: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """The lag of every assigned partition; returns those no longer assigned."""
        now = self._clock()
        with self._lock:
            gone = [tp for tp in self._lag if tp not in lags]
            for tp in gone:
                self._lag.pop(tp)
                self._since.pop(tp, None)
            for tp, lag in lags.items():
                self._lag[tp] = lag
                if lag <= 0:
                    self._since.pop(tp, None)
                else:
                    self._since.setdefault(tp, now)
        return gone

    def committed(self, partitions: Sequence[TopicPartition]) -> None:
        now = self._clock()
        with self._lock:
            for tp in partitions:
                if tp in self._since:
                    self._since[tp] = now

    def stall_seconds(self, tp: TopicPartition) -> float:
        with self._lock:
            since = self._since.get(tp)
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def stalls(self) -> dict[TopicPartition, float]:
        """Every lagging partition's seconds without committed progress."""
        now = self._clock()
        with self._lock:
            return {tp: max(0.0, now - since) for tp, since in self._since.items()}


class Stage(ABC, Generic[M]):
    """A pipeline stage: knows its input contract and what to do with a batch."""

    name: str
    input_model: type[M]
    # True when the stage keeps state over the whole stream: its input must have one partition.
    single_owner: bool = False
    # True when the runner may overlap batches (see the module's docstring): ``process`` then
    # runs on a thread of the runner's own, on batch N+1 before N is committed, and a batch's
    # results may be dropped and its messages processed again. For a stage whose ``process``
    # has no effect but its results, keeps no state that ``after_commit`` or the order of
    # commits depends on, and seeks nowhere on assignment. A single owner never is pipelined.
    pipelined: bool = False
    # Set by the runner: stage-specific counters (dedup outcomes, index errors) go here.
    metrics: StageMetrics | None = None

    @abstractmethod
    def process(self, batch: Sequence[Inbound[M]]) -> Sequence[Result]:
        """Return one result per input, in order; raise ``TransientError`` to requeue all.

        A stage whose work per message can be long returns ``Deferred`` for what it did not
        start within its time (after at least one message, so the stream always moves)."""

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


def stop_on_signals(stage_name: str, stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the runner finishes its current batch and returns."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stage %s: signal %d received, finishing the current batch", stage_name, signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def within_bytes(
    polled: Mapping[TopicPartition, Sequence[Any]], budget: int
) -> tuple[list[Any], dict[TopicPartition, int]]:
    """The records of one poll whose values fit in ``budget`` bytes (at least one record),
    each partition's in order; and, for every partition cut short, the offset of its first
    record left, to be read again. Partitions take one record each in turn, so one partition
    of heavy pages does not starve the others.

    A batch's pages stay in memory until it is committed (three batches, with pipelining): a
    count of records alone bounds nothing when each may weigh the 10 MB a message can.
    """
    take = dict.fromkeys(polled, 0)
    in_turn = zip_longest(*([(tp, r) for r in records] for tp, records in polled.items()))
    used = 0
    for tp, record in (pair for turn in in_turn for pair in turn if pair is not None):
        used += len(record.value or b"")
        if used > budget and any(take.values()):
            break
        take[tp] += 1
    taken = [record for tp, records in polled.items() for record in records[: take[tp]]]
    left = {
        tp: records[take[tp]].offset for tp, records in polled.items() if take[tp] < len(records)
    }
    return taken, left


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
        producer_factory: Callable[[], KafkaProducer] | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        """``producer_factory`` makes a producer like ``producer`` (by default from the
        settings, with its client id): the runner replaces one that a refusal left unusable.
        ``stop_event``, when given, may already be set by a signal that came while the stage
        was starting."""
        self.stage = stage
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        client_id = str(getattr(producer, "config", {}).get("client_id") or stage.name)
        self.producer_factory = producer_factory or (
            lambda: make_producer(settings, client_id=client_id)
        )
        self.input_topic = input_topic
        self.dead_letter_topic = dead_letter_topic
        self.stats = RunStats()
        self.stop_event = stop_event or threading.Event()
        self.metrics = StageMetrics(stage.name)
        stage.metrics = self.metrics
        self.started = time.monotonic()
        self.last_poll = 0.0  # monotonic; 0 until the first poll
        self._next_lag_check = 0.0
        self.progress = PartitionProgress()
        # Batches requeued in a row, and since when (monotonic; None while batches go through).
        self.rewinds_in_a_row = 0
        self.failing_since: float | None = None
        self.last_rewind_reason: str | None = None
        self.letter_max_bytes = LETTER_MAX_BYTES
        self.pipelined = settings.worker_pipelining and stage.pipelined and not stage.single_owner
        # The pipeline (``run`` of a pipelined stage): batches handed to the stage, oldest first,
        # and the batch whose outputs are sent and not yet confirmed.
        self._executor: ThreadPoolExecutor | None = None
        self._processing: deque[_Batch[M]] = deque()
        self._in_flight: _Batch[M] | None = None
        # Per partition, the next offset not yet in the pipeline: a record below it that is read
        # again (a rebalance puts positions back at the committed offsets) is already in hand.
        self._taken: dict[TopicPartition, int] = {}

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self, *, idle_timeout: float | None = None, max_messages: int | None = None
    ) -> RunStats:
        """Process until stopped, idle for ``idle_timeout`` seconds, or ``max_messages`` read.

        A pipelined runner finishes what it holds before it returns, except, once stopped,
        batches the stage has not begun: they are left to be read again.
        """
        if not self.pipelined:
            self._loop(self.run_once, idle_timeout, max_messages)
            return self.stats
        self._taken.clear()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.stage.name}-batch")
        self._executor = executor
        try:
            self._loop(self._pipeline_turn, idle_timeout, max_messages)
            self._drain()
        except BaseException:
            self._abandon()
            raise
        finally:
            self._executor = None
            # A batch dropped by a rewind may still be running: the stage is not to be closed
            # under it.
            executor.shutdown(wait=True, cancel_futures=True)
        return self.stats

    def _loop(
        self, step: Callable[[], int], idle_timeout: float | None, max_messages: int | None
    ) -> None:
        last_activity = time.monotonic()
        while not self.stop_event.is_set():
            count = step()
            now = time.monotonic()
            if count:
                last_activity = now
            elif idle_timeout is not None and now - last_activity >= idle_timeout:
                break
            if max_messages is not None and self.stats.consumed >= max_messages:
                break

    def run_once(self, poll_timeout_ms: int = 1000) -> int:
        """Read one batch, process, write and commit it (never pipelined); return the number
        of records finished."""
        raw = self._poll(poll_timeout_ms)
        if not raw:
            self._update_lag()
            return 0
        started = time.perf_counter()
        try:
            done = self._handle_batch(raw)
        except TransientError as exc:
            backoff = self._rewind(raw, exc)
            self._update_lag()
            self.stop_event.wait(backoff)
            return 0
        self._went_through(done, started)
        self._update_lag()
        return len(done)

    def _poll(self, timeout_ms: int) -> list[Any]:
        records = self.consumer.poll(
            timeout_ms=timeout_ms, max_records=self.settings.worker_batch_size
        )
        self.last_poll = time.monotonic()
        self.metrics.polled()
        taken, read_again = within_bytes(records, self.settings.worker_batch_max_bytes)
        for tp, offset in read_again.items():  # the next poll starts there
            self.consumer.seek(tp, offset)
        return taken

    def _went_through(self, done: Sequence[Any], started: float) -> None:
        """Bookkeeping for a batch written and committed (``started``: perf_counter)."""
        if self.rewinds_in_a_row:
            log.info(
                "stage %s: batch went through after %d requeue(s)",
                self.stage.name,
                self.rewinds_in_a_row,
            )
            self.rewinds_in_a_row, self.failing_since = 0, None
            self.metrics.rewinds_in_a_row.labels(self.stage.name).set(0)
        self.metrics.batch_seconds.labels(self.stage.name).observe(time.perf_counter() - started)
        for topic, count in Counter(record.topic for record in done).items():
            self.metrics.consumed(topic, count)
        self.stats.consumed += len(done)
        self.stats.batches += 1

    # -- the pipeline -----------------------------------------------------------------------

    def _pipeline_turn(self, poll_timeout_ms: int = 1000, *, read: bool = True) -> int:
        """One turn of the pipeline (within ``run``): read a batch and hand it to the stage;
        once the stage holds two (or there is nothing to read), take the older one's results,
        confirm and commit the batch in flight, and send the older one. Returns the records
        read and committed; 0 when idle (or requeued)."""
        assert self._executor is not None, "the pipeline runs within run()"
        activity = 0
        if read and len(self._processing) < PIPELINE_DEPTH:
            # With work in hand the poll takes only what has arrived: waiting would hold back
            # the commit of the batch in flight.
            busy = bool(self._processing) or self._in_flight is not None
            batch = self._read(0 if busy else poll_timeout_ms)
            if batch is not None:
                activity += len(batch.raw)
                self._processing.append(batch)
                if len(self._processing) < PIPELINE_DEPTH:
                    self._update_lag()
                    return activity  # read ahead before waiting for the stage
        if not self._processing:
            activity += self._finish_in_flight_or_requeue()
            self._update_lag()
            return activity
        activity += self._send_oldest()
        self._update_lag()
        return activity

    def _read(self, timeout_ms: int) -> _Batch[M] | None:
        raw = self._not_in_hand(self._poll(timeout_ms))
        if not raw:
            return None
        inbound, letters = self._decode(raw)
        batch = _Batch(raw, inbound, letters, _first_offsets(raw))
        for record in raw:
            tp = TopicPartition(record.topic, record.partition)
            self._taken[tp] = max(self._taken.get(tp, 0), record.offset + 1)
        assert self._executor is not None
        batch.future = self._executor.submit(self._process_batch, batch)
        return batch

    def _not_in_hand(self, raw: list[Any]) -> list[Any]:
        """``raw`` without the records the pipeline already holds: those read again after a
        rebalance put the positions back at the committed offsets."""
        kept: list[Any] = []
        again: Counter[TopicPartition] = Counter()
        for record in raw:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset < self._taken.get(tp, 0):
                again[tp] += 1
            else:
                kept.append(record)
        for tp, count in again.items():
            log.info(
                "stage %s: %s[%d]: %d record(s) read again (a rebalance?) are already in hand",
                self.stage.name,
                tp.topic,
                tp.partition,
                count,
            )
            if not any(TopicPartition(r.topic, r.partition) == tp for r in kept):
                self._seek(tp, self._taken[tp])
        return kept

    def _process_batch(self, batch: _Batch[M]) -> _Processed:
        """On the pipeline's thread."""
        batch.started = time.perf_counter()
        return self._process_with_retries(batch.inbound)

    def _send_oldest(self) -> int:
        """Wait for the oldest batch's results; confirm and commit the batch in flight, then send
        the oldest one's letters (confirmed) and outputs (not yet). Returns the records
        committed."""
        batch = self._processing.popleft()
        assert batch.future is not None
        try:
            results, retried = batch.future.result()
        except TransientError as exc:
            try:
                committed = self._finish_in_flight()
            except TransientError as failed_too:
                assert self._in_flight is not None
                self._requeue(failed_too, [self._in_flight, batch])
                return 0
            self._requeue(exc, [batch])
            return committed
        self.stats.outcomes["retried"] += retried
        settled = self._settle(batch.raw, batch.inbound, results, batch.letters, batch.discard_from)
        batch.settled = settled
        try:
            committed = self._finish_in_flight()
        except TransientError as exc:
            in_flight = self._in_flight
            assert in_flight is not None
            self._requeue(exc, [in_flight, batch])
            return 0
        if not settled.done:  # deferred from its first message on
            self._went_through([], batch.started or time.perf_counter())
        else:
            try:
                self._send_letters(settled.letters)
                batch.sending = self._send(
                    [(out.topic, out.key, out.value) for out in settled.outputs],
                    failure="produce_failed",
                )
            except TransientError as exc:
                self._requeue(exc, [batch])
                return committed
            self._in_flight = batch
        for tp, offset in settled.resume.items():
            self._seek(tp, offset)
            for later in self._processing:
                later.send_back(tp, offset)
        return committed

    def _finish_in_flight(self) -> int:
        """Confirm the batch in flight and commit it; return the records committed. Raises
        ``TransientError`` (the batch stays in flight, to be requeued)."""
        batch = self._in_flight
        if batch is None:
            return 0
        assert batch.sending is not None and batch.settled is not None
        refused = self._confirm(batch.sending)
        self._commit_written(batch.settled.done, batch.settled.outputs, refused)
        self._in_flight = None
        self._went_through(batch.settled.done, batch.started or time.perf_counter())
        return len(batch.settled.done)

    def _finish_in_flight_or_requeue(self) -> int:
        try:
            return self._finish_in_flight()
        except TransientError as exc:
            assert self._in_flight is not None
            self._requeue(exc, [self._in_flight])
            return 0

    def _requeue(self, exc: TransientError, failed: Sequence[_Batch[M]]) -> None:
        """Rewind the failed batches and every batch read after them (their results are
        dropped: nothing of them was sent), then wait the backoff."""
        later = list(self._processing)
        self._processing.clear()
        self._in_flight = None
        for batch in later:
            assert batch.future is not None
            batch.future.cancel()  # if the stage has not begun it
        batches = [*failed, *later]
        first = _earliest(batch.first for batch in batches)
        backoff = self._rewind_to(first, sum(len(batch.raw) for batch in batches), exc)
        self._update_lag()
        self.stop_event.wait(backoff)

    def _drain(self) -> None:
        """Finish what the pipeline holds. Once stopped, the batches the stage has not begun
        are not processed: their partitions go back to be read again."""
        if self.stop_event.is_set():
            unbegun: list[_Batch[M]] = []
            while self._processing:
                future = self._processing[-1].future
                if future is None or not future.cancel():
                    break
                unbegun.append(self._processing.pop())
            for tp, offset in _earliest(batch.first for batch in unbegun).items():
                self._seek(tp, offset)
        while self._processing or self._in_flight is not None:
            self._pipeline_turn(read=False)

    def _abandon(self) -> None:
        """The loop failed: what the pipeline holds is read again, not committed."""
        pending = self._held()
        self._processing.clear()
        self._in_flight = None
        for batch in pending:
            if batch.future is not None:
                batch.future.cancel()
        try:
            for tp, offset in _earliest(batch.first for batch in pending).items():
                self._seek(tp, offset)
        except Exception as exc:  # the consumer may be what failed
            log.warning("stage %s: could not rewind the pipeline: %s", self.stage.name, exc)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` again from ``offset``; a partition no longer assigned is its new
        owner's, who reads it from its committed offset."""
        self._taken[tp] = offset
        try:
            self.consumer.seek(tp, offset)
        except ValueError as exc:  # kafka-python: "Unassigned partition"
            log.info(
                "stage %s: %s[%d] not sought to %d: %s",
                self.stage.name,
                tp.topic,
                tp.partition,
                offset,
                exc,
            )

    def _pending_first(self) -> dict[TopicPartition, int]:
        """Per partition, the first offset the pipeline holds and has not committed."""
        return _earliest(batch.first for batch in self._held())

    def _held(self) -> list[_Batch[M]]:
        """The batches the pipeline holds: being processed, and the one in flight."""
        return [*self._processing, *([self._in_flight] if self._in_flight else [])]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the loop polls and its partitions make progress: a stuck batch, a dead
        loop, a partition with lag and no commit for ``worker_stall_seconds``, or batches
        failing transiently for as long, turn it unhealthy."""
        now = time.monotonic()
        since = now - (self.last_poll or self.started)
        limit = self.settings.worker_stall_seconds
        stalled = {
            f"{tp.topic}[{tp.partition}]": round(seconds, 1)
            for tp, seconds in sorted(self.progress.stalls().items())
            if seconds > limit
        }
        failing_since = self.failing_since
        failing = 0.0 if failing_since is None else now - failing_since
        ok = (
            not self.stop_event.is_set()
            and since <= self.settings.worker_health_max_poll_gap
            and not stalled
            and failing <= limit
        )
        details: dict[str, Any] = {
            "stage": self.stage.name,
            "seconds_since_poll": round(since, 1),
            "consumed": self.stats.consumed,
            "assigned": sorted(f"{tp.topic}[{tp.partition}]" for tp in self._assignment()),
            "stalled_partitions": stalled,
        }
        if failing_since is not None:
            details["requeued"] = {
                "batches_in_a_row": self.rewinds_in_a_row,
                "seconds": round(failing, 1),
                "reason": self.last_rewind_reason,
            }
        return ok, details

    def _assignment(self) -> set[Any]:
        try:
            return set(self.consumer.assignment())
        except Exception:  # a closed consumer
            return set()

    def _update_lag(self) -> None:
        """Consumer lag per assigned partition, at most every ``worker_lag_interval`` s.

        Measured between batches, when every position is a committed offset (or the start of
        a requeued batch), or the first offset a pipeline holds: the lag is the work not yet
        committed.
        """
        now = time.monotonic()
        if now < self._next_lag_check:
            return
        self._next_lag_check = now + self.settings.worker_lag_interval_seconds
        assigned = list(self._assignment())
        lags: dict[TopicPartition, int] = {}
        pending = self._pending_first()
        try:
            ends = self.consumer.end_offsets(assigned) if assigned else {}
            for tp in assigned:
                position = self.consumer.position(tp)
                if position is not None and tp in pending:
                    position = min(position, pending[tp])
                if position is not None and tp in ends:
                    lags[tp] = max(ends[tp] - position, 0)
                    self.metrics.lag(tp.topic, tp.partition, lags[tp])
        except KafkaError as exc:  # metrics must never stop the stage
            log.debug("stage %s: lag check failed: %s", self.stage.name, exc)
            return
        for tp in self.progress.observe(lags):
            self.metrics.untrack_stall(tp.topic, tp.partition)
        for tp in lags:
            self.metrics.track_stall(tp.topic, tp.partition, self._stall_of(tp))

    def _stall_of(self, tp: TopicPartition) -> Callable[[], float]:
        return lambda: self.progress.stall_seconds(tp)

    def stop(self) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stage.name, self.stop_event)

    # -- one batch ------------------------------------------------------------------------

    def _handle_batch(self, raw: Sequence[Any]) -> list[Any]:
        """Process, write and commit one batch; return the records it finished (all of them,
        unless the stage deferred some to the next batch)."""
        inbound, letters = self._decode(raw)
        results, retried = self._process_with_retries(inbound)
        self.stats.outcomes["retried"] += retried
        settled = self._settle(raw, inbound, results, letters)
        if settled.done:
            self._write_and_commit(settled.done, settled.outputs, settled.letters)
        for tp, offset in settled.resume.items():
            self.consumer.seek(tp, offset)
        return settled.done

    def _decode(self, raw: Sequence[Any]) -> tuple[list[Inbound[M]], list[_Letter]]:
        """The records as messages of the input contract, and letters for those that are not."""
        letters: list[_Letter] = []
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
        return inbound, letters

    def _settle(
        self,
        raw: Sequence[Any],
        inbound: Sequence[Inbound[M]],
        results: Sequence[tuple[Result, int]],
        letters: Sequence[_Letter],
        dropped: Mapping[TopicPartition, int] | None = None,
    ) -> _Settled:
        """The batch's outputs and letters, up to its first deferred message per partition.

        ``dropped``: per partition, from which offset on the batch's messages are left out
        without a word (an earlier batch sent their partition back: they are read again).
        """
        if dropped:
            kept = [
                i
                for i, item in enumerate(inbound)
                if not _at_or_after(dropped, item.topic, item.partition, item.offset)
            ]
            inbound = [inbound[i] for i in kept]
            results = [results[i] for i in kept]
            raw = [r for r in raw if not _at_or_after(dropped, r.topic, r.partition, r.offset)]
            letters = _letters_before(dropped, letters)
        resume = _first_deferred(inbound, results)
        letters = _letters_before(resume, letters)
        outputs: list[_Encoded] = []
        for item, (result, attempts) in zip(inbound, results, strict=True):
            if isinstance(result, Deferred) or _at_or_after(
                resume, item.topic, item.partition, item.offset
            ):
                continue  # read again with the next batch
            if isinstance(result, Done):
                encoded = self._encode_outputs(item, result.outputs)
                if not isinstance(encoded, StageError):
                    outputs.extend(encoded)
                    self.stats.outcomes["ok"] += 1
                    continue
                result = Failed(encoded)
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
        done = [r for r in raw if not _at_or_after(resume, r.topic, r.partition, r.offset)]
        if resume:
            log.info(
                "stage %s: %d message(s) deferred to the next batch (its time is up)",
                self.stage.name,
                len(raw) - len(done),
            )
            self.stats.outcomes["deferred"] += len(raw) - len(done)
        return _Settled(done, outputs, letters, resume)

    def _process_with_retries(self, batch: Sequence[Inbound[M]]) -> _Processed:
        """Each message's result and the attempts it took, and the number of retries made."""
        final: dict[int, tuple[Result, int]] = {}
        pending = list(range(len(batch)))
        attempt = 0
        retried = 0
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
                retried += len(pending)
                time.sleep(self.settings.worker_retry_backoff_seconds * 2 ** (attempt - 1))
        return [final[i] for i in range(len(batch))], retried

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

    def _encode_outputs(
        self, item: Inbound[M], outputs: Sequence[Output]
    ) -> list[_Encoded] | StageError:
        """The item's outputs as records, or why they cannot be produced: an output its
        contract refuses, or one larger than a topic takes, would fail on every attempt."""
        encoded: list[_Encoded] = []
        for out in outputs:
            try:
                value = encode(out.message)
            except ContractError as exc:
                log.error("stage %s: %s: invalid output: %s", self.stage.name, item.where, exc)
                return PermanentError("invalid_output", f"{out.topic}: {exc}")
            key = out.key.encode()
            size = len(key) + len(value)
            if size > OUTPUT_MAX_BYTES:
                return PermanentError(
                    "output_too_large",
                    f"{out.topic}: {size} bytes, over the {OUTPUT_MAX_BYTES} a message may have",
                )
            encoded.append(_Encoded(out.topic, key, value, item))
        return encoded

    def _write_and_commit(
        self, raw: Sequence[Any], outputs: Sequence[_Encoded], letters: Sequence[_Letter]
    ) -> None:
        """Letters first, confirmed, then outputs, confirmed, then the commit.

        A letter that fails transiently rewinds the batch before any output is produced; an
        output that fails transiently rewinds it too, and its letters are sent again then (a
        replayed letter is harmless: the sinks are idempotent).
        """
        self._send_letters(letters)
        refused = self._produce(
            [(out.topic, out.key, out.value) for out in outputs], failure="produce_failed"
        )
        self._commit_written(raw, outputs, refused)

    def _commit_written(
        self, raw: Sequence[Any], outputs: Sequence[_Encoded], refused: Sequence[int]
    ) -> None:
        """The outputs are confirmed but ``refused`` (indexes): dead-letter the inputs of
        those, then commit ``raw`` and tell the stage."""
        if refused:
            letters_for_refused = self._refused_outputs([outputs[i] for i in refused])
            self._send_letters(letters_for_refused)
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
        else:
            self.progress.committed(list(offsets))
        refused_set = set(refused)
        produced = [out for i, out in enumerate(outputs) if i not in refused_set]
        self.stats.outcomes["produced"] += len(produced)
        for out in produced:
            self.metrics.produced(out.topic)
        self.stage.after_commit({tp: meta.offset for tp, meta in offsets.items()})

    def _send_letters(self, letters: Sequence[_Letter]) -> None:
        """Send and confirm the letters; one refused for good goes again as a reference only
        (the original stays findable by its topic, partition and offset)."""
        if not letters:
            return
        records = [self._letter_record(pending.letter) for pending in letters]
        refused = self._produce(records, failure="dead_letter_failed")
        if refused:
            references: list[DeadLetter] = []
            for i in refused:
                letter = fit_letter(letters[i].letter, letters[i].original, max_bytes=0)
                log.error(
                    "stage %s: %s[%d]@%d: the dead-letter topic refused the letter (%d bytes); "
                    "sending a reference to the original instead",
                    self.stage.name,
                    letter.source_topic,
                    letter.partition,
                    letter.offset,
                    len(records[i][2]),
                )
                self.metrics.letter_truncated("reference_only")
                references.append(letter)
            if self._produce(
                [self._letter_record(letter) for letter in references],
                failure="dead_letter_failed",
            ):
                raise TransientError(
                    "dead_letter_refused", "the dead-letter topic refused a reference-only letter"
                )
        for pending in letters:
            self.metrics.failed(pending.letter.error_kind, pending.letter.reason)
        self.stats.outcomes["dead_lettered"] += len(letters)

    def _letter_record(self, letter: DeadLetter) -> tuple[str, bytes | None, bytes]:
        return self.dead_letter_topic, (letter.key or "").encode() or None, encode(letter)

    def _refused_outputs(self, refused: Sequence[_Encoded]) -> list[_Letter]:
        """Dead letters for the inputs whose outputs the broker refused for good."""
        letters: list[_Letter] = []
        seen: set[tuple[str, int, int]] = set()
        for out in refused:
            item = out.source
            if (item.topic, item.partition, item.offset) in seen:
                continue
            seen.add((item.topic, item.partition, item.offset))
            detail = f"{out.topic}: the broker refused the output ({len(out.value)} bytes)"
            log.error("stage %s: %s: %s", self.stage.name, item.where, detail)
            self.stats.outcomes["ok"] -= 1
            error = PermanentError("output_refused", detail)
            letters.append(self._letter(item, error, "permanent", attempts=1))
        return letters

    def _produce(
        self, records: Sequence[tuple[str, bytes | None, bytes]], *, failure: str
    ) -> list[int]:
        """Send, flush and confirm ``records`` (topic, key, value); return the indexes of those
        refused for good. Any other failure is transient: ``TransientError(failure)``."""
        return self._confirm(self._send(records, failure=failure))

    def _send(
        self, records: Sequence[tuple[str, bytes | None, bytes]], *, failure: str
    ) -> _Sending:
        """Hand ``records`` to the producer, without waiting: :meth:`_confirm` does."""
        futures: list[tuple[int, Any]] = []
        refused: list[int] = []
        try:
            for i, (topic, key, value) in enumerate(records):
                try:
                    futures.append((i, self.producer.send(topic, key=key, value=value)))
                except REFUSED_FOR_GOOD as exc:  # the producer's own size check
                    log.warning("stage %s: %s refused: %s", self.stage.name, topic, exc)
                    refused.append(i)
        except KafkaError as exc:
            raise TransientError(failure, str(exc)) from exc
        return _Sending(records, futures, refused, failure)

    def _confirm(self, sending: _Sending) -> list[int]:
        """Flush and confirm what was sent; return the indexes of the records refused for good.

        After a broker refuses a record, kafka-python's idempotent producer fails everything
        else too (a fatal state): the producer is replaced, and each record failed that way
        is sent again on its own, to tell the refused record from those failed with it.
        """
        records, failure = sending.records, sending.failure
        suspects = self._await(sending)
        if not suspects:
            return []
        self._renew_producer()
        if len(records) == 1:
            return suspects
        refused: list[int] = []
        for i in suspects:
            if self._await(self._send([records[i]], failure=failure)):
                refused.append(i)
                self._renew_producer()
        return refused

    def _await(self, sending: _Sending) -> list[int]:
        refused = list(sending.refused)
        try:
            if sending.futures:
                self.producer.flush(timeout=60)
            for i, future in sending.futures:
                try:
                    future.get(timeout=60)
                except REFUSED_FOR_GOOD as exc:
                    log.warning(
                        "stage %s: %s refused: %s", self.stage.name, sending.records[i][0], exc
                    )
                    refused.append(i)
        except KafkaError as exc:
            raise TransientError(sending.failure, str(exc)) from exc
        return sorted(refused)

    def _renew_producer(self) -> None:
        log.warning("stage %s: replacing the producer after a refused record", self.stage.name)
        old, self.producer = self.producer, self.producer_factory()
        try:
            old.close(timeout=5)
        except Exception as exc:  # a producer in a fatal state may not close cleanly
            log.debug("stage %s: closing the old producer: %s", self.stage.name, exc)

    def _rewind(self, raw: Sequence[Any], exc: TransientError) -> float:
        """Seek back to the batch's first offsets; return the seconds to wait before polling."""
        return self._rewind_to(_first_offsets(raw), len(raw), exc)

    def _rewind_to(
        self, first: Mapping[TopicPartition, int], count: int, exc: TransientError
    ) -> float:
        for tp, offset in first.items():
            log.warning(
                "stage %s: %s[%d]@%d: transient failure, requeueing %d message(s): %s",
                self.stage.name,
                tp.topic,
                tp.partition,
                offset,
                count,
                exc,
            )
            if self.pipelined:
                self._seek(tp, offset)
            else:
                self.consumer.seek(tp, offset)
        self.stats.outcomes["requeued"] += count
        self.metrics.failed("transient", exc.reason, count)
        self.rewinds_in_a_row += 1
        self.last_rewind_reason = exc.reason
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.metrics.rewound(exc.reason, self.rewinds_in_a_row)
        return self.rewind_backoff(self.rewinds_in_a_row)

    def rewind_backoff(self, in_a_row: int) -> float:
        """Seconds to wait before re-reading a batch requeued ``in_a_row`` times: doubling
        from 4 x the retry backoff, capped, so a long outage costs a few polls a minute."""
        first = self.settings.worker_retry_backoff_seconds * 4
        cap = self.settings.worker_rewind_max_backoff_seconds
        return float(min(first * 2 ** min(in_a_row - 1, 32), cap))

    # -- dead letters -----------------------------------------------------------------------

    def _letter(self, item: Inbound[M], error: StageError, kind: str, attempts: int) -> _Letter:
        letter = DeadLetter(
            stage=self.stage.name,
            source_topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            key=item.key,
            value=(item.value or b"").decode("utf-8", "replace"),
            url=item.url,
            error_kind="retries_exhausted" if kind == "retries_exhausted" else "permanent",
            reason=error.reason,
            detail=error.detail,
            attempts=attempts,
        )
        return self._fitted(letter, item.value)

    def _letter_for_record(self, record: Any, key: str | None, reason: str, detail: str) -> _Letter:
        letter = DeadLetter(
            stage=self.stage.name,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=(record.value or b"").decode("utf-8", "replace"),
            error_kind="permanent",
            reason=reason,
            detail=detail,
        )
        return self._fitted(letter, record.value)

    def _fitted(self, letter: DeadLetter, original: bytes | None) -> _Letter:
        fitted = fit_letter(letter, original, max_bytes=self.letter_max_bytes)
        if fitted.value_truncated:
            log.warning(
                "stage %s: %s[%d]@%d: dead letter cut to fit its topic: %d of %d bytes kept",
                self.stage.name,
                letter.source_topic,
                letter.partition,
                letter.offset,
                len(fitted.value.encode("utf-8")),
                fitted.value_bytes,
            )
            self.metrics.letter_truncated("reference_only" if not fitted.value else "truncated")
        return _Letter(fitted, original)


def _first_offsets(raw: Iterable[Any]) -> dict[TopicPartition, int]:
    """Per partition, the lowest offset among ``raw`` (records or inbound messages)."""
    first: dict[TopicPartition, int] = {}
    for record in raw:
        tp = TopicPartition(record.topic, record.partition)
        first[tp] = min(first.get(tp, record.offset), record.offset)
    return first


def _earliest(firsts: Iterable[Mapping[TopicPartition, int]]) -> dict[TopicPartition, int]:
    earliest: dict[TopicPartition, int] = {}
    for first in firsts:
        for tp, offset in first.items():
            earliest[tp] = min(earliest.get(tp, offset), offset)
    return earliest


def _first_deferred(
    batch: Sequence[Inbound[Any]], results: Sequence[tuple[Result, int]]
) -> dict[TopicPartition, int]:
    """Per partition, the offset of its first deferred message: the batch is done up to it."""
    return _first_offsets(
        item
        for item, (result, _attempts) in zip(batch, results, strict=True)
        if isinstance(result, Deferred)
    )


def _at_or_after(
    resume: Mapping[TopicPartition, int], topic: str, partition: int, offset: int
) -> bool:
    start = resume.get(TopicPartition(topic, partition))
    return start is not None and offset >= start


def _letters_before(
    resume: Mapping[TopicPartition, int], letters: Sequence[_Letter]
) -> list[_Letter]:
    """The letters whose message comes before its partition's offset in ``resume``."""
    return [
        letter
        for letter in letters
        if not _at_or_after(
            resume, letter.letter.source_topic, letter.letter.partition, letter.letter.offset
        )
    ]
