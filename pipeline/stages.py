"""The one place that wires stages to topics. Stages know only their input and output."""

from __future__ import annotations

import logging
from typing import Any, Literal

from newsflow.kafka_io import make_consumer, make_producer
from newsflow.observability import MetricsServer
from newsflow.runtime import StageRebalanceListener, StageRunner
from newsflow.settings import Settings

log = logging.getLogger(__name__)

StageName = Literal["enrich", "dedup", "index", "alert", "webhook"]
# Order matters only for the default metrics ports (base + position): append new stages.
STAGES: tuple[StageName, ...] = ("enrich", "dedup", "index", "alert", "webhook")


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


def build_runner(
    stage_name: StageName, settings: Settings, *, group_id: str | None = None
) -> StageRunner[Any]:
    stage: Any
    if stage_name == "enrich":
        from enrich.worker import EnrichStage

        stage = EnrichStage(
            output_topic=settings.topic_articles, overrides=extraction_overrides(settings)
        )
        input_topic = settings.topic_raw_pages
    elif stage_name == "dedup":
        from enrich.dedup.stage import DedupStage

        input_topic = settings.topic_articles  # one partition: one owner of the dedup state
        stage = DedupStage(
            input_topic=input_topic,
            output_topic=settings.topic_deduped_articles,
            state_dir=settings.dedup_state_dir,
            snapshot_every_seconds=settings.dedup_snapshot_every_seconds,
            window_days=settings.dedup_window_days,
        )
    elif stage_name == "index":
        from index.worker import IndexStage
        from newsflow.es import IndexNames, make_client

        stage = IndexStage(make_client(settings), IndexNames(settings.index_prefix))
        input_topic = settings.topic_deduped_articles
    elif stage_name == "alert":
        from alert.matcher import WatchCache, make_matcher
        from alert.stage import AlertStage
        from alert.store import AlertLedger, WatchStore
        from newsflow.es import make_client

        es = make_client(settings)
        # Its own consumer group on the index stage's input: alerts never wait for indexing.
        stage = AlertStage(
            watches=WatchCache(
                WatchStore(es, settings.index_prefix), settings.alert_watch_refresh_seconds
            ),
            matcher=make_matcher(es, settings),
            ledger=AlertLedger(es, settings.index_prefix),
            output_topic=settings.topic_alerts,
            update_size=settings.alert_update_story_size,
        )
        input_topic = settings.topic_deduped_articles
    elif stage_name == "webhook":
        from alert.matcher import WatchCache
        from alert.store import WatchStore
        from alert.webhook import WebhookSender, WebhookStage
        from newsflow.es import make_client

        store = WatchStore(make_client(settings), settings.index_prefix)
        stage = WebhookStage(
            WatchCache(store, settings.alert_watch_refresh_seconds),
            WebhookSender.from_settings(settings),
        )
        input_topic = settings.topic_alerts
    else:  # pragma: no cover - Literal guards this
        raise ValueError(f"unknown stage {stage_name!r}; known: {', '.join(STAGES)}")
    group_id = group_id or f"newsflow-{stage_name}"
    listener = StageRebalanceListener(stage)
    consumer = make_consumer(settings, topic=input_topic, group_id=group_id, listener=listener)
    listener.consumer = consumer
    if stage.single_owner:
        partitions = consumer.partitions_for_topic(input_topic) or set()
        if len(partitions) > 1:
            log.error(
                "stage %s: %s has %d partitions; this stage needs a single-partition input to "
                "own the whole stream: delete the topic and recreate it with `newsflow init`",
                stage_name,
                input_topic,
                len(partitions),
            )
    return StageRunner(
        stage,
        settings=settings,
        consumer=consumer,
        producer=make_producer(settings, client_id=group_id),
        input_topic=input_topic,
        dead_letter_topic=settings.topic_dead_letters,
    )


def run_stage(
    stage_name: StageName,
    settings: Settings,
    *,
    idle_timeout: float | None = None,
    install_signal_handlers: bool = True,
    metrics_port: int | None = None,
) -> None:
    runner = build_runner(stage_name, settings)
    if install_signal_handlers:
        runner.install_signal_handlers()
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


def stage_metrics_port(stage_name: StageName, settings: Settings) -> int:
    """The stage's default ``/metrics`` port: base + its place in the pipeline (0: off)."""
    base = settings.worker_metrics_base_port
    return base + STAGES.index(stage_name) if base else 0


def _metrics_server(
    runner: StageRunner[Any], stage_name: StageName, settings: Settings, port: int | None
) -> MetricsServer | None:
    """``/metrics`` and ``/health`` for this worker; a taken port falls back to a free one
    (a standby worker on the same host), ``0`` from the settings turns them off."""
    wanted = stage_metrics_port(stage_name, settings) if port is None else port
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
