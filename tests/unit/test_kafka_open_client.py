"""A client whose constructor fails leaves nothing running: kafka-python 3.0 starts the IO
thread before it bootstraps, and the readiness loop of ``stack up`` constructs one client
per attempt while Kafka starts. The stand-in broker accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from newsflow import kafka_io
from newsflow.kafka_io import KafkaClient, open_client
from newsflow.settings import Settings


@pytest.fixture
def silent_broker() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port on loopback that accepts connections and never replies; and what it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(5)
        server.close()
        for connection in accepted:
            connection.close()


def _closed_by_peer(connection: socket.socket, timeout: float) -> bool:
    connection.settimeout(timeout)
    try:
        while connection.recv(4096):  # the request it sent, then the end of the stream
            pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("kind", [KafkaAdminClient, KafkaConsumer, KafkaProducer])
def test_a_client_that_cannot_bootstrap_closes_its_connection_and_io_thread(
    kind: type[KafkaClient], silent_broker: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = silent_broker
    client_id = f"probe-{kind.__name__}"
    extra = {"max_block_ms": 1000} if kind is KafkaProducer else {}
    with pytest.raises(KafkaError):
        open_client(
            kind,
            bootstrap_servers=f"127.0.0.1:{port}",
            client_id=client_id,
            request_timeout_ms=1000,
            bootstrap_timeout_ms=1000,
            **extra,
        )
    assert accepted, "the client connected before it gave up"
    assert all(_closed_by_peer(connection, 5) for connection in accepted)
    deadline = time.monotonic() + 5
    while any(t.name.endswith(client_id) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the client's IO thread still runs"
        time.sleep(0.05)


class _RefusingConsumer:
    """A consumer whose subscription Kafka's client refuses (an invalid topic name)."""

    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {"kafka_client": None}
    made: ClassVar[list[_RefusingConsumer]] = []

    def __init__(self, **config: Any) -> None:
        self.closed = False
        self.made.append(self)

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        raise ValueError(f"invalid topic name: {topics[0]!r}")

    def close(self) -> None:
        self.closed = True


def test_a_consumer_whose_subscription_is_refused_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_io, "KafkaConsumer", _RefusingConsumer)
    with pytest.raises(ValueError, match="invalid topic name"):
        kafka_io.make_consumer(Settings(), topic="no spaces allowed", group_id="newsflow-enrich")
    assert [consumer.closed for consumer in _RefusingConsumer.made] == [True]
