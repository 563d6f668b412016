"""Stories stay consistent on the real Kafka and Elasticsearch: merges across an index-worker
restart, a rewound dedup batch, and a dedup worker that cannot rebuild its state."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from typer.testing import CliRunner

from enrich.dedup.engine import DedupConfig, DedupEngine
from enrich.dedup.stage import DedupStage, dedup_input, snapshot_path, write_snapshot
from enrich.worker import content_hash
from index.maintenance import check_stories, expire
from index.search import StorySearch
from newsflow.contracts import Article, DedupedArticle, Message, decode, encode
from newsflow.es import IndexNames, make_client
from newsflow.kafka_io import ensure_topics, make_admin, make_producer
from newsflow.runtime import StageRunner
from newsflow.settings import Settings, get_settings
from newsflow.urls import url_id
from pipeline.cli import app
from pipeline.stages import StageStartError, build_runner

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _words(seed: str, count: int) -> list[str]:
    """Distinct pseudo-words per seed: stories that share no vocabulary never cluster."""
    words = []
    for i in range(count):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        words.append("".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:7]))
    return words


def make(
    outlet: str, slug: str, words: list[str], when: datetime, *, is_article: bool = True
) -> Article:
    url = f"http://{outlet}.example/news/{slug}"
    text = "\n\n".join(" ".join(words[i : i + 20]) + "." for i in range(0, len(words), 20))
    return Article(
        id=url_id(url),
        url=url,
        outlet=outlet,
        title=f"{words[0]} {words[1]} {words[2]} common",
        text=text,
        published_at=when,
        is_article=is_article,
        content_hash=content_hash(text),
        fetched_at=when,
        extractor="test",
    )


def produce(settings: Settings, topic: str, messages: list[Message]) -> None:
    producer = make_producer(settings)
    futures = [
        producer.send(topic, key=str(getattr(m, "id", "")).encode(), value=encode(m))
        for m in messages
    ]
    producer.flush()
    for future in futures:
        future.get(30)
    producer.close()


def run(
    settings: Settings,
    stage: str,
    *,
    messages: int,
    prepare: Callable[[StageRunner[Any]], None] | None = None,
) -> StageRunner[Any]:
    """One worker of ``stage`` (the test's own group) until it has read ``messages``."""
    runner = build_runner(stage, settings, group_id=f"{settings.index_prefix}-{stage}")
    if prepare is not None:
        prepare(runner)
    try:
        runner.run(max_messages=messages, idle_timeout=20)
    finally:
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()
    assert runner.stats.consumed >= messages, (stage, runner.stats)
    return runner


def deduped(settings: Settings) -> dict[str, list[DedupedArticle]]:
    """Every message on the deduped topic, by article id, in each partition's order."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        topic = settings.topic_deduped_articles
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        seen: dict[str, list[DedupedArticle]] = {}
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    message = decode(DedupedArticle, record.value)
                    seen.setdefault(message.id, []).append(message)
        return seen
    finally:
        consumer.close()


@pytest.fixture
def es_names(infra_settings: Settings) -> Iterator[tuple[Any, IndexNames]]:
    es = make_client(infra_settings)
    yield es, IndexNames(infra_settings.index_prefix)
    es.close()


def test_merges_survive_an_index_restart_and_late_copies_find_their_story(
    infra_settings: Settings, es_names: tuple[Any, IndexNames]
) -> None:
    """Two stories, then an article (dated a week earlier) that bridges them; the index
    worker restarts; then, nine days on, a copy of an absorbed story's article and a late
    redelivery of a decision from before the merge. Every article ends in the survivor, whose
    document exists; the absorbed story is a redirect, never brought back."""
    settings = infra_settings
    es, names = es_names
    left, right = _words("left", 60), _words("right", 60)
    mixed = [w for pair in zip(left, right, strict=True) for w in pair]
    a = make("a", "left", left, T0)
    b = make("b", "right", right, T0 + timedelta(minutes=1))
    bridge = make("c", "both", mixed, T0 - 8 * DAY)
    page = make("a", "index-page", _words("page", 60), T0 + timedelta(minutes=2), is_article=False)
    first = [a, b, bridge, page]

    def small_window(runner: StageRunner[Any]) -> None:
        # A 10-day window, evicted after every article: the clock below spans it.
        stage = cast(DedupStage, runner.stage)
        stage.config = DedupConfig(window_seconds=10 * 86400, evict_every=1)

    produce(settings, settings.topic_articles, list(first))
    run(settings, "dedup", messages=len(first), prepare=small_window)
    run(settings, "index", messages=len(first))
    before = {k: v[0] for k, v in deduped(settings).items()}
    merging = before[bridge.id].story
    assert merging is not None and merging.merged_from == [b.id]
    assert before[page.id].story_id is None

    # The index worker restarts (a new IndexStage); dedup restarts from its snapshot.
    fillers = [
        make("f", f"filler-{days}", _words(f"filler-{days}", 60), T0 + days * DAY)
        for days in (3, 6, 9)
    ]
    late = make("d", "right-copy", right, T0 + 9 * DAY + timedelta(minutes=1))
    produce(settings, settings.topic_articles, [*fillers, late])
    run(settings, "dedup", messages=len(fillers) + 1)
    # A partition that lagged: the decision for b from before the merge arrives only now.
    produce(settings, settings.topic_deduped_articles, [before[b.id]])
    run(settings, "index", messages=len(fillers) + 2)

    decided = deduped(settings)[late.id][-1]
    assert (decided.duplicate_of, decided.story_id) == (b.id, a.id)
    assert decided.story is None  # its story had left the clustering window (3 days)
    check = check_stories(es, names)
    assert check.ok, check
    assert check.articles == len(first) - 1 + len(fillers) + 1
    for article in (a, b, bridge, late):
        assert es.get(index=names.articles, id=article.id)["_source"]["story_id"] == a.id
    assert es.get(index=names.articles, id=page.id)["_source"]["story_id"] is None
    redirect = es.get(index=names.stories, id=b.id)["_source"]
    assert redirect["merged_into"] == a.id
    listed = StorySearch(es, names).new_stories(since=None, size=50)
    assert b.id not in {s.story_id for s in listed} and a.id in {s.story_id for s in listed}
    hits = StorySearch(es, names).top_stories(left[0])
    assert [h.story_id for h in hits] == [a.id]


def test_a_rewind_mid_batch_gives_the_decisions_of_a_run_without_it(
    infra_settings: Settings, es_names: tuple[Any, IndexNames]
) -> None:
    """The dedup worker's output fails half-way through a batch (a transient failure): the
    runner seeks back and re-reads the batch with the engine's state as it was after it.
    Every article still gets the decision a run without the failure gives it."""
    settings = infra_settings
    es, names = es_names
    stories = {seed: _words(seed, 60) for seed in ("one", "two", "three")}
    inputs: list[Article] = []
    for n, (seed, words) in enumerate(stories.items()):
        inputs.append(make("wire", seed, words, T0 + timedelta(minutes=n)))
        inputs.append(make("copy", f"{seed}-copy", words, T0 + timedelta(minutes=n, seconds=30)))
    edited = [*stories["two"][:50], *_words("edits", 10)]
    inputs.append(make("other", "two-edited", edited, T0 + timedelta(minutes=5)))
    both = [w for pair in zip(stories["one"], stories["three"], strict=True) for w in pair]
    inputs.append(make("bridge", "one-and-three", both, T0 + timedelta(minutes=6)))

    reference = DedupEngine()
    expected = {x.id: reference.observe(dedup_input(x)) for x in inputs}
    assert {d.reason for d in expected.values()} == {"new", "exact", "near"}
    assert any(d.story is not None and d.story.merged_from for d in expected.values())

    def fail_once_mid_batch(runner: StageRunner[Any]) -> None:
        send, calls = runner.producer.send, [0]

        def flaky(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == len(inputs) // 2:
                raise KafkaError("injected: the broker went away mid-batch")
            return send(*args, **kwargs)

        runner.producer.send = flaky

    produce(settings, settings.topic_articles, list(inputs))
    runner = run(settings, "dedup", messages=len(inputs), prepare=fail_once_mid_batch)
    assert runner.stats.outcomes["requeued"] >= len(inputs) // 2, runner.stats
    got = deduped(settings)
    assert set(got) == set(expected)
    for article_id, messages in got.items():
        want = expected[article_id]
        for message in messages:  # those sent before the failure, and after the rewind
            assert message.dedup_reason == want.reason, article_id
            assert message.duplicate_of == want.duplicate_of, article_id
            # The story, or the story it has merged into since (the one it now belongs to).
            resolved = reference.clusterer.resolve(message.story_id or "")
            assert resolved == reference.clusterer.resolve(want.story_id), article_id
    run(settings, "index", messages=sum(map(len, got.values())))
    check = check_stories(es, names)
    assert check.ok and check.articles == len(inputs), check


def test_check_stories_reports_articles_without_a_story_to_show(
    infra_settings: Settings, es_names: tuple[Any, IndexNames]
) -> None:
    es, names = es_names

    def article(key: str, story: str | None, *, is_article: bool = True) -> None:
        document = {"id": key, "story_id": story, "is_article": is_article, "url": "http://x"}
        es.index(index=names.articles, id=key, document=document)

    es.index(index=names.stories, id="s1", document={"story_id": "s1", "articles": 1})
    es.index(index=names.stories, id="s2", document={"story_id": "s2", "merged_into": "s1"})
    article("fine", "s1")
    article("lost", "s9")
    article("moved", "s2")
    article("page", "s1", is_article=False)
    article("bare", None)
    check = check_stories(es, names)
    assert (check.articles, check.stories) == (4, 3)
    assert check.missing == {"s9": ["lost"]} and check.redirected == {"s2": ["moved"]}
    assert (check.unstoried, check.non_articles_with_story) == (["bare"], ["page"])
    assert not check.ok
    assert check.summary() == (
        "4 articles in 3 stories: 1 missing, 1 redirected, 1 unstoried, 1 non_articles_with_story"
    )


# --- the dedup state must be recoverable from Kafka -----------------------------------------


def _truncate(settings: Settings, before: int) -> None:
    admin = make_admin(settings)
    try:
        admin.delete_records({TopicPartition(settings.topic_articles, 0): before})
    finally:
        admin.close()


def test_the_dedup_worker_refuses_to_start_when_the_log_lost_part_of_its_window(
    infra_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = infra_settings
    articles = [make("a", f"s{i}", _words(f"s{i}", 40), T0) for i in range(5)]
    produce(settings, settings.topic_articles, list(articles))
    _truncate(settings, 3)  # the first three are gone, produced a moment ago
    group = f"{settings.index_prefix}-dedup"
    with pytest.raises(StageStartError) as refused:
        build_runner("dedup", settings, group_id=group)
    message = str(refused.value)
    assert "stage dedup refuses to start: there is no usable dedup snapshot" in message
    assert f"{settings.topic_articles}[0] starts at 3" in message
    assert "NEWSFLOW_DEDUP_ALLOW_PARTIAL_REBUILD=true" in message

    # The worker command exits non-zero with the reason, no traceback.
    for name, value in {
        "NEWSFLOW_TOPIC_ARTICLES": settings.topic_articles,
        "NEWSFLOW_DEDUP_STATE_DIR": str(settings.dedup_state_dir),
        "NEWSFLOW_WORKER_METRICS_BASE_PORT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker", "dedup", "--idle-timeout", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, (result.output, result.exception)
    assert "starts at 3" in result.stderr and "Traceback" not in result.output

    # Told to accept it, it starts with what the log holds.
    allowed = settings.model_copy(update={"dedup_allow_partial_rebuild": True})
    runner = run(allowed, "dedup", messages=2)
    assert cast(DedupStage, runner.stage).engine.observed == 2


def test_a_snapshot_must_reach_the_start_of_the_log(infra_settings: Settings) -> None:
    settings = infra_settings
    articles = [make("a", f"s{i}", _words(f"s{i}", 40), T0) for i in range(5)]
    produce(settings, settings.topic_articles, list(articles))
    _truncate(settings, 3)
    engine = DedupEngine()
    path = snapshot_path(settings.dedup_state_dir, settings.topic_articles)
    group = f"{settings.index_prefix}-dedup"
    write_snapshot(path, engine, settings.topic_articles, {0: 2})  # article 2 is gone
    with pytest.raises(StageStartError, match=r"resumes .* at offset 2, but the log now starts"):
        build_runner("dedup", settings, group_id=group)
    write_snapshot(path, engine, settings.topic_articles, {0: 3})
    runner = build_runner("dedup", settings, group_id=group)
    runner.consumer.close()
    runner.producer.close()


def test_init_raises_the_retention_of_an_articles_topic_that_keeps_less_than_the_window(
    infra_settings: Settings,
) -> None:
    settings = infra_settings
    admin = make_admin(settings)

    def retention(topic: str) -> int:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": None})
        described = admin.describe_configs([resource], config_filter="all")["topic"][topic]
        return int(described["retention.ms"]["value"])

    try:
        window_ms = int(settings.dedup_window_days * 86400 * 1000)
        assert retention(settings.topic_articles) == window_ms  # created so by init
        assert retention(settings.topic_raw_pages) == 7 * 86400 * 1000
        week = ConfigResource(
            ConfigResourceType.TOPIC,
            settings.topic_articles,
            configs={"retention.ms": str(7 * 86400 * 1000)},
        )
        admin.alter_configs([week])  # as `newsflow init` created it before
        assert ensure_topics(settings) == []
        assert retention(settings.topic_articles) == window_ms
        # Longer is left alone.
        longer = ConfigResource(
            ConfigResourceType.TOPIC, settings.topic_articles, configs={"retention.ms": "-1"}
        )
        admin.alter_configs([longer])
        ensure_topics(settings)
        assert retention(settings.topic_articles) == -1
    finally:
        admin.close()


def test_retention_keeps_a_story_while_an_article_names_it(
    infra_settings: Settings, es_names: tuple[Any, IndexNames]
) -> None:
    """A story's last_seen is its articles' own dates: an archive page published months ago
    but fetched this week must not lose its story to retention before it goes itself."""
    es, names = es_names
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    old, recent = now - 120 * DAY, now - 2 * DAY
    for story in ("s-archive", "s-gone"):
        document = {"story_id": story, "last_seen": old.isoformat(), "articles": 1}
        es.index(index=names.stories, id=story, document=document)
    for key, story, fetched in (("archive", "s-archive", recent), ("gone", "s-gone", old)):
        document = {"id": key, "story_id": story, "is_article": True, "url": "http://x"}
        document["fetched_at"] = fetched.isoformat()
        es.index(index=names.articles, id=key, document=document)
    es.indices.refresh(index=f"{names.articles},{names.stories}")
    done = expire(es, names, older_than=90 * DAY, now=now)
    assert (done.articles, done.stories) == (1, 1)
    assert es.exists(index=names.stories, id="s-archive")
    assert not es.exists(index=names.stories, id="s-gone")
    assert check_stories(es, names).ok
