"""Prometheus metrics and a health endpoint for every long-running process.

Each worker serves ``GET /metrics`` (Prometheus text format) and ``GET /health`` on its own
port (``newsflow worker STAGE --metrics-port``; the stack gives each a port). The metric names
are the contract the Grafana dashboard in ``deploy/grafana/`` is built on:

- ``newsflow_messages_in_total{stage,topic}``, ``newsflow_messages_out_total{stage,topic}``
- ``newsflow_messages_failed_total{stage,kind,reason}``: ``kind`` is ``permanent``,
  ``retries_exhausted`` (both dead-lettered) or ``transient`` (requeued)
- ``newsflow_batch_seconds{stage}``: processing time of a batch, from poll to commit
- ``newsflow_consumer_lag{stage,topic,partition}``: messages not yet consumed
- ``newsflow_dedup_outcomes_total{outcome}``: new, replay, version, url, exact, near
- ``newsflow_index_errors_total{reason}``: bulk items Elasticsearch refused
- ``newsflow_ingest_urls_total{outlet,kind,reason}`` and feed health, from the ingest tasks

Why a registry per process and not the global one: tests run several stages in one process.
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
