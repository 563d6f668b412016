"""The index stage: deduplicated articles in, one Elasticsearch document per normalized URL out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from newsflow.contracts import DedupedArticle, StorySummary
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.es import IndexNames, is_transient
from newsflow.runtime import Done, Failed, Inbound, Result, Stage


def story_id(article: DedupedArticle) -> str:
    """The dedup stage's story; a page that is not an article has none (dedup passes it
    through), so copies of it with the same body text are one story."""
    return article.story_id or article.content_hash[:40]


def article_document(article: DedupedArticle) -> dict[str, Any]:
    doc = article.model_dump(mode="json", exclude={"story"})
    doc["story_id"] = story_id(article)
    return doc


def article_version(article: DedupedArticle) -> int:
    """External version: a replay rewrites the same version, an older fetch never wins."""
    return int(article.fetched_at.timestamp() * 1000)


def story_version(story: StorySummary) -> int:
    """Grows with every update of a story (articles, then last seen), so the deduped topic's
    partitions may be indexed in any order: an older summary never replaces a newer one."""
    return (story.articles << 40) + int(story.last_seen.timestamp())


def story_document(story: StorySummary) -> dict[str, Any]:
    return story.model_dump(mode="json", exclude={"merged_from"})


MERGES_REMEMBERED = 100_000


class IndexStage(Stage[DedupedArticle]):
    name = "index"
    input_model = DedupedArticle

    def __init__(self, es: Elasticsearch, names: IndexNames) -> None:
        self.es = es
        self.names = names
        # Absorbed story → survivor, for articles decided before a merge that arrive after
        # it (from another partition of the deduped topic): they are indexed in the survivor.
        self.merged: dict[str, str] = {}

    def _resolve(self, article: DedupedArticle) -> DedupedArticle:
        """The article with its story id moved to the survivor of any merge seen."""
        target = self.merged.get(article.story_id or "")
        if target is None:
            return article
        return article.model_copy(update={"story_id": target})

    def _apply_merges(self, merges: dict[str, str]) -> None:
        """Move the absorbed stories' articles to the survivor; drop the absorbed documents.

        Rare (a later article bridged two stories), so a refresh and a search are
        affordable; every step is idempotent, so a redelivered batch repeats them safely.
        """
        for absorbed, survivor in merges.items():
            for key, target in list(self.merged.items()):
                if target == absorbed:
                    self.merged[key] = survivor
            self.merged[absorbed] = survivor
        while len(self.merged) > MERGES_REMEMBERED:
            del self.merged[next(iter(self.merged))]
        by_survivor: dict[str, list[str]] = {}
        for absorbed, survivor in merges.items():
            by_survivor.setdefault(survivor, []).append(absorbed)
        self.es.indices.refresh(index=self.names.articles)
        for survivor, absorbed_ids in by_survivor.items():
            self._move_articles(absorbed_ids, survivor)
        for absorbed in merges:
            self.es.options(ignore_status=404).delete(index=self.names.stories, id=absorbed)

    def _move_articles(self, absorbed: list[str], survivor: str) -> None:
        """Set ``story_id`` to ``survivor`` on every article of the ``absorbed`` stories.

        Search, then partial updates in bulk, not update-by-query: that needs Elasticsearch's
        reindex module, which a minimal node does not load. Updated articles no longer match,
        so each round finds the next ones (refreshed after every round).
        """
        while True:
            page = self.es.search(
                index=self.names.articles,
                query={"terms": {"story_id": absorbed}},
                source=False,
                size=500,
            )["hits"]["hits"]
            if not page:
                return
            operations: list[dict[str, Any]] = []
            for hit in page:
                operations.append({"update": {"_index": self.names.articles, "_id": hit["_id"]}})
                operations.append({"doc": {"story_id": survivor}})
            response = self.es.bulk(operations=operations, refresh=True)
            if response.get("errors"):
                failed = [i["update"] for i in response["items"] if i["update"].get("error")]
                raise TransientError("story_merge_failed", str(failed[:1]))

    def process(self, batch: Sequence[Inbound[DedupedArticle]]) -> Sequence[Result]:
        operations: list[dict[str, Any]] = []
        ops_per_item: list[int] = []
        merges: dict[str, str] = {}
        for item in batch:
            article = self._resolve(item.message)
            story = article.story
            if story is not None:
                merges |= dict.fromkeys(story.merged_from, story.story_id)
                if story.story_id in self.merged:  # a summary from before its merge
                    story = None
            ops_per_item.append(2 if story is not None else 1)
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
            if story is not None:
                # The summary is complete: a later one replaces it, whatever partition order.
                operations.append(
                    {
                        "index": {
                            "_index": self.names.stories,
                            "_id": story.story_id,
                            "version": story_version(story),
                            "version_type": "external_gte",
                        }
                    }
                )
                operations.append(story_document(story))
        try:
            response = self.es.bulk(operations=operations, refresh=False)
            if merges:
                self._apply_merges(merges)
        except (ESConnectionError, ESConnectionTimeout, ApiError) as exc:
            if is_transient(exc):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        entries = iter(response["items"])
        results: list[Result] = []
        for count in ops_per_item:
            # An article is done when its document and its story's document are.
            own = [self._item_result(next(entries)["index"]) for _ in range(count)]
            results.append(next((r for r in own if isinstance(r, Failed)), own[0]))
        return results

    def _item_result(self, entry: dict[str, Any]) -> Result:
        result = _item_result(entry)
        if isinstance(result, Failed) and self.metrics is not None:
            error = entry.get("error") or {}
            self.metrics.index_errors.labels(str(error.get("type", entry.get("status")))).inc()
        return result


def _item_result(entry: dict[str, Any]) -> Result:
    status = int(entry.get("status", 500))
    if status < 300 or status == 409:  # 409: a newer version is already indexed
        return Done()
    error = entry.get("error") or {}
    detail = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    if status == 429 or status >= 500:
        return Failed(RetryableError("index_rejected", detail))
    return Failed(PermanentError("index_invalid_document", detail))
