"""Kafka clients configured one way for every stage, and idempotent topic creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.errors import TopicAlreadyExistsError

from newsflow.settings import Settings
from newsflow.topology import TOPICS

log = logging.getLogger(__name__)

# Raw pages carry whole HTML documents; the broker and topics are configured to match.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_hours: int
    compacted: bool = False
    replication: int = 1
    min_insync_replicas: int | None = None  # replicated topics only

    def configs(self) -> dict[str, str]:
        configs = {
            "retention.ms": str(self.retention_hours * 3600 * 1000),
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
            "cleanup.policy": "compact,delete" if self.compacted else "delete",
        }
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of ``newsflow.topology.TOPICS``, as this deployment names and sizes them."""
    replication = settings.topic_replication
    min_insync = min(settings.topic_min_insync_replicas, replication) if replication > 1 else None
    return [
        TopicSpec(
            topic.name(settings),
            topic.partitions(settings),
            topic.retention_hours(settings),
            replication=replication,
            min_insync_replicas=min_insync,
        )
        for topic in TOPICS
    ]


def security_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_username
        if settings.kafka_password is not None:
            config["sasl_plain_password"] = settings.kafka_password.get_secret_value()
    return config


def make_producer(settings: Settings, *, client_id: str = "newsflow") -> KafkaProducer:
    """A producer that favours durability: acks from all replicas, idempotent, compressed."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=20,
        max_request_size=MAX_MESSAGE_BYTES,
        retries=5,
        **security_config(settings),
    )


def make_consumer(
    settings: Settings,
    *,
    topic: str,
    group_id: str,
    listener: ConsumerRebalanceListener | None = None,
) -> KafkaConsumer:
    """A consumer that never commits on its own: stages commit after their output is safe.

    ``listener`` is told about partition assignments (e.g. to seek to a snapshot's offsets).
    The session timeout bounds how long a dead member keeps its partitions; with
    ``kafka_group_instance_prefix`` the consumer is a static member, and its restarted
    process gets them back at once.
    """
    session_ms = settings.kafka_session_timeout_ms
    prefix = settings.kafka_group_instance_prefix
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        group_instance_id=f"{prefix}-{group_id}" if prefix else None,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms or max(100, session_ms // 3),
        client_id=f"{group_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
        max_poll_records=settings.worker_batch_size,
        # Notice new partitions and topics within seconds, not the default five minutes.
        metadata_max_age_ms=30_000,
        **security_config(settings),
    )
    consumer.subscribe([topic], listener=listener)
    return consumer


def make_admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="newsflow-admin",
        **security_config(settings),
    )


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics with explicit partitions and retention; return those created."""
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [spec for spec in topic_specs(settings) if spec.name not in existing]
        created: list[str] = []
        for spec in wanted:
            try:
                admin.create_topics(
                    {
                        spec.name: {
                            "num_partitions": spec.partitions,
                            "replication_factor": spec.replication,
                            "configs": spec.configs(),
                        }
                    },
                    wait_for_metadata=True,
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:  # created concurrently by another init
                pass
        return created
    finally:
        admin.close()


def consumer_lag(settings: Settings, *, group_id: str, topic: str) -> dict[int, int]:
    """Messages not yet committed by ``group_id``, per partition of ``topic``."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        **security_config(settings),
    )
    admin = make_admin(settings)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or set())
        tps = [TopicPartition(topic, p) for p in partitions]
        end = consumer.end_offsets(tps) if tps else {}
        committed = admin.list_group_offsets({group_id: tps}).get(group_id, {})
        lag: dict[int, int] = {}
        for tp in tps:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lag[tp.partition] = max(0, end[tp] - position)
        return lag
    finally:
        consumer.close()
        admin.close()
