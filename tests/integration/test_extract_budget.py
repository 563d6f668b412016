"""The enrich stage's extraction budget against the real Kafka: a hostile page fails within its
budget while the others flow, and a stopped worker leaves no extraction process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from bench.extract_budget import hostile_page
from enrich.sandbox import ExtractionBudget
from enrich.worker import EnrichStage
from newsflow.contracts import Article, RawPage, decode, encode
from newsflow.dlq import read_letters
from newsflow.errors import PermanentError
from newsflow.kafka_io import make_producer
from newsflow.runtime import Done, Failed, Inbound
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.urls import url_id
from pipeline.stages import build_runner
from tests.pages import article_html

pytestmark = pytest.mark.integration

BODY = [
    "The harbour master closed the inner basin on Thursday after a survey found that the "
    "old sea wall had shifted by several centimetres during the storms of the past week.",
    "Fishing boats were moved to the outer moorings, and the ferry to the islands will sail "
    "from the north pier until engineers have decided how the wall should be repaired.",
]
MB = 1024 * 1024


def raw_page(path: str, html: str) -> RawPage:
    url = f"https://harbour.example/{path}"
    return RawPage(
        id=url_id(url), url=url, fetched_url=url, outlet="harbour", http_status=200, html=html
    )


def article(n: int) -> RawPage:
    return raw_page(f"2026/11/harbour-basin-closed-{n}", article_html(f"Basin closed {n}", BODY))


def produce(settings: Settings, pages: list[RawPage]) -> None:
    producer = make_producer(settings)
    for page in pages:
        producer.send(settings.topic_raw_pages, key=page.id.encode(), value=encode(page))
    producer.flush()
    producer.close()


def read_topic(settings: Settings, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records if r.value is not None]
        return values
    finally:
        consumer.close()


def test_the_9mb_page_without_text_fails_within_its_budget_among_normal_pages(
    infra_settings: Settings,
) -> None:
    """The issue's page, through the stage's ``process`` (its dead letter exceeds the topic's
    message limit: the runtime's truncation of dead letters is another change)."""
    pages = [article(1), raw_page("hostile", hostile_page(9 * MB)), article(2)]
    batch = [Inbound("raw", 0, i, p.id, None, p) for i, p in enumerate(pages)]
    stage = EnrichStage(
        output_topic=infra_settings.topic_articles,
        budget=ExtractionBudget(timeout_seconds=3, memory_mb=1024, processes=1),
    )
    try:
        stage.start()
        started = time.monotonic()
        first, hostile, second = stage.process(batch)
        elapsed = time.monotonic() - started
    finally:
        stage.close()
    assert isinstance(first, Done) and isinstance(second, Done)
    assert [o.key for r in (first, second) for o in r.outputs] == [pages[0].id, pages[2].id]
    assert isinstance(hostile, Failed) and isinstance(hostile.error, PermanentError)
    assert hostile.error.reason == "extract_timeout"
    assert elapsed < 3 + 15, "the budget, a fresh process, two small pages"


def test_a_page_over_budget_is_dead_lettered_while_the_batch_flows(
    infra_settings: Settings,
) -> None:
    settings = infra_settings.model_copy(
        update={"enrich_extract_timeout_seconds": 2.0, "enrich_extract_processes": 2}
    )
    pages = [article(1), raw_page("hostile", hostile_page(3 * MB)), article(2), article(3)]
    produce(settings, pages)
    runner = build_runner("enrich", settings, group_id=f"{settings.index_prefix}-enrich")
    try:
        runner.run(max_messages=len(pages), idle_timeout=20)
    finally:
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()
    assert runner.stats.consumed == len(pages)
    produced = [decode(Article, value) for value in read_topic(settings, settings.topic_articles)]
    assert sorted(a.id for a in produced) == sorted(p.id for p in pages if p.url != pages[1].url)
    [letter] = [stored.letter for stored in read_letters(settings)]
    assert (letter.reason, letter.url, letter.error_kind) == (
        "extract_timeout",
        pages[1].url,
        "permanent",
    )


WORKER = """
import logging

from newsflow.settings import get_settings
from pipeline.stages import run_stage

logging.basicConfig(level=logging.INFO)
run_stage("enrich", get_settings())
"""


class _Worker:
    """``run_stage("enrich")`` in a process group of its own, its log read as it comes."""

    def __init__(self, settings: Settings) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "NEWSFLOW_TOPIC_RAW_PAGES": settings.topic_raw_pages,
            "NEWSFLOW_TOPIC_ARTICLES": settings.topic_articles,
            "NEWSFLOW_TOPIC_DEAD_LETTERS": settings.topic_dead_letters,
            "NEWSFLOW_ENRICH_EXTRACT_PROCESSES": "2",
            "NEWSFLOW_ENRICH_EXTRACT_TIMEOUT_SECONDS": "60",
            "NEWSFLOW_WORKER_METRICS_BASE_PORT": "0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.consuming = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "stage enrich: consuming" in line:
                self.consuming.set()

    def stop_group(self, timeout: float = 120) -> int:
        """SIGTERM to the whole process group, as ``stack down`` sends it; the exit code."""
        os.killpg(self.process.pid, signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)[-3000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_sigterm_to_the_worker_and_its_group_finishes_the_page_and_leaves_no_children(
    infra_settings: Settings,
) -> None:
    """SIGTERM to the whole process group, as ``stack down`` sends it: the children ignore it,
    the worker finishes its batch (the page's outcome is its own, not ``extract_crashed``),
    closes its pool and exits."""
    settings = infra_settings
    hostile = raw_page("hostile", hostile_page(2 * MB))
    produce(settings, [hostile])
    worker = _Worker(settings)
    try:
        # Warming up costs the children CPU too: only what they spend after it is the page's.
        assert worker.consuming.wait(120), worker.log
        children = _busy_children(worker.process.pid, timeout=90)
        assert worker.stop_group() == 0, worker.log
        assert _gone_within(children, 5), "no orphan extraction process"
    finally:
        worker.kill()
    [letter] = [stored.letter for stored in read_letters(settings)]
    assert letter.url == hostile.url
    assert letter.reason in ("empty_text", "extract_timeout")


def test_sigterm_while_the_worker_starts_its_children_stops_it_cleanly(
    infra_settings: Settings,
) -> None:
    """The same signal before the worker has begun to consume (its children still starting
    Python or warming up): it exits 0 and leaves no process behind."""
    worker = _Worker(infra_settings)
    try:
        deadline = time.monotonic() + 60
        while not (children := _children(worker.process.pid)):
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.log
            time.sleep(0.02)
        assert worker.stop_group() == 0, worker.log
        assert _gone_within(children, 5), "no orphan extraction process"
    finally:
        worker.kill()


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(pid) for pid in pids)


def _busy_children(pid: int, timeout: float) -> list[int]:
    """The worker's children once one of them has spent two seconds of CPU on the page."""
    deadline = time.monotonic() + timeout
    baseline: dict[int, float] = {}
    while time.monotonic() < deadline:
        children = _children(pid)
        for child in children:
            try:
                spent = _cpu_seconds(child)
            except OSError:
                continue
            start = baseline.setdefault(child, spent)
            if spent - start > 2.0:
                return children
        time.sleep(0.2)
    raise AssertionError(f"no child of worker {pid} started on the page within {timeout} s")
