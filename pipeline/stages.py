"""The one place that wires stages to topics. Stages know only their input and output.

The shape (which stage reads which topic, in which consumer group) is ``newsflow.topology``;
what is stage-specific here is ``CONSTRUCTORS``: how each stage is built from the settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaConsumer

from newsflow import topology
from newsflow.kafka_io import make_consumer, make_producer
from newsflow.observability import MetricsServer
from newsflow.runtime import Stage, StageRebalanceListener, StageRunner, stop_on_signals
from newsflow.settings import Settings

log = logging.getLogger(__name__)


# kafka-python's max_poll_interval_ms, which make_consumer keeps: a member that does not poll
# for this long leaves its group.
CONSUMER_POLL_INTERVAL_SECONDS = 300.0


class StageStartError(RuntimeError):
    """The stage must not start as things are; the message says what to fix."""


def extraction_overrides(settings: Settings) -> dict[str, Any]:
    """Each outlet's extraction selectors from the registry (none when it has no file).

    An invalid registry stops the worker: it names the file, outlet and field.
    """
    from newsflow.outlets import load_registry

    if not settings.outlets_file.is_file():
        log.warning("no outlets registry at %s: no extraction overrides", settings.outlets_file)
        return {}
    registry = load_registry(settings.outlets_file)
    return {outlet.name: outlet.extraction for outlet in registry if outlet.extraction}


def _enrich(settings: Settings) -> Stage[Any]:
    from enrich.sandbox import ExtractionBudget, PoolStartError, auto_processes
    from enrich.worker import EnrichStage

    processes = settings.enrich_extract_processes
    if processes == "auto":
        processes = auto_processes(settings.enrich_workers_per_host)
    budget = None
    if processes > 0:
        budget = ExtractionBudget(
            timeout_seconds=settings.enrich_extract_timeout_seconds,
            memory_mb=settings.enrich_extract_memory_mb,
            processes=processes,
            batch_seconds=settings.enrich_batch_seconds,
        )
        worst = budget.batch_seconds + budget.timeout_seconds
        if worst >= CONSUMER_POLL_INTERVAL_SECONDS * 0.9:
            raise StageStartError(
                "stage enrich refuses to start: a batch may take "
                f"NEWSFLOW_ENRICH_BATCH_SECONDS + NEWSFLOW_ENRICH_EXTRACT_TIMEOUT_SECONDS = "
                f"{worst:g} s, too close to the consumer's poll interval "
                f"({CONSUMER_POLL_INTERVAL_SECONDS:g} s): the group would drop the worker"
            )
        log.info(
            "stage enrich: extraction in %d process(es), at most %g s and %d MB per page",
            budget.processes,
            budget.timeout_seconds,
            budget.memory_mb,
        )
    stage = EnrichStage(
        output_topic=settings.topic_articles,
        overrides=extraction_overrides(settings),
        budget=budget,
    )
    try:
        stage.start()
    except PoolStartError as exc:
        raise StageStartError(f"stage enrich refuses to start: {exc}") from exc
    return stage


def _dedup(settings: Settings) -> Stage[Any]:
    from enrich.dedup.stage import DedupStage

    return DedupStage(
        input_topic=settings.topic_articles,
        output_topic=settings.topic_deduped_articles,
        state_dir=settings.dedup_state_dir,
        snapshot_every_seconds=settings.dedup_snapshot_every_seconds,
        window_days=settings.dedup_window_days,
    )


def _dedup_state_recoverable(
    stage: Stage[Any], consumer: KafkaConsumer, settings: Settings
) -> None:
    """Dedup's state is its snapshot plus the articles log after it (or the whole log): a
    worker that could rebuild only part of it would decide copies of lost articles as new
    originals, silently. It starts anyway only when the operator says so."""
    from enrich.dedup.stage import DedupStage

    assert isinstance(stage, DedupStage)
    gap = stage.rebuild_gap(consumer)
    if gap is None:
        return
    if settings.dedup_allow_partial_rebuild:
        log.warning("stage dedup: %s; starting anyway (NEWSFLOW_DEDUP_ALLOW_PARTIAL_REBUILD)", gap)
        return
    raise StageStartError(
        f"stage dedup refuses to start: {gap}. Put the snapshot back in "
        f"NEWSFLOW_DEDUP_STATE_DIR ({settings.dedup_state_dir}), or set "
        f"NEWSFLOW_DEDUP_ALLOW_PARTIAL_REBUILD=true to start with what the log still holds."
    )


def _index(settings: Settings) -> Stage[Any]:
    from index.worker import IndexStage
    from newsflow.es import IndexNames, make_client

    return IndexStage(make_client(settings), IndexNames(settings.index_prefix))


def _alert(settings: Settings) -> Stage[Any]:
    from alert.matcher import WatchCache, make_matcher
    from alert.stage import AlertStage
    from alert.store import AlertLedger, WatchStore
    from newsflow.es import make_client

    es = make_client(settings)
    return AlertStage(
        watches=WatchCache(
            WatchStore(es, settings.index_prefix), settings.alert_watch_refresh_seconds
        ),
        matcher=make_matcher(es, settings),
        ledger=AlertLedger(es, settings.index_prefix),
        output_topic=settings.topic_alerts,
        update_size=settings.alert_update_story_size,
    )


def _webhook(settings: Settings) -> Stage[Any]:
    from alert.matcher import WatchCache
    from alert.store import AlertLedger, WatchStore
    from alert.webhook import WebhookSender, WebhookStage
    from newsflow.es import make_client

    es = make_client(settings)
    return WebhookStage(
        WatchCache(WatchStore(es, settings.index_prefix), settings.alert_watch_refresh_seconds),
        WebhookSender.from_settings(settings),
        AlertLedger(es, settings.index_prefix),
    )


# One constructor per row of newsflow.topology.STAGES (a unit test keeps the two in step).
CONSTRUCTORS: Mapping[str, Callable[[Settings], Stage[Any]]] = {
    "enrich": _enrich,
    "dedup": _dedup,
    "index": _index,
    "alert": _alert,
    "webhook": _webhook,
}


# What a stage checks on its subscribed consumer before its first poll (StageStartError).
START_CHECKS: Mapping[str, Callable[[Stage[Any], KafkaConsumer, Settings], None]] = {
    "dedup": _dedup_state_recoverable,
}


def build_runner(
    stage_name: str,
    settings: Settings,
    *,
    group_id: str | None = None,
    stop_event: threading.Event | None = None,
) -> StageRunner[Any]:
    """The stage's runner on its input topic, in its consumer group (or ``group_id``),
    stopped by ``stop_event`` when given.

    Raises ``UnknownStageError`` for a name not in the topology and ``StageStartError`` when
    a single-owner stage's input has more than one partition, or a stage's start check
    (``START_CHECKS``) refuses.
    """
    row = topology.stage(stage_name)
    input_topic = topology.topic_name(row.input, settings)
    group_id = group_id or row.group_id
    stage = CONSTRUCTORS[row.name](settings)
    try:
        if (stage.name, stage.single_owner) != (row.name, row.single_owner):
            raise StageStartError(
                f"stage {row.name}: newsflow.topology says name={row.name!r}, "
                f"single_owner={row.single_owner}; its class {type(stage).__name__} says "
                f"name={stage.name!r}, single_owner={stage.single_owner}"
            )
        consumer = _subscribe(row, stage, settings, input_topic, group_id)
    except BaseException:
        stage.close()
        raise
    try:
        producer = make_producer(settings, client_id=group_id)
    except BaseException:
        consumer.close()
        stage.close()
        raise
    return StageRunner(
        stage,
        settings=settings,
        consumer=consumer,
        producer=producer,
        input_topic=input_topic,
        dead_letter_topic=topology.topic_name(topology.DEAD_LETTERS, settings),
        stop_event=stop_event,
    )


def _subscribe(
    row: topology.StageDef, stage: Stage[Any], settings: Settings, topic: str, group_id: str
) -> KafkaConsumer:
    listener = StageRebalanceListener(stage)
    consumer = make_consumer(settings, topic=topic, group_id=group_id, listener=listener)
    listener.consumer = consumer
    try:
        if row.single_owner:
            _require_one_partition(row, topic, consumer)
        check = START_CHECKS.get(row.name)
        if check is not None:
            check(stage, consumer, settings)
    except BaseException:
        consumer.close()
        raise
    return consumer


def _require_one_partition(
    row: topology.StageDef, input_topic: str, consumer: KafkaConsumer
) -> None:
    """A single owner must read the whole stream: with two partitions, a second member of
    its group would own half of it, and a restart could split it that way at any time."""
    partitions = consumer.partitions_for_topic(input_topic) or set()
    if len(partitions) > 1:
        raise StageStartError(
            f"stage {row.name} refuses to start: its input topic {input_topic} has "
            f"{len(partitions)} partitions, and this stage needs exactly one to own the whole "
            f"stream. Delete the topic and recreate it with `newsflow init`."
        )


def run_stage(
    stage_name: str,
    settings: Settings,
    *,
    idle_timeout: float | None = None,
    install_signal_handlers: bool = True,
    metrics_port: int | None = None,
) -> None:
    stop = threading.Event()
    if install_signal_handlers:
        # Before the stage starts: warming its extraction processes or restoring dedup's state
        # takes a while, and ``stack down`` may signal the whole process group meanwhile.
        stop_on_signals(stage_name, stop)
    try:
        runner = build_runner(stage_name, settings, stop_event=stop)
    except StageStartError as exc:
        if not stop.is_set():
            raise
        # A child started with the worker dies of the same signal: not a failure to start.
        log.info("stage %s: stopped while starting (%s)", stage_name, exc)
        return
    server = _metrics_server(runner, stage_name, settings, metrics_port)
    log.info("stage %s: consuming %s", stage_name, runner.input_topic)
    try:
        stats = runner.run(idle_timeout=idle_timeout)
    finally:
        if server is not None:
            server.close()
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()
    log.info(
        "stage %s: stopped after %d messages in %d batches: %s",
        stage_name,
        stats.consumed,
        stats.batches,
        dict(stats.outcomes),
    )


def _metrics_server(
    runner: StageRunner[Any], stage_name: str, settings: Settings, port: int | None
) -> MetricsServer | None:
    """``/metrics`` and ``/health`` for this worker; a taken port falls back to a free one
    (a standby worker on the same host), ``0`` from the settings turns them off."""
    wanted = topology.metrics_port(topology.stage(stage_name), settings) if port is None else port
    if port is None and wanted == 0:
        return None
    host = settings.worker_metrics_host
    try:
        server = MetricsServer(runner.metrics.registry, runner.health, host=host, port=wanted)
    except OSError as exc:
        log.warning("stage %s: metrics port %d: %s; using a free port", stage_name, wanted, exc)
        server = MetricsServer(runner.metrics.registry, runner.health, host=host, port=0)
    log.info("stage %s: metrics on http://%s:%d/metrics", stage_name, host, server.port)
    return server.start()


def initialize(settings: Settings) -> dict[str, list[str]]:
    """Create topics, index templates and aliases; safe to run any number of times."""
    from alert.store import ensure_alert_indices
    from index.indices import ensure_indices
    from ingest.state import ensure_schema
    from newsflow.es import make_client
    from newsflow.kafka_io import ensure_topics

    ensure_schema(settings)  # the crawl state database and tables
    topics = ensure_topics(settings)
    es = make_client(settings)
    try:
        indices = ensure_indices(es, settings)
        indices += ensure_alert_indices(es, settings)  # watches and alert records
    finally:
        es.close()
    return {"topics_created": topics, "indices_created": indices}
