"""The stack's shape (one node or a cluster of three): addresses, the record, rendered configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack.components import Ctx, ElasticsearchGroup, KafkaGroup, make_ctx, render
from devstack.stack.profile import (
    ProfileError,
    check_ports,
    cluster_env,
    es_nodes,
    kafka_nodes,
    record_nodes,
    resolve_nodes,
)
from newsflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_port_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NEWSFLOW_STACK_NODES",
        "NEWSFLOW_KAFKA_CONTROLLER_PORT",
        "NEWSFLOW_ES_TRANSPORT_PORT",
        "NEWSFLOW_TOPIC_REPLICATION",
        "NEWSFLOW_TOPIC_MIN_INSYNC_REPLICAS",
        "NEWSFLOW_ES_REPLICAS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_one_node_listens_where_the_settings_say() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", es_url="http://127.0.0.1:19200")
    (kafka,) = kafka_nodes(settings, 1)
    assert (kafka.node_id, kafka.port, kafka.controller_port) == (1, 19092, 19093)
    (es,) = es_nodes(settings, 1)
    assert (es.url, es.transport_port, es.node_name) == (
        "http://127.0.0.1:19200",
        19300,
        "newsflow-local-1",
    )
    assert cluster_env(settings, 1) == {}


def test_a_cluster_counts_up_from_the_first_address() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", es_url="http://127.0.0.1:9200")
    assert [(k.port, k.controller_port) for k in kafka_nodes(settings, 3)] == [
        (9092, 9093),
        (9094, 9095),
        (9096, 9097),
    ]
    assert [(e.http_port, e.transport_port) for e in es_nodes(settings, 3)] == [
        (9200, 9300),
        (9201, 9301),
        (9202, 9302),
    ]


def test_a_cluster_takes_the_listed_addresses() -> None:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096",
        es_url="http://127.0.0.1:29200,http://127.0.0.1:29201,http://127.0.0.1:29202",
    )
    assert [k.address for k in kafka_nodes(settings, 3)] == [
        "127.0.0.1:29092",
        "127.0.0.1:29094",
        "127.0.0.1:29096",
    ]
    assert [e.url for e in es_nodes(settings, 3)][-1] == "http://127.0.0.1:29202"


def test_the_cluster_env_names_every_node_and_the_replication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", es_url="http://127.0.0.1:9200")
    env = cluster_env(settings, 3)
    assert env == {
        "NEWSFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096",
        "NEWSFLOW_ES_URL": "http://127.0.0.1:9200,http://127.0.0.1:9201,http://127.0.0.1:9202",
        "NEWSFLOW_TOPIC_REPLICATION": "3",
        "NEWSFLOW_TOPIC_MIN_INSYNC_REPLICAS": "2",
        "NEWSFLOW_ES_REPLICAS": "1",
        # never the single node's snapshot, whose offsets belong to another log
        "NEWSFLOW_DEDUP_STATE_DIR": str(settings.run_dir / "cluster-3" / "dedup"),
    }
    monkeypatch.setenv("NEWSFLOW_ES_REPLICAS", "2")  # what the user set explicitly wins
    assert cluster_env(settings, 3)["NEWSFLOW_ES_REPLICAS"] == "2"


def test_clashing_ports_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", es_url="http://127.0.0.1:9200")
    check_ports(settings, 3)
    monkeypatch.setenv("NEWSFLOW_KAFKA_CONTROLLER_PORT", "9094")
    with pytest.raises(ProfileError, match="9094"):
        check_ports(settings, 3)


def test_the_shape_is_recorded_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_nodes(tmp_path) == 1
    record_nodes(tmp_path, 3)
    assert resolve_nodes(tmp_path) == 3
    assert resolve_nodes(tmp_path, 1) == 1
    monkeypatch.setenv("NEWSFLOW_STACK_NODES", "1")
    assert resolve_nodes(tmp_path) == 1
    with pytest.raises(ProfileError, match="not 2"):
        resolve_nodes(tmp_path, 2)


def _ctx(tmp_path: Path, nodes: int) -> Ctx:
    settings = Settings(
        run_dir=tmp_path, kafka_bootstrap="127.0.0.1:9092", es_url="http://127.0.0.1:9200"
    )
    return make_ctx(settings, nodes)


def test_cluster_members_are_numbered(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, 3)
    assert [m.name for m in KafkaGroup(ctx).members()] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [m.name for m in ElasticsearchGroup(ctx).members()] == [
        "elasticsearch-1",
        "elasticsearch-2",
        "elasticsearch-3",
    ]
    single = _ctx(tmp_path, 1)
    assert [m.name for m in KafkaGroup(single).members()] == ["kafka"]
    assert [m.name for m in ElasticsearchGroup(single).members()] == ["elasticsearch"]


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def test_kafka_nodes_form_a_quorum_of_three_with_replicated_internal_topics(
    tmp_path: Path,
) -> None:
    ctx = _ctx(tmp_path, 3)
    broker = KafkaGroup(ctx).members()[1]
    out = tmp_path / "server.properties"
    render(REPO / "deploy/kafka/server.properties.tmpl", out, broker._config_values(ctx))  # type: ignore[attr-defined]
    props = _properties(out.read_text())
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"


def test_one_kafka_node_renders_as_before(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, 1)
    (broker,) = KafkaGroup(ctx).members()
    out = tmp_path / "server.properties"
    render(REPO / "deploy/kafka/server.properties.tmpl", out, broker._config_values(ctx))  # type: ignore[attr-defined]
    props = _properties(out.read_text())
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in props
    assert props["offsets.topic.replication.factor"] == props["min.insync.replicas"] == "1"


def test_elasticsearch_nodes_discover_each_other(tmp_path: Path) -> None:
    import yaml

    ctx = _ctx(tmp_path, 3)
    node = ElasticsearchGroup(ctx).members()[2]
    out = tmp_path / "elasticsearch.yml"
    values = {
        "NODE_NAME": "newsflow-local-3",
        "DATA_DIR": "/d",
        "LOG_DIR": "/l",
        "HOST": "127.0.0.1",
        "HTTP_PORT": "9202",
        "TRANSPORT_PORT": "9302",
        "DISCOVERY": node._discovery(ctx),  # type: ignore[attr-defined]
    }
    render(REPO / "deploy/elasticsearch/elasticsearch.yml.tmpl", out, values)
    config = yaml.safe_load(out.read_text())
    assert config["discovery.seed_hosts"] == [f"127.0.0.1:{p}" for p in (9300, 9301, 9302)]
    assert config["cluster.initial_master_nodes"] == [f"newsflow-local-{n}" for n in (1, 2, 3)]
    assert "discovery.type" not in config
    single = ElasticsearchGroup(_ctx(tmp_path, 1)).members()[0]
    render(
        REPO / "deploy/elasticsearch/elasticsearch.yml.tmpl",
        out,
        {**values, "DISCOVERY": single._discovery(ctx)},  # type: ignore[attr-defined]
    )
    assert yaml.safe_load(out.read_text())["discovery.type"] == "single-node"
