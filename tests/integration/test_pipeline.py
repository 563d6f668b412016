"""The enrich, dedup and index stages against the real Kafka and Elasticsearch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from index.search import StorySearch, count_articles
from newsflow.contracts import RawPage, encode
from newsflow.dlq import read_letters, replay
from newsflow.es import IndexNames, make_client
from newsflow.kafka_io import make_producer
from newsflow.settings import Settings, get_settings
from newsflow.urls import url_id
from pipeline.cli import app
from pipeline.stages import build_runner, initialize
from tests.pages import article_html

pytestmark = pytest.mark.integration

WIRE_BODY = [
    "The river authority opened all four sluice gates at Marlow Weir on Tuesday morning after "
    "three days of heavy rain pushed the water level to its highest mark in eleven years.",
    "Engineers said the gates would stay open until at least Friday, and residents of the low "
    "lying streets near the towpath were asked to move cars and valuables to higher ground.",
    "A spokesperson for the authority said the defences built after the last major flood were "
    "holding, and that the forecast showed drier weather arriving by the weekend.",
]
OWN_BODY = [
    "The county's libraries will open on Sunday afternoons from next month, the council's "
    "cabinet decided on Wednesday, reversing a cut made during the last round of savings.",
    "Volunteers from the Friends of the Library groups will staff the reading rooms alongside "
    "paid librarians, and the pilot will be reviewed after six months of visitor counts.",
]


def raw_page(outlet: str, path: str, html: str) -> RawPage:
    url = f"http://{outlet}.example/{path}"
    return RawPage(
        id=url_id(url), url=url, fetched_url=url, outlet=outlet, http_status=200, html=html
    )


@pytest.fixture
def pipeline_settings(infra_settings: Settings) -> Iterator[Settings]:
    yield infra_settings


def _drain(settings: Settings, stage: Any, expected: int, group_id: str | None = None) -> None:
    # A group of the test's own: sharing the stack workers' groups would make every drain wait
    # for their rebalances.
    runner = build_runner(stage, settings, group_id=group_id or f"{settings.index_prefix}-{stage}")
    try:
        runner.run(max_messages=expected, idle_timeout=20)
    finally:
        runner.stage.close()  # the enrich stage's extraction processes
        runner.consumer.close()
        runner.producer.close()
    assert runner.stats.consumed >= expected, runner.stats


def _snapshot(es: Elasticsearch, names: IndexNames) -> dict[str, tuple[int, dict[str, Any]]]:
    es.indices.refresh(index=names.articles)
    hits = es.search(index=names.articles, size=100, version=True, query={"match_all": {}})
    return {h["_id"]: (h["_version"], h["_source"]) for h in hits["hits"]["hits"]}


def test_pages_become_searchable_stories_and_bad_input_is_dead_lettered(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    pages = [
        raw_page("riverside", "news/weir-gates", article_html("Weir gates opened", WIRE_BODY)),
        raw_page("valley", "2026/weir", article_html("Flood gates open at Marlow", WIRE_BODY)),
        raw_page("county", "libraries-sunday", article_html("Libraries open on Sundays", OWN_BODY)),
        raw_page("county", "empty", "<html><body><script>render()</script></body></html>"),
    ]
    producer = make_producer(settings)
    for page in pages:
        producer.send(settings.topic_raw_pages, key=page.id.encode(), value=encode(page))
    producer.send(settings.topic_raw_pages, key=b"garbage", value=b"{not json")
    producer.flush()
    producer.close()

    _drain(settings, "enrich", expected=5)
    _drain(settings, "dedup", expected=3)
    _drain(settings, "index", expected=3)

    es = make_client(settings)
    names = IndexNames(settings.index_prefix)
    assert count_articles(es, names) == 3
    service = StorySearch(es, names)
    hits = service.top_stories("sluice gates Marlow")
    assert len(hits) == 1, "two copies of one wire story are one story"
    assert hits[0].story_or_article().articles == 2
    assert set(hits[0].story_or_article().outlets) == {"riverside", "valley"}
    # Whichever copy the (single-partition) articles log had first is the original.
    copies = [src for _, src in _snapshot(es, names).values() if src["outlet"] != "county"]
    [original] = [src for src in copies if src["duplicate_of"] is None]
    [copy] = [src for src in copies if src is not original]
    assert copy["duplicate_of"] == original["id"]
    assert copy["dedup_reason"] == "exact"
    assert copy["story_id"] == original["story_id"]
    es.indices.refresh(index=names.stories)
    story = es.get(index=names.stories, id=original["story_id"])["_source"]
    assert story["articles"] == 2
    assert sorted(story["outlets"]) == ["riverside", "valley"]
    assert [h.title for h in service.top_stories('"Sunday afternoons"')] == [
        "Libraries open on Sundays"
    ]

    letters = {stored.letter.reason: stored.letter for stored in read_letters(settings)}
    assert set(letters) == {"empty_text", "invalid_message"}
    assert letters["empty_text"].url == pages[3].url
    assert letters["invalid_message"].value == "{not json"
    assert letters["invalid_message"].source_topic == settings.topic_raw_pages

    # Replaying the articles topic from the start (a new consumer group) changes nothing.
    before = _snapshot(es, names)
    _drain(settings, "index", expected=3, group_id=f"replay-{uuid.uuid4().hex[:6]}")
    assert _snapshot(es, names) == before

    # A dead letter can be sent back to where it came from, and fails the same way again.
    replayed = replay(settings, reason="empty_text")
    assert [s.letter.url for s in replayed] == [pages[3].url]
    _drain(settings, "enrich", expected=1)
    reasons = [stored.letter.reason for stored in read_letters(settings)]
    assert reasons.count("empty_text") == 2
    es.close()


def test_init_is_idempotent(pipeline_settings: Settings) -> None:
    assert initialize(pipeline_settings) == {"topics_created": [], "indices_created": []}


def test_search_command_prints_one_line_group_per_story(
    pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings
    page = raw_page("county", "libraries", article_html("Libraries open on Sundays", OWN_BODY))
    producer = make_producer(settings)
    producer.send(settings.topic_raw_pages, key=page.id.encode(), value=encode(page)).get(30)
    producer.close()
    _drain(settings, "enrich", expected=1)
    _drain(settings, "dedup", expected=1)
    _drain(settings, "index", expected=1)
    make_client(settings).indices.refresh(index=IndexNames(settings.index_prefix).articles)

    monkeypatch.setenv("NEWSFLOW_INDEX_PREFIX", settings.index_prefix)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["search", "Sunday libraries"])
        missing = CliRunner().invoke(app, ["search", "zeppelin"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "1. Libraries open on Sundays",
        f"   county · 2026-11-20 09:30 · {page.url}",
    ]
    assert missing.exit_code == 1
    assert "No stories match" in missing.output
