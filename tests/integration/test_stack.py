"""The local stack as the other integration tests rely on it: up, healthy, idempotent; its
workers supervised."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from devstack import stack
from devstack.stack.supervise import SupervisorState, read_state, state_path
from newsflow.settings import get_settings

pytestmark = pytest.mark.integration

INFRA = ["kafka", "elasticsearch"]


def test_status_reports_infra_healthy(infra: None) -> None:
    rows = stack.status(INFRA)
    assert {row.group for row in rows} == set(INFRA)
    # One node each, or the cluster profile's three (kafka-1.., elasticsearch-1..).
    assert len(rows) in (2, 6)
    for row in rows:
        assert row.healthy, f"{row.name}: {row.detail} (log {row.log})"
        assert row.state == "running"


def test_up_again_is_a_no_op(infra: None) -> None:
    before = {row.name: row.pid for row in stack.status(INFRA)}
    t0 = time.monotonic()
    report = stack.up(INFRA)
    assert report.started == []
    assert {r.name for r in report.results} == set(before)
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
    from newsflow.es import make_client

    es = make_client(get_settings())
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


# --- supervised workers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def enrich_worker(infra: None) -> str:
    """The enrich worker of the stack, running and healthy."""
    from tests.conftest import _bring_up

    _bring_up(["kafka", "elasticsearch", "enrich-worker"])
    return "enrich-worker"


def _row(name: str) -> stack.ComponentStatus:
    (row,) = [r for r in stack.status([name]) if r.name == name]
    return row


def _supervisor_state(name: str) -> SupervisorState:
    from devstack.stack.components import make_ctx

    state = read_state(state_path(make_ctx(get_settings()).state_dir, name))
    assert state is not None, f"{name} has no supervisor state"
    return state


def _wait_for_row(name: str, ok: Callable[[stack.ComponentStatus], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    row = _row(name)
    while not ok(row):
        assert time.monotonic() < end, f"{name}: {row}"
        time.sleep(0.25)
        row = _row(name)


def test_a_worker_killed_with_sigkill_comes_back_by_itself(enrich_worker: str) -> None:
    _wait_for_row(enrich_worker, lambda r: r.healthy, timeout=60)
    before = _supervisor_state(enrich_worker)
    assert before.child_pid is not None
    t0 = time.monotonic()
    os.kill(before.child_pid, signal.SIGKILL)

    def back(state: SupervisorState) -> bool:
        return state.restarts > before.restarts and state.child_alive()

    while not back(_supervisor_state(enrich_worker)):
        assert time.monotonic() - t0 < 10, "the killed worker was not restarted within 10 s"
        time.sleep(0.1)
    after = _supervisor_state(enrich_worker)
    assert after.child_pid != before.child_pid
    assert after.last_exit is not None and after.last_exit.signal == "SIGKILL"
    # Healthy again means it holds its partitions (static membership: no session timeout).
    _wait_for_row(enrich_worker, lambda r: r.healthy, timeout=30)
    row = _row(enrich_worker)
    assert row.state == "running"
    assert row.restarts == before.restarts + 1
    assert row.last_exit is not None and row.last_exit.startswith("SIGKILL at ")


def test_up_replaces_a_dead_supervisor(enrich_worker: str) -> None:
    _wait_for_row(enrich_worker, lambda r: r.healthy, timeout=60)
    state = _supervisor_state(enrich_worker)
    os.kill(state.supervisor_pid, signal.SIGKILL)
    _wait_for_row(enrich_worker, lambda r: r.state == "dead", timeout=10)
    t0 = time.monotonic()
    report = stack.up([enrich_worker])
    (result,) = [r for r in report.results if r.name == enrich_worker]
    assert result.action == "started"
    assert time.monotonic() - t0 < 30
    row = _row(enrich_worker)
    assert (row.state, row.healthy, row.restarts) == ("running", True, 0)
    assert row.pid == result.pid != state.supervisor_pid


# --- the cluster profile (`newsflow stack up --nodes 3`) -----------------------------------


def test_the_cluster_profile_replicates_topics_and_indices(enrich_worker: str) -> None:
    """What the workers' `newsflow init` created on a 3-node stack: 3 replicas, 2 in sync."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from devstack.stack.components import make_ctx
    from newsflow.es import IndexNames, make_client
    from newsflow.kafka_io import make_admin

    settings = get_settings()
    if make_ctx(settings).nodes == 1:
        pytest.skip("the stack runs one node (`newsflow stack up --nodes 3` for the cluster)")
    topic = settings.topic_raw_pages
    admin = make_admin(settings)
    try:
        described = {t["name"]: t for t in admin.describe_topics([topic, "__consumer_offsets"])}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    assert len(brokers) == 3
    for name in (topic, "__consumer_offsets"):
        for partition in described[name]["partitions"]:
            assert len(partition["replica_nodes"]) == 3, (name, partition)
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
    es = make_client(settings)
    try:
        health = es.cluster.health()
        index = IndexNames(settings.index_prefix).articles
        replicas = es.indices.get_settings(index=index, name="index.number_of_replicas")
    finally:
        es.close()
    assert health["number_of_nodes"] == 3
    assert {row["settings"]["index"]["number_of_replicas"] for row in replicas.values()} == {"1"}
