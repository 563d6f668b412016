"""The index stage: articles in, one Elasticsearch document per normalized URL out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from index.es import IndexNames
from newsflow.contracts import Article, StorySummary
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.runtime import Done, Failed, Inbound, Result, Stage


def story_id(article: Article) -> str:
    """The dedup stage's story; without one, copies with the same body text are one story."""
    return article.story_id or article.content_hash[:40]


def article_document(article: Article) -> dict[str, Any]:
    doc = article.model_dump(mode="json", exclude={"story"})
    doc["story_id"] = story_id(article)
    return doc


def article_version(article: Article) -> int:
    """External version: a replay rewrites the same version, an older fetch never wins."""
    return int(article.fetched_at.timestamp() * 1000)


def story_version(story: StorySummary) -> int:
    """Grows with every update of a story (articles, then last seen), so the deduped topic's
    partitions may be indexed in any order: an older summary never replaces a newer one."""
    return (story.articles << 40) + int(story.last_seen.timestamp())


class IndexStage(Stage[Article]):
    name = "index"
    input_model = Article

    def __init__(self, es: Elasticsearch, names: IndexNames) -> None:
        self.es = es
        self.names = names

    def process(self, batch: Sequence[Inbound[Article]]) -> Sequence[Result]:
        operations: list[dict[str, Any]] = []
        ops_per_item: list[int] = []
        for item in batch:
            article = item.message
            ops_per_item.append(2 if article.story is not None else 1)
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
            if article.story is not None:
                # The summary is complete: a later one replaces it, whatever partition order.
                operations.append(
                    {
                        "index": {
                            "_index": self.names.stories,
                            "_id": article.story.story_id,
                            "version": story_version(article.story),
                            "version_type": "external_gte",
                        }
                    }
                )
                operations.append(article.story.model_dump(mode="json"))
        try:
            response = self.es.bulk(operations=operations, refresh=False)
        except (ESConnectionError, ESConnectionTimeout) as exc:
            raise TransientError("elasticsearch_unavailable", str(exc)) from exc
        except ApiError as exc:
            if exc.status_code in (429, 502, 503, 504):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        entries = iter(response["items"])
        results: list[Result] = []
        for count in ops_per_item:
            # An article is done when its document and its story's document are.
            own = [_item_result(next(entries)["index"]) for _ in range(count)]
            results.append(next((r for r in own if isinstance(r, Failed)), own[0]))
        return results


def _item_result(entry: dict[str, Any]) -> Result:
    status = int(entry.get("status", 500))
    if status < 300 or status == 409:  # 409: a newer version is already indexed
        return Done()
    error = entry.get("error") or {}
    detail = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    if status == 429 or status >= 500:
        return Failed(RetryableError("index_rejected", detail))
    return Failed(PermanentError("index_invalid_document", detail))
