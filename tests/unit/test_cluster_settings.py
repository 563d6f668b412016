"""What the cluster profile and worker supervision ask of the clients: replicated topics with a
minimum ISR, explicit group liveness, static membership, several Elasticsearch nodes."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from newsflow import kafka_io
from newsflow.es import es_hosts
from newsflow.kafka_io import topic_specs
from newsflow.settings import Settings


def test_replicated_topics_require_in_sync_replicas() -> None:
    for spec in topic_specs(Settings(topic_replication=3)):
        assert spec.replication == 3
        assert spec.configs()["min.insync.replicas"] == "2"


def test_min_isr_never_exceeds_the_replication() -> None:
    specs = topic_specs(Settings(topic_replication=2, topic_min_insync_replicas=5))
    assert {spec.configs()["min.insync.replicas"] for spec in specs} == {"2"}


def test_unreplicated_topics_set_no_min_isr() -> None:
    for spec in topic_specs(Settings(topic_replication=1)):
        assert "min.insync.replicas" not in spec.configs()


class _FakeConsumer:
    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {"kafka_client": None}  # read by open_client

    def __init__(self, **config: Any) -> None:
        self.config = config

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = topics


def _consumer_config(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    monkeypatch.setattr(kafka_io, "KafkaConsumer", _FakeConsumer)
    consumer: Any = kafka_io.make_consumer(settings, topic="t", group_id="newsflow-enrich")
    config: dict[str, Any] = consumer.config
    return config


def test_consumers_set_their_session_timeout_and_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _consumer_config(monkeypatch, Settings())
    assert config["session_timeout_ms"] == 10_000
    assert config["heartbeat_interval_ms"] == 3_333
    assert config["group_instance_id"] is None  # dynamic membership unless asked
    config = _consumer_config(
        monkeypatch, Settings(kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=500)
    )
    assert (config["session_timeout_ms"], config["heartbeat_interval_ms"]) == (6000, 500)


def test_an_instance_prefix_makes_a_static_member_per_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _consumer_config(monkeypatch, Settings(kafka_group_instance_prefix="host-1a2b"))
    assert config["group_instance_id"] == "host-1a2b-newsflow-enrich"


def test_an_instance_prefix_kafka_would_refuse_is_refused_early() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_group_instance_prefix="my host/1")


def test_elasticsearch_url_may_name_several_nodes() -> None:
    assert es_hosts(Settings(es_url="http://127.0.0.1:9200")) == ["http://127.0.0.1:9200"]
    several = Settings(es_url="http://127.0.0.1:9200, http://127.0.0.1:9201,http://127.0.0.1:9202")
    assert es_hosts(several) == [f"http://127.0.0.1:{port}" for port in (9200, 9201, 9202)]


def test_the_client_gets_every_node() -> None:
    from newsflow.es import make_client

    client = make_client(Settings(es_url="http://127.0.0.1:9200,http://127.0.0.1:9201"))
    try:
        ports = sorted(node.config.port for node in client.transport.node_pool.all())
    finally:
        client.close()
    assert ports == [9200, 9201]


def test_credentials_in_the_elasticsearch_url_are_never_printed() -> None:
    """`stack status`, the demo and repr(Settings) print the URL; the password stays secret."""
    from devstack.stack.profile import es_nodes
    from newsflow.es import make_client

    settings = Settings(es_url="https://elastic:pa%40ss@127.0.0.2:9200,https://elastic:pa%40ss@h2")
    assert "pa%40ss" not in repr(settings) and "pa@ss" not in repr(settings)
    assert settings.es_url == "https://127.0.0.2:9200,https://h2"
    assert [node.url for node in es_nodes(settings, 2)] == settings.es_url.split(",")
    assert settings.es_username == "elastic"
    assert settings.es_password is not None and settings.es_password.get_secret_value() == "pa@ss"
    client = make_client(settings)  # still authenticates: the credentials are in basic_auth
    try:
        assert client._headers["authorization"].startswith("Basic ")
    finally:
        client.close()


def test_conflicting_elasticsearch_credentials_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(es_url="http://elastic:hunter22@127.0.0.2:9200", es_username="other")
    assert "hunter22" not in str(err.value)
    with pytest.raises(ValidationError):
        Settings(es_url="http://a:one@127.0.0.2:9200,http://a:two@127.0.0.3:9200")


class _FakeIndices:
    def __init__(self) -> None:
        self.templates: dict[str, Any] = {}
        self.created: dict[str, Any] = {}

    def put_index_template(self, *, name: str, **body: Any) -> None:
        self.templates[name] = body

    def get_alias(self, *, name: str) -> None:
        raise _not_found()

    def exists(self, *, index: str) -> bool:
        return False

    def create(self, *, index: str, **body: Any) -> None:
        self.created[index] = body


class _FakeEs:
    def __init__(self) -> None:
        self.indices = _FakeIndices()
        self.nodes = self
        self.cluster = self

    def info(self, **_: Any) -> dict[str, Any]:
        return {"nodes": {}}

    def health(self, **_: Any) -> None:
        return None


def _not_found() -> Exception:
    from elasticsearch import NotFoundError

    class _Meta:
        status = 404

    return NotFoundError("not found", _Meta(), {})  # type: ignore[arg-type]


@pytest.mark.parametrize("replicas", [0, 1])
def test_index_replicas_come_from_the_settings(replicas: int) -> None:
    from alert.store import ensure_alert_indices
    from index.indices import ensure_indices

    es: Any = _FakeEs()
    settings = Settings(index_prefix="t", es_replicas=replicas)
    ensure_indices(es, settings)
    ensure_alert_indices(es, settings)
    for template in es.indices.templates.values():
        assert template["template"]["settings"]["number_of_replicas"] == replicas
    assert set(es.indices.templates) == {"t-articles", "t-stories"}
    for name in ("t-watches", "t-alerts"):
        assert es.indices.created[name]["settings"]["number_of_replicas"] == replicas
