"""The maintenance DAG's work against the real Elasticsearch and Kafka."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from elasticsearch import helpers
from typer.testing import CliRunner

from index.maintenance import expire, index_report
from newsflow.contracts import DeadLetter, encode
from newsflow.dlq import read_letters, replay_new_letters
from newsflow.es import IndexNames, make_client
from newsflow.kafka_io import make_producer
from newsflow.settings import Settings, get_settings
from pipeline.cli import app

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _article(doc_id: str, fetched: datetime) -> dict[str, object]:
    return {"id": doc_id, "url": f"https://example.org/{doc_id}", "outlet": "o", "text": "x",
            "fetched_at": fetched.isoformat(), "is_article": True}  # fmt: skip


def test_retention_deletes_only_old_articles_and_stories(infra_settings: Settings) -> None:
    names = IndexNames(infra_settings.index_prefix)
    es = make_client(infra_settings)
    try:
        old, recent = NOW - timedelta(days=120), NOW - timedelta(days=2)
        articles = [("old-1", old), ("old-2", old), ("new-1", recent)]
        stories = [("s-old", old), ("s-new", recent)]
        helpers.bulk(
            es,
            [
                {"_index": names.articles, "_id": i, "_source": _article(i, when)}
                for i, when in articles
            ]
            + [
                {
                    "_index": names.stories,
                    "_id": s,
                    "_source": {"story_id": s, "last_seen": when.isoformat(), "articles": 1},
                }
                for s, when in stories
            ],
            refresh=True,
        )
        report = index_report(es, names)
        assert report["write_index"] == names.articles_first_index
        assert report[names.articles_first_index]["docs"] == 3

        done = expire(es, names, older_than=timedelta(days=90), now=NOW)
        assert (done.articles, done.stories) == (2, 1)
        left = es.search(index=names.articles, query={"match_all": {}})["hits"]["hits"]
        assert [hit["_id"] for hit in left] == ["new-1"]
        assert es.count(index=names.stories)["count"] == 1
        again = expire(es, names, older_than=timedelta(days=90), now=NOW)
        assert (again.articles, again.stories) == (0, 0)  # idempotent
    finally:
        es.close()


def _letter(
    kind: Literal["permanent", "retries_exhausted"], reason: str, n: int, settings: Settings
) -> DeadLetter:
    return DeadLetter(
        stage="index",
        source_topic=settings.topic_deduped_articles,
        partition=0,
        offset=n,
        key=f"k{n}",
        value=f'{{"n": {n}}}',
        error_kind=kind,
        reason=reason,
    )


def test_dead_letter_replay_sends_new_retryable_letters_once(infra_settings: Settings) -> None:
    settings = infra_settings
    group = f"maint-{uuid.uuid4().hex[:6]}"
    producer = make_producer(settings)
    letters = [
        _letter("retries_exhausted", "elasticsearch_unavailable", 1, settings),
        _letter("permanent", "empty_text", 2, settings),
    ]
    for letter in letters:
        producer.send(settings.topic_dead_letters, key=b"k", value=encode(letter))
    producer.flush()

    first = replay_new_letters(settings, group_id=group)
    assert first.read == 2
    assert first.replayed == {"elasticsearch_unavailable": 1}
    second = replay_new_letters(settings, group_id=group)  # nothing new since the last run
    assert (second.read, second.replayed) == (0, {})

    producer.send(settings.topic_dead_letters, key=b"k", value=encode(letters[0]))
    producer.flush()
    producer.close()
    third = replay_new_letters(settings, group_id=group)
    assert (third.read, third.replayed) == (1, {"elasticsearch_unavailable": 1})
    assert len(list(read_letters(settings))) == 3  # the topic keeps every letter

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    topic = settings.topic_deduped_articles
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < 2 and time.monotonic() < deadline:
            values += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
    finally:
        consumer.close()
    assert values == [b'{"n": 1}', b'{"n": 1}']


def test_dlq_commands_summarize_and_replay_with_progress(
    infra_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = infra_settings
    producer = make_producer(settings)
    for n in range(3):
        letter = _letter("permanent", "empty_text", n, settings)
        producer.send(settings.topic_dead_letters, key=b"k", value=encode(letter))
    producer.flush()
    producer.close()
    # The CLI replays only to the topology's topics: this test's, under its settings.
    for name in ("raw_pages", "articles", "deduped_articles", "dead_letters", "alerts"):
        monkeypatch.setenv(f"NEWSFLOW_TOPIC_{name.upper()}", getattr(settings, f"topic_{name}"))
    get_settings.cache_clear()
    try:
        summary = CliRunner().invoke(app, ["dlq", "list", "--summary"])
        dry = CliRunner().invoke(app, ["dlq", "replay", "--reason", "empty_text", "--dry-run"])
        done = CliRunner().invoke(app, ["dlq", "replay", "--reason", "empty_text"])
        none = CliRunner().invoke(app, ["dlq", "replay", "--reason", "no_such_reason"])
    finally:
        get_settings.cache_clear()
    assert summary.exit_code == 0, summary.output
    assert summary.output.split() == ["3", "index", "permanent", "empty_text", "3", "dead",
                                      "letters", "in", "all"]  # fmt: skip
    assert "would replay 3 message(s)" in dry.output
    assert done.exit_code == 0, done.output
    assert "replaying" in done.output and "replayed 3 message(s)" in done.output
    assert "replayed 0 message(s)" in none.output


def test_backfill_reprocesses_the_input_with_a_group_of_its_own(
    infra_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsflow.contracts import RawPage
    from newsflow.urls import url_id
    from tests.pages import article_html

    settings = infra_settings
    producer = make_producer(settings)
    body = ["The ferry between the two islands will run all winter for the first time. " * 4]
    for n in range(3):
        url = f"http://backfill.example/news/ferry-{n}"
        page = RawPage(
            id=url_id(url),
            url=url,
            fetched_url=url,
            outlet="backfill",
            http_status=200,
            html=article_html(f"Ferry story {n}", body),
        )
        producer.send(settings.topic_raw_pages, key=page.id.encode(), value=encode(page))
    producer.flush()
    producer.close()
    monkeypatch.setenv("NEWSFLOW_TOPIC_RAW_PAGES", settings.topic_raw_pages)
    monkeypatch.setenv("NEWSFLOW_TOPIC_ARTICLES", settings.topic_articles)
    monkeypatch.setenv("NEWSFLOW_TOPIC_DEAD_LETTERS", settings.topic_dead_letters)
    monkeypatch.setenv("NEWSFLOW_WORKER_METRICS_BASE_PORT", "0")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["backfill", "enrich"])
        later = CliRunner().invoke(app, ["backfill", "enrich", "--since", "2999-01-01T00:00:00"])
        refused = CliRunner().invoke(app, ["backfill", "dedup"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["planned"], summary["consumed"]) == (3, 3)
    assert summary["outcomes"]["produced"] == 3
    assert "3 message(s) to process" in result.output
    assert later.exit_code == 0, (later.output, later.exception)
    assert json.loads(later.output.strip().splitlines()[-1])["planned"] == 0
    assert refused.exit_code == 2
