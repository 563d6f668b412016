"""Search API latency on a realistic corpus, against a plain Elasticsearch baseline.

    .venv/bin/python -m bench.search_latency [--queries 300] [--keep]

Needs the local Elasticsearch (``newsflow stack up --only es``). Indexes the shared corpus's
article bodies (zyte, WCXB, Fundus: ~1,750 pages) as Articles from their real outlets, plus
wire copies of every third story in other outlets (~3,500 articles, ~1,750 stories), through
the index stage into an index prefix of its own; serves the API with uvicorn on a loopback
port and runs a fixed query mix over HTTP. The baseline, in the same run on the same index:
one plain ``simple_query_string`` search over the same fields, collapsed on ``story_id``,
straight to Elasticsearch (no query language, snapshot, paging, story counts, facets): the floor
the API's cost is measured against. Prints p50/p95/max per kind of request.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import py3langid
import uvicorn
from elasticsearch import Elasticsearch

from bench.corpus import SETS, available, load
from index.indices import ensure_indices
from index.worker import IndexStage
from newsflow.contracts import DedupedArticle, DedupReason, StorySummary
from newsflow.es import IndexNames, make_client
from newsflow.query import TEXT_FIELDS
from newsflow.runtime import Inbound
from newsflow.settings import Settings
from newsflow.urls import url_id
from pipeline.api import create_app

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WIRE_OUTLETS = ["wire-north", "wire-south", "wire-east"]
_STOPWORD_TEXT = (
    "the a an and or of to in on for with at by from is are was were be been has have had it its "
    "this that these those as not but they their you your we our he she his her who what which "
    "will would can could should may more most new after over into about than then also just "
    "how why when where all one two three said says"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split(" "))


def _outlet(url: str | None, fallback: str) -> str:
    host = urlsplit(url or "").hostname or fallback
    return re.sub(r"^www\.", "", host)


def _title(page_title: str | None, body: str) -> str:
    if page_title:
        return page_title
    first = re.split(r"(?<=[.!?])\s", body.strip(), maxsplit=1)[0]
    return first[:120]


def build_corpus() -> list[DedupedArticle]:
    """Articles with stories: each page one story; every third also carried by wire copies."""
    rng = random.Random(11)
    articles: list[DedupedArticle] = []
    for name in SETS:
        for index, page in enumerate(load(name)):
            body = (page.body or "").strip()
            if len(body) < 200:
                continue
            outlet = _outlet(page.url, f"{name}-outlet")
            url = page.url or f"http://{outlet}/{page.id}"
            if not url.startswith(("http://", "https://")):
                url = f"http://{outlet}/{page.id}"
            published = (
                datetime.combine(page.published, datetime.min.time(), tzinfo=UTC)
                if page.published
                else T0 - timedelta(hours=rng.randint(0, 24 * 60))
            )
            language = str(py3langid.classify(body[:2000])[0])
            title = _title(page.title, body)
            story_id = hashlib.sha1(f"{name}/{page.id}".encode()).hexdigest()
            members = [
                _article(url, outlet, title, body, published, language, story_id, page.authors)
            ]
            if index % 3 == 0:
                for copy in range(1 + index % 3 + rng.randint(0, 1)):
                    wire = WIRE_OUTLETS[copy % len(WIRE_OUTLETS)]
                    members.append(
                        _article(
                            f"http://{wire}.example/{story_id}/{copy}",
                            wire,
                            title,
                            body if copy % 2 else body[: max(200, len(body) * 2 // 3)],
                            published + timedelta(minutes=30 * (copy + 1)),
                            language,
                            story_id,
                            None,
                        )
                    )
            summary = StorySummary(
                story_id=story_id,
                first_seen=min(a.published_at or T0 for a in members),
                last_seen=max(a.published_at or T0 for a in members),
                representative=members[0].id,
                title=title,
                articles=len(members),
                outlets=sorted({a.outlet for a in members}),
            )
            members[-1] = members[-1].model_copy(update={"story": summary})
            articles.extend(members)
    return articles


def _article(
    url: str,
    outlet: str,
    title: str,
    body: str,
    published: datetime,
    language: str,
    story_id: str,
    authors: tuple[str, ...] | None,
) -> DedupedArticle:
    return DedupedArticle(
        id=url_id(url),
        url=url,
        outlet=outlet,
        title=title,
        text=body,
        authors=list(authors or ()),
        published_at=published,
        language=language if re.fullmatch(r"[a-z]{2}", language) else None,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
        fetched_at=published + timedelta(minutes=5),
        extractor="bench",
        story_id=story_id,
        dedup_reason=DedupReason.NEW,
        story=None,
    )


def index_corpus(es: Elasticsearch, names: IndexNames, articles: list[DedupedArticle]) -> None:
    stage = IndexStage(es, names)
    for start in range(0, len(articles), 500):
        chunk = articles[start : start + 500]
        stage.process([Inbound("bench", 0, start + i, a.id, None, a) for i, a in enumerate(chunk)])
    es.indices.refresh(index=f"{names.articles},{names.stories}")


def query_mix(articles: list[DedupedArticle], count: int) -> list[dict[str, Any]]:
    """What people type: title words, short phrases, a few operators and filters."""
    rng = random.Random(5)
    english = [a for a in articles if a.language == "en" and a.title]
    words_by_title = [
        [
            w
            for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", a.title or "")
            if w.lower() not in STOPWORDS
        ]
        for a in english
    ]
    usable = [w for w in words_by_title if len(w) >= 3]
    outlets = [o for o, _ in Counter(a.outlet for a in articles).most_common(10)]
    mix: list[dict[str, Any]] = []
    while len(mix) < count:
        words = rng.choice(usable)
        roll = rng.random()
        if roll < 0.35:
            q = rng.choice(words)
        elif roll < 0.60:
            q = " ".join(rng.sample(words, 2))
        elif roll < 0.72:
            start = rng.randrange(len(words) - 1)
            q = f'"{words[start]} {words[start + 1]}"'
        elif roll < 0.80:
            q = f"{words[0]} OR {words[1]}"
        elif roll < 0.86:
            q = f"{words[0]} -{rng.choice(rng.choice(usable))}"
        elif roll < 0.93:
            q = f"title:{rng.choice(words)}"
        else:
            q = " ".join(rng.sample(words, 3))
        params: dict[str, Any] = {"q": q, "size": 10}
        if rng.random() < 0.15:
            params["outlet"] = rng.choice(outlets)
        if rng.random() < 0.10:
            params["lang"] = "en"
        mix.append(params)
    return mix


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def timed(run: Callable[[], None], repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - started) * 1000 / repeat


def call(http: httpx.Client, path: str, params: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        http.get(path, params=params).raise_for_status()

    return run


def baseline(es: Elasticsearch, names: IndexNames, params: dict[str, Any]) -> None:
    """The floor: one simple_query_string search, collapsed; no facets, paging or story counts."""
    filters: list[dict[str, Any]] = [{"term": {"is_article": True}}]
    if "outlet" in params:
        filters.append({"terms": {"outlet": [params["outlet"]]}})
    if "lang" in params:
        filters.append({"terms": {"language": [params["lang"]]}})
    es.search(
        index=names.articles,
        query={
            "bool": {
                "must": {
                    "simple_query_string": {
                        "query": params["q"].replace("title:", ""),
                        "fields": list(TEXT_FIELDS),
                        "default_operator": "and",
                        "flags": "AND|OR|NOT|PHRASE|PRECEDENCE|WHITESPACE|ESCAPE",
                        "lenient": True,
                    }
                },
                "filter": filters,
            }
        },
        collapse={"field": "story_id"},
        highlight={"fields": {"title": {}, "text": {}}},
        size=10,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=300, help="Queries per kind.")
    parser.add_argument("--keep", action="store_true", help="Keep the bench's indices.")
    args = parser.parse_args(argv)
    if not available():
        print("the shared corpus is not available")
        return 1

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    settings = Settings(index_prefix=prefix, api_auth="off")
    names = IndexNames(prefix)
    es = make_client(settings)
    started = time.perf_counter()
    articles = build_corpus()
    ensure_indices(es, settings)
    index_corpus(es, names, articles)
    stories = len({a.story_id for a in articles})
    print(
        f"indexed {len(articles)} articles in {stories} stories from "
        f"{len({a.outlet for a in articles})} outlets ({time.perf_counter() - started:.0f}s)"
    )

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, es=es), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        mix = query_mix(articles, args.queries)
        for params in mix[:30]:  # warm caches and connections; not measured
            http.get("/v1/search", params=params).raise_for_status()
            baseline(es, names, params)
        results: dict[str, list[float]] = {
            "api: page 1 (facets, highlight, counts)": [],
            "api: page 1, facets=false": [],
            "api: page 2 (resume token)": [],
            "api: story's articles": [],
            "baseline: ES simple_query_string + collapse": [],
        }
        hits_seen = 0
        for params in mix:
            response: dict[str, Any] = {}

            def first(p: dict[str, Any] = params) -> None:
                nonlocal response
                reply = http.get("/v1/search", params=p)
                reply.raise_for_status()
                response = reply.json()

            results["api: page 1 (facets, highlight, counts)"].append(timed(first))
            hits_seen += len(response["hits"])
            results["api: page 1, facets=false"].append(
                timed(call(http, "/v1/search", {**params, "facets": "false"}))
            )
            token = response.get("next_token")
            if token:
                results["api: page 2 (resume token)"].append(
                    timed(call(http, "/v1/search", {**params, "token": token}))
                )
            if response["hits"]:
                story = response["hits"][0]["story_id"]
                results["api: story's articles"].append(
                    timed(call(http, f"/v1/stories/{story}", {}))
                )
            results["baseline: ES simple_query_string + collapse"].append(
                timed(lambda params=params: baseline(es, names, params))  # type: ignore[misc]
            )
        print(f"{len(mix)} queries, {hits_seen / len(mix):.1f} stories on page 1 on average")
        print(f"{'request':<46} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for kind, samples in results.items():
            if samples:
                p50, p95, top = percentiles(samples)
                print(f"{kind:<46} {len(samples):>5} {p50:>8.1f} {p95:>8.1f} {top:>8.1f}")
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=10)
        if not args.keep:
            created = list(es.indices.get(index=f"{prefix}-*", allow_no_indices=True))
            if created:
                es.indices.delete(index=",".join(created))
            for template in (names.articles_template, names.stories_template):
                es.indices.delete_index_template(name=template)
        es.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
