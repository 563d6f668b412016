"""Elasticsearch for every stage: the client, the index names, what the cluster can do, and
which failures mean "the cluster is down" rather than "the request is wrong"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from newsflow.settings import Settings

#: HTTP statuses of an overloaded or restarting cluster: retry later, never dead-letter.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """A failure of the cluster (down, overloaded), not of the request."""
    if isinstance(exc, ESConnectionError | ESConnectionTimeout):
        return True
    return isinstance(exc, ApiError) and exc.status_code in TRANSIENT_STATUSES


@dataclass(frozen=True)
class Capabilities:
    modules: frozenset[str]

    @property
    def language_analyzers(self) -> bool:
        return "analysis-common" in self.modules

    @property
    def percolator(self) -> bool:
        return "percolator" in self.modules


@dataclass(frozen=True)
class IndexNames:
    prefix: str

    @property
    def articles(self) -> str:
        """The alias that search reads and the index stage writes."""
        return f"{self.prefix}-articles"

    @property
    def articles_template(self) -> str:
        return f"{self.prefix}-articles"

    @property
    def articles_pattern(self) -> str:
        return f"{self.prefix}-articles-*"

    @property
    def articles_first_index(self) -> str:
        return f"{self.prefix}-articles-000001"

    @property
    def stories(self) -> str:
        """One document per story (``_id`` story_id), from the dedup stage's summaries."""
        return f"{self.prefix}-stories"

    @property
    def stories_template(self) -> str:
        return f"{self.prefix}-stories"


def es_hosts(settings: Settings) -> list[str]:
    """``NEWSFLOW_ES_URL`` as the client's host list: one node, or a cluster's nodes."""
    return [url.strip() for url in settings.es_url.split(",") if url.strip()]


def make_client(settings: Settings) -> Elasticsearch:
    """A client over every node named in ``NEWSFLOW_ES_URL``: a failed node's requests are
    retried on the others."""
    auth: tuple[str, str] | None = None
    if settings.es_username and settings.es_password is not None:
        auth = (settings.es_username, settings.es_password.get_secret_value())
    tls: dict[str, Any] = {"ca_certs": str(settings.es_ca_certs)} if settings.es_ca_certs else {}
    return Elasticsearch(
        es_hosts(settings),
        basic_auth=auth,
        request_timeout=30,
        retry_on_timeout=True,
        max_retries=3,
        **tls,
    )


def detect_capabilities(es: Elasticsearch) -> Capabilities:
    info = es.nodes.info(metric="plugins")
    modules: set[str] = set()
    for node in info["nodes"].values():
        modules.update(m["name"] for m in node.get("modules", []))
        modules.update(p["name"] for p in node.get("plugins", []))
    return Capabilities(frozenset(modules))
