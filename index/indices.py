"""The search indices: their templates and idempotent setup (``newsflow init``)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from newsflow.es import Capabilities, IndexNames, detect_capabilities
from newsflow.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Language analyzers live in the analysis-common module, which the full distribution has and
# the minimal test distribution lacks; fields get language subfields only where they exist.
LANGUAGE_ANALYZERS = {"english": "english"}


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
    template["template"]["settings"]["number_of_replicas"] = settings.es_replicas
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
    stories["template"]["settings"]["number_of_replicas"] = settings.es_replicas
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
