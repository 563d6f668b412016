"""The dead-letter topic: letters sized to fit it, read back, and replayed.

A letter carries its original message so that it can be replayed, but the original may be
as large as the topic's limit and the letter adds its own fields (and JSON escaping) to it.
:func:`fit_letter` keeps every letter well under the limit: a letter that would not fit keeps
a prefix of the value (``value_truncated``, with the original's size and SHA-256), and replay
re-reads such an original from its source topic, partition and offset while it is retained.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pydantic_core
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from newsflow.contracts import ContractError, DeadLetter, decode, encode
from newsflow.kafka_io import MAX_MESSAGE_BYTES, make_producer, make_reader
from newsflow.settings import Settings
from newsflow.topology import STAGES, topic_name

log = logging.getLogger(__name__)

# A letter's JSON plus its key stays under this: 2 MiB below the topic's limit leaves room
# for the record's headers and batch overhead, whatever the producer adds.
LETTER_MAX_BYTES = MAX_MESSAGE_BYTES - 2 * 1024 * 1024
# An error's detail is for a human reading the letter: the gist, not a whole dump.
DETAIL_MAX_CHARS = 2000
# Keys in this pipeline are ids; a longer one is kept cut, and replay re-reads the original.
KEY_MAX_CHARS = 1024


def letter_size(letter: DeadLetter) -> int:
    """Bytes the letter takes on the topic: its JSON and its key (headers and overhead apart)."""
    return len(encode(letter)) + len((letter.key or "").encode("utf-8"))


def fit_letter(
    letter: DeadLetter, original: bytes | None, *, max_bytes: int = LETTER_MAX_BYTES
) -> DeadLetter:
    """``letter`` with its detail capped, and cut to ``max_bytes`` if it is larger.

    ``original`` is the record's value as consumed (``letter.value`` is its decoded text): a
    cut letter names its size and SHA-256 so that replay can find and check it. With a
    ``max_bytes`` too small for any of the value, the letter is a reference only (value
    empty); that is also what a letter the broker refused becomes (``max_bytes=0``).
    """
    if len(letter.detail) > DETAIL_MAX_CHARS:
        letter = letter.model_copy(update={"detail": letter.detail[: DETAIL_MAX_CHARS - 1] + "…"})
    key_too_long = letter.key is not None and len(letter.key) > KEY_MAX_CHARS
    if not key_too_long and letter_size(letter) <= max_bytes:
        return letter
    body = original or b""
    reference = letter.model_copy(
        update={
            "key": letter.key[:KEY_MAX_CHARS] if letter.key is not None else None,
            "value": "",
            "value_truncated": True,
            "value_bytes": len(body),
            "value_sha256": hashlib.sha256(body).hexdigest(),
        }
    )
    budget = max_bytes - letter_size(reference)
    if budget <= 0:
        return reference
    cut = reference.model_copy(update={"value": _prefix_within(letter.value, budget)})
    return cut if letter_size(cut) <= max_bytes else reference


def _prefix_within(text: str, budget: int) -> str:
    """A prefix of ``text`` whose JSON string escaping (quotes apart) takes at most ``budget``
    bytes: characters take 1 to 6 bytes each, so shrink in proportion until it fits."""
    length = min(len(text), budget)
    while length > 0:
        size = len(pydantic_core.to_json(text[:length])) - 2
        if size <= budget:
            return text[:length]
        length = min(length - 1, length * budget // size)
    return ""


@dataclass(frozen=True)
class StoredLetter:
    partition: int
    offset: int
    letter: DeadLetter


def read_letters(settings: Settings, *, timeout_seconds: float = 30.0) -> Iterator[StoredLetter]:
    """Every dead letter currently on the topic, oldest first, without joining a group."""
    consumer = make_reader(settings)
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


@dataclass(frozen=True)
class Skipped:
    """A letter that was not replayed, and why (a truncated letter whose original is gone)."""

    stored: StoredLetter
    why: str


@dataclass(frozen=True)
class SendBackResult:
    sent: list[StoredLetter]
    skipped: list[Skipped]


@dataclass(frozen=True)
class _Original:
    key: bytes | None
    value: bytes | None


def send_back(
    settings: Settings,
    letters: Sequence[StoredLetter],
    *,
    progress: Callable[[int], None] | None = None,
) -> SendBackResult:
    """Send each letter's original message back to the topic it came from.

    Only to a topic that a stage of the topology reads (its own stage's input, when the letter
    names a known stage): a letter is data anyone who can write to its topic can forge, so its
    ``source_topic`` must not be able to aim a replay at any topic (see
    :func:`replay_target_problem`). A letter that carries its original whole sends that; a
    truncated one sends the original re-read from its source topic (checked against the
    letter's SHA-256), and is skipped, with the reason, when the original is no longer there:
    a truncated value is never sent.
    ``progress`` is called once per letter done: acknowledged by the broker, or skipped.
    """
    if not letters:
        return SendBackResult([], [])
    producer = make_producer(settings, client_id="newsflow-dlq-replay")
    originals = _OriginalReader(settings)
    sent: list[StoredLetter] = []
    skipped: list[Skipped] = []
    try:
        futures = []
        for stored in letters:
            letter = stored.letter
            problem = replay_target_problem(letter, settings)
            if problem is not None:
                log.warning("dead letter %s: not replayed: %s", _where(letter), problem)
                skipped.append(Skipped(stored, problem))
                if progress is not None:
                    progress(1)
                continue
            if letter.value_truncated:
                original = originals.read(letter)
                if isinstance(original, str):
                    log.warning("dead letter %s: not replayed: %s", _where(letter), original)
                    skipped.append(Skipped(stored, original))
                    if progress is not None:
                        progress(1)
                    continue
                key, value = original.key, original.value
            else:
                key = letter.key.encode() if letter.key else None
                value = letter.value.encode("utf-8")
            futures.append((stored, producer.send(letter.source_topic, key=key, value=value)))
        for stored, future in futures:
            future.get(timeout=60)
            sent.append(stored)
            if progress is not None:
                progress(1)
    finally:
        originals.close()
        producer.close()
    return SendBackResult(sent, skipped)


def replay_target_problem(letter: DeadLetter, settings: Settings) -> str | None:
    """Why ``letter`` may not be replayed to its ``source_topic``; ``None`` when it may."""
    inputs = {row.name: topic_name(row.input, settings) for row in STAGES}
    expected = inputs.get(letter.stage)
    if expected is not None and letter.source_topic != expected:
        return (
            f"its source topic {letter.source_topic!r} is not the {letter.stage} stage's input"
            f" ({expected!r})"
        )
    if letter.source_topic not in inputs.values():
        return f"{letter.source_topic!r} is not an input topic of the pipeline"
    return None


def _where(letter: DeadLetter) -> str:
    return f"{letter.source_topic}[{letter.partition}]@{letter.offset}"


class _OriginalReader:
    """Reads the record a truncated letter points at, one at a time (originals may be
    10 MB each), with a consumer of its own that joins no group."""

    def __init__(self, settings: Settings, *, timeout_seconds: float = 30.0) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._consumer: KafkaConsumer | None = None

    def read(self, letter: DeadLetter) -> _Original | str:
        """The original record, or why it cannot be replayed."""
        original = self._read(letter)
        if isinstance(original, str) or letter.value_sha256 is None:
            return original
        if hashlib.sha256(original.value or b"").hexdigest() != letter.value_sha256:
            return (
                "the record at that offset is not the original (its SHA-256 differs): "
                "was the topic recreated?"
            )
        return original

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _read(self, letter: DeadLetter) -> _Original | str:
        if self._consumer is None:
            self._consumer = make_reader(self.settings)
        consumer = self._consumer
        gone = "the original is no longer on its topic, and the letter keeps only part of it"
        partitions = consumer.partitions_for_topic(letter.source_topic)
        if not partitions or letter.partition not in partitions:
            return f"{gone}: {letter.source_topic}[{letter.partition}] does not exist"
        tp = TopicPartition(letter.source_topic, letter.partition)
        try:
            first = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            return f"the original could not be read: {exc}"
        if letter.offset < first:
            return f"{gone}: the partition now starts at offset {first} (retention or deletion)"
        if letter.offset >= end:
            return f"{gone}: the partition ends at offset {end}"
        consumer.assign([tp])
        consumer.seek(tp, letter.offset)
        deadline = time.monotonic() + self.timeout_seconds
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.offset < letter.offset:
                    continue
                if record.offset > letter.offset:
                    break
                return _Original(record.key, record.value)
            if consumer.position(tp) > letter.offset:  # moved past it: the record is not there
                return f"{gone}: offset {letter.offset} was removed (compaction or deletion)"
        return f"the original could not be read within {self.timeout_seconds:.0f} s"


def replay(
    settings: Settings,
    *,
    reason: str | None = None,
    stage: str | None = None,
    dry_run: bool = False,
) -> list[StoredLetter]:
    """Send matching letters' original messages back to the topic they came from; return
    the letters sent (all matching ones with ``dry_run``)."""
    selected = select_letters(settings, reason=reason, stage=stage)
    if dry_run:
        return selected
    return send_back(settings, selected).sent


@dataclass(frozen=True)
class ReplayRun:
    """What one :func:`replay_new_letters` run did: letters read, and replayed by reason;
    skipped by reason: truncated letters whose original is gone from its topic."""

    read: int
    replayed: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)


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
    consumer = make_reader(settings, group_id=group_id)
    replayed: dict[str, int] = {}
    skipped: dict[str, int] = {}
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
        result = send_back(settings, selected)
        for stored in result.sent:
            replayed[stored.letter.reason] = replayed.get(stored.letter.reason, 0) + 1
        for gone in result.skipped:
            skipped[gone.stored.letter.reason] = skipped.get(gone.stored.letter.reason, 0) + 1
        consumer.commit({tp: OffsetAndMetadata(end[tp], "", -1) for tp in tps})
    finally:
        consumer.close()
    return ReplayRun(read=read, replayed=replayed, skipped=skipped)
