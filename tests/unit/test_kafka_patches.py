"""The fix to kafka-python's socket handling (``newsflow.kafka_patches``), on loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.inet import KafkaNetSocket
from kafka.net.selector import NetworkSelector

import newsflow.kafka_io  # noqa: F401  (applies the patch, as every client of the project does)
from newsflow.kafka_patches import sockets_of


class ImmediateNet:
    """An event loop whose wait for a writable socket returns at once."""

    async def wait_write(self, sock: socket.socket, timeout_at: Any = None) -> None:
        return None


class Suspend:
    def __await__(self) -> Generator[None, None, None]:
        yield


class NeverWritableNet:
    """An event loop whose wait for a writable socket never ends."""

    def wait_write(self, sock: socket.socket, timeout_at: Any = None) -> Suspend:
        return Suspend()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def refused_address() -> tuple[str, int]:
    """A loopback port nothing listens on."""
    probe = socket.create_server(("127.0.0.1", 0))
    address: tuple[str, int] = probe.getsockname()
    probe.close()
    return address


def new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def test_the_methods_wrapped_exist_and_are_wrapped_once() -> None:
    from newsflow import kafka_patches

    kafka_patches.apply()  # again: a no-op
    assert KafkaNetSocket.sock_connect.__qualname__ == "apply.<locals>.sock_connect"
    assert NetworkSelector.close.__qualname__ == "apply.<locals>.close"
    assert NetworkSelector.close.__wrapped__.__qualname__ == "NetworkSelector.close"


def test_a_refused_connect_closes_its_socket() -> None:
    sock = new_socket()
    with pytest.raises(KafkaConnectionError):
        asyncio.run(KafkaNetSocket().sock_connect(ImmediateNet(), sock, refused_address()))
    assert sock.fileno() == -1


def test_a_connect_abandoned_midway_closes_its_socket() -> None:
    sock = new_socket()
    in_progress = KafkaNetSocket()
    in_progress.connect_ex = lambda sock, address: errno.EINPROGRESS
    attempt = in_progress.sock_connect(NeverWritableNet(), sock, refused_address())
    attempt.send(None)  # suspended, waiting for the socket to become writable
    attempt.close()  # what dropping it does: the client was closed meanwhile
    assert sock.fileno() == -1


def test_closing_an_event_loop_closes_the_sockets_it_connected(listener: socket.socket) -> None:
    net = NetworkSelector()
    sock = socket.create_connection(listener.getsockname())
    sock.setblocking(False)  # connected already: the connect returns at once
    connected = asyncio.run(KafkaNetSocket().sock_connect(net, sock, listener.getsockname()))
    assert connected is sock and sock.fileno() != -1
    assert sockets_of(net) == [sock]
    other = NetworkSelector()
    other.close()  # another client's close leaves this one's sockets alone
    assert sock.fileno() != -1
    net.close()
    assert sock.fileno() == -1
    assert sockets_of(net) == []
