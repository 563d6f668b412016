"""The pipeline's shape as data: the tables hold together, and what is derived from them
matches. These keep "adding a stage is one row and one constructor" true."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from kafka.errors import InvalidPartitionsError

from newsflow import kafka_io, topology
from newsflow.contracts import Article
from newsflow.kafka_io import TopicSpec, topic_specs
from newsflow.runtime import Inbound, Result, Stage
from newsflow.settings import Settings
from pipeline import stages
from pipeline.backfill import BACKFILL_STAGES
from pipeline.cli import app

STAGE_NAMES = [row.name for row in topology.STAGES]
TOPIC_KEYS = [topic.key for topic in topology.TOPICS]


# --- the tables ---------------------------------------------------------------------------


def test_each_stage_row_has_a_constructor_and_each_constructor_a_row() -> None:
    assert len(set(STAGE_NAMES)) == len(STAGE_NAMES)
    assert set(stages.CONSTRUCTORS) == set(STAGE_NAMES)


def test_every_topic_a_stage_names_is_in_the_topic_table() -> None:
    for row in topology.STAGES:
        for key in (row.input, *row.outputs):
            assert key in TOPIC_KEYS, f"stage {row.name}: no topic {key!r} in TOPICS"


def test_every_topic_is_read_or_written_by_a_stage_or_holds_dead_letters() -> None:
    assert len(set(TOPIC_KEYS)) == len(TOPIC_KEYS)
    used = {key for row in topology.STAGES for key in (row.input, *row.outputs)}
    assert set(TOPIC_KEYS) == used | {topology.DEAD_LETTERS}


def test_topics_name_settings_fields() -> None:
    fields = Settings.model_fields
    for topic in topology.TOPICS:
        assert fields[topic.name_field].annotation is str, topic.key
        assert fields[topic.retention_field].annotation is int, topic.key
    names = [topic.name(Settings.model_construct()) for topic in topology.TOPICS]
    assert len(set(names)) == len(names)


def test_metrics_ports_and_consumer_groups_are_distinct() -> None:
    settings = Settings.model_construct()
    ports = [topology.metrics_port(row, settings) for row in topology.STAGES]
    assert len(set(ports)) == len(ports)
    groups = [row.group_id for row in topology.STAGES]
    assert len(set(groups)) == len(groups)


def test_ports_groups_and_services_stay_as_deployed() -> None:
    settings = Settings.model_construct()
    assert {row.name: topology.metrics_port(row, settings) for row in topology.STAGES} == {
        "enrich": 9101,
        "dedup": 9102,
        "index": 9103,
        "alert": 9104,
        "webhook": 9105,
    }
    assert topology.metrics_port(topology.stage("dedup"), Settings(worker_metrics_base_port=0)) == 0
    assert topology.stage("index").group_id == "newsflow-index"
    assert topology.stage("webhook").service == "webhook-worker"


def test_a_single_owner_reads_a_single_partition_topic_and_is_never_scaled() -> None:
    owners = [row for row in topology.STAGES if row.single_owner]
    assert [row.name for row in owners] == ["dedup"]
    for row in owners:
        assert topology.topic(row.input).single_partition, row.name
        assert not row.scalable and not row.backfill, row.name


def test_unknown_stage_names_the_known_ones() -> None:
    with pytest.raises(
        topology.UnknownStageError, match=r"'fetch'; known: enrich, dedup, index, alert, webhook"
    ):
        topology.stage("fetch")
    with pytest.raises(topology.UnknownStageError):
        stages.build_runner("fetch", Settings.model_construct())


def test_path_to_a_stage_is_it_and_its_upstream_stages() -> None:
    assert [row.name for row in topology.path_to("index")] == ["enrich", "dedup", "index"]
    assert [row.name for row in topology.path_to("webhook")] == [
        "enrich",
        "dedup",
        "alert",
        "webhook",
    ]
    assert [row.name for row in topology.path_to("enrich")] == ["enrich"]


# --- what is derived from them ------------------------------------------------------------


def test_topic_specs_are_the_topics_as_before() -> None:
    settings = Settings.model_construct(
        topic_raw_pages="t.raw",
        topic_articles="t.articles",
        topic_deduped_articles="t.deduped",
        topic_dead_letters="t.dlq",
        topic_alerts="t.alerts",
        topic_partitions=6,
        topic_retention_hours=10,
        dead_letter_retention_hours=20,
        dedup_window_days=0.25,
    )
    assert topic_specs(settings) == [
        TopicSpec("t.raw", 6, 10),
        # The dedup stage's single-owner input, and its changelog: it keeps the dedup window.
        TopicSpec("t.articles", 1, 10, min_retention_hours=6),
        TopicSpec("t.deduped", 6, 10),
        TopicSpec("t.dlq", 1, 20),
        TopicSpec("t.alerts", 6, 10),
    ]


def test_the_articles_topic_keeps_at_least_the_dedup_window() -> None:
    """A lost dedup snapshot is rebuilt by re-reading the articles topic: it must still hold
    every article of the window (30 days by default, the other topics keep 7)."""
    defaults = {spec.name: spec for spec in topic_specs(Settings.model_construct())}
    articles = defaults["newsflow.articles.v1"]
    assert (articles.retention_hours, articles.min_retention_hours) == (720, 720)
    assert articles.configs()["retention.ms"] == str(30 * 86400 * 1000)
    assert defaults["newsflow.raw-pages.v1"].retention_hours == 168
    assert {s.min_retention_hours for n, s in defaults.items() if s is not articles} == {0}
    longer = Settings.model_construct(topic_retention_hours=1000, dedup_window_days=1.5)
    spec = next(s for s in topic_specs(longer) if s.name == "newsflow.articles.v1")
    assert (spec.retention_hours, spec.min_retention_hours) == (1000, 36)


def test_one_worker_command_per_stage_with_its_help() -> None:
    cli: Any = typer.main.get_command(app)
    workers = cli.commands["worker"].commands
    assert list(workers) == STAGE_NAMES
    for row in topology.STAGES:
        command = workers[row.name]
        assert command.help == row.description
        options = {param.name: param for param in command.params}
        assert set(options) == {"idle_timeout", "metrics_port"}
        assert "enrich 9101, dedup 9102, index 9103, alert 9104, webhook 9105" in " ".join(
            options["metrics_port"].help.split()
        )


def test_backfill_offers_the_stages_whose_sinks_are_idempotent() -> None:
    assert BACKFILL_STAGES == ("enrich", "index")


def test_the_local_stack_runs_one_worker_per_stage(tmp_path: Path) -> None:
    from devstack.stack.components import Ctx, WorkersGroup

    ctx = Ctx(settings=Settings.model_construct(), run_dir=tmp_path)
    members: list[Any] = WorkersGroup(ctx).members()
    assert [member.name for member in members] == [row.service for row in topology.STAGES]
    for member, row in zip(members, topology.STAGES, strict=True):
        assert member.launch_spec(ctx).argv[-2:] == ["worker", row.name]
        port = topology.metrics_port(row, ctx.settings)
        assert member.url(ctx) == f"http://127.0.0.1:{port}/health"


def test_the_demo_waits_for_the_stages_on_the_path_to_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devstack import demo

    asked: dict[str, str] = {}

    def no_lag(settings: Settings, *, group_id: str, topic: str) -> dict[int, int]:
        asked[group_id] = topic
        return {0: 0}

    monkeypatch.setattr(demo, "consumer_lag", no_lag)
    settings = Settings.model_construct()
    demo.wait_until_drained(settings, deadline=math.inf)
    assert asked == {
        "newsflow-enrich": settings.topic_raw_pages,
        "newsflow-dedup": settings.topic_articles,
        "newsflow-index": settings.topic_deduped_articles,
    }


# --- build_runner refuses what the topology forbids, without leaking clients ---------------


class _TwoPartitions:
    """A consumer subscribed to a topic of two partitions."""

    closed = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def close(self) -> None:
        self.closed = True


class _OneOwnerEnrich(Stage[Article]):
    """An enrich stage that claims, unlike its row, to own its whole input."""

    name = "enrich"
    input_model = Article
    single_owner = True
    closed = False

    def process(self, batch: Sequence[Inbound[Article]]) -> Sequence[Result]:
        return []

    def close(self) -> None:
        self.closed = True


def test_a_single_owner_on_two_partitions_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    consumer = _TwoPartitions()
    monkeypatch.setattr(stages, "make_consumer", lambda *args, **kwargs: consumer)
    settings = Settings(dedup_state_dir=tmp_path, topic_articles="t.articles")
    with pytest.raises(stages.StageStartError) as refused:
        stages.build_runner("dedup", settings)
    message = str(refused.value)
    assert "dedup" in message and "t.articles" in message and "2 partitions" in message
    assert "`newsflow init`" in message
    assert consumer.closed


def test_a_stage_class_that_disagrees_with_its_row_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = _OneOwnerEnrich()
    monkeypatch.setitem(stages.CONSTRUCTORS, "enrich", lambda settings: stage)
    with pytest.raises(stages.StageStartError, match="single_owner"):
        stages.build_runner("enrich", Settings.model_construct())
    assert stage.closed


class _Admin:
    """An admin client whose cluster holds every topic, keeping ``kept_ms``, and answers an
    alteration with ``answer``; the topics have the partitions of ``partitions`` (by default
    those of their specs), and another init may add some between a describe and a create."""

    def __init__(
        self,
        kept_ms: int = -1,
        answer: str = "OK",
        *,
        partitions: dict[str, int] | None = None,
        raised_meanwhile: int | None = None,
    ) -> None:
        self.kept_ms, self.answer = kept_ms, answer
        self.altered: list[tuple[str, dict[str, str]]] = []
        defaults = {spec.name: spec.partitions for spec in topic_specs(Settings.model_construct())}
        self.partitions = defaults | (partitions or {})
        self.raised_meanwhile = raised_meanwhile
        self.grown: list[tuple[str, int]] = []

    def list_topics(self) -> list[str]:
        return list(self.partitions)

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "partitions": [{}] * self.partitions[n]} for n in names]

    def create_partitions(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            if self.raised_meanwhile is not None:
                self.partitions[name] = self.raised_meanwhile
            if count <= self.partitions[name]:
                raise InvalidPartitionsError(f"{name} already has {self.partitions[name]}")
            self.partitions[name] = count
            self.grown.append((name, count))

    def describe_configs(self, resources: list[Any], config_filter: str) -> dict[str, Any]:
        value = {"retention.ms": {"value": str(self.kept_ms)}}
        return {"topic": {r.name: value for r in resources}}

    def alter_configs(self, resources: list[Any]) -> dict[str, Any]:
        self.altered += [(r.name, r.configs) for r in resources]
        return {"topic": {r.name: self.answer for r in resources}}

    def close(self) -> None:
        pass


def test_init_raises_a_short_retention_of_the_articles_topic_or_says_it_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    week = 7 * 86400 * 1000
    admin = _Admin(week, "OK")
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: admin)
    assert kafka_io.ensure_topics(Settings.model_construct()) == []
    assert admin.altered == [("newsflow.articles.v1", {"retention.ms": str(30 * 86400 * 1000)})]

    refusing = _Admin(week, "PolicyViolationError: retention is managed elsewhere")
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: refusing)
    with pytest.raises(kafka_io.TopicRetentionError) as refused:
        kafka_io.ensure_topics(Settings.model_construct())
    message = str(refused.value)
    assert "topic newsflow.articles.v1 keeps 168 h, less than the 720 h" in message
    assert "retention is managed elsewhere" in message
    assert "--add-config retention.ms=2592000000" in message

    forever = _Admin(-1, "OK")
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: forever)
    kafka_io.ensure_topics(Settings.model_construct())
    assert forever.altered == []


def test_partitions_divide_evenly_among_likely_worker_counts() -> None:
    """Raw pages split 2:1 between two enrich workers with 3 partitions; 12 splits evenly
    among 1, 2, 3, 4 and 6 members of a group."""
    specs = {spec.name: spec.partitions for spec in topic_specs(Settings.model_construct())}
    assert specs == {
        "newsflow.raw-pages.v1": 12,
        "newsflow.articles.v1": 1,  # the dedup stage's single-owner input
        "newsflow.deduped-articles.v1": 12,
        "newsflow.dead-letters.v1": 1,
        "newsflow.alerts.v1": 12,
    }
    assert all(12 % workers == 0 for workers in (1, 2, 3, 4, 6))


def test_init_adds_partitions_to_an_existing_topic_that_has_fewer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    admin = _Admin(
        partitions={
            "newsflow.raw-pages.v1": 3,
            "newsflow.deduped-articles.v1": 3,
            "newsflow.alerts.v1": 24,  # more than asked: Kafka cannot take partitions away
        }
    )
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: admin)
    with caplog.at_level(logging.WARNING, logger="newsflow.kafka_io"):
        assert kafka_io.ensure_topics(Settings.model_construct()) == []
    assert admin.grown == [("newsflow.raw-pages.v1", 12), ("newsflow.deduped-articles.v1", 12)]
    assert admin.partitions["newsflow.alerts.v1"] == 24
    assert admin.partitions["newsflow.articles.v1"] == 1
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"topic newsflow.{name}.v1: partitions raised from 3 to 12 (NEWSFLOW_TOPIC_PARTITIONS)"
        for name in ("raw-pages", "deduped-articles")
    ]
    assert "may overtake older ones" in caplog.records[0].getMessage()

    again = _Admin(partitions=admin.partitions)
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: again)
    kafka_io.ensure_topics(Settings.model_construct())
    assert again.grown == []


def test_init_never_adds_partitions_to_a_single_partition_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _Admin(partitions={"newsflow.raw-pages.v1": 3})
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: admin)
    kafka_io.ensure_topics(Settings.model_construct(topic_partitions=1))
    kafka_io.ensure_topics(Settings.model_construct(topic_partitions=6))
    assert admin.grown == [("newsflow.raw-pages.v1", 6)]
    assert admin.partitions["newsflow.articles.v1"] == 1
    assert admin.partitions["newsflow.dead-letters.v1"] == 1


def test_init_tells_a_concurrent_raise_from_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    raced = _Admin(partitions={"newsflow.raw-pages.v1": 3}, raised_meanwhile=12)
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: raced)
    kafka_io.ensure_topics(Settings.model_construct())
    assert raced.partitions["newsflow.raw-pages.v1"] == 12

    refused = _Admin(partitions={"newsflow.raw-pages.v1": 3})
    refused.create_partitions = _refuse  # type: ignore[method-assign]
    monkeypatch.setattr(kafka_io, "make_admin", lambda settings: refused)
    with pytest.raises(InvalidPartitionsError):
        kafka_io.ensure_topics(Settings.model_construct())


def _refuse(counts: dict[str, int]) -> None:
    raise InvalidPartitionsError("refused by the broker's policy")


def test_enrich_refuses_a_batch_time_its_consumer_would_not_survive() -> None:
    # A batch may take the batch time plus one page's budget; over the poll interval the
    # group would drop the worker and hand the batch round forever.
    settings = Settings(enrich_batch_seconds=250, enrich_extract_timeout_seconds=30)
    with pytest.raises(stages.StageStartError, match="poll interval"):
        stages.CONSTRUCTORS["enrich"](settings)
