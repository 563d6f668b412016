"""The per-process /metrics and /health endpoints (served on an ephemeral loopback port)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from newsflow.observability import MetricsServer, StageMetrics


@pytest.fixture
def served() -> Iterator[tuple[StageMetrics, dict[str, Any], str]]:
    metrics = StageMetrics("enrich")
    state: dict[str, Any] = {"ok": True}
    server = MetricsServer(metrics.registry, lambda: (state["ok"], {"stage": "enrich"})).start()
    try:
        yield metrics, state, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def test_metrics_endpoint_serves_prometheus_text(
    served: tuple[StageMetrics, dict[str, Any], str],
) -> None:
    metrics, _, base = served
    metrics.consumed("raw", 3)
    metrics.failed("permanent", "empty_text")
    metrics.dedup_outcomes.labels("near").inc()
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'newsflow_messages_in_total{stage="enrich",topic="raw"} 3.0' in response.text
    assert 'reason="empty_text"' in response.text
    assert 'newsflow_dedup_outcomes_total{outcome="near"} 1.0' in response.text


def test_health_endpoint_is_200_or_503(served: tuple[StageMetrics, dict[str, Any], str]) -> None:
    _, state, base = served
    assert httpx.get(f"{base}/health").json() == {"ok": True, "stage": "enrich"}
    state["ok"] = False
    response = httpx.get(f"{base}/health")
    assert response.status_code == 503
    assert response.json()["ok"] is False
    assert httpx.get(f"{base}/nothing").status_code == 404


def test_partition_stall_is_computed_at_scrape_time_and_dropped_with_the_partition(
    served: tuple[StageMetrics, dict[str, Any], str],
) -> None:
    metrics, _, base = served
    stall = {"seconds": 0.0}
    metrics.track_stall("raw", 2, lambda: stall["seconds"])
    series = 'newsflow_partition_stall_seconds{partition="2",stage="enrich",topic="raw"}'
    assert f"{series} 0.0" in httpx.get(f"{base}/metrics").text
    stall["seconds"] = 130.5  # the stage is stuck: nothing sets the gauge, the scrape sees it
    assert f"{series} 130.5" in httpx.get(f"{base}/metrics").text
    metrics.untrack_stall("raw", 2)
    assert series not in httpx.get(f"{base}/metrics").text
