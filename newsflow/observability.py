"""Prometheus metrics and a health endpoint: the one metrics mechanism of every process.

Every series is a ``prometheus_client`` metric declared in one of the catalogues below, on a
registry of the process's own; :class:`MetricsServer` serves it as ``GET /metrics`` with
``GET /health``. The names are the contract the Grafana dashboard in ``deploy/grafana/`` is
built on:

- :class:`StageMetrics`, each worker (``newsflow worker STAGE --metrics-port``):
  ``newsflow_messages_in_total{stage,topic}``, ``newsflow_messages_out_total{stage,topic}``,
  ``newsflow_messages_failed_total{stage,kind,reason}`` (``kind`` is ``permanent``,
  ``retries_exhausted``, both dead-lettered, or ``transient``, requeued),
  ``newsflow_batch_seconds{stage}``, ``newsflow_consumer_lag{stage,topic,partition}``,
  ``newsflow_partition_stall_seconds{stage,topic,partition}`` (how long the partition has had
  lag without committed progress; 0 when caught up), ``newsflow_batch_rewinds_total{stage,
  reason}`` and ``newsflow_rewinds_in_a_row{stage}`` (batches requeued on transient failures),
  ``newsflow_dead_letters_truncated_total{stage,how}`` (``truncated`` or ``reference_only``:
  letters cut to fit the dead-letter topic),
  ``newsflow_last_poll_timestamp_seconds{stage}``, and what single stages count:
  ``newsflow_dedup_outcomes_total{outcome}``, ``newsflow_index_errors_total{reason}``,
  ``newsflow_alerts_total{kind}``, ``newsflow_alert_latency_seconds``
- :class:`ApiMetrics`, the API: ``newsflow_api_requests_total{route,status}``,
  ``newsflow_api_request_seconds{route}``
- :class:`IngestMetrics`, the ingest tasks (summed in each task's result; ingest runs in
  short Airflow tasks, so ``newsflow exporter`` serves the crawl state's view instead):
  ``newsflow_ingest_urls_total{outlet,kind,reason}``, ``newsflow_ingest_unhealthy_feeds``,
  ``newsflow_ingest_feed_problems_total{outlet,code}``

Why a registry per catalogue and not the global one: tests run several stages in one process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# Buckets for a batch of up to a few hundred messages: milliseconds to a minute.
_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ALERT_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class StageMetrics:
    """The metrics one stage's runner updates."""

    def __init__(self, stage: str, registry: CollectorRegistry | None = None) -> None:
        self.stage = stage
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "newsflow_messages_in", "Messages consumed.", ["stage", "topic"], registry=r
        )
        self.messages_out = Counter(
            "newsflow_messages_out", "Messages produced.", ["stage", "topic"], registry=r
        )
        self.messages_failed = Counter(
            "newsflow_messages_failed",
            "Messages dead-lettered (permanent, retries_exhausted) or requeued (transient).",
            ["stage", "kind", "reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "newsflow_batch_seconds",
            "Time to process and commit one batch.",
            ["stage"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "newsflow_consumer_lag",
            "Messages in the partition not yet consumed by this stage.",
            ["stage", "topic", "partition"],
            registry=r,
        )
        self.partition_stall = Gauge(
            "newsflow_partition_stall_seconds",
            "Seconds the partition has had lag without committed progress (0: caught up).",
            ["stage", "topic", "partition"],
            registry=r,
        )
        self.rewinds = Counter(
            "newsflow_batch_rewinds",
            "Batches requeued (not committed, re-read after a backoff) on a transient failure.",
            ["stage", "reason"],
            registry=r,
        )
        self.rewinds_in_a_row = Gauge(
            "newsflow_rewinds_in_a_row",
            "Batches requeued since the last one that went through (0: none failing).",
            ["stage"],
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "newsflow_dead_letters_truncated",
            "Dead letters cut to fit the topic: value truncated, or a reference only.",
            ["stage", "how"],
            registry=r,
        )
        self.dedup_outcomes = Counter(
            "newsflow_dedup_outcomes", "Dedup decisions by outcome.", ["outcome"], registry=r
        )
        self.index_errors = Counter(
            "newsflow_index_errors",
            "Bulk items Elasticsearch refused, by error type.",
            ["reason"],
            registry=r,
        )
        self.last_poll = Gauge(
            "newsflow_last_poll_timestamp_seconds",
            "When the stage last polled its input (Unix time).",
            ["stage"],
            registry=r,
        )
        self.alerts = Counter("newsflow_alerts", "Alerts raised, by kind.", ["kind"], registry=r)
        self.alert_latency = Histogram(
            "newsflow_alert_latency_seconds",
            "From the article's fetch (its arrival) to its alert being matched.",
            buckets=_ALERT_BUCKETS,
            registry=r,
        )

    def consumed(self, topic: str, count: int) -> None:
        self.messages_in.labels(self.stage, topic).inc(count)

    def produced(self, topic: str, count: int = 1) -> None:
        self.messages_out.labels(self.stage, topic).inc(count)

    def failed(self, kind: str, reason: str, count: int = 1) -> None:
        self.messages_failed.labels(self.stage, kind, reason).inc(count)

    def polled(self) -> None:
        self.last_poll.labels(self.stage).set(time.time())

    def lag(self, topic: str, partition: int, value: int) -> None:
        self.consumer_lag.labels(self.stage, topic, str(partition)).set(max(value, 0))

    def track_stall(self, topic: str, partition: int, seconds: Callable[[], float]) -> None:
        """Serve the partition's stall as ``seconds()`` at scrape time, so that it keeps
        growing while the stage is stuck inside a batch."""
        self.partition_stall.labels(self.stage, topic, str(partition)).set_function(seconds)

    def untrack_stall(self, topic: str, partition: int) -> None:
        self.partition_stall.remove(self.stage, topic, str(partition))

    def rewound(self, reason: str, in_a_row: int) -> None:
        self.rewinds.labels(self.stage, reason).inc()
        self.rewinds_in_a_row.labels(self.stage).set(in_a_row)

    def letter_truncated(self, how: str) -> None:
        self.dead_letters_truncated.labels(self.stage, how).inc()


class ApiMetrics:
    """The API's request counts and latencies, by route template (bounded label values)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "newsflow_api_requests",
            "API requests by route template and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "newsflow_api_request_seconds",
            "API request latency by route template.",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.seconds.labels(route).observe(seconds)


class IngestMetrics:
    """What an ingest task counts: one URL outcome per URL, and feed health."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.urls = Counter(
            "newsflow_ingest_urls",
            "URL outcomes by outlet, kind (feed, sitemap, article...) and stable reason code.",
            ["outlet", "kind", "reason"],
            registry=r,
        )
        self.unhealthy_feeds = Gauge(
            "newsflow_ingest_unhealthy_feeds", "Feeds failing or silent.", registry=r
        )
        self.feed_problems = Counter(
            "newsflow_ingest_feed_problems",
            "Unhealthy-feed findings by outlet and code.",
            ["outlet", "code"],
            registry=r,
        )

    def url_counts(self, outlet: str) -> dict[str, float]:
        """This process's URL outcomes for ``outlet``, summed by reason."""
        counts: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == "newsflow_ingest_urls_total" and (
                    sample.labels.get("outlet") == outlet
                ):
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0.0) + sample.value
        return dict(sorted(counts.items()))


class MetricsServer:
    """``/metrics`` and ``/health`` on a loopback (or configured) port, in a daemon thread.

    ``health`` returns ``(ok, details)``; ``/health`` answers 200 or 503 with the details as
    JSON, so a supervisor or a load balancer can tell a stuck process from a busy one.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        registry_, health_ = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry_))
                elif path in ("/health", "/healthz"):
                    ok, details = health_()
                    body = json.dumps({"ok": ok, **details}).encode()
                    self._reply(200 if ok else 503, "application/json", body)
                else:
                    self._reply(404, "text/plain", b"not found: try /metrics or /health\n")

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
