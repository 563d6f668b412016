"""Kafka clients configured one way for every stage, and idempotent topic creation.

A topic that holds a stage's changelog (``TopicDef.min_retention_days_field``) is created
with at least that retention, and ``ensure_topics`` raises the retention of an existing one
that keeps less (e.g. created when the articles topic kept 7 days and the dedup window is
30): otherwise a lost dedup snapshot could not be rebuilt from the log.

Likewise an existing topic with fewer partitions than ``NEWSFLOW_TOPIC_PARTITIONS`` gets
partitions added (e.g. raw pages created with 3, which split 2:1 between two enrich workers);
single-partition topics never (see ``_add_partitions`` for why that is safe for the others).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidPartitionsError, TopicAlreadyExistsError

from newsflow import kafka_patches
from newsflow.settings import Settings
from newsflow.topology import TOPICS

log = logging.getLogger(__name__)

kafka_patches.apply()

KafkaClient = TypeVar("KafkaClient", KafkaAdminClient, KafkaConsumer, KafkaProducer)

# Raw pages carry whole HTML documents; the broker and topics are configured to match.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class TopicRetentionError(RuntimeError):
    """A topic keeps less than it must, and Kafka refused to raise its retention."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_hours: int
    compacted: bool = False
    min_retention_hours: int = 0  # an existing topic keeping less is raised to retention_hours
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
            min_retention_hours=topic.min_retention_hours(settings),
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


def open_client(kind: type[KafkaClient], **config: Any) -> KafkaClient:
    """``kind(**config)``, whose network client is closed again when the constructor fails.

    kafka-python 3.0 starts a client's IO thread before it bootstraps: when the bootstrap
    fails (Kafka still starting, a wrong address), the constructor raises and leaves that
    thread running, its sockets open, one more with every attempt of a readiness loop.
    """
    made: list[Any] = []
    network_client = kind.DEFAULT_CONFIG["kafka_client"]

    def tracked(**kwargs: Any) -> Any:
        made.append(network_client(**kwargs))
        return made[-1]

    try:
        return kind(kafka_client=tracked, **config)
    except BaseException:
        for client in made:
            with contextlib.suppress(Exception):
                client.close()
        raise


def compression_type(settings: Settings) -> str | None:
    """kafka-python's name for ``settings.kafka_compression`` (``None``: uncompressed)."""
    return None if settings.kafka_compression == "none" else settings.kafka_compression


def make_producer(settings: Settings, *, client_id: str = "newsflow") -> KafkaProducer:
    """A producer that favours durability: acks from all replicas, idempotent, compressed."""
    return open_client(
        KafkaProducer,
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        compression_type=compression_type(settings),
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
    consumer = open_client(
        KafkaConsumer,
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
    try:
        consumer.subscribe([topic], listener=listener)
    except BaseException:  # a topic name Kafka refuses: the client is not to outlive the error
        consumer.close()
        raise
    return consumer


def make_reader(settings: Settings, *, group_id: str | None = None) -> KafkaConsumer:
    """A consumer for tools that assign partitions and seek themselves (dead letters, lag):
    outside any group unless ``group_id`` is given, never committing on its own, from the
    earliest offset kept, and able to fetch a whole page."""
    return open_client(
        KafkaConsumer,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **security_config(settings),
    )


def make_admin(settings: Settings) -> KafkaAdminClient:
    return open_client(
        KafkaAdminClient,
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="newsflow-admin",
        **security_config(settings),
    )


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics with explicit partitions and retention; return those created.

    An existing topic that keeps less than its minimum retention gets its retention raised;
    raises :class:`TopicRetentionError` when Kafka refuses. An existing topic with fewer
    partitions than its spec gets more (never fewer: Kafka cannot take partitions away).
    """
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        specs = topic_specs(settings)
        floors = [s for s in specs if s.min_retention_hours and s.name in existing]
        if floors:
            _raise_short_retention(admin, floors)
        # A single-partition topic (the dedup stage's single-owner input) is never grown.
        growable = [s for s in specs if s.partitions > 1 and s.name in existing]
        if growable:
            _add_partitions(admin, growable)
        wanted = [spec for spec in specs if spec.name not in existing]
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


def _add_partitions(admin: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Bring each topic up to its spec's partition count.

    Adding partitions moves keys: the producers' partitioner hashes a key modulo the count,
    so a key's messages after the change may land on another partition than its earlier
    ones, and overtake those still unread. For these topics that is safe:

    - raw pages (keyed by article id): only a re-fetch (version + 1, a DAG run later) or a
      replay shares a key; should one overtake its predecessor, dedup records the older text
      as one more version and the index keeps the newest fetch (its documents are versioned
      by ``fetched_at``);
    - deduped articles (article id): the index stage is order-free (external versions by
      fetch time, stories by their article count); the alert stage claims each alert in its
      ledger, once per watch and story, whatever the order;
    - alerts (watch id): each is a delivery of its own, with its id and kind; their order per
      watch is not promised anyway (a POST that keeps failing is dead-lettered, and replayed
      later if at all).

    Consumers start the new partitions from their beginning (``auto_offset_reset``), so
    nothing produced there before their group noticed them is skipped.
    """
    counts = _partition_counts(admin, [spec.name for spec in specs])
    for spec in specs:
        current = counts.get(spec.name, spec.partitions)
        if current >= spec.partitions:
            continue
        try:
            admin.create_partitions({spec.name: spec.partitions})
        except InvalidPartitionsError:
            if _partition_counts(admin, [spec.name]).get(spec.name, 0) >= spec.partitions:
                continue  # another init raised it meanwhile
            raise
        log.warning(
            "topic %s: partitions raised from %d to %d (NEWSFLOW_TOPIC_PARTITIONS); keys now map "
            "to other partitions, so a key's next messages may overtake older ones still unread",
            spec.name,
            current,
            spec.partitions,
        )


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(names)}


def _raise_short_retention(admin: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, spec.name, configs={"retention.ms": None})
        for spec in specs
    ]
    described = admin.describe_configs(resources, config_filter="all")["topic"]
    for spec in specs:
        kept_ms = int(described[spec.name]["retention.ms"]["value"])
        floor_ms = spec.min_retention_hours * 3600 * 1000
        if kept_ms < 0 or kept_ms >= floor_ms:  # -1: kept forever
            continue
        wanted = spec.configs()["retention.ms"]
        resource = ConfigResource(
            ConfigResourceType.TOPIC, spec.name, configs={"retention.ms": wanted}
        )
        try:
            result = admin.alter_configs([resource])["topic"][spec.name]
        except Exception as exc:  # the client raises for some refusals, reports others
            result = f"{type(exc).__name__}: {exc}"
        if result != "OK":
            raise TopicRetentionError(
                f"topic {spec.name} keeps {kept_ms / 3_600_000:g} h, less than the "
                f"{spec.min_retention_hours} h a stage needs to rebuild its state from it (the "
                f"dedup window for the articles topic), and Kafka refused "
                f"to raise retention.ms to {wanted}: {result}. Raise it by hand, e.g. "
                f"kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config retention.ms={wanted}"
            )
        log.warning(
            "topic %s: retention raised from %g h to %d h (a stage rebuilds its state from it)",
            spec.name,
            kept_ms / 3_600_000,
            spec.retention_hours,
        )


def consumer_lag(settings: Settings, *, group_id: str, topic: str) -> dict[int, int]:
    """Messages not yet committed by ``group_id``, per partition of ``topic``."""
    with contextlib.ExitStack() as opened:
        consumer = make_reader(settings)
        opened.callback(consumer.close)
        admin = make_admin(settings)
        opened.callback(admin.close)
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
