"""Full-text search over the articles alias, one hit per story."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch

from index.es import IndexNames

SEARCH_FIELDS = ["title^3", "title.english^3", "text", "text.english"]


@dataclass(frozen=True)
class StoryHit:
    story_id: str
    title: str | None
    outlet: str
    published_at: datetime | None
    url: str
    score: float
    articles: int
    outlets: tuple[str, ...]


def search_stories(
    es: Elasticsearch, names: IndexNames, query: str, *, size: int = 10
) -> list[StoryHit]:
    """Use the safe ``simple_query_string`` syntax: user input never becomes a Lucene error."""
    response = es.search(
        index=names.articles,
        query={
            "bool": {
                "must": {
                    "simple_query_string": {
                        "query": query,
                        "fields": SEARCH_FIELDS,
                        "default_operator": "and",
                        "flags": "AND|OR|NOT|PHRASE|PRECEDENCE|WHITESPACE|ESCAPE",
                        "lenient": True,
                    }
                },
                "filter": [{"term": {"is_article": True}}],
            }
        },
        collapse={
            "field": "story_id",
            "inner_hits": {
                "name": "copies",
                "size": 20,
                "_source": ["outlet"],
                "sort": [{"published_at": {"order": "asc", "missing": "_last"}}],
            },
        },
        source_includes=["title", "outlet", "published_at", "url", "story_id"],
        size=size,
    )
    return [_story_hit(hit) for hit in response["hits"]["hits"]]


def _story_hit(hit: dict[str, Any]) -> StoryHit:
    source = hit["_source"]
    copies = hit.get("inner_hits", {}).get("copies", {}).get("hits", {})
    outlets = sorted({c["_source"]["outlet"] for c in copies.get("hits", [])})
    published = source.get("published_at")
    return StoryHit(
        story_id=source["story_id"],
        title=source.get("title"),
        outlet=source["outlet"],
        published_at=datetime.fromisoformat(published) if published else None,
        url=source["url"],
        score=float(hit.get("_score") or 0.0),
        articles=int(copies.get("total", {}).get("value", 1)),
        outlets=tuple(outlets) or (source["outlet"],),
    )


def count_articles(es: Elasticsearch, names: IndexNames) -> int:
    es.indices.refresh(index=names.articles)
    return int(es.count(index=names.articles)["count"])
