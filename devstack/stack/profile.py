"""The stack's shape: one Kafka and one Elasticsearch node, or a cluster of three of each.

``newsflow stack up --nodes 3`` records the shape in ``<run_dir>/stack/profile.json``, so
``status``, ``down`` and later ``up`` calls act on the same processes without being told
again (``NEWSFLOW_STACK_NODES`` overrides the record; ``--nodes 1`` goes back once the cluster
is down). The cluster is three combined KRaft broker+controller nodes (a quorum of three,
topics and internal topics with three replicas and ``min.insync.replicas=2``) and three
Elasticsearch nodes (indices with one replica), all on loopback.

Where the nodes listen, from the settings the clients use anyway:

- Kafka node *i* (0-based): the *i*-th address of ``NEWSFLOW_KAFKA_BOOTSTRAP`` when it lists
  one per node, else the first address's port + 2i; its controller port is
  ``NEWSFLOW_KAFKA_CONTROLLER_PORT`` (default: the first broker port + 1) + 2i. So 9092/9093,
  9094/9095, 9096/9097 by default.
- Elasticsearch node *i*: the *i*-th URL of ``NEWSFLOW_ES_URL`` when it lists one per node,
  else the first URL's port + i; its transport port is ``NEWSFLOW_ES_TRANSPORT_PORT``
  (default: the first HTTP port + 100) + i. So 9200..9202 and 9300..9302.

The stack's own processes (workers, Airflow, the API) get every node's address and the
replication settings (``cluster_env``); a shell should export the same to use the cluster
(``newsflow stack up --nodes 3`` prints the line).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from newsflow.settings import Settings

LOCAL_HOST = "127.0.0.1"
VALID_NODES = (1, 3)
_PROFILE_FILE = "profile.json"


class ProfileError(ValueError):
    """A shape the stack cannot run: an unsupported node count, or ports that clash."""


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """'host:port' (or a URL) -> (host, port)."""
    if "://" not in address:
        address = f"//{address}"
    parts = urlsplit(address)
    return parts.hostname or LOCAL_HOST, parts.port or default_port


def _profile_path(run_dir: Path) -> Path:
    return run_dir / "stack" / _PROFILE_FILE


def resolve_nodes(run_dir: Path, requested: int | None = None) -> int:
    """The node count to act on: asked for, else NEWSFLOW_STACK_NODES, else recorded, else 1."""
    nodes = requested
    if nodes is None and os.environ.get("NEWSFLOW_STACK_NODES"):
        nodes = int(os.environ["NEWSFLOW_STACK_NODES"])
    if nodes is None:
        try:
            nodes = int(json.loads(_profile_path(run_dir).read_text())["nodes"])
        except (OSError, ValueError, KeyError, TypeError):
            nodes = 1
    if nodes not in VALID_NODES:
        raise ProfileError(f"the stack runs 1 node or a cluster of 3, not {nodes}")
    return nodes


def record_nodes(run_dir: Path, nodes: int) -> None:
    path = _profile_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"nodes": nodes}) + "\n")
    tmp.replace(path)


def forget_nodes(run_dir: Path) -> None:
    _profile_path(run_dir).unlink(missing_ok=True)


@dataclass(frozen=True)
class KafkaNode:
    node_id: int  # 1-based, as in node.id
    host: str
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EsNode:
    number: int  # 1-based
    url: str
    host: str
    http_port: int
    transport_port: int

    @property
    def node_name(self) -> str:
        return f"newsflow-local-{self.number}"

    @property
    def transport_address(self) -> str:
        return f"{self.host}:{self.transport_port}"


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def kafka_nodes(settings: Settings, nodes: int) -> list[KafkaNode]:
    addresses = _listed(settings.kafka_bootstrap)
    host, first = host_port(addresses[0], 9092)
    controller = int(os.environ.get("NEWSFLOW_KAFKA_CONTROLLER_PORT", first + 1))
    found: list[KafkaNode] = []
    for i in range(nodes):
        node_host, port = (
            host_port(addresses[i], 9092) if len(addresses) >= nodes else (host, first + 2 * i)
        )
        found.append(KafkaNode(i + 1, node_host, port, controller + 2 * i))
    return found


def es_nodes(settings: Settings, nodes: int) -> list[EsNode]:
    urls = [url.rstrip("/") for url in _listed(settings.es_url)]
    scheme = urlsplit(urls[0]).scheme or "http"
    host, first = host_port(urls[0], 9200)
    transport = int(os.environ.get("NEWSFLOW_ES_TRANSPORT_PORT", first + 100))
    found: list[EsNode] = []
    for i in range(nodes):
        if len(urls) >= nodes:
            url = urls[i]
            node_host, port = host_port(url, 9200)
        else:
            node_host, port = host, first + i
            url = f"{scheme}://{node_host}:{port}"
        found.append(EsNode(i + 1, url, node_host, port, transport + i))
    return found


def check_ports(settings: Settings, nodes: int) -> None:
    """Refuse a shape whose nodes would listen on one port twice."""
    ports: dict[tuple[str, int], str] = {}
    wanted = [
        *(((k.host, k.port), f"kafka {k.node_id}") for k in kafka_nodes(settings, nodes)),
        *(
            ((k.host, k.controller_port), f"kafka {k.node_id} controller")
            for k in kafka_nodes(settings, nodes)
        ),
        *(((e.host, e.http_port), f"elasticsearch {e.number}") for e in es_nodes(settings, nodes)),
        *(
            ((e.host, e.transport_port), f"elasticsearch {e.number} transport")
            for e in es_nodes(settings, nodes)
        ),
    ]
    for address, what in wanted:
        if address in ports:
            raise ProfileError(f"{what} and {ports[address]} would both use port {address[1]}")
        ports[address] = what


def cluster_env(settings: Settings, nodes: int) -> dict[str, str]:
    """What the stack's processes (and a shell using the cluster) need: every node's address,
    three topic replicas with two in sync, one index replica, and a dedup state of the
    cluster's own. Empty for one node."""
    if nodes == 1:
        return {}
    env = {
        "NEWSFLOW_KAFKA_BOOTSTRAP": ",".join(k.address for k in kafka_nodes(settings, nodes)),
        "NEWSFLOW_ES_URL": ",".join(e.url for e in es_nodes(settings, nodes)),
    }
    defaults = {
        "NEWSFLOW_TOPIC_REPLICATION": str(nodes),
        "NEWSFLOW_TOPIC_MIN_INSYNC_REPLICAS": str(nodes - 1),
        "NEWSFLOW_ES_REPLICAS": "1",
        # The dedup snapshot holds offsets into one Kafka cluster's articles topic: the
        # single node's must never resume on the cluster's log, nor the other way round.
        "NEWSFLOW_DEDUP_STATE_DIR": str(settings.run_dir / f"cluster-{nodes}" / "dedup"),
    }
    env.update({key: os.environ.get(key, value) for key, value in defaults.items()})
    return env
