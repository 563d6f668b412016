"""Dead letters against the real Kafka: a letter larger than its topic takes, a letter the
broker refuses, and replaying letters whose originals are (or are no longer) retained."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from newsflow.contracts import DeadLetter, RawPage, encode
from newsflow.dlq import LETTER_MAX_BYTES, fit_letter, read_letters, replay_new_letters
from newsflow.errors import PermanentError
from newsflow.kafka_io import (
    MAX_MESSAGE_BYTES,
    consumer_lag,
    make_admin,
    make_consumer,
    make_producer,
)
from newsflow.runtime import Done, Failed, Inbound, Output, Result, Stage, StageRunner
from newsflow.settings import Settings, get_settings
from newsflow.urls import url_id
from pipeline.cli import app

pytestmark = pytest.mark.integration


class PassOrReject(Stage[RawPage]):
    """Passes pages on to ``output``; dead-letters the outlet ``poison``'s as ``empty_text``."""

    name = "passorreject"
    input_model = RawPage

    def __init__(self, output: str) -> None:
        self.output = output

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        return [
            Failed(PermanentError("empty_text", "markup without text"))
            if item.message.outlet == "poison"
            else Done((Output(self.output, item.message.id, item.message),))
            for item in batch
        ]


def raw_page(n: int, *, outlet: str = "county", html: str = "<p>text</p>") -> RawPage:
    url = f"http://{outlet}.example/news/{n}"
    return RawPage(
        id=url_id(url), url=url, fetched_url=url, outlet=outlet, http_status=200, html=html
    )


def _runner(settings: Settings, group: str) -> StageRunner[RawPage]:
    return StageRunner(
        PassOrReject(settings.topic_articles),
        settings=settings,
        consumer=make_consumer(settings, topic=settings.topic_raw_pages, group_id=group),
        producer=make_producer(settings, client_id=group),
        input_topic=settings.topic_raw_pages,
        dead_letter_topic=settings.topic_dead_letters,
    )


def _run(runner: StageRunner[RawPage], expected: int) -> None:
    try:
        runner.run(max_messages=expected, idle_timeout=30)
    finally:
        runner.consumer.close()
        runner.producer.close()


def _records(
    settings: Settings, topic: str, *, timeout: float = 30
) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every record on ``topic``: (partition, offset, key, value)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: list[tuple[int, int, bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for records in consumer.poll(timeout_ms=500).values():
                found += [(r.partition, r.offset, r.key, r.value) for r in records]
        return found
    finally:
        consumer.close()


def _send(settings: Settings, pages: Sequence[tuple[int, bytes, bytes]]) -> list[int]:
    """Produce (partition, key, value) records; return their offsets."""
    producer = make_producer(settings)
    try:
        futures = [
            producer.send(settings.topic_raw_pages, key=key, value=value, partition=partition)
            for partition, key, value in pages
        ]
        return [future.get(timeout=60).offset for future in futures]
    finally:
        producer.close()


def _sha(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


@pytest.fixture
def cli_settings(infra_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    # The CLI replays only to the topology's topics: this test's, under its settings.
    for name in ("raw_pages", "articles", "deduped_articles", "dead_letters", "alerts"):
        monkeypatch.setenv(
            f"NEWSFLOW_TOPIC_{name.upper()}", getattr(infra_settings, f"topic_{name}")
        )
    get_settings.cache_clear()
    try:
        yield infra_settings
    finally:
        get_settings.cache_clear()


def test_a_page_whose_letter_exceeds_the_topic_limit_is_cut_and_the_stage_goes_on(
    cli_settings: Settings,
) -> None:
    settings = cli_settings
    # ~9.5 MB of markup with no text; every quote is escaped once in the page's JSON and
    # again in a letter carrying it, which would make the letter ~13 MB.
    poison = raw_page(99, outlet="poison", html='<i a="1" b="2" c="3"></i>' * 306_000)
    poison_value = encode(poison)
    assert 9_000_000 < len(poison_value) < MAX_MESSAGE_BYTES
    others = [raw_page(n) for n in range(6)]
    records = [(n % 3, page.id.encode(), encode(page)) for n, page in enumerate(others)]
    records.insert(3, (1, poison.id.encode(), poison_value))
    offsets = _send(settings, records)
    poison_offset = offsets[3]

    group = f"dl-{uuid.uuid4().hex[:6]}"
    runner = _runner(settings, group)
    _run(runner, expected=7)
    assert runner.stats.outcomes["requeued"] == 0, runner.stats
    assert (runner.stats.outcomes["ok"], runner.stats.outcomes["dead_lettered"]) == (6, 1)

    (stored,) = list(read_letters(settings))
    letter = stored.letter
    assert (letter.reason, letter.source_topic) == ("empty_text", settings.topic_raw_pages)
    assert (letter.partition, letter.offset, letter.url) == (1, poison_offset, poison.url)
    assert letter.value_truncated and letter.value_bytes == len(poison_value)
    assert letter.value_sha256 == _sha(poison_value)
    assert len(letter.value) > 1_000_000 and poison_value.decode().startswith(letter.value)
    assert len(encode(letter)) <= LETTER_MAX_BYTES < MAX_MESSAGE_BYTES
    # Every partition's committed offset moved past the batch, the poison's included ...
    lag = consumer_lag(settings, group_id=group, topic=settings.topic_raw_pages)
    assert lag == dict.fromkeys(range(settings.topic_partitions), 0)
    # ... and the other pages were produced exactly once.
    produced = sorted(key or b"" for _, _, key, _ in _records(settings, settings.topic_articles))
    assert produced == sorted(page.id.encode() for page in others)

    # Replay sends the whole original back, re-read from the source topic.
    result = CliRunner().invoke(app, ["dlq", "replay", "--reason", "empty_text"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 message(s)" in result.output
    copies = [
        (partition, offset, _sha(value))
        for partition, offset, key, value in _records(settings, settings.topic_raw_pages)
        if key == poison.id.encode()
    ]
    assert len(copies) == 2 and (1, poison_offset, _sha(poison_value)) in copies
    assert {sha for _, _, sha in copies} == {_sha(poison_value)}


def test_a_letter_the_broker_refuses_goes_as_a_reference_and_the_stage_goes_on(
    infra_settings: Settings,
) -> None:
    settings = infra_settings
    admin = make_admin(settings)
    try:  # a dead-letter topic that takes less than the letter; the producer allows it
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.topic_dead_letters,
                    configs={"max.message.bytes": "100000"},
                )
            ]
        )
    finally:
        admin.close()
    noise = base64.b64encode(os.urandom(600_000)).decode()  # gzip cannot shrink it enough
    poison = raw_page(7, outlet="poison", html=f"<pre>{noise}</pre>")
    first = [raw_page(n) for n in range(3)]
    offsets = _send(
        settings,
        [(0, p.id.encode(), encode(p)) for p in first[:1]]
        + [(0, poison.id.encode(), encode(poison))]
        + [(0, p.id.encode(), encode(p)) for p in first[1:]],
    )
    group = f"dl-{uuid.uuid4().hex[:6]}"
    runner = _runner(settings, group)
    try:
        runner.run(max_messages=4, idle_timeout=30)
        assert runner.stats.outcomes["requeued"] == 0, runner.stats
        # The producer still works after the broker's refusal.
        later = raw_page(50)
        _send(settings, [(0, later.id.encode(), encode(later))])
        runner.run(max_messages=5, idle_timeout=30)
    finally:
        runner.consumer.close()
        runner.producer.close()
    assert runner.stats.outcomes["requeued"] == 0, runner.stats
    (stored,) = list(read_letters(settings))
    assert (stored.letter.value, stored.letter.value_truncated) == ("", True)
    assert stored.letter.offset == offsets[1]
    assert stored.letter.value_sha256 == _sha(encode(poison))
    assert consumer_lag(settings, group_id=group, topic=settings.topic_raw_pages)[0] == 0
    produced = sorted(key or b"" for _, _, key, _ in _records(settings, settings.topic_articles))
    assert produced == sorted(p.id.encode() for p in [*first, later])


def test_replay_skips_and_names_truncated_letters_whose_original_is_gone(
    cli_settings: Settings,
) -> None:
    settings = cli_settings
    deleted, kept = raw_page(1, html="<p>deleted</p>" * 50), raw_page(2, html="<p>kept</p>" * 50)
    offsets = _send(
        settings, [(0, deleted.id.encode(), encode(deleted)), (0, kept.id.encode(), encode(kept))]
    )
    tp = TopicPartition(settings.topic_raw_pages, 0)
    admin = make_admin(settings)
    try:
        admin.delete_records({tp: offsets[1]})  # the first record is gone
    finally:
        admin.close()

    def truncated(page: RawPage, offset: int, original: bytes) -> DeadLetter:
        letter = DeadLetter(
            stage="enrich",
            source_topic=settings.topic_raw_pages,
            partition=0,
            offset=offset,
            key=page.id,
            value=encode(page).decode(),
            url=page.url,
            error_kind="permanent",
            reason="empty_text",
        )
        return fit_letter(letter, original, max_bytes=600)

    letters = [
        truncated(deleted, offsets[0], encode(deleted)),  # deleted from its topic
        truncated(kept, offsets[1], encode(kept)),  # still there: replayed
        truncated(kept, 1000, encode(kept)),  # an offset the partition never reached
        truncated(kept, offsets[1], b"another value"),  # not what the letter describes
    ]
    assert all(letter.value_truncated for letter in letters)
    producer = make_producer(settings)
    for letter in letters:
        producer.send(settings.topic_dead_letters, key=b"k", value=encode(letter))
    producer.flush()
    producer.close()

    result = CliRunner().invoke(app, ["dlq", "replay"])
    assert result.exit_code == 1, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 4, result.output  # three letters and the total
    assert f"@{offsets[0]}, empty_text, url {deleted.url}): " in skipped[0]
    assert f"now starts at offset {offsets[1]}" in skipped[0]
    assert "ends at offset" in skipped[1]
    assert "SHA-256 differs" in skipped[2]
    assert "replayed 1 message(s)" in result.output
    source = _records(settings, settings.topic_raw_pages)
    replayed = [(key, value) for p, o, key, value in source if (p, o) != (0, offsets[1])]
    assert replayed == [(kept.id.encode(), encode(kept))]

    run = replay_new_letters(
        settings, error_kinds=("permanent",), group_id=f"m-{uuid.uuid4().hex[:6]}"
    )
    assert (run.read, run.replayed, run.skipped) == (4, {"empty_text": 1}, {"empty_text": 3})


def test_replay_refuses_letters_aimed_at_topics_outside_the_topology(
    cli_settings: Settings,
) -> None:
    """Anyone who can write a letter could otherwise have `dlq replay` write anywhere."""
    settings = cli_settings
    page = raw_page(7)

    def forged(stage: str, topic: str) -> DeadLetter:
        return DeadLetter(
            stage=stage,
            source_topic=topic,
            partition=0,
            offset=0,
            key=page.id,
            value=encode(page).decode(),
            error_kind="permanent",
            reason="forged",
        )

    letters = [
        forged("replayer", settings.topic_dead_letters),  # a loop into the letters themselves
        forged("enrich", settings.topic_alerts),  # enrich's letters go back to raw pages only
    ]
    producer = make_producer(settings)
    for letter in letters:
        producer.send(settings.topic_dead_letters, key=b"k", value=encode(letter))
    producer.flush()
    producer.close()

    result = CliRunner().invoke(app, ["dlq", "replay", "--reason", "forged"])
    assert result.exit_code == 1, result.output
    assert "not an input topic of the pipeline" in result.output
    assert "is not the enrich stage's input" in result.output
    assert "replayed 0 message(s)" in result.output
    assert len(_records(settings, settings.topic_dead_letters)) == 2
    assert _records(settings, settings.topic_alerts) == []
