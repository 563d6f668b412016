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
