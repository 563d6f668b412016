"""The local stack as the other integration tests rely on it: up, healthy, idempotent."""

from __future__ import annotations

import time

import httpx
import pytest

from devstack import stack
from newsflow.settings import get_settings

pytestmark = pytest.mark.integration

INFRA = ["kafka", "elasticsearch"]


def test_status_reports_infra_healthy(infra: None) -> None:
    rows = {row.name: row for row in stack.status(INFRA)}
    assert set(rows) == set(INFRA)
    for row in rows.values():
        assert row.healthy, f"{row.name}: {row.detail} (log {row.log})"
        assert row.state == "running"


def test_up_again_is_a_no_op(infra: None) -> None:
    before = {row.name: row.pid for row in stack.status(INFRA)}
    t0 = time.monotonic()
    report = stack.up(INFRA)
    assert report.started == []
    assert {r.name for r in report.results} == set(INFRA)
    assert all(r.action == "already-running" for r in report.results)
    assert time.monotonic() - t0 < 30
    assert {row.name: row.pid for row in stack.status(INFRA)} == before


def test_kafka_answers_metadata(infra: None) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=get_settings().kafka_bootstrap, request_timeout_ms=10_000
    )
    try:
        cluster = admin.describe_cluster()
        topics = admin.list_topics()
    finally:
        admin.close()
    assert len(cluster["brokers"]) >= 1
    assert isinstance(topics, list)


def test_elasticsearch_health_answers(infra: None) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(get_settings().es_url, request_timeout=10)
    try:
        health = es.cluster.health()
        # Not es.info(): the integ-test-zip has no rest-root module, so `GET /` answers 405.
        nodes = es.nodes.info(node_id="_local", metric="plugins")
    finally:
        es.close()
    assert health["status"] in ("yellow", "green")
    (node,) = nodes["nodes"].values()
    assert int(node["version"].split(".")[0]) >= 8


def test_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stack component"):
        stack.status(["kafka", "zookeeper"])


@pytest.mark.e2e
def test_airflow_api_answers_with_a_token(full_stack: None) -> None:
    from devstack.airflow_client import AirflowClient

    rows = stack.status(["airflow", "samples"])
    assert all(row.healthy for row in rows), [(r.name, r.detail) for r in rows]
    with AirflowClient() as client:
        assert client.version().startswith("3.")
        assert client.health()["metadatabase"]["status"] == "healthy"
    assert httpx.get(next(r.url for r in rows if r.name == "samples"), timeout=5).status_code < 500
