"""Which watches an article matches, and the workers' cached view of the watches.

``Matcher`` has two implementations. ``InProcessMatcher`` (the default) evaluates each
watch's parsed query against the article in this process (``newsflow.query.evaluate``): it
works on any cluster, costs no round trip, and cannot race the index stage, since it never
reads the articles index. ``PercolatorMatcher`` asks Elasticsearch (``percolate`` query) and
needs the percolator module, which the full image has and the test distribution lacks; its
matching uses the cluster's analyzers (English stemming where installed).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from alert.store import MAX_WATCHES, WatchStore
from newsflow.contracts import Article, Watch
from newsflow.errors import TransientError
from newsflow.es import Capabilities, detect_capabilities, is_transient
from newsflow.query import MatchDocument, Node, QueryTooComplexError, evaluate, parse, to_es
from newsflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompiledWatch:
    watch: Watch
    tree: Node


def compile_watch(watch: Watch) -> CompiledWatch | None:
    try:
        return CompiledWatch(watch, parse(watch.query))
    except QueryTooComplexError as exc:  # stored before a limit was lowered
        log.error("watch %s: query not usable, skipped: %s", watch.id, exc)
        return None


class WatchCache:
    """The watches as of at most ``refresh_seconds`` ago; keeps the last good list when
    Elasticsearch does not answer (only the very first load has to succeed)."""

    def __init__(
        self,
        store: WatchStore,
        refresh_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._watches: list[CompiledWatch] | None = None
        self._by_id: dict[str, Watch] = {}
        self._loaded_at = float("-inf")
        self.version = 0  # grows when the set of watches changes

    def current(self) -> list[CompiledWatch]:
        if self._watches is None or self.clock() - self._loaded_at >= self.refresh_seconds:
            self.reload()
        assert self._watches is not None
        return self._watches

    def get(self, watch_id: str) -> Watch | None:
        self.current()
        return self._by_id.get(watch_id)

    def reload(self) -> None:
        try:
            watches = self.store.list()
        except Exception as exc:
            if not is_transient(exc) and self._watches is None:
                raise
            if self._watches is None:
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            log.warning("alert: watches not refreshed, using the last list: %s", exc)
            self._loaded_at = self.clock()
            return
        compiled = [c for c in (compile_watch(w) for w in watches) if c is not None]
        if self._watches is None or [c.watch for c in compiled] != [c.watch for c in self._watches]:
            self.version += 1
            log.info("alert: %d watch(es) active", len(compiled))
        self._watches = compiled
        self._by_id = {c.watch.id: c.watch for c in compiled}
        self._loaded_at = self.clock()


def match_document(article: Article) -> MatchDocument:
    return MatchDocument.of(
        title=article.title,
        text=article.text,
        outlet=article.outlet,
        authors=article.authors,
        language=article.language,
    )


class Matcher(ABC):
    """Which of ``watches`` each article matches, in input order."""

    name: str

    @abstractmethod
    def match(
        self, articles: Sequence[Article], watches: Sequence[CompiledWatch]
    ) -> list[list[Watch]]: ...


class InProcessMatcher(Matcher):
    name = "inprocess"

    def match(
        self, articles: Sequence[Article], watches: Sequence[CompiledWatch]
    ) -> list[list[Watch]]:
        results: list[list[Watch]] = []
        for article in articles:
            doc = match_document(article)
            results.append([c.watch for c in watches if evaluate(c.tree, doc)])
        return results


class PercolatorMatcher(Matcher):
    """Watches as percolator queries in ``{prefix}-watch-queries``, synced when they change."""

    name = "percolator"

    def __init__(self, es: Elasticsearch, prefix: str, capabilities: Capabilities) -> None:
        self.es = es
        self.index = f"{prefix}-watch-queries"
        self.capabilities = capabilities
        self._synced: dict[str, str] | None = None  # watch id → query text

    def _mapping(self) -> dict[str, Any]:
        text: dict[str, Any] = {"type": "text"}
        if self.capabilities.language_analyzers:
            text = {"type": "text", "fields": {"english": {"type": "text", "analyzer": "english"}}}
        return {
            "dynamic": "strict",
            "properties": {
                "query": {"type": "percolator"},
                "watch_id": {"type": "keyword"},
                "title": text,
                "text": text,
                "outlet": {"type": "keyword"},
                "authors": {"type": "keyword"},
                "language": {"type": "keyword"},
            },
        }

    def _sync(self, watches: Sequence[CompiledWatch]) -> None:
        wanted = {c.watch.id: c.watch.query for c in watches}
        if wanted == self._synced:
            return
        if not self.es.indices.exists(index=self.index):
            self.es.indices.create(index=self.index, mappings=self._mapping())
        operations: list[dict[str, Any]] = []
        for c in watches:
            operations.append({"index": {"_index": self.index, "_id": c.watch.id}})
            operations.append({"watch_id": c.watch.id, "query": to_es(c.tree)})
        for stale in set(self._synced or {}) - set(wanted):
            operations.append({"delete": {"_index": self.index, "_id": stale}})
        if operations:
            self.es.bulk(operations=operations, refresh="wait_for")
        if self._synced is None:  # first sync: drop queries of watches deleted meanwhile
            self.es.delete_by_query(
                index=self.index,
                query={"bool": {"must_not": [{"ids": {"values": list(wanted)}}]}},
                refresh=True,
                conflicts="proceed",
            )
        self._synced = wanted

    def match(
        self, articles: Sequence[Article], watches: Sequence[CompiledWatch]
    ) -> list[list[Watch]]:
        results: list[list[Watch]] = [[] for _ in articles]
        if not articles or not watches:
            return results
        by_id = {c.watch.id: c.watch for c in watches}
        try:
            self._sync(watches)
            response = self.es.search(
                index=self.index,
                size=MAX_WATCHES,
                query={
                    "percolate": {
                        "field": "query",
                        "documents": [
                            {
                                "title": a.title or "",
                                "text": a.text,
                                "outlet": a.outlet,
                                "authors": a.authors,
                                "language": a.language,
                            }
                            for a in articles
                        ],
                    }
                },
                source_includes=["watch_id"],
            )
        except Exception as exc:
            if is_transient(exc):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        for hit in response["hits"]["hits"]:
            watch = by_id.get(hit["_source"]["watch_id"])
            if watch is None:
                continue
            for slot in hit.get("fields", {}).get("_percolator_document_slot", [0]):
                results[int(slot)].append(watch)
        return results


def make_matcher(es: Elasticsearch, settings: Settings) -> Matcher:
    """The configured matcher; the percolator only where the cluster has the module."""
    if settings.alert_matcher == "percolator":
        capabilities = detect_capabilities(es)
        if capabilities.percolator:
            return PercolatorMatcher(es, settings.index_prefix, capabilities)
        log.warning("alert: the cluster has no percolator module; matching in process")
    return InProcessMatcher()
