"""Elasticsearch: the client, what the cluster can do, and idempotent setup."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from newsflow.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Language analyzers live in the analysis-common module, which the full distribution has and
# the minimal test distribution lacks; fields get language subfields only where they exist.
LANGUAGE_ANALYZERS = {"english": "english"}


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


def make_client(settings: Settings) -> Elasticsearch:
    auth: tuple[str, str] | None = None
    if settings.es_username and settings.es_password is not None:
        auth = (settings.es_username, settings.es_password.get_secret_value())
    tls: dict[str, Any] = {"ca_certs": str(settings.es_ca_certs)} if settings.es_ca_certs else {}
    return Elasticsearch(
        settings.es_url,
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


@cache
def _load_template(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEMPLATES_DIR / f"{name}.json").read_text("utf-8"))
    data.pop("_comment", None)
    return data


def articles_template(names: IndexNames, capabilities: Capabilities) -> dict[str, Any]:
    body = copy.deepcopy(_load_template("articles"))
    body["index_patterns"] = [names.articles_pattern]
    if capabilities.language_analyzers:
        properties = body["template"]["mappings"]["properties"]
        for field in ("title", "text"):
            subfields = properties[field].setdefault("fields", {})
            for subfield, analyzer in LANGUAGE_ANALYZERS.items():
                subfields[subfield] = {"type": "text", "analyzer": analyzer}
    return body


def ensure_indices(es: Elasticsearch, settings: Settings) -> list[str]:
    """Put the templates and create the first index behind each alias; return what was created."""
    names = IndexNames(settings.index_prefix)
    capabilities = detect_capabilities(es)
    template = articles_template(names, capabilities)
    es.indices.put_index_template(name=names.articles_template, **template)
    created: list[str] = []
    try:
        es.indices.get_alias(name=names.articles)
        # Existing indices get the fields added since they were created (mappings only grow).
        es.indices.put_mapping(
            index=names.articles, properties=template["template"]["mappings"]["properties"]
        )
    except NotFoundError:
        es.indices.create(
            index=names.articles_first_index,
            aliases={names.articles: {"is_write_index": True}},
        )
        created.append(names.articles_first_index)
    stories = copy.deepcopy(_load_template("stories"))
    stories["index_patterns"] = [names.stories]
    es.indices.put_index_template(name=names.stories_template, **stories)
    if es.indices.exists(index=names.stories):
        es.indices.put_mapping(
            index=names.stories, properties=stories["template"]["mappings"]["properties"]
        )
    else:
        es.indices.create(index=names.stories)
        created.append(names.stories)
    es.cluster.health(
        index=f"{names.articles},{names.stories}", wait_for_status="yellow", timeout="30s"
    )
    return created
