"""Alert latency: a raw page's arrival in Kafka → its alert on the alerts topic.

    .venv/bin/python -m bench.alert_latency [--stories 200] [--rate 5] [--keep]

Needs the local Kafka and Elasticsearch (``newsflow stack up --only kafka,es``). Creates
topics and indices of its own (a random prefix), registers one watch that matches nearly
every English article, and starts the enrich, dedup, index and alert stages as separate
worker processes (as the stack runs them; their consumer groups are the prefix's own, so the
stack's workers are not disturbed). It then produces raw pages built from the shared
corpus's article bodies (or synthesized text without it) at ``--rate`` pages a second (0:
all at once), with a syndicated copy of every third story in another outlet, and reads the
alerts topic. Latency per alert: the alert record's timestamp minus the raw page record's
(both CreateTime, one clock). Prints count, p50, p95, max; the target is p95 < 5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from newsflow.contracts import Alert, RawPage, decode, encode
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.urls import url_id

STAGES = ("enrich", "dedup", "index", "alert")
OUTLETS = ["kestrel-wire", "northern-ledger", "harbour-gazette", "daily-klaxon"]
WATCH_QUERY = "the OR and OR of OR to OR in"


def isolated_env(tag: str, state_dir: str) -> dict[str, str]:
    """NEWSFLOW_* variables that give every process the bench's own topics and indices."""
    return {
        "NEWSFLOW_TOPIC_RAW_PAGES": f"{tag}.raw-pages.v1",
        "NEWSFLOW_TOPIC_ARTICLES": f"{tag}.articles.v1",
        "NEWSFLOW_TOPIC_DEDUPED_ARTICLES": f"{tag}.deduped-articles.v1",
        "NEWSFLOW_TOPIC_DEAD_LETTERS": f"{tag}.dead-letters.v1",
        "NEWSFLOW_TOPIC_ALERTS": f"{tag}.alerts.v1",
        "NEWSFLOW_INDEX_PREFIX": tag,
        "NEWSFLOW_DEDUP_STATE_DIR": state_dir,
        "NEWSFLOW_WORKER_METRICS_BASE_PORT": "0",
    }


def run_worker(stage: Any, tag: str) -> None:
    """``--worker STAGE``: one stage in its own process, in the bench's consumer group."""
    from pipeline.stages import build_runner

    runner = build_runner(stage, Settings(), group_id=f"{tag}-{stage}")
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()


def bodies(count: int) -> list[tuple[str, str]]:
    """(title, body) pairs: the corpus's article bodies, or synthesized ones without it."""
    from bench.corpus import SETS, available, load

    found: list[tuple[str, str]] = []
    if available():
        for name in SETS:
            for page in load(name):
                if page.body and len(page.body) > 600 and (page.title or "").strip():
                    found.append((page.title or "", page.body))
    found = sorted(found, key=lambda tb: hashlib.sha256(tb[1].encode()).hexdigest())
    while len(found) < count:  # synthesized: distinct pseudo-words per story, English glue
        seed = len(found)
        words = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:7] for i in range(120)]
        glue = " ".join(f"the {w} of" if i % 4 == 0 else w for i, w in enumerate(words))
        found.append((f"Story {seed} {words[0]}", f"{glue}.\n\n{glue[::-1]}."))
    return found[:count]


def page_html(title: str, body: str) -> str:
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n") if p.strip())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta property="og:type" content="article">'
        "</head><body><main><article>"
        f"<h1>{html.escape(title)}</h1>{paragraphs}</article></main></body></html>"
    )


def raw_page(outlet: str, slug: str, title: str, body: str) -> RawPage:
    url = f"http://{outlet}.example/news/{slug}"
    return RawPage(
        id=url_id(url),
        url=url,
        fetched_url=url,
        outlet=outlet,
        http_status=200,
        content_type="text/html; charset=utf-8",
        html=page_html(title, body),
        fetched_at=datetime.now(UTC),
    )


class AlertReader(threading.Thread):
    """Reads the alerts topic: article id → the alert record's timestamp (ms)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.alerts: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
        )
        partitions = consumer.partitions_for_topic(self.settings.topic_alerts) or set()
        tps = [TopicPartition(self.settings.topic_alerts, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while not self.stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    alert = decode(Alert, record.value)
                    if alert.kind == "new_story":
                        self.alerts.setdefault(alert.article.id, record.timestamp)
        consumer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="pages a second; 0: a burst")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the topics and indices")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.tag)
        return

    from alert.store import WatchStore
    from alert.watches import build_watch
    from newsflow.es import make_client
    from newsflow.kafka_io import make_admin, make_producer
    from pipeline.stages import initialize

    tag = f"bench{uuid.uuid4().hex[:6]}"
    state_dir = tempfile.mkdtemp(prefix=f"{tag}-dedup-")
    env = {**os.environ, **isolated_env(tag, state_dir)}
    os.environ.update(isolated_env(tag, state_dir))
    settings = Settings()
    initialize(settings)
    es = make_client(settings)
    watch, _ = build_watch("bench: nearly everything", WATCH_QUERY, settings)
    WatchStore(es, tag).add(watch)

    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.alert_latency", "--worker", stage, "--tag", tag],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for stage in STAGES
    ]
    reader = AlertReader(settings)
    reader.start()
    producer = make_producer(settings, client_id=f"{tag}-bench")
    sent: dict[str, int] = {}

    def send(page: RawPage) -> int:
        stamp = int(time.time() * 1000)
        producer.send(
            settings.topic_raw_pages, key=page.id.encode(), value=encode(page), timestamp_ms=stamp
        )
        producer.flush()
        return stamp

    try:
        # Warm-up: every worker joined its group and loaded its models and watches.
        warm = raw_page("warmup", "0", *bodies(1)[0])
        send(warm)
        deadline = time.monotonic() + 120
        while warm.id not in reader.alerts:
            if time.monotonic() > deadline:
                raise SystemExit("no alert for the warm-up page within 120 s: are the stages up?")
            time.sleep(0.2)
        print(f"stages ready ({tag}); producing {args.stories} stories at {args.rate}/s")

        pages: list[RawPage] = []
        for i, (title, body) in enumerate(bodies(args.stories + 1)[1:]):
            outlet = OUTLETS[i % len(OUTLETS)]
            pages.append(raw_page(outlet, f"s{i}", title, body))
            if i % 3 == 0:  # a syndicated copy: the same story, no second alert
                pages.append(raw_page(OUTLETS[(i + 1) % len(OUTLETS)], f"s{i}-copy", title, body))
        started = time.monotonic()
        for n, page in enumerate(pages):
            if args.rate > 0:
                time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            sent[page.id] = send(page)
        originals = {p.id for p in pages if not p.url.endswith("-copy")}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if originals <= set(reader.alerts):
                break
            time.sleep(0.5)
        time.sleep(2)  # stragglers
    finally:
        reader.stop.set()
        producer.close()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        reader.join(timeout=10)

    latencies = [
        (stamp - sent[article_id]) / 1000
        for article_id, stamp in reader.alerts.items()
        if article_id in sent
    ]
    copies_alerted = sum(1 for a in reader.alerts if a in sent and a not in originals)
    print(
        f"pages {len(pages)} ({len(originals)} stories + {len(pages) - len(originals)} copies), "
        f"new-story alerts {len(latencies)}, alerts on copies {copies_alerted}"
    )
    if latencies:
        print(
            "raw page produced → alert produced: "
            f"p50 {statistics.median(latencies):.3f} s, "
            f"p95 {percentile(latencies, 0.95):.3f} s, "
            f"max {max(latencies):.3f} s"
        )
    if not args.keep:
        created = list(es.indices.get(index=f"{tag}-*", allow_no_indices=True))
        if created:
            es.indices.delete(index=",".join(created))
        for template in (f"{tag}-articles", f"{tag}-stories"):
            es.indices.delete_index_template(name=template)
        admin = make_admin(settings)
        topics = [t for t in admin.list_topics() if t.startswith(f"{tag}.")]
        admin.delete_topics(topics)
        admin.close()
    es.close()


if __name__ == "__main__":
    main()
