"""Full-text search over the articles alias, one hit per story: the one service behind
``GET /v1/search``, ``newsflow search`` and the demo, so all three answer a query alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

from elasticsearch import Elasticsearch, NotFoundError
from pydantic import BaseModel, ConfigDict, Field

from index.paging import fingerprint
from newsflow.es import IndexNames
from newsflow.query import compile_query


def count_articles(es: Elasticsearch, names: IndexNames) -> int:
    es.indices.refresh(index=names.articles)
    return int(es.count(index=names.articles)["count"])


# ------------------------------------------------------------------------------------ paging
#
# Paging one hit per story. Elasticsearch refuses ``collapse`` with ``search_after`` unless the
# sort is the collapse field alone, and ``from``/``size`` stops at 10,000 hits. So a page is
# built from a scan of *articles* in the requested order (``search_after`` in a point-in-time
# snapshot, ties broken by the article id), keeping each story's first article, i.e. its best
# one. A story belongs to the page on which its best article falls: on page n > 1 a candidate
# story is dropped when its best article (one collapsed query over the candidates, same query
# and snapshot) sorts at or before the page's starting cursor, because an earlier page has
# shown it. The next cursor is the last article the page accounted for. Consistent snapshot +
# total order => no story is repeated or skipped, at any depth.

SortBy = Literal["relevance", "date"]
Interval = Literal["auto", "hour", "day", "week", "month"]

SOURCE_FIELDS = [
    "id",
    "title",
    "url",
    "outlet",
    "published_at",
    "language",
    "authors",
    "story_id",
    "duplicate_of",
]
HIGHLIGHT: dict[str, Any] = {
    "encoder": "html",  # the text is HTML-escaped; only our <mark> tags are markup
    "pre_tags": ["<mark>"],
    "post_tags": ["</mark>"],
    "fields": {
        "title": {"number_of_fragments": 0},
        "text": {"fragment_size": 180, "number_of_fragments": 2, "no_match_size": 180},
    },
}
_SORTS: dict[str, list[dict[str, Any]]] = {
    "relevance": [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}],
    "date": [
        {"published_at": {"order": "desc", "missing": "_last"}},
        {"id": {"order": "asc"}},
    ],
}
# The first two sort values identify an article's position; the directions to compare them.
_DIRECTIONS: dict[str, tuple[int, int]] = {"relevance": (-1, 1), "date": (-1, 1)}
MAX_SCAN_ROUNDS = 5
# A one-page search closes its snapshot when done; should the close be lost, it expires soon.
ONE_PAGE_KEEP_ALIVE_SECONDS = 60
MAX_SCAN_BATCH = 500
FACET_SIZE = 20


class BadSearchRequestError(ValueError):
    """A request that is well-formed but cannot be answered as asked (a 400)."""


class SearchFilters(BaseModel):
    model_config = ConfigDict(frozen=True)

    outlets: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    published_from: datetime | None = None
    published_to: datetime | None = None
    story_id: str | None = None

    def clauses(self, skip: str | None = None) -> list[dict[str, Any]]:
        """Filter clauses, without the dimension ``skip`` (its own facet ignores it)."""
        clauses: list[dict[str, Any]] = []
        if self.outlets and skip != "outlet":
            clauses.append({"terms": {"outlet": list(self.outlets)}})
        if self.languages and skip != "language":
            clauses.append({"terms": {"language": list(self.languages)}})
        if (self.published_from or self.published_to) and skip != "published":
            bounds: dict[str, str] = {}
            if self.published_from:
                bounds["gte"] = self.published_from.isoformat()
            if self.published_to:
                bounds["lte"] = self.published_to.isoformat()
            clauses.append({"range": {"published_at": bounds}})
        if self.story_id:
            clauses.append({"term": {"story_id": self.story_id}})
        return clauses


class StoryQuery(BaseModel):
    """What defines a result list; its fingerprint ties resume tokens to it."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    filters: SearchFilters = SearchFilters()
    sort: SortBy = "relevance"
    group: bool = True  # one hit per story

    def fingerprint(self) -> str:
        return fingerprint(self.model_dump(mode="json"))


class StoryInfo(BaseModel):
    story_id: str
    title: str | None = None
    articles: int
    outlets: list[str]
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class ArticleHit(BaseModel):
    id: str
    story_id: str
    title: str | None = None
    url: str
    outlet: str
    published_at: datetime | None = None
    language: str | None = None
    authors: list[str] = Field(default_factory=list)
    duplicate_of: str | None = None
    score: float | None = None
    highlight: dict[str, list[str]] = Field(
        default_factory=dict, description="HTML-escaped fragments with <mark> around matches."
    )


class SearchHit(ArticleHit):
    story: StoryInfo | None = None

    def story_or_article(self) -> StoryInfo:
        """The hit's story; the article alone when its story went uncounted (merged away
        between the search and the count)."""
        if self.story is not None:
            return self.story
        return StoryInfo(
            story_id=self.story_id,
            title=self.title,
            articles=1,
            outlets=[self.outlet],
            first_seen=self.published_at,
            last_seen=self.published_at,
        )


class Bucket(BaseModel):
    key: str
    articles: int
    stories: int


class Facets(BaseModel):
    stories: int = Field(description="Matching stories (approximate beyond ~3,000).")
    outlets: list[Bucket]
    languages: list[Bucket]
    published: list[Bucket]
    interval: str


class ResultPage(BaseModel):
    hits: list[SearchHit]
    articles_total: int
    articles_total_exact: bool
    facets: Facets | None = None
    next_after: list[Any] | None = Field(default=None, exclude=True)
    scanned: int = Field(default=0, description="Articles read to build this page.")


def _precedes_or_equal(a: Sequence[Any], b: Sequence[Any], sort: SortBy) -> bool:
    """Whether sort position ``a`` comes at or before ``b`` (first two sort values)."""
    for direction, x, y in zip(_DIRECTIONS[sort], a[:2], b[:2], strict=False):
        if x == y:
            continue
        return bool((x < y) if direction > 0 else (x > y))
    return True


def default_sort(text: str) -> SortBy:
    """Relevance when there is something to rank by, else newest first."""
    return "relevance" if text.strip() else "date"


def pick_interval(filters: SearchFilters, interval: Interval) -> Interval:
    """The date histogram's bucket; hourly buckets only over a range of at most 31 days."""
    span = None
    if filters.published_from and filters.published_to:
        span = filters.published_to - filters.published_from
    if interval == "auto":
        if span is None:
            return "day"
        days = span.total_seconds() / 86400
        if days <= 3:
            return "hour"
        return "day" if days <= 120 else "week" if days <= 1100 else "month"
    if interval == "hour" and (span is None or span.total_seconds() > 31 * 86400):
        raise BadSearchRequestError("interval=hour needs a from/to range of at most 31 days")
    return interval


class StorySearch:
    """Search, stories and snapshots over one deployment's indices."""

    def __init__(self, es: Elasticsearch, names: IndexNames) -> None:
        self.es = es
        self.names = names

    # ---- snapshots

    def open_snapshot(self, keep_alive_seconds: int) -> str:
        pit = self.es.open_point_in_time(
            index=self.names.articles, keep_alive=f"{keep_alive_seconds}s"
        )
        return str(pit["id"])

    def close_snapshot(self, pit_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.es.close_point_in_time(id=pit_id)

    @contextlib.contextmanager
    def snapshot(self, keep_alive_seconds: int) -> Iterator[str]:
        """A snapshot for searches that hand out no resume token: closed on the way out."""
        pit_id = self.open_snapshot(keep_alive_seconds)
        try:
            yield pit_id
        finally:
            self.close_snapshot(pit_id)

    # ---- search

    def base_query(self, query: StoryQuery, *, with_filters: bool = True) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [{"term": {"is_article": True}}]
        if with_filters:
            filters.extend(query.filters.clauses())
        return {"bool": {"must": [compile_query(query.text)], "filter": filters}}

    def _target(self, pit_id: str | None, keep_alive_seconds: int) -> dict[str, Any]:
        if pit_id is None:
            return {"index": self.names.articles}
        return {"pit": {"id": pit_id, "keep_alive": f"{keep_alive_seconds}s"}}

    def page(
        self,
        query: StoryQuery,
        *,
        size: int,
        after: list[Any] | None = None,
        pit_id: str | None = None,
        keep_alive_seconds: int = 300,
        facets: bool = False,
        interval: Interval = "auto",
        highlight: bool = True,
    ) -> ResultPage:
        """One page of hits after ``after`` (see the paging note above)."""
        sort = _SORTS[query.sort]
        target = self._target(pit_id, keep_alive_seconds)
        start = after
        cursor = after
        emitted: list[dict[str, Any]] = []
        seen: set[str] = set()
        batch = min(size * 2 + 5, MAX_SCAN_BATCH)
        total, exact, facet_result, scanned = 0, True, None, 0
        histogram = pick_interval(query.filters, interval) if facets else "day"
        exhausted = False
        for round_no in range(MAX_SCAN_ROUNDS):
            body: dict[str, Any] = {
                **target,
                "size": batch,
                "sort": sort,
                "source_includes": SOURCE_FIELDS,
            }
            if round_no > 0:
                body["track_total_hits"] = False  # counted once, up to 10,000, in round 0
            if cursor is not None:
                body["search_after"] = cursor
            if round_no == 0 and facets:
                # Multi-select facets: hits get every filter (post_filter), each facet all
                # filters but its own dimension's.
                body["query"] = self.base_query(query, with_filters=False)
                if query.filters.clauses():
                    body["post_filter"] = {"bool": {"filter": query.filters.clauses()}}
                body["aggs"] = _facet_aggs(query.filters, histogram)
            else:
                body["query"] = self.base_query(query)
            response = self.es.search(**body)
            if round_no == 0:
                total = int(response["hits"]["total"]["value"])
                exact = response["hits"]["total"]["relation"] == "eq"
                if facets:
                    facet_result = _read_facets(response["aggregations"], histogram)
            hits: list[dict[str, Any]] = response["hits"]["hits"]
            scanned += len(hits)
            old: set[str] = set()
            if query.group and start is not None:
                stories = dict.fromkeys(h["_source"]["story_id"] for h in hits)
                fresh = [s for s in stories if s not in seen]
                old = self._shown_before(query, fresh, start, target)
            full = False
            for hit in hits:
                cursor = hit["sort"]
                story = hit["_source"]["story_id"]
                if query.group:
                    if story in seen:
                        continue
                    seen.add(story)
                    if story in old:
                        continue
                emitted.append(hit)
                if len(emitted) == size:
                    full = True
                    break
            if full:
                exhausted = hit is hits[-1] and len(hits) < batch
                break
            if len(hits) < batch:
                exhausted = True
                break
            batch = min(batch * 2, MAX_SCAN_BATCH)
        if highlight and emitted:
            self._highlight(query, emitted, target)
        result = ResultPage(
            hits=self._hits(emitted),
            articles_total=total,
            articles_total_exact=exact,
            facets=facet_result,
            scanned=scanned,
        )
        result.next_after = None if exhausted or cursor is None else list(cursor)
        return result

    def top_stories(self, text: str, *, size: int = 10) -> list[SearchHit]:
        """The hits of ``GET /v1/search?q=text``'s first page (same query language, fields,
        grouping and order), for callers that show no second page: ``newsflow search``, the
        demo. Raises ``QueryTooComplexError`` where the API answers 400 query_too_complex."""
        query = StoryQuery(text=text, sort=default_sort(text))
        with self.snapshot(ONE_PAGE_KEEP_ALIVE_SECONDS) as pit_id:
            result = self.page(
                query,
                size=size,
                pit_id=pit_id,
                keep_alive_seconds=ONE_PAGE_KEEP_ALIVE_SECONDS,
                highlight=False,
            )
        return result.hits

    def _highlight(
        self, query: StoryQuery, hits: list[dict[str, Any]], target: dict[str, Any]
    ) -> None:
        """Highlights for the page's hits only: the scan reads more articles than it shows,
        and highlighting long texts is the costly part of a search."""
        ids = [h["_id"] for h in hits]
        response = self.es.search(
            **target,
            query={
                "bool": {
                    "must": [compile_query(query.text)],
                    "filter": [{"ids": {"values": ids}}],
                }
            },
            highlight=HIGHLIGHT,
            size=len(ids),
            source=False,
        )
        found = {h["_id"]: h.get("highlight") or {} for h in response["hits"]["hits"]}
        for hit in hits:
            hit["highlight"] = found.get(hit["_id"], {})

    def _shown_before(
        self, query: StoryQuery, stories: list[str], start: list[Any], target: dict[str, Any]
    ) -> set[str]:
        """Stories whose best article sorts at or before ``start``: earlier pages showed them."""
        if not stories:
            return set()
        base = self.base_query(query)
        base["bool"]["filter"].append({"terms": {"story_id": stories}})
        response = self.es.search(
            **target,
            query=base,
            sort=_SORTS[query.sort],
            collapse={"field": "story_id"},
            size=len(stories),
            source_includes=["story_id"],
        )
        return {
            h["_source"]["story_id"]
            for h in response["hits"]["hits"]
            if _precedes_or_equal(h["sort"], start, query.sort)
        }

    def _hits(self, raw: list[dict[str, Any]]) -> list[SearchHit]:
        infos = self.story_infos([h["_source"]["story_id"] for h in raw])
        hits = []
        for hit in raw:
            article = _article(hit)
            hits.append(SearchHit(**article.model_dump(), story=infos.get(article.story_id)))
        return hits

    # ---- stories

    def story_infos(self, story_ids: Sequence[str]) -> dict[str, StoryInfo]:
        """Counts per story from the stories index; stories it lacks are counted live."""
        ids = list(dict.fromkeys(story_ids))
        if not ids:
            return {}
        infos: dict[str, StoryInfo] = {}
        docs = self.es.mget(index=self.names.stories, ids=ids)["docs"]
        for doc in docs:
            if doc.get("found") and "merged_into" not in doc["_source"]:  # not a redirect
                src = doc["_source"]
                infos[doc["_id"]] = StoryInfo(
                    story_id=doc["_id"],
                    title=src.get("title"),
                    articles=int(src.get("articles", 1)),
                    outlets=sorted(src.get("outlets") or []),
                    first_seen=src.get("first_seen"),
                    last_seen=src.get("last_seen"),
                )
        missing = [i for i in ids if i not in infos]
        if missing:
            infos.update(self._count_stories(missing))
        return infos

    def _count_stories(self, story_ids: list[str]) -> dict[str, StoryInfo]:
        response = self.es.search(
            index=self.names.articles,
            size=0,
            query={"terms": {"story_id": story_ids}},
            aggs={
                "stories": {
                    "terms": {"field": "story_id", "size": len(story_ids)},
                    "aggs": {
                        "outlets": {"terms": {"field": "outlet", "size": 100}},
                        "first": {"min": {"field": "published_at"}},
                        "last": {"max": {"field": "published_at"}},
                    },
                }
            },
        )
        infos = {}
        for bucket in response["aggregations"]["stories"]["buckets"]:
            infos[bucket["key"]] = StoryInfo(
                story_id=bucket["key"],
                articles=int(bucket["doc_count"]),
                outlets=sorted(b["key"] for b in bucket["outlets"]["buckets"]),
                first_seen=bucket["first"].get("value_as_string"),
                last_seen=bucket["last"].get("value_as_string"),
            )
        return infos

    def story(self, story_id: str, *, size: int) -> tuple[StoryInfo, list[ArticleHit]] | None:
        """A story and its articles, oldest first; None if no article has this story."""
        response = self.es.search(
            index=self.names.articles,
            query={"term": {"story_id": story_id}},
            sort=[{"published_at": {"order": "asc", "missing": "_last"}}, {"id": "asc"}],
            size=size,
            source_includes=SOURCE_FIELDS,
        )
        hits = response["hits"]["hits"]
        if not hits:
            return None
        info = self.story_infos([story_id]).get(story_id)
        articles = [_article(h) for h in hits]
        if info is None:  # cannot happen with hits, but keeps the type honest
            info = StoryInfo(story_id=story_id, articles=len(articles), outlets=[])
        if info.title is None:
            info = info.model_copy(update={"title": articles[0].title})
        return info, articles

    def new_stories(self, *, since: datetime | None, size: int) -> list[StoryInfo]:
        """Stories first seen after ``since``, newest first (the page's live list)."""
        # Not the redirects that stories merged into another became (index.worker).
        query: dict[str, Any] = {"bool": {"must_not": [{"exists": {"field": "merged_into"}}]}}
        if since is not None:
            query["bool"]["filter"] = [{"range": {"first_seen": {"gt": since.isoformat()}}}]
        response = self.es.search(
            index=self.names.stories,
            query=query,
            sort=[{"first_seen": {"order": "desc"}}, {"story_id": {"order": "asc"}}],
            size=size,
        )
        return [
            StoryInfo(
                story_id=h["_id"],
                title=h["_source"].get("title"),
                articles=int(h["_source"].get("articles", 1)),
                outlets=sorted(h["_source"].get("outlets") or []),
                first_seen=h["_source"].get("first_seen"),
                last_seen=h["_source"].get("last_seen"),
            )
            for h in response["hits"]["hits"]
        ]


def _article(hit: dict[str, Any]) -> ArticleHit:
    src = hit["_source"]
    return ArticleHit(
        id=src.get("id") or hit["_id"],
        story_id=src["story_id"],
        title=src.get("title"),
        url=src["url"],
        outlet=src["outlet"],
        published_at=src.get("published_at"),
        language=src.get("language"),
        authors=src.get("authors") or [],
        duplicate_of=src.get("duplicate_of"),
        score=hit.get("_score"),
        highlight=hit.get("highlight") or {},
    )


def _facet_aggs(filters: SearchFilters, interval: str) -> dict[str, Any]:
    # Exact up to the threshold; a small one per bucket keeps the aggregation cheap.
    stories = {"stories": {"cardinality": {"field": "story_id", "precision_threshold": 200}}}
    total = {"stories": {"cardinality": {"field": "story_id", "precision_threshold": 3000}}}

    def scoped(skip: str | None, agg: dict[str, Any]) -> dict[str, Any]:
        return {"filter": {"bool": {"filter": filters.clauses(skip)}}, "aggs": {"b": agg}}

    return {
        "all": {"filter": {"bool": {"filter": filters.clauses()}}, "aggs": total},
        "outlets": scoped(
            "outlet", {"terms": {"field": "outlet", "size": FACET_SIZE}, "aggs": stories}
        ),
        "languages": scoped(
            "language", {"terms": {"field": "language", "size": FACET_SIZE}, "aggs": stories}
        ),
        "published": scoped(
            "published",
            {
                "date_histogram": {
                    "field": "published_at",
                    "calendar_interval": interval,
                    "min_doc_count": 1,
                    "format": "strict_date_optional_time",
                },
                "aggs": stories,
            },
        ),
    }


def _read_facets(aggs: dict[str, Any], interval: str) -> Facets:
    def buckets(name: str) -> list[Bucket]:
        return [
            Bucket(
                key=str(b.get("key_as_string", b["key"])),
                articles=int(b["doc_count"]),
                stories=int(b["stories"]["value"]),
            )
            for b in aggs[name]["b"]["buckets"]
        ]

    return Facets(
        stories=int(aggs["all"]["stories"]["value"]),
        outlets=buckets("outlets"),
        languages=buckets("languages"),
        published=buckets("published"),
        interval=interval,
    )
