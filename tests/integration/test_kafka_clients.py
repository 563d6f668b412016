"""The Kafka clients against the real broker: `newsflow init` adds partitions to a topic that
has fewer, and pages compressed with the configured codec come back whole."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

from newsflow.contracts import RawPage, decode, encode
from newsflow.kafka_io import (
    MAX_MESSAGE_BYTES,
    ensure_topics,
    make_admin,
    make_producer,
    security_config,
)
from newsflow.settings import Settings
from newsflow.urls import url_id
from tests.pages import article_html

pytestmark = pytest.mark.integration


def _tagged_settings(tag: str) -> Settings:
    return Settings(
        topic_raw_pages=f"{tag}.raw-pages.v1",
        topic_articles=f"{tag}.articles.v1",
        topic_dead_letters=f"{tag}.dead-letters.v1",
        topic_deduped_articles=f"{tag}.deduped-articles.v1",
        topic_alerts=f"{tag}.alerts.v1",
    )


def _names(settings: Settings) -> list[str]:
    return [
        settings.topic_raw_pages,
        settings.topic_articles,
        settings.topic_deduped_articles,
        settings.topic_dead_letters,
        settings.topic_alerts,
    ]


@pytest.fixture
def admin(infra: None) -> Iterator[Any]:
    client = make_admin(Settings())
    try:
        yield client
    finally:
        client.close()


def _partitions(admin: Any, names: list[str]) -> dict[str, int]:
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}


def test_init_adds_partitions_to_existing_topics_but_never_to_the_single_owners(
    admin: Any,
) -> None:
    """A deployment made when topics had 3 partitions: init brings them to 12, and creates
    the missing ones; the articles topic, the dedup stage's single-owner input, stays 1."""
    settings = _tagged_settings(f"t{uuid.uuid4().hex[:8]}")
    assert settings.topic_partitions == 12
    admin.create_topics(
        {
            settings.topic_raw_pages: {"num_partitions": 3, "replication_factor": 1},
            settings.topic_articles: {"num_partitions": 1, "replication_factor": 1},
            settings.topic_deduped_articles: {"num_partitions": 3, "replication_factor": 1},
        },
        wait_for_metadata=True,
    )
    try:
        created = ensure_topics(settings)
        assert created == [settings.topic_dead_letters, settings.topic_alerts]
        assert _partitions(admin, _names(settings)) == {
            settings.topic_raw_pages: 12,
            settings.topic_articles: 1,
            settings.topic_deduped_articles: 12,
            settings.topic_dead_letters: 1,
            settings.topic_alerts: 12,
        }
        assert ensure_topics(settings) == []  # again: nothing to create or add
        # Every new partition takes writes.
        producer = make_producer(settings)
        futures = [
            producer.send(settings.topic_raw_pages, partition=p, key=b"k", value=b"v")
            for p in range(12)
        ]
        producer.flush()
        assert sorted(f.get(30).partition for f in futures) == list(range(12))
        producer.close()
    finally:
        admin.delete_topics(_names(settings))


def _page(words: int, seed: int) -> RawPage:
    rng = random.Random(seed)
    vocabulary = [f"w{rng.getrandbits(24):06x}" for _ in range(2000)]
    paragraphs = [" ".join(rng.choices(vocabulary, k=80)) + "." for _ in range(words // 80)]
    url = f"https://codec.example/news/{seed}"
    return RawPage(
        id=url_id(url),
        url=url,
        fetched_url=url,
        outlet="codec",
        http_status=200,
        html=article_html(f"Page {seed}", paragraphs),
    )


@pytest.fixture
def topic(admin: Any) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}.codec.v1"
    admin.create_topics(
        {
            name: {
                "num_partitions": 1,
                "replication_factor": 1,
                "configs": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
            }
        },
        wait_for_metadata=True,
    )
    try:
        yield name
    finally:
        admin.delete_topics([name])


def test_pages_compressed_with_zstd_come_back_whole_beside_gzip_ones(
    admin: Any, topic: str
) -> None:
    """The workers' producer writes zstd batches; a consumer checking CRCs reads them, and the
    gzip batches of a producer not yet upgraded in the same partition."""
    settings = Settings()
    assert settings.kafka_compression == "zstd"
    pages = [_page(40_000, seed) for seed in range(3)]  # ~330 KB of HTML each
    old = make_producer(settings.model_copy(update={"kafka_compression": "gzip"}))
    old.send(topic, key=pages[0].id.encode(), value=encode(pages[0])).get(30)
    old.close()
    producer = make_producer(settings)
    assert producer.config["compression_attrs"] == DefaultRecordBatchBuilder.CODEC_ZSTD
    for page in pages[1:]:
        producer.send(topic, key=page.id.encode(), value=encode(page)).get(30)
    producer.close()

    raw_bytes = sum(len(encode(page)) for page in pages)
    stored = admin.describe_log_dirs([topic])[0]["log_dirs"][0]["topics"][0]["partitions"]
    assert stored[0]["partition_size"] * 2 < raw_bytes  # compressed on the broker's disk

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        check_crcs=True,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **security_config(settings),
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        received: list[Any] = []
        for _ in range(30):
            for records in consumer.poll(timeout_ms=1000).values():
                received.extend(records)
            if len(received) >= len(pages):
                break
    finally:
        consumer.close()
    assert [decode(RawPage, r.value) for r in received] == pages
    assert [r.key for r in received] == [page.id.encode() for page in pages]
