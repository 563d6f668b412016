"""The pipeline's shape as data: its topics, and which stage reads and writes which.

Everything that depends on the shape is derived from these two tables: the topics
``newsflow init`` creates, the ``newsflow worker <stage>`` commands, the wiring in
``pipeline/stages.py``, the local stack's workers and the demo's wait; tests hold
docker-compose.yml and the Prometheus config to them. Adding a stage is one row in
``STAGES`` (and its topics in ``TOPICS``) plus one constructor in ``pipeline/stages.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from newsflow.settings import Settings

TopicKey = Literal["raw_pages", "articles", "deduped_articles", "dead_letters", "alerts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicDef:
    key: TopicKey
    name_field: str  # the Settings field that holds the topic's name
    retention_field: str  # the Settings field that holds its retention, in hours
    # One partition whatever NEWSFLOW_TOPIC_PARTITIONS says (e.g. a single owner's input), and
    # never more: `newsflow init` grows only the other topics of an existing deployment.
    single_partition: bool = False
    # The Settings field (in days) its retention never goes below: a stage's state window,
    # rebuilt by re-reading the topic when its snapshot is lost.
    min_retention_days_field: str | None = None

    def name(self, settings: Settings) -> str:
        return str(getattr(settings, self.name_field))

    def partitions(self, settings: Settings) -> int:
        return 1 if self.single_partition else settings.topic_partitions

    def retention_hours(self, settings: Settings) -> int:
        return max(int(getattr(settings, self.retention_field)), self.min_retention_hours(settings))

    def min_retention_hours(self, settings: Settings) -> int:
        """What the topic must keep (0: no floor), whole hours."""
        if self.min_retention_days_field is None:
            return 0
        return math.ceil(float(getattr(settings, self.min_retention_days_field)) * 24)


TOPICS: tuple[TopicDef, ...] = (
    # Written by ingest (the Airflow DAGs), read by the enrich stage.
    TopicDef(
        key="raw_pages", name_field="topic_raw_pages", retention_field="topic_retention_hours"
    ),
    # One partition: the dedup stage, its single owner, reads the whole stream in log order.
    # It is the dedup state's changelog, so it keeps at least the dedup window.
    TopicDef(
        key="articles",
        name_field="topic_articles",
        retention_field="topic_retention_hours",
        single_partition=True,
        min_retention_days_field="dedup_window_days",
    ),
    TopicDef(
        key="deduped_articles",
        name_field="topic_deduped_articles",
        retention_field="topic_retention_hours",
    ),
    TopicDef(
        key="dead_letters",
        name_field="topic_dead_letters",
        retention_field="dead_letter_retention_hours",
        single_partition=True,
    ),
    TopicDef(key="alerts", name_field="topic_alerts", retention_field="topic_retention_hours"),
)

# Every stage parks the messages it cannot process here (not listed among its outputs).
DEAD_LETTERS: TopicKey = "dead_letters"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageDef:
    name: str  # `newsflow worker <name>`
    input: TopicKey
    outputs: tuple[TopicKey, ...]  # topics it produces to (index and webhook write elsewhere)
    description: str  # one line: the worker command's help
    # Its /metrics port is NEWSFLOW_WORKER_METRICS_BASE_PORT + this (9101.. by default).
    metrics_port_offset: int
    # One consumer owns the whole input, which must have a single partition; never scaled.
    single_owner: bool = False
    # Its sinks are idempotent, so `newsflow backfill` may run it again beside the live one.
    backfill: bool = False

    @property
    def group_id(self) -> str:
        return f"newsflow-{self.name}"

    @property
    def service(self) -> str:
        """Its docker-compose service and local-stack member."""
        return f"{self.name}-worker"

    @property
    def scalable(self) -> bool:
        """Compose may run several replicas: the consumer group splits the partitions."""
        return not self.single_owner


STAGES: tuple[StageDef, ...] = (
    StageDef(
        name="enrich",
        input="raw_pages",
        outputs=("articles",),
        description="Raw pages → extracted articles "
        "(title, text, authors, date, language, canonical URL).",
        metrics_port_offset=0,
        backfill=True,
    ),
    StageDef(
        name="dedup",
        input="articles",
        outputs=("deduped_articles",),
        description="Articles → deduplicated articles with story ids "
        "(single owner of the dedup state).",
        metrics_port_offset=1,
        single_owner=True,
    ),
    StageDef(
        name="index",
        input="deduped_articles",
        outputs=(),
        description="Articles → Elasticsearch, in bulk, one document per normalized URL.",
        metrics_port_offset=2,
        backfill=True,
    ),
    # Its own consumer group on the index stage's input: alerts never wait for indexing.
    StageDef(
        name="alert",
        input="deduped_articles",
        outputs=("alerts",),
        description="Deduplicated articles → alerts for watches matching new stories "
        "(and story updates).",
        metrics_port_offset=3,
    ),
    StageDef(
        name="webhook",
        input="alerts",
        outputs=(),
        description="Alerts → signed POSTs to the watches' webhook URLs, with retries.",
        metrics_port_offset=4,
    ),
)


class UnknownStageError(ValueError):
    pass


def stage_names() -> tuple[str, ...]:
    return tuple(row.name for row in STAGES)


def stage(name: str) -> StageDef:
    for row in STAGES:
        if row.name == name:
            return row
    raise UnknownStageError(f"unknown stage {name!r}; known: {', '.join(stage_names())}")


def topic(key: TopicKey) -> TopicDef:
    for row in TOPICS:
        if row.key == key:
            return row
    raise KeyError(f"no topic {key!r} in newsflow.topology.TOPICS")


def topic_name(key: TopicKey, settings: Settings) -> str:
    return topic(key).name(settings)


def metrics_port(row: StageDef, settings: Settings) -> int:
    """The stage's default ``/metrics`` port (0: metrics off)."""
    base = settings.worker_metrics_base_port
    return base + row.metrics_port_offset if base else 0


def path_to(name: str) -> tuple[StageDef, ...]:
    """The stage and every stage upstream of it (whose output reaches its input), in
    table order: what must have caught up before its results are complete."""
    wanted = {name}
    needed: set[TopicKey] = {stage(name).input}
    grew = True
    while grew:
        grew = False
        for row in STAGES:
            if row.name not in wanted and needed.intersection(row.outputs):
                wanted.add(row.name)
                needed.add(row.input)
                grew = True
    return tuple(row for row in STAGES if row.name in wanted)
