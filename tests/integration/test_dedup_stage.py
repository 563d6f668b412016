"""The dedup stage on the real Kafka: one owner under a race, and restarts after ``kill -9``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from enrich.dedup.stage import snapshot_path
from enrich.worker import content_hash
from newsflow.contracts import Article, DedupedArticle, DedupReason, decode, encode
from newsflow.kafka_io import make_producer
from newsflow.runtime import StageRunner
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.urls import url_id
from pipeline.stages import build_runner

pytestmark = pytest.mark.integration

BASE_TIME = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# The sample outlets that report the seed event: three carry the wire's text, two their own.
SEED_OUTLETS = {
    "kestrel-wire",
    "northern-ledger",
    "harbour-gazette",
    "daily-klaxon",
    "backbench-notes",
}


def _words(seed: str, count: int) -> list[str]:
    """Distinct pseudo-words per seed: stories that share no vocabulary never cluster."""
    words = []
    for i in range(count):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        words.append("".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:7]))
    return words


def story_text(seed: str) -> str:
    words = _words(seed, 90)
    return "\n\n".join(" ".join(words[i : i + 30]) + "." for i in range(0, 90, 30))


def article(outlet: str, slug: str, seed: str, minutes: int = 0) -> Article:
    url = f"http://{outlet}.example/news/{slug}"
    text = story_text(seed)
    when = BASE_TIME + timedelta(minutes=minutes)
    return Article(
        id=url_id(url),
        url=url,
        outlet=outlet,
        title=" ".join(_words(seed, 6)).capitalize(),
        text=text,
        published_at=when,
        content_hash=content_hash(text),
        fetched_at=when,
        extractor="test",
    )


def produce(settings: Settings, articles: list[Article]) -> None:
    producer = make_producer(settings)
    futures = [
        producer.send(settings.topic_articles, key=a.id.encode(), value=encode(a)) for a in articles
    ]
    producer.flush()
    for future in futures:
        future.get(30)
    producer.close()


@pytest.fixture
def outputs(infra_settings: Settings) -> Iterator[Callable[..., dict[str, list[DedupedArticle]]]]:
    """Read the deduped topic from the start until ``done(outputs)``: id → every output."""
    settings = infra_settings
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    seen: dict[str, list[DedupedArticle]] = {}

    def read(
        done: Callable[[dict[str, list[DedupedArticle]]], bool], timeout: float = 60
    ) -> dict[str, list[DedupedArticle]]:
        deadline = time.monotonic() + timeout
        if not consumer.assignment():
            partitions = consumer.partitions_for_topic(settings.topic_deduped_articles) or set()
            tps = [TopicPartition(settings.topic_deduped_articles, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
        while not done(seen):
            if time.monotonic() > deadline:
                raise TimeoutError(f"outputs so far: { {k: len(v) for k, v in seen.items()} }")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    message = decode(DedupedArticle, record.value)
                    seen.setdefault(message.id, []).append(message)
        return seen

    yield read
    consumer.close()


def test_two_owners_race_and_exactly_one_copy_is_the_original(
    infra_settings: Settings, outputs: Callable[..., dict[str, list[DedupedArticle]]]
) -> None:
    settings = infra_settings
    group = f"{settings.index_prefix}-dedup"  # not the running stack's group
    runners: list[StageRunner[Article]] = [
        build_runner("dedup", settings, group_id=group) for _ in range(2)
    ]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)  # both members join the group; one holds the only partition
        groups: dict[str, list[Article]] = {}
        inputs: list[Article] = []
        for round_ in range(3):
            for story in range(2):
                seed = f"story-{round_}-{story}"
                copies = [article(f"outlet{i}", f"{seed}-{i}", seed, minutes=i) for i in range(5)]
                groups[seed] = copies
                inputs.extend(copies)
            inputs.append(article("solo", f"solo-{round_}", f"solo-{round_}"))
        # All at once, from several producers: the copies of a story arrive together.
        chunks = [inputs[i::3] for i in range(3)]
        producers = [threading.Thread(target=produce, args=(settings, c)) for c in chunks]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        got = outputs(lambda seen: all(a.id in seen for a in inputs))
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(timeout=30)
        for runner in runners:
            runner.stage.close()
            runner.consumer.close()
            runner.producer.close()

    assert sum(r.stats.consumed for r in runners) >= len(inputs)
    for article_id, messages in got.items():
        # A redelivery (rebalance) repeats the same decision.
        assert {(m.duplicate_of, m.story_id) for m in messages} == {
            (messages[0].duplicate_of, messages[0].story_id)
        }, article_id
    for seed, copies in groups.items():
        decided = [got[c.id][0] for c in copies]
        originals = [d for d in decided if d.duplicate_of is None]
        assert len(originals) == 1, (seed, [(d.outlet, d.duplicate_of) for d in decided])
        assert {d.duplicate_of for d in decided if d is not originals[0]} == {originals[0].id}
        assert len({d.story_id for d in decided}) == 1
        summary = decided[-1].story
        assert summary is not None and summary.story_id == decided[0].story_id
    solos = [got[a.id][0] for a in inputs if a.outlet == "solo"]
    assert all(s.duplicate_of is None and s.dedup_reason is DedupReason.NEW for s in solos)
    assert len({s.story_id for s in solos}) == 3


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NEWSFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NEWSFLOW_TOPIC_RAW_PAGES": settings.topic_raw_pages,
        "NEWSFLOW_TOPIC_ARTICLES": settings.topic_articles,
        "NEWSFLOW_TOPIC_DEDUPED_ARTICLES": settings.topic_deduped_articles,
        "NEWSFLOW_TOPIC_DEAD_LETTERS": settings.topic_dead_letters,
        "NEWSFLOW_INDEX_PREFIX": settings.index_prefix,
        "NEWSFLOW_DEDUP_STATE_DIR": str(settings.dedup_state_dir),
        # Only the first batch is saved: what comes after must be re-read after the kill.
        "NEWSFLOW_DEDUP_SNAPSHOT_EVERY_SECONDS": "3600",
    }
    exe = Path(sys.executable).with_name("newsflow")
    command = [str(exe)] if exe.is_file() else [sys.executable, "-m", "newsflow"]
    with log.open("ab") as handle:
        return subprocess.Popen(
            [*command, "worker", "dedup"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_and_restart_resumes_from_the_snapshot(
    infra_settings: Settings,
    outputs: Callable[..., dict[str, list[DedupedArticle]]],
    tmp_path: Path,
) -> None:
    settings = infra_settings
    log = tmp_path / "dedup-worker.log"
    snapshot = snapshot_path(settings.dedup_state_dir, settings.topic_articles)
    first = [article("alpha", f"first-{i}", f"first-{i}") for i in range(3)]
    second = [article("alpha", f"second-{i}", f"second-{i}") for i in range(2)]
    copies = [
        article("beta", f"copy-{i}", f"{'first' if i < 3 else 'second'}-{i % 3}", minutes=5)
        for i in range(5)
    ]
    produce(settings, first)  # before the worker starts: its first batch, saved
    worker = _start_worker(settings, log)
    try:
        outputs(lambda seen: all(a.id in seen for a in first))
        deadline = time.monotonic() + 30
        while not snapshot.is_file():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        # After the snapshot (saved once, for the first batch): observed, not saved.
        produce(settings, second)
        outputs(lambda seen: all(a.id in seen for a in second))
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)

        worker = _start_worker(settings, log)
        produce(settings, copies)
        got = outputs(lambda seen: all(a.id in seen for a in copies), timeout=90)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    text = log.read_text()
    assert "restored 3 observed articles" in text, text
    originals = {a.text: a.id for a in first + second}
    for copy in copies:
        decided = got[copy.id][-1]
        assert decided.duplicate_of == originals[copy.text], (copy.url, decided.dedup_reason)
        assert decided.dedup_reason is DedupReason.EXACT
    for original in first + second:
        assert {m.duplicate_of for m in got[original.id]} == {None}
        assert len({m.story_id for m in got[original.id]}) == 1
    # The second batch came after the snapshot: re-read and decided again, identically.
    assert all(len(got[a.id]) == 2 for a in second), {a.id: len(got[a.id]) for a in second}
    assert all(len(got[a.id]) == 1 for a in first)
    assert set(got) == {a.id for a in first + second + copies}, "every input has an output"


def test_sample_outlets_seed_event_is_one_story_through_the_pipeline(
    infra_settings: Settings,
) -> None:
    """The bundled outlets, crawled in-process, through enrich → dedup → index → search."""
    from devstack.demo import SEED_QUERY
    from devstack.samples.site import OUTLETS_FILE, start_server
    from index.search import StorySearch
    from ingest.crawl import crawl_outlet
    from ingest.fetch import Fetcher, FetchPolicy
    from newsflow.es import IndexNames, make_client
    from newsflow.outlets import load_registry

    settings = infra_settings
    pages = []
    with start_server("127.0.0.1", 0) as site, Fetcher(settings) as fetcher:
        for outlet in load_registry(OUTLETS_FILE, base_url=site.base_url):
            policy = FetchPolicy.for_outlet(
                outlet, settings, politeness_delay=0.0, obey_robots=False
            )
            outcomes = crawl_outlet(outlet, fetcher=fetcher, settings=settings, policy=policy)
            pages += [o.page for o in outcomes if o.page is not None]
    producer = make_producer(settings)
    for page in pages:
        producer.send(settings.topic_raw_pages, key=page.id.encode(), value=encode(page))
    producer.flush()
    producer.close()
    decisions: dict[str, float] = {}
    for stage in ("enrich", "dedup", "index"):
        runner = build_runner(stage, settings, group_id=f"{settings.index_prefix}-{stage}")
        try:
            runner.run(max_messages=len(pages), idle_timeout=15)
        finally:
            runner.stage.close()
            runner.consumer.close()
            runner.producer.close()
        if stage == "dedup":  # what the worker's /metrics would show
            decisions = {
                sample.labels["outcome"]: sample.value
                for family in runner.metrics.registry.collect()
                if family.name == "newsflow_dedup_outcomes"
                for sample in family.samples
                if sample.name.endswith("_total")
            }
    assert decisions.get("new", 0) >= 1 and decisions.get("exact", 0) >= 1, decisions
    assert sum(decisions.values()) <= len(pages)
    es = make_client(settings)
    try:
        names = IndexNames(settings.index_prefix)
        es.indices.refresh(index=names.articles)
        hits = StorySearch(es, names).top_stories(SEED_QUERY)
    finally:
        es.close()
    assert hits
    # The wire's copies and the other outlets' own coverage are one story, whatever order the
    # crawl delivered them in (a story that started apart was merged, and its articles moved).
    seed = hits[0]
    assert set(seed.story_or_article().outlets) == set(SEED_OUTLETS), seed
    assert seed.story_or_article().articles == 6, seed
    assert all(hit.story_id != seed.story_id for hit in hits[1:])
    es = make_client(settings)
    try:
        es.indices.refresh(index=names.stories)
        story = es.get(index=names.stories, id=seed.story_id)["_source"]
    finally:
        es.close()
    assert set(story["outlets"]) == set(SEED_OUTLETS) and story["articles"] == 6, story


def test_a_merge_moves_the_absorbed_storys_articles_in_the_index(infra_settings: Settings) -> None:
    """Dedup decides, in log order, two stories and then an article bridging them; the index
    stage sees the decisions in another order (partitions), and search shows one story."""
    from enrich.dedup.engine import DedupEngine
    from enrich.dedup.stage import dedup_input, deduped_article
    from index.maintenance import check_stories
    from index.search import StorySearch
    from index.worker import IndexStage
    from newsflow.es import IndexNames, make_client
    from newsflow.runtime import Inbound

    settings = infra_settings
    left, right = _words("left", 60), _words("right", 60)
    mixed = [w for pair in zip(left, right, strict=True) for w in pair]

    def make(outlet: str, words: list[str], minutes: int) -> Article:
        url = f"http://{outlet}.example/news/{words[0]}"
        text = "\n\n".join(" ".join(words[i : i + 20]) + "." for i in range(0, len(words), 20))
        when = BASE_TIME + timedelta(minutes=minutes)
        return Article(
            id=url_id(url),
            url=url,
            outlet=outlet,
            title=f"{words[0]} {words[1]} {words[2]} common",
            text=text,
            published_at=when,
            content_hash=content_hash(text),
            fetched_at=when,
            extractor="test",
        )

    inputs = [make("a", left, 0), make("b", right, 1), make("c", mixed, 2)]
    engine = DedupEngine()
    decided = [deduped_article(a, engine.observe(dedup_input(a))) for a in inputs]
    bridge = decided[2]
    assert bridge.story is not None and bridge.story.merged_from == [decided[1].story_id]
    names = IndexNames(settings.index_prefix)
    es = make_client(settings)
    try:
        stage = IndexStage(es, names)

        def index(articles: list[DedupedArticle]) -> None:
            batch = [Inbound("t", 0, i, a.id, encode(a), a) for i, a in enumerate(articles)]
            stage.process(batch)

        index([decided[0], decided[1]])
        index([bridge])
        index([decided[1]])  # a redelivery of a decision from before the merge
        es.indices.refresh(index=f"{names.articles},{names.stories}")
        hits = StorySearch(es, names).top_stories("common")
        stories = [h.story_or_article() for h in hits]
        assert [(s.story_id, s.articles, set(s.outlets)) for s in stories] == [
            (decided[0].story_id, 3, {"a", "b", "c"})
        ]
        survivor, absorbed = decided[0].story_id, decided[1].story_id
        assert survivor is not None and absorbed is not None
        # The absorbed story's document is now a redirect to the survivor, which a new index
        # worker (a restart) resolves through: a late redelivery lands in the survivor.
        redirect = es.get(index=names.stories, id=absorbed)["_source"]
        assert redirect == {
            "story_id": absorbed,
            "merged_into": survivor,
            "last_seen": redirect["last_seen"],
        }
        stage = IndexStage(es, names)
        index([decided[1]])
        assert es.get(index=names.articles, id=decided[1].id)["_source"]["story_id"] == survivor
        assert check_stories(es, names).ok
        story = es.get(index=names.stories, id=survivor)["_source"]
        assert story["articles"] == 3 and "merged_from" not in story
    finally:
        es.close()
