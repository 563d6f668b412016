"""``newsflow search`` against the real Elasticsearch: the API's search service, so the same
stories in the same order as ``GET /v1/search``, with the same query syntax."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from index.indices import ensure_indices
from index.search import StorySearch
from newsflow.es import IndexNames, make_client
from newsflow.settings import Settings, get_settings
from pipeline.api import create_app
from pipeline.cli import app
from tests.integration.test_api import corpus, drop_indices, index_articles

pytestmark = pytest.mark.integration

# Each matches at least one story; "budget" has 14 whose articles interleave by relevance.
QUERIES = [
    "budget",
    "council budget item",
    "weir gates",
    '"sluice gates"',
    "storm OR libraries",
    "storm | libraries",
    "storm -schnee",
    "title:marlow",
    "gales outlet:VALLEY",
    "storm lang:de",
    "author:smith",
    "(weir OR",
    "",  # no query: newest first
]


@pytest.fixture(scope="module")
def settings(infra: None) -> Iterator[Settings]:
    """An index prefix of this module's own, with the API tests' corpus indexed once."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(index_prefix=tag, api_auth="off")
    es = make_client(settings)
    try:
        ensure_indices(es, settings)
        index_articles(es, IndexNames(tag), corpus())
        yield settings
    finally:
        drop_indices(es, tag)
        es.close()


@pytest.fixture(scope="module")
def es(settings: Settings) -> Iterator[Elasticsearch]:
    client = make_client(settings)
    yield client
    client.close()


@pytest.fixture(scope="module")
def client(settings: Settings, es: Elasticsearch) -> Iterator[TestClient]:
    # auth off: the app serves only loopback host names
    with TestClient(create_app(settings, es=es), base_url="http://localhost") as test_client:
        yield test_client


def run_search(settings: Settings, *args: str) -> Result:
    """``newsflow search ARGS`` as a user runs it, configured through the environment."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app, ["search", *args], env={"NEWSFLOW_INDEX_PREFIX": settings.index_prefix}
        )
    finally:
        get_settings.cache_clear()


def cli_stories(settings: Settings, query: str, size: int = 10) -> list[dict[str, Any]]:
    result = run_search(settings, query, "--json", "--size", str(size))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def cli_story_ids(settings: Settings, query: str) -> list[str]:
    return [story["story_id"] for story in cli_stories(settings, query)]


@pytest.mark.parametrize("size", [3, 20])
@pytest.mark.parametrize("query", QUERIES)
def test_cli_and_api_return_the_same_stories_in_the_same_order(
    settings: Settings, client: TestClient, query: str, size: int
) -> None:
    stories = cli_stories(settings, query, size)
    response = client.get("/v1/search", params={"q": query, "size": size})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert stories, "every query here matches"
    assert [s["story_id"] for s in stories] == [h["story_id"] for h in hits]
    for story, hit in zip(stories, hits, strict=True):
        assert (story["title"], story["outlet"], story["url"]) == (
            hit["title"],
            hit["outlet"],
            hit["url"],
        )
        assert datetime.fromisoformat(story["published_at"]) == datetime.fromisoformat(
            hit["published_at"]
        )
        assert (story["articles"], story["outlets"]) == (
            hit["story"]["articles"],
            hit["story"]["outlets"],
        )


def test_query_syntax_works_from_the_cli(settings: Settings) -> None:
    assert cli_story_ids(settings, '"sluice gates"') == ["s-flood"]
    assert cli_story_ids(settings, '"gates sluice"') == []
    assert set(cli_story_ids(settings, "storm")) == {"s-storm", "s-storm-de"}
    assert cli_story_ids(settings, "storm -schnee") == ["s-storm"]
    assert set(cli_story_ids(settings, "storm OR libraries")) == {
        "s-storm",
        "s-storm-de",
        "s-libraries",
    }
    assert cli_story_ids(settings, "title:marlow") == ["s-flood"]
    assert cli_story_ids(settings, "title:sluice") == []  # only in the text


def test_text_lines_one_group_per_story_and_exit_1_when_nothing_matches(
    settings: Settings,
) -> None:
    storm = run_search(settings, "storm -schnee")
    assert storm.exit_code == 0, storm.output
    assert storm.stdout.splitlines() == [
        "1. Storm brings gales to the valley",
        "   valley · 2026-03-09 08:00 · http://valley.example/storm",
    ]
    flood = run_search(settings, "sluice gates")
    assert (
        flood.stdout.splitlines()[2]
        == "   3 articles in one story, from: county, riverside, valley"
    )
    nothing = run_search(settings, "title:sluice")
    assert nothing.exit_code == 1
    assert nothing.stdout == "No stories match 'title:sluice'.\n"


def test_the_cli_closes_the_snapshots_it_opens(
    settings: Settings, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    open_snapshot = StorySearch.open_snapshot

    def recording(self: StorySearch, keep_alive_seconds: int) -> str:
        pit_id = open_snapshot(self, keep_alive_seconds)
        opened.append(pit_id)
        return pit_id

    monkeypatch.setattr(StorySearch, "open_snapshot", recording)
    assert run_search(settings, "budget").exit_code == 0
    assert run_search(settings, "zeppelin").exit_code == 1
    too_complex = run_search(settings, " ".join(f"word{i}" for i in range(40)))
    assert too_complex.exit_code == 2
    assert "more than 32 terms" in too_complex.stderr
    assert len(opened) == 3
    for pit_id in opened:
        with pytest.raises(NotFoundError):
            es.search(pit={"id": pit_id}, size=0)


def test_a_missing_index_is_reported(infra: None) -> None:
    result = run_search(Settings(index_prefix=f"t{uuid.uuid4().hex[:8]}"), "budget")
    assert result.exit_code == 2
    assert "run `newsflow init`" in result.stderr
