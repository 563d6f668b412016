"""The index stage: deduplicated articles in, one Elasticsearch document per normalized URL out.

Every article names its story, and the story has a document in ``{prefix}-stories`` (its
summary, ``_id`` the story id). When dedup merges a story into another, the absorbed story's
document becomes a *redirect*, ``{"story_id", "merged_into", "last_seen"}``, written with a
version above any summary's, so a late summary of the absorbed story can never bring it
back; its articles move to the survivor, and the stage resolves story ids through redirects.

Why redirect documents, not a map in memory or a compacted topic: the merge state must
survive restarts and be shared by every index worker (the deduped topic has several
partitions, so a decision from before a merge may reach another worker, or this one after a
restart, after the merge). The stories index is where an article's story must exist anyway:
a redirect there needs no other topic, no consumer and no replay on start, and its version
orders it against the summaries of the same id. Absorbed stories are few; their redirects
expire with the stories (``index.maintenance.expire``, by ``last_seen``).

After its writes, each batch reads its stories back (a realtime ``mget``) and moves articles
that landed on a redirect, following chains. A merge writes its redirect before it searches
for the absorbed story's articles, so an article another worker writes meanwhile is moved by
one of the two: that worker's read sees the redirect, or the merge's search sees the article.

A page that is not an article belongs to no story: it is stored without a ``story_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout

from newsflow.contracts import DedupedArticle, StorySummary
from newsflow.errors import PermanentError, RetryableError, TransientError
from newsflow.es import IndexNames, is_transient
from newsflow.runtime import Done, Failed, Inbound, Result, Stage

# Above every summary's version (``story_version``: articles << 40, about 2**62 only past four
# million articles): a redirect is final.
REDIRECT_VERSION = 1 << 62
REDIRECTS_REMEMBERED = 100_000
MAX_CHAIN = 32  # merges of merges followed at most


def article_document(article: DedupedArticle) -> dict[str, Any]:
    return article.model_dump(mode="json", exclude={"story"})


def article_version(article: DedupedArticle) -> int:
    """External version: a replay rewrites the same version, an older fetch never wins."""
    return int(article.fetched_at.timestamp() * 1000)


def story_version(story: StorySummary) -> int:
    """Grows with every update of a story (articles, then last seen), so the deduped topic's
    partitions may be indexed in any order: an older summary never replaces a newer one."""
    return (story.articles << 40) + int(story.last_seen.timestamp())


def story_document(story: StorySummary) -> dict[str, Any]:
    return story.model_dump(mode="json", exclude={"merged_from"})


def redirect_document(absorbed: str, survivor: str, when: datetime) -> dict[str, Any]:
    """What an absorbed story's document becomes: where its articles went."""
    return {"story_id": absorbed, "merged_into": survivor, "last_seen": when.isoformat()}


class IndexStage(Stage[DedupedArticle]):
    name = "index"
    input_model = DedupedArticle

    def __init__(self, es: Elasticsearch, names: IndexNames) -> None:
        self.es = es
        self.names = names
        # Absorbed story → the story it merged into: the redirects seen (they never change;
        # a cache of the stories index, which holds them all).
        self.redirects: dict[str, str] = {}

    def survivor(self, story_id: str) -> str:
        """Where the known redirects lead ``story_id``."""
        for _ in range(MAX_CHAIN):
            if story_id not in self.redirects:
                break
            story_id = self.redirects[story_id]
        return story_id

    def _remember(self, absorbed: str, survivor: str) -> None:
        self.redirects[absorbed] = survivor
        while len(self.redirects) > REDIRECTS_REMEMBERED:
            del self.redirects[next(iter(self.redirects))]

    def _look_up(self, story_ids: Iterable[str]) -> None:
        """Learn which of ``story_ids`` are redirects, and where the redirects lead."""
        pending = set(story_ids)
        for _ in range(MAX_CHAIN):
            ask = sorted(sid for sid in pending if sid not in self.redirects)
            following = {self.redirects[sid] for sid in pending if sid in self.redirects}
            if ask:
                docs = self.es.mget(
                    index=self.names.stories, ids=ask, source_includes=["merged_into"]
                )["docs"]
                for doc in docs:
                    target = (doc.get("_source") or {}).get("merged_into")
                    if doc.get("found") and target:
                        self._remember(doc["_id"], target)
                        following.add(target)
            pending = following
            if not pending:
                return

    def _write_redirects(self, merges: dict[str, tuple[str, datetime]]) -> None:
        operations: list[dict[str, Any]] = []
        for absorbed, (survivor, when) in merges.items():
            operations.append(
                {
                    "index": {
                        "_index": self.names.stories,
                        "_id": absorbed,
                        "version": REDIRECT_VERSION,
                        "version_type": "external_gte",
                    }
                }
            )
            operations.append(redirect_document(absorbed, survivor, when))
        response = self.es.bulk(operations=operations, refresh=False)
        if not response.get("errors"):
            return
        failed = [i["index"] for i in response["items"] if i["index"].get("error")]
        statuses = {int(i.get("status", 500)) for i in failed}
        if statuses & {429} or max(statuses) >= 500:
            raise TransientError("story_merge_failed", str(failed[:1]))
        raise PermanentError(
            "story_redirect_invalid",
            f"{failed[:1]} (has `newsflow init` added merged_into to the stories index?)",
        )

    def _move(self, moves: dict[str, str]) -> None:
        """Move the articles of each absorbed story (key) to its survivor (value).

        Rare (a later article bridged two stories), so a refresh and a search are
        affordable; every step is idempotent, so a redelivered batch repeats them safely.
        """
        by_survivor: dict[str, list[str]] = {}
        for absorbed, survivor in moves.items():
            by_survivor.setdefault(survivor, []).append(absorbed)
        self.es.indices.refresh(index=self.names.articles)
        for survivor, absorbed_ids in by_survivor.items():
            self._move_articles(sorted(absorbed_ids), survivor)

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
        merges: dict[str, tuple[str, datetime]] = {}
        for item in batch:
            story = item.message.story
            if story is not None:
                for absorbed in story.merged_from:
                    merges[absorbed] = (story.story_id, story.last_seen)
        for absorbed, (survivor, _) in merges.items():
            self._remember(absorbed, survivor)
        operations: list[dict[str, Any]] = []
        ops_per_item: list[int] = []
        written: set[str] = set()
        for item in batch:
            article = item.message
            story = article.story
            if article.story_id is not None:
                target = self.survivor(article.story_id)
                if target != article.story_id:  # decided before a merge seen since
                    article = article.model_copy(update={"story_id": target})
                written.add(target)
            if story is not None and story.story_id in self.redirects:
                story = None  # a summary from before its merge
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
                self._write_redirects(merges)
            # Stories written here may have been absorbed meanwhile (another worker's merge):
            # read them back, and move what landed on a redirect.
            self._look_up(written | set(merges))
            moves = {sid: self.survivor(sid) for sid in written | set(merges)}
            moves = {sid: target for sid, target in moves.items() if target != sid}
            if moves:
                self._move(moves)
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
