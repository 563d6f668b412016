"""Index upkeep the ``maintenance`` DAG runs: retention, alias checks, index statistics.

Retention deletes articles fetched, and stories last seen, before the cut-off, in bulk, found
with a point-in-time scan. Why not ``_delete_by_query``: it lives in the reindex module, which
the minimal Elasticsearch used in tests lacks; the scan works on every distribution.

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
    """Delete articles fetched and stories last seen before ``now - older_than``."""
    cutoff = now - older_than
    articles = _delete_matching(
        es, names.articles, {"range": {"fetched_at": {"lt": cutoff.isoformat()}}}
    )
    stories = _delete_matching(
        es, names.stories, {"range": {"last_seen": {"lt": cutoff.isoformat()}}}
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


def _scan(es: Elasticsearch, index: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
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
                source=False,
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
