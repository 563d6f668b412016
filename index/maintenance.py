"""Index upkeep the ``maintenance`` DAG runs: retention, alias checks, index statistics;
and :func:`check_stories`, the story consistency check (every article's story has a document).

Retention deletes articles fetched, and stories last seen, before the cut-off, in bulk, found
with a point-in-time scan. Why not ``_delete_by_query``: it lives in the reindex module, which
the minimal Elasticsearch used in tests lacks; the scan works on every distribution. A story
still named by an article is kept: a story's ``last_seen`` is its articles' own dates, so an
article published long ago but fetched recently (an archive page) would otherwise outlive
its story; the story goes with its last article, on a later run.

Why no rollover of the articles index: a document's ``_id`` is its normalized URL and a
re-fetch overwrites it with a higher external version. After a rollover the new write index
would take a second copy of an article whose first copy lives in the old index, so both would
be searchable and the version check would no longer protect against stale writes. Retention
keeps the one index bounded instead; :func:`index_report` shows its size for capacity planning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from newsflow.es import IndexNames

log = logging.getLogger(__name__)

SCAN_BATCH = 1000
PIT_KEEP_ALIVE = "2m"


@dataclass(frozen=True, slots=True)
class Expired:
    articles: int
    stories: int
    cutoff: datetime


def expire(
    es: Elasticsearch, names: IndexNames, *, older_than: timedelta, now: datetime
) -> Expired:
    """Delete articles fetched, and stories last seen, before ``now - older_than``; a story
    an article still names is kept."""
    cutoff = now - older_than
    articles = _delete_matching(
        es, names.articles, {"range": {"fetched_at": {"lt": cutoff.isoformat()}}}
    )
    es.indices.refresh(index=names.articles)
    stories = _delete_unnamed_stories(
        es, names, {"range": {"last_seen": {"lt": cutoff.isoformat()}}}
    )
    if articles or stories:
        es.indices.refresh(index=f"{names.articles},{names.stories}")
    log.info("retention: deleted %d articles and %d stories before %s", articles, stories, cutoff)
    return Expired(articles=articles, stories=stories, cutoff=cutoff)


def _delete_matching(es: Elasticsearch, index: str, query: dict[str, Any]) -> int:
    """Bulk-delete every document of ``index`` (an alias or index) that ``query`` matches."""
    actions = (
        {"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]}
        for hit in _scan(es, index, query)
    )
    deleted, errors = helpers.bulk(es, actions, raise_on_error=False, stats_only=True)
    if errors:
        # a document deleted meanwhile (404) is fine; anything else is logged by the caller
        log.warning("retention: %d delete(s) on %s failed", errors, index)
    return int(deleted)


def _delete_unnamed_stories(es: Elasticsearch, names: IndexNames, query: dict[str, Any]) -> int:
    """Bulk-delete the stories ``query`` matches that no article names."""

    def without_articles(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        named = _named_stories(es, names, [hit["_id"] for hit in batch])
        return [hit for hit in batch if hit["_id"] not in named]

    def unnamed() -> Iterator[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        for hit in _scan(es, names.stories, query):
            batch.append(hit)
            if len(batch) == SCAN_BATCH:
                yield from without_articles(batch)
                batch = []
        if batch:
            yield from without_articles(batch)

    actions = (
        {"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]} for hit in unnamed()
    )
    deleted, errors = helpers.bulk(es, actions, raise_on_error=False, stats_only=True)
    if errors:
        log.warning("retention: %d delete(s) on %s failed", errors, names.stories)
    return int(deleted)


def _named_stories(es: Elasticsearch, names: IndexNames, story_ids: list[str]) -> set[str]:
    response = es.search(
        index=names.articles,
        size=0,
        query={"terms": {"story_id": story_ids}},
        aggs={"named": {"terms": {"field": "story_id", "size": len(story_ids)}}},
    )
    return {bucket["key"] for bucket in response["aggregations"]["named"]["buckets"]}


@dataclass(frozen=True, slots=True)
class StoryCheck:
    """Articles whose ``story_id`` has no story to show (by story id: the articles naming it)."""

    articles: int  # articles (``is_article``) scanned
    stories: int  # distinct story ids they name
    missing: dict[str, list[str]]  # no document in the stories index
    redirected: dict[str, list[str]]  # the document is a merged story's redirect
    unstoried: list[str]  # articles without a story id
    non_articles_with_story: list[str]  # pages that are not articles yet name a story

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.redirected or self.unstoried or self.non_articles_with_story
        )

    def summary(self) -> str:
        counts = {
            "missing": sum(map(len, self.missing.values())),
            "redirected": sum(map(len, self.redirected.values())),
            "unstoried": len(self.unstoried),
            "non_articles_with_story": len(self.non_articles_with_story),
        }
        found = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "all consistent"
        return f"{self.articles} articles in {self.stories} stories: {found}"


def check_stories(es: Elasticsearch, names: IndexNames) -> StoryCheck:
    """Scan the articles index for story ids without a story document.

    After a refresh, so whatever the index stage has written counts. Read-only; for tests,
    the chaos suite and an operator's audit.
    """
    es.indices.refresh(index=f"{names.articles},{names.stories}")
    by_story: dict[str, list[str]] = {}
    unstoried: list[str] = []
    non_articles: list[str] = []
    articles = 0
    for hit in _scan(
        es, names.articles, {"match_all": {}}, source_includes=["story_id", "is_article"]
    ):
        source = hit.get("_source") or {}
        story = source.get("story_id")
        if not source.get("is_article", True):
            if story:
                non_articles.append(hit["_id"])
            continue
        articles += 1
        if story:
            by_story.setdefault(story, []).append(hit["_id"])
        else:
            unstoried.append(hit["_id"])
    missing: dict[str, list[str]] = {}
    redirected: dict[str, list[str]] = {}
    ids = sorted(by_story)
    for i in range(0, len(ids), SCAN_BATCH):
        docs = es.mget(
            index=names.stories, ids=ids[i : i + SCAN_BATCH], source_includes=["merged_into"]
        )["docs"]
        for doc in docs:
            if not doc.get("found"):
                missing[doc["_id"]] = sorted(by_story[doc["_id"]])
            elif (doc.get("_source") or {}).get("merged_into"):
                redirected[doc["_id"]] = sorted(by_story[doc["_id"]])
    return StoryCheck(
        articles=articles,
        stories=len(by_story),
        missing=missing,
        redirected=redirected,
        unstoried=sorted(unstoried),
        non_articles_with_story=sorted(non_articles),
    )


def _scan(
    es: Elasticsearch,
    index: str,
    query: dict[str, Any],
    *,
    source_includes: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    try:
        pit = es.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"]
    except NotFoundError:
        return
    after: list[Any] | None = None
    try:
        while True:
            page = es.search(
                pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                query=query,
                sort=["_shard_doc"],
                size=SCAN_BATCH,
                source=False if source_includes is None else None,
                source_includes=source_includes,
                search_after=after,
                track_total_hits=False,
            )
            pit = page.get("pit_id", pit)
            hits = page["hits"]["hits"]
            if not hits:
                return
            yield from hits
            after = hits[-1]["sort"]
    finally:
        es.close_point_in_time(id=pit)


def index_report(es: Elasticsearch, names: IndexNames) -> dict[str, Any]:
    """Documents, size and aliases of every index behind the articles and stories names.

    Raises :class:`RuntimeError` when the articles alias has no write index, the one fault
    that stops the index stage from writing.
    """
    report: dict[str, Any] = {}
    for name in (names.articles, names.stories):
        try:
            stats = es.indices.stats(index=name, metric="docs,store")["indices"]
        except NotFoundError:
            raise RuntimeError(f"{name} does not exist: run `newsflow init`") from None
        for index, values in stats.items():
            primaries = values["primaries"]
            report[index] = {
                "docs": primaries["docs"]["count"],
                "bytes": primaries["store"]["size_in_bytes"],
            }
    aliases = es.indices.get_alias(name=names.articles)
    writers = [
        index
        for index, entry in aliases.items()
        if entry["aliases"][names.articles].get("is_write_index", len(aliases) == 1)
    ]
    if len(writers) != 1:
        raise RuntimeError(f"alias {names.articles} has {len(writers)} write indices: {writers}")
    report["write_index"] = writers[0]
    return report
