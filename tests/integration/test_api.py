"""The search API against the real Elasticsearch: articles indexed by the index stage."""

from __future__ import annotations

import hashlib
import re
import resource
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from index.indices import ensure_indices
from index.worker import IndexStage
from newsflow.contracts import DedupedArticle, DedupReason, StorySummary
from newsflow.es import IndexNames, make_client
from newsflow.runtime import Inbound
from newsflow.settings import Settings
from newsflow.urls import url_id
from pipeline.api import create_app

pytestmark = pytest.mark.integration

READ_KEY = "integration-read-key-0123456789abcdef"
ADMIN_KEY = "integration-admin-key-0123456789abcdef"
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def make_article(
    outlet: str,
    slug: str,
    title: str,
    text: str,
    *,
    published: datetime | None,
    story_id: str,
    language: str = "en",
    authors: Sequence[str] = (),
    summary: StorySummary | None = None,
) -> DedupedArticle:
    url = f"http://{outlet}.example/{slug}"
    return DedupedArticle(
        id=url_id(url),
        url=url,
        outlet=outlet,
        title=title,
        text=text,
        authors=list(authors),
        published_at=published,
        language=language,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        fetched_at=(published or T0) + timedelta(minutes=5),
        extractor="test",
        story_id=story_id,
        dedup_reason=DedupReason.NEW,
        story=summary,
    )


def summary_of(articles: Sequence[DedupedArticle]) -> StorySummary:
    """The story summary dedup would attach to the last of ``articles``."""
    dates = [a.published_at or T0 for a in articles]
    return StorySummary(
        story_id=articles[0].story_id or "",
        first_seen=min(dates),
        last_seen=max(dates),
        representative=articles[0].id,
        title=articles[0].title or "",
        articles=len(articles),
        outlets=sorted({a.outlet for a in articles}),
    )


def index_articles(
    es: Elasticsearch, names: IndexNames, articles: Sequence[DedupedArticle]
) -> None:
    """Through the pipeline's own index stage, then make them searchable."""
    stage = IndexStage(es, names)
    batch = [Inbound("deduped", 0, i, a.id, None, a) for i, a in enumerate(articles)]
    results = stage.process(batch)
    assert all(type(r).__name__ == "Done" for r in results), results
    es.indices.refresh(index=f"{names.articles},{names.stories}")


FLOOD = [
    "The river authority opened the sluice gates at Marlow Weir after heavy rain pushed the "
    "water to its highest level in eleven years.",
    "Residents near the towpath were asked to move cars as the flood gates stayed open.",
]


def corpus() -> list[DedupedArticle]:
    flood = [
        make_article(
            outlet,
            f"flood-{i}",
            title,
            " ".join(FLOOD) + f" Report {i}.",
            published=T0 + timedelta(hours=i),
            story_id="s-flood",
            authors=["Jane Smith"] if i == 0 else [],
        )
        for i, (outlet, title) in enumerate(
            [
                ("riverside", "Weir gates opened as river peaks"),
                ("valley", "Flood gates open at Marlow"),
                ("county", "Marlow weir: gates stay open"),
            ]
        )
    ]
    flood[-1] = flood[-1].model_copy(update={"story": summary_of(flood)})
    libraries = make_article(
        "county",
        "libraries",
        "Libraries to open on Sundays",
        "The county's libraries will open on Sunday afternoons from next month.",
        published=T0 - timedelta(days=3),
        story_id="s-libraries",  # no summary: counted from the articles themselves
    )
    storm = [
        make_article(
            "valley",
            "storm",
            "Storm brings gales to the valley",
            "A storm brought gales and snow to the valley on Monday night.",
            published=T0 - timedelta(days=1),
            story_id="s-storm",
        ),
        make_article(
            "alpenpost",
            "sturm",
            "Sturm bringt Schnee ins Tal",
            "Ein Sturm brachte in der Nacht Schnee und Wind ins Tal, storm.",
            published=T0 - timedelta(days=1, hours=2),
            story_id="s-storm-de",
            language="de",
        ),
    ]
    # Budget stories for paging: several articles per story, with different weights of the
    # query word, so relevance order interleaves stories.
    budget: list[DedupedArticle] = []
    for story in range(14):
        members = []
        for copy in range(1 + story % 4):
            repeats = 1 + (story * 7 + copy * 3) % 5
            members.append(
                make_article(
                    ["riverside", "valley", "county"][copy % 3],
                    f"budget-{story}-{copy}",
                    f"Council budget item {story}",
                    ("budget " * repeats) + f"The council discussed item {story} at length.",
                    published=T0 - timedelta(days=10) + timedelta(hours=story * 5 + copy),
                    story_id=f"s-budget-{story}",
                )
            )
        if story % 2 == 0:
            members[-1] = members[-1].model_copy(update={"story": summary_of(members)})
        budget.extend(members)
    return [*flood, libraries, *storm, *budget]


BUDGET_STORIES = {f"s-budget-{i}" for i in range(14)}
BUDGET_ARTICLES = sum(1 + i % 4 for i in range(14))


@pytest.fixture(scope="module")
def api_settings(infra: None) -> Iterator[Settings]:
    """An index prefix of this module's own, with the corpus indexed once (tests only read)."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(
        index_prefix=tag,
        api_read_keys=SecretStr(READ_KEY),
        api_admin_keys=SecretStr(ADMIN_KEY),
        api_page_keep_alive_seconds=60,
    )
    es = make_client(settings)
    try:
        ensure_indices(es, settings)
        index_articles(es, IndexNames(tag), corpus())
        yield settings
    finally:
        drop_indices(es, tag)
        es.close()


def drop_indices(es: Elasticsearch, prefix: str) -> None:
    created = list(es.indices.get(index=f"{prefix}-*", allow_no_indices=True))
    if created:  # wildcard deletes are refused by default
        es.indices.delete(index=",".join(created))
    for template in (f"{prefix}-articles", f"{prefix}-stories"):
        es.indices.delete_index_template(name=template)


@pytest.fixture(scope="module")
def es(api_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_client(api_settings)
    yield client
    client.close()


@pytest.fixture
def client(api_settings: Settings, es: Elasticsearch) -> Iterator[TestClient]:
    app = create_app(api_settings, es=es)
    with TestClient(app, headers={"X-API-Key": READ_KEY}) as test_client:
        yield test_client


def search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def story_ids(body: dict[str, Any]) -> list[str]:
    return [h["story_id"] for h in body["hits"]]


# --- query syntax -------------------------------------------------------------------------


def test_one_hit_per_story_with_counts_from_the_stories_index(client: TestClient) -> None:
    body = search(client, q="weir gates")
    assert story_ids(body) == ["s-flood"]
    story = body["hits"][0]["story"]
    assert story["articles"] == 3
    assert story["outlets"] == ["county", "riverside", "valley"]
    assert body["articles_total"] == 3


def test_counts_without_a_stories_document_are_live(client: TestClient) -> None:
    [hit] = search(client, q="libraries")["hits"]
    assert hit["story"]["articles"] == 1
    assert hit["story"]["outlets"] == ["county"]


def test_phrase_negation_or_and_prefixes(client: TestClient) -> None:
    assert story_ids(search(client, q='"sluice gates"')) == ["s-flood"]
    assert story_ids(search(client, q='"gates sluice"')) == []
    assert set(story_ids(search(client, q="storm OR libraries"))) == {
        "s-storm",
        "s-storm-de",
        "s-libraries",
    }
    assert story_ids(search(client, q="storm -schnee")) == ["s-storm"]
    assert story_ids(search(client, q="storm lang:de")) == ["s-storm-de"]
    assert story_ids(search(client, q="gales outlet:VALLEY")) == ["s-storm"]
    assert story_ids(search(client, q="title:marlow")) == ["s-flood"]
    assert story_ids(search(client, q="title:sluice")) == []  # only in the text
    assert story_ids(search(client, q="author:smith")) == ["s-flood"]
    # Malformed input still searches.
    assert story_ids(search(client, q='"sluice gates')) == ["s-flood"]
    assert story_ids(search(client, q="(weir OR")) == ["s-flood"]


def test_not_chains_fold_and_deep_nesting_is_a_clear_400(client: TestClient) -> None:
    # 331 signs used to raise RecursionError: an HTTP 500 instead of a search.
    assert story_ids(search(client, q="storm " + "-" * 331 + "schnee")) == ["s-storm"]
    assert story_ids(search(client, q="-" * 332 + "weir")) == ["s-flood"]
    deep = "".join(f"-(w{i} " for i in range(8)) + ")" * 8
    response = client.get("/v1/search", params={"q": deep})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "query_too_complex"
    five_authors = " ".join(f"author:a{i}" for i in range(5))
    response = client.get("/v1/search", params={"q": five_authors})
    assert response.json()["error"]["code"] == "query_too_complex"


def test_highlights_are_escaped_with_marks(client: TestClient) -> None:
    [hit] = search(client, q="libraries")["hits"]
    assert "<mark>Libraries</mark>" in hit["highlight"]["title"][0]
    assert "county&#x27;s" in hit["highlight"]["text"][0]  # the apostrophe is escaped


def test_filters(client: TestClient) -> None:
    assert set(story_ids(search(client, q="storm", lang="en"))) == {"s-storm"}
    assert story_ids(search(client, q="gates", outlet="county")) == ["s-flood"]
    assert story_ids(search(client, q="gates", outlet="alpenpost")) == []
    day = (T0 - timedelta(days=3)).date().isoformat()
    assert story_ids(search(client, **{"from": day, "to": day})) == ["s-libraries"]
    assert story_ids(search(client, q="budget", story="s-budget-3")) == ["s-budget-3"]
    ungrouped = search(client, story="s-flood", group="false", sort="date")
    assert len(ungrouped["hits"]) == 3


def test_sort_by_date(client: TestClient) -> None:
    body = search(client, q="storm OR gates OR libraries", sort="date")
    assert story_ids(body) == ["s-flood", "s-storm", "s-storm-de", "s-libraries"]
    assert body["query"]["sort"] == "date"
    assert search(client)["query"]["sort"] == "date"  # no query: newest first


def test_facets_count_articles_and_stories_and_ignore_their_own_filter(
    client: TestClient,
) -> None:
    facets = search(client, q="budget")["facets"]
    assert facets["stories"] == len(BUDGET_STORIES)
    outlets = {b["key"]: b for b in facets["outlets"]}
    assert sum(b["articles"] for b in outlets.values()) == BUDGET_ARTICLES
    assert outlets["riverside"]["stories"] == len(BUDGET_STORIES)
    assert [b["key"] for b in facets["languages"]] == ["en"]
    assert sum(b["articles"] for b in facets["published"]) == BUDGET_ARTICLES
    filtered = search(client, q="budget", outlet="county")
    # The outlet facet still offers the other outlets; the others follow the filter.
    assert {b["key"] for b in filtered["facets"]["outlets"]} == set(outlets)
    assert filtered["facets"]["stories"] == outlets["county"]["stories"]
    assert {h["outlet"] for h in filtered["hits"]} == {"county"}


# --- stories ------------------------------------------------------------------------------


def test_story_articles(client: TestClient) -> None:
    body = client.get("/v1/stories/s-flood").json()
    assert body["story"]["articles"] == 3
    assert [a["outlet"] for a in body["articles"]] == ["riverside", "valley", "county"]
    missing = client.get("/v1/stories/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_new_stories(client: TestClient) -> None:
    stories = client.get("/v1/stories/new", params={"size": 3}).json()["stories"]
    assert stories[0]["story_id"] == "s-flood"  # first seen last
    later = client.get("/v1/stories/new", params={"since": T0.isoformat()}).json()["stories"]
    assert later == []
    earlier = (T0 - timedelta(seconds=1)).isoformat()
    assert [
        s["story_id"]
        for s in client.get("/v1/stories/new", params={"since": earlier}).json()["stories"]
    ] == ["s-flood"]


# --- deep paging --------------------------------------------------------------------------


def page_through(client: TestClient, **params: Any) -> list[list[str]]:
    pages = []
    token = None
    for _ in range(50):
        body = search(client, **params, **({"token": token} if token else {}))
        pages.append(
            story_ids(body)
            if params.get("group", "true") == "true"
            else [h["id"] for h in body["hits"]]
        )
        token = body["next_token"]
        if token is None:
            return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("sort", ["relevance", "date"])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_deep_paging_never_repeats_a_story(client: TestClient, sort: str, size: int) -> None:
    pages = page_through(client, q="budget", sort=sort, size=size)
    seen = [s for page in pages for s in page]
    assert len(seen) == len(set(seen)), pages
    assert set(seen) == BUDGET_STORIES
    assert all(len(page) <= size for page in pages)


def test_paging_pages_are_in_order_of_each_storys_best_article(client: TestClient) -> None:
    one_page = story_ids(search(client, q="budget", size=20))
    paged = [s for page in page_through(client, q="budget", size=4) for s in page]
    assert paged == one_page


def test_ungrouped_paging_returns_every_article_once(client: TestClient) -> None:
    pages = page_through(client, q="budget", size=7, group="false")
    ids = [i for page in pages for i in page]
    assert len(ids) == len(set(ids)) == BUDGET_ARTICLES


def test_token_is_tied_to_its_query(client: TestClient) -> None:
    token = search(client, q="budget", size=2)["next_token"]
    assert token
    other = client.get("/v1/search", params={"q": "council", "size": 2, "token": token})
    assert (other.status_code, other.json()["error"]["code"]) == (400, "token_mismatch")
    forged = client.get("/v1/search", params={"q": "budget", "token": token[:-3] + "abc"})
    assert forged.json()["error"]["code"] == "invalid_token"
    # Size may change between pages; the token still fits the query.
    assert search(client, q="budget", size=5, token=token)["page"] == 2


def test_closed_snapshot_is_410(client: TestClient, es: Elasticsearch) -> None:
    import base64
    import json

    token = search(client, q="budget", size=2)["next_token"]
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    es.close_point_in_time(id=payload["p"])
    gone = client.get("/v1/search", params={"q": "budget", "size": 2, "token": token})
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "token_expired")


# --- auth with the real backend -----------------------------------------------------------


def test_scopes(client: TestClient, api_settings: Settings) -> None:
    stats = client.get("/v1/admin/stats")
    assert stats.status_code == 403
    admin = client.get("/v1/admin/stats", headers={"X-API-Key": ADMIN_KEY})
    assert admin.status_code == 200
    body = admin.json()
    assert body["articles_alias"] == f"{api_settings.index_prefix}-articles"
    assert sum(i["docs"] for i in body["articles_indices"]) == len(corpus())
    assert client.get("/v1/search", params={"q": "x"}, headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/healthz").json()["status"] == "ok"


# --- a real server: what is refused is refused before the body is read -----------------------


@pytest.fixture
def served(api_settings: Settings, es: Elasticsearch) -> Iterator[int]:
    """The API under uvicorn on a loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(api_settings, es=es), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _answer_to(port: int, head: bytes, first_chunk: bytes = b"") -> bytes:
    """Send a request's head (and maybe the start of its body), then read the answer without
    sending more: a server that waits for the whole body never answers (a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + first_chunk)
        answer = b""
        # The head and the body may come in separate writes: read until the body is whole.
        while chunk := sock.recv(65536):
            answer += chunk
            headers, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", headers)
            if length and len(body) >= int(length.group(1)):
                break
        return answer


def test_real_server_answers_before_reading_a_huge_body(served: int) -> None:
    head = b"POST /v1/watches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 200 MB announced without a key: 413 before a byte of it (it was 401 after 4.5 s).
    declared = _answer_to(served, head + b"Content-Length: 200000000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    assert b"request_too_large" in declared
    # Streamed, no length, no key: 401 on the first chunk (the body was read and parsed first).
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    streamed = _answer_to(served, head + b"Transfer-Encoding: chunked\r\n\r\n", chunk)
    assert streamed.startswith(b"HTTP/1.1 401"), streamed[:200]
    # Streamed with a key: cut off at the cap.
    keyed = head + f"X-API-Key: {ADMIN_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    capped = _answer_to(served, keyed, chunk * 2)
    assert capped.startswith(b"HTTP/1.1 413"), capped[:200]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000  # kB
