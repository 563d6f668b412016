"""The index stage: articles in, one Elasticsearch document per normalized URL out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from index.es import IndexNames
from newsflow.contracts import Article
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.runtime import Done, Failed, Inbound, Result, Stage


def story_id(article: Article) -> str:
    """Copies with the same body text are one story (exact-content layer)."""
    return article.content_hash[:40]


def article_document(article: Article) -> dict[str, Any]:
    doc = article.model_dump(mode="json")
    doc["story_id"] = story_id(article)
    return doc


def article_version(article: Article) -> int:
    """External version: a replay rewrites the same version, an older fetch never wins."""
    return int(article.fetched_at.timestamp() * 1000)


class IndexStage(Stage[Article]):
    name = "index"
    input_model = Article

    def __init__(self, es: Elasticsearch, names: IndexNames) -> None:
        self.es = es
        self.names = names

    def process(self, batch: Sequence[Inbound[Article]]) -> Sequence[Result]:
        operations: list[dict[str, Any]] = []
        for item in batch:
            article = item.message
            operations.append(
                {
                    "index": {
                        "_index": self.names.articles,
                        "_id": article.id,
                        "version": article_version(article),
                        "version_type": "external_gte",
                    }
                }
            )
            operations.append(article_document(article))
        try:
            response = self.es.bulk(operations=operations, refresh=False)
        except (ESConnectionError, ESConnectionTimeout) as exc:
            raise TransientError("elasticsearch_unavailable", str(exc)) from exc
        except ApiError as exc:
            if exc.status_code in (429, 502, 503, 504):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        return [_item_result(entry["index"]) for entry in response["items"]]


def _item_result(entry: dict[str, Any]) -> Result:
    status = int(entry.get("status", 500))
    if status < 300 or status == 409:  # 409: a newer version is already indexed
        return Done()
    error = entry.get("error") or {}
    detail = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    if status == 429 or status >= 500:
        return Failed(RetryableError("index_rejected", detail))
    return Failed(PermanentError("index_invalid_document", detail))
