"""Chaos suite: real pages through the running stack while it is hurt, then the accounting.

    .venv/bin/python -m bench.chaos [--pages 800] [--hold 45] [--short]

It brings the local stack's Kafka, Elasticsearch, PostgreSQL and workers up (whatever shape
``newsflow stack up`` recorded: one node, or the cluster of ``--nodes 3``), then produces
real pages from ``../shared/corpus`` to the raw-pages topic at a steady rate, as the ingest
DAGs would, while it injects one fault after another:

- ``kill -9`` of the enrich, dedup and index workers (each comes back under its supervisor);
- Elasticsearch frozen (SIGSTOP) and stopped for ``--hold`` seconds (one node of the cluster);
- Kafka restarted (one node), or one broker stopped for ``--hold`` seconds (cluster);
- poison on raw-pages: invalid JSON, another schema, ``schema_version`` 99, bad UTF-8, an
  empty body, a tombstone, and a 9 MB page of markup without text.

Then it waits for every stage to drain and checks: each page is indexed exactly once or
dead-lettered with a reason (none lost, none twice), no article names a story without a
document, every poison message is dead-lettered with its reason (the 9 MB page within its
extraction budget), no partition is left wedged, and every killed worker came back by itself.
Per fault it prints how long the worker took to come back and how long until every stage on
the path to the index had drained the backlog the fault left (committed all that was on its
input when the fault ended).

Pages get URLs of their own for each run (``https://chaos-<run>.example/...``), so a run
counts its own documents and letters beside whatever else the stack holds. ``--short`` is the
variant ``make test`` runs (tests/e2e/test_chaos.py): fewer pages, short holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bench.corpus import SETS, available, load, raw_page, subset
from devstack import stack
from devstack.stack.components import make_ctx
from devstack.stack.profile import cluster_env, resolve_nodes
from devstack.stack.supervise import read_state, state_path
from index.maintenance import check_stories
from newsflow import topology
from newsflow.contracts import RawPage, encode
from newsflow.dlq import read_letters
from newsflow.es import IndexNames, make_client
from newsflow.kafka_io import MAX_MESSAGE_BYTES, make_admin, security_config
from newsflow.settings import Settings
from newsflow.urls import url_id

# Targets of the issue, checked in the summary.
WORKER_BACK_SECONDS = 10.0
DRAINING_AGAIN_SECONDS = 15.0
# Stages whose progress says the pipeline flows: those on the path to the search index.
PATH = tuple(row for row in topology.path_to("index"))
SAMPLE_SECONDS = 0.5
BIG_PAGE_BYTES = 9 * 1024 * 1024


@dataclass
class FaultResult:
    name: str
    held: float
    worker_back: float | None = None  # kills: until the supervisor's new worker was healthy
    draining_after: float | None = None  # from the heal until every stage progressed
    note: str = ""


@dataclass
class Sent:
    """What the suite produced, by key: pages (their ids) and poison (its kind)."""

    pages: dict[str, float] = field(default_factory=dict)  # id -> when it was acknowledged
    poison: dict[str, str] = field(default_factory=dict)  # key -> kind
    poison_at: dict[str, float] = field(default_factory=dict)
    producer_retries: int = 0


# --- the stack ----------------------------------------------------------------------------


def stack_settings() -> tuple[Settings, int]:
    """The settings a client of the running stack needs (every node of a cluster)."""
    settings = Settings()
    nodes = resolve_nodes(make_ctx(settings).run_dir)
    os.environ.update(cluster_env(settings, nodes))
    return Settings(), nodes


def worker_child(settings: Settings, stage: str) -> int | None:
    state = read_state(state_path(make_ctx(settings).state_dir, f"{stage}-worker"))
    return state.child_pid if state is not None else None


def healthy(settings: Settings, member: str) -> bool:
    return all(s.healthy for s in stack.status([member], settings=settings))


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.25) -> float | None:
    """Seconds until ``check`` held, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # a service mid-restart: not yet
            pass
        time.sleep(step)
    return None


def process_group_signal(settings: Settings, member: str, signum: int) -> None:
    (found,) = stack.status([member], settings=settings)
    if found.pid is None:
        raise RuntimeError(f"{member} is not running under this stack")
    os.killpg(os.getpgid(found.pid), signum)


# --- progress -----------------------------------------------------------------------------


class Progress(threading.Thread):
    """Samples each stage's committed offsets and lag on its input, twice a second."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="chaos-progress", daemon=True)
        self.settings = settings
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        admin: KafkaAdminClient | None = None
        consumer: KafkaConsumer | None = None
        while not self.stopping.is_set():
            try:
                if admin is None or consumer is None:
                    admin = make_admin(self.settings)
                    consumer = KafkaConsumer(
                        bootstrap_servers=self.settings.kafka_bootstrap,
                        enable_auto_commit=False,
                        **security_config(self.settings),
                    )
                # Stamped when it began: every offset in it is at least as new as that.
                began = time.monotonic()
                sample = {row.name: self._position(admin, consumer, row) for row in PATH}
                with self.lock:
                    self.samples.append((began, sample))
            except Exception:  # Kafka down or restarting: no sample, clients made anew
                for client in (admin, consumer):
                    if client is not None:
                        with contextlib.suppress(Exception):
                            client.close()
                admin, consumer = None, None
            self.stopping.wait(SAMPLE_SECONDS)
        for client in (admin, consumer):
            if client is not None:
                client.close()

    def _position(
        self, admin: KafkaAdminClient, consumer: KafkaConsumer, row: topology.StageDef
    ) -> tuple[int, int]:
        """(committed, lag) summed over the stage's input partitions."""
        topic = topology.topic_name(row.input, self.settings)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({row.group_id: tps}).get(row.group_id, {})
        done = sum(max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps)
        return done, sum(ends.values()) - done

    def draining_after(self, since: float, timeout: float) -> float | None:
        """Seconds from ``since`` until every stage on the path to the index had committed
        all that was on its input at ``since``: the backlog the fault left has flowed
        through (None if a stage did not get there in time)."""
        times = [self.caught_up(row.name, since, timeout) for row in PATH]
        return None if None in times else max(t for t in times if t is not None)

    def caught_up(self, stage: str, since: float, timeout: float) -> float | None:
        """Seconds from ``since`` until ``stage`` had committed everything on its input as of
        ``since`` (what was produced before it, e.g. a poison message, has an outcome)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                after = [(t, s[stage]) for t, s in self.samples if t >= since]
            if after:
                done, lag = after[0][1]
                end = done + lag
                for when, (committed, _) in after:
                    if committed >= end:
                        return when - since
            time.sleep(SAMPLE_SECONDS)
        return None

    def drained(self) -> bool:
        with self.lock:
            if not self.samples or time.monotonic() - self.samples[-1][0] > 2 * SAMPLE_SECONDS:
                return False
            return all(lag == 0 for _, lag in self.samples[-1][1].values())


# --- pages and poison ---------------------------------------------------------------------


def corpus_pages(count: int, run: str) -> list[RawPage]:
    """``count`` real pages spread evenly over the whole corpus, each at a URL of its own."""
    return [
        raw_page(page, f"https://chaos-{run}.example/{page.set}/{page.id}", f"chaos-{page.set}")
        for page in subset([page for name in SETS for page in load(name)], count)
    ]


def big_page(run: str) -> RawPage:
    """9 MB of markup without a word of text: the page that once wedged the enrich group."""
    url = f"https://chaos-{run}.example/hostile/no-text"
    cell = "<div><span></span></div>"
    body = cell * (BIG_PAGE_BYTES // len(cell))
    return RawPage(
        id=url_id(url),
        url=url,
        fetched_url=url,
        outlet="chaos-hostile",
        http_status=200,
        html=f"<html><body>{body}</body></html>",
    )


def poison(run: str) -> list[tuple[str, str, bytes | None]]:
    """(kind, key, value): messages a stage must dead-letter and go on."""
    valid = json.loads(encode(big_page(run).model_copy(update={"html": "<p>x</p>"})))
    other_schema = {"schema_version": 1, "headline": "not a raw page"}
    future = {**valid, "schema_version": 99}
    return [
        ("invalid_json", f"poison-{run}-json", b"{not json"),
        ("other_schema", f"poison-{run}-schema", json.dumps(other_schema).encode()),
        ("schema_version_99", f"poison-{run}-v99", json.dumps(future).encode()),
        ("bad_utf8", f"poison-{run}-utf8", b'{"html": "\xff\xfe\xfa"}'),
        ("empty_body", f"poison-{run}-empty", b""),
        ("tombstone", f"poison-{run}-tombstone", None),
    ]


class Feeder(threading.Thread):
    """Produces the pages at a steady rate with acks from all replicas, as ingest does, and
    sends a page again until Kafka takes it (a restart must not lose what the suite counts)."""

    def __init__(self, settings: Settings, pages: Sequence[RawPage], rate: float) -> None:
        super().__init__(name="chaos-feeder", daemon=True)
        self.settings = settings
        self.pages = pages
        self.interval = 1.0 / rate
        self.sent = Sent()
        self.producer = self._producer()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def _producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id="chaos-feeder",
            acks="all",
            compression_type="gzip",
            max_request_size=MAX_MESSAGE_BYTES,
            retries=5,
            **security_config(self.settings),
        )

    def send(self, key: str, value: bytes | None) -> None:
        topic = self.settings.topic_raw_pages
        while True:
            try:
                with self.lock:
                    self.producer.send(topic, key=key.encode(), value=value).get(timeout=30)
                return
            except Exception:
                self.sent.producer_retries += 1
                time.sleep(1.0)
                with self.lock:
                    with contextlib.suppress(Exception):
                        self.producer.close(timeout=1)
                    self.producer = self._producer()

    def run(self) -> None:
        next_at = time.monotonic()
        for page in self.pages:
            next_at += self.interval
            self.send(page.id, encode(page))
            self.sent.pages[page.id] = time.monotonic()
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.done.set()

    def send_poison(self, run: str) -> None:
        for kind, key, value in poison(run):
            self.send(key, value)
            self.sent.poison[key] = kind
            self.sent.poison_at[key] = time.time()
        page = big_page(run)
        self.send(page.id, encode(page))
        self.sent.poison[page.id] = "big_page_without_text"
        self.sent.poison_at[page.id] = time.time()

    def close(self) -> None:
        with self.lock:
            self.producer.close(timeout=5)


# --- faults -------------------------------------------------------------------------------


@dataclass
class Chaos:
    settings: Settings
    nodes: int
    hold: float
    progress: Progress
    results: list[FaultResult] = field(default_factory=list)

    @property
    def cluster(self) -> bool:
        return self.nodes > 1

    def poison(self, feeder: Feeder, run: str) -> None:
        """Malformed messages and the 9 MB page without text: the fault is over when the
        enrich stage has committed past them (each dead-lettered, the big page after its
        extraction budget); then the pipeline must flow as before."""
        feeder.send_poison(run)
        sent_at = time.monotonic()  # all of it acknowledged: on the topic from here on
        budget = self.settings.enrich_extract_timeout_seconds + self.settings.enrich_batch_seconds
        handled = self.progress.caught_up("enrich", sent_at, timeout=budget + 60)
        if handled is None:
            self.results.append(FaultResult("poison (6 malformed, 9 MB page)", budget))
            return
        draining = self.progress.draining_after(sent_at + handled, timeout=120)
        self.results.append(FaultResult("poison (6 malformed, 9 MB page)", handled, None, draining))

    def kill_worker(self, stage: str) -> None:
        member = f"{stage}-worker"
        before = worker_child(self.settings, stage)
        if before is None:
            raise RuntimeError(f"{member} has no supervised worker to kill")
        os.kill(before, signal.SIGKILL)
        killed_at = time.monotonic()
        back = wait_until(
            lambda: (
                worker_child(self.settings, stage) not in (None, before)
                and healthy(self.settings, member)
            ),
            timeout=60,
        )
        draining = self.progress.draining_after(killed_at, timeout=120)
        self.results.append(FaultResult(f"kill -9 {member}", 0.0, back, draining))

    def elasticsearch(self, how: str) -> None:
        member = "elasticsearch-2" if self.cluster else "elasticsearch"
        started = time.monotonic()
        if how == "freeze":
            process_group_signal(self.settings, member, signal.SIGSTOP)
            time.sleep(self.hold)
            process_group_signal(self.settings, member, signal.SIGCONT)
        else:
            stack.down([member], settings=self.settings)
            time.sleep(self.hold)
            stack.up([member], settings=self.settings)
        healed = time.monotonic()
        draining = self.progress.draining_after(healed, timeout=180)
        held = healed - started
        self.results.append(FaultResult(f"Elasticsearch {member} {how}", held, None, draining))

    def kafka(self) -> None:
        member = "kafka-2" if self.cluster else "kafka"
        started = time.monotonic()
        stack.down([member], settings=self.settings)
        if self.cluster:
            time.sleep(self.hold)
        stack.up([member], settings=self.settings)
        healed = time.monotonic()
        draining = self.progress.draining_after(healed, timeout=180)
        name = f"Kafka {member} stopped" if self.cluster else "Kafka restarted"
        self.results.append(FaultResult(name, healed - started, None, draining))


# --- accounting ---------------------------------------------------------------------------


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def documents_per_id(settings: Settings, ids: Sequence[str]) -> Counter[str]:
    names = IndexNames(settings.index_prefix)
    es = make_client(settings)
    found: Counter[str] = Counter()
    try:
        es.indices.refresh(index=names.articles)
        for chunk in _chunks(ids, 500):
            response = es.search(
                index=names.articles, query={"ids": {"values": list(chunk)}}, size=2 * len(chunk)
            )
            found.update(hit["_id"] for hit in response["hits"]["hits"])
    finally:
        es.close()
    return found


def worker_health(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each stage's /health (its stalled partitions among the details)."""
    found: dict[str, dict[str, Any]] = {}
    for row in topology.STAGES:
        port = topology.metrics_port(row, settings)
        try:
            found[row.name] = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            found[row.name] = {"ok": False, "error": str(exc)}
    return found


@dataclass
class Accounting:
    pages: int
    indexed: int
    dead_lettered: Counter[str]
    lost: list[str]
    duplicated: list[str]
    both: list[str]
    missing_story_articles: int
    poison: dict[str, tuple[str, str | None]]  # kind -> (key, reason or None)
    big_page_seconds: float | None
    wedged: list[str]
    unhealthy: list[str]


def account(settings: Settings, sent: Sent, budget: float) -> Accounting:
    ids = list(sent.pages)
    documents = documents_per_id(settings, ids)
    letters: dict[str, list[Any]] = {}
    for stored in read_letters(settings, timeout_seconds=120):
        key = stored.letter.key
        if key is not None and (key in sent.pages or key in sent.poison):
            letters.setdefault(key, []).append(stored.letter)
    dead = Counter(letters[i][0].reason for i in ids if i in letters and not documents[i])
    es = make_client(settings)
    try:
        check = check_stories(es, IndexNames(settings.index_prefix))
    finally:
        es.close()
    ours = set(ids)
    missing = sum(1 for article_ids in check.missing.values() for a in article_ids if a in ours)
    poison_outcomes: dict[str, tuple[str, str | None]] = {}
    big_seconds = None
    for key, kind in sent.poison.items():
        found = letters.get(key, [])
        poison_outcomes[kind] = (key, found[0].reason if found else None)
        if kind == "big_page_without_text" and found:
            big_seconds = found[0].failed_at.timestamp() - sent.poison_at[key]
    health = worker_health(settings)
    return Accounting(
        pages=len(ids),
        indexed=sum(1 for i in ids if documents[i] == 1),
        dead_lettered=dead,
        lost=[i for i in ids if not documents[i] and i not in letters],
        duplicated=[i for i in ids if documents[i] > 1],
        both=[i for i in ids if documents[i] and i in letters],
        missing_story_articles=missing,
        poison=poison_outcomes,
        big_page_seconds=big_seconds,
        wedged=[
            f"{name}: {p}"
            for name, details in health.items()
            for p in details.get("stalled_partitions", [])
        ],
        unhealthy=[name for name, details in health.items() if not details.get("ok")],
    )


# --- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    profile: str
    results: list[FaultResult]
    accounting: Accounting
    drained_after: float | None
    seconds: float
    budget: float

    def failures(self) -> list[str]:
        a = self.accounting
        problems = []
        if a.lost:
            problems.append(f"{len(a.lost)} page(s) lost")
        if a.duplicated:
            problems.append(f"{len(a.duplicated)} page(s) indexed twice")
        if a.both:
            problems.append(f"{len(a.both)} page(s) both indexed and dead-lettered")
        if a.missing_story_articles:
            problems.append(f"{a.missing_story_articles} article(s) name a missing story")
        if a.wedged or a.unhealthy or self.drained_after is None:
            problems.append(f"wedged: {a.wedged or a.unhealthy or 'did not drain'}")
        for kind, (_, reason) in a.poison.items():
            if reason is None:
                problems.append(f"poison {kind} not dead-lettered")
        if a.big_page_seconds is None or a.big_page_seconds > self.budget:
            problems.append("the 9 MB page was not dead-lettered within its budget")
        for result in self.results:
            if result.name.startswith("kill") and (
                result.worker_back is None or result.worker_back > WORKER_BACK_SECONDS
            ):
                problems.append(f"{result.name}: worker not back within {WORKER_BACK_SECONDS:g} s")
            if result.draining_after is None or result.draining_after > DRAINING_AGAIN_SECONDS:
                problems.append(f"{result.name}: not draining within {DRAINING_AGAIN_SECONDS:g} s")
        return problems

    def print(self) -> None:
        a = self.accounting
        print(f"chaos suite, {self.profile}: {a.pages} pages, {self.seconds:.0f} s in all")
        print(f"{'fault':<36} {'held':>6} {'worker back':>12} {'backlog drained':>16}")
        for r in self.results:
            back = "-" if r.worker_back is None else f"{r.worker_back:.1f} s"
            if r.name.startswith("kill") and r.worker_back is None:
                back = "never"
            draining = "never" if r.draining_after is None else f"{r.draining_after:.1f} s"
            print(f"{r.name:<36} {r.held:>5.0f}s {back:>12} {draining:>16}")
        letters = ", ".join(f"{reason} {n}" for reason, n in sorted(a.dead_lettered.items()))
        drained = "never" if self.drained_after is None else f"{self.drained_after:.0f} s"
        print(
            f"pages indexed once {a.indexed}, dead-lettered {sum(a.dead_lettered.values())}"
            f" ({letters or 'none'}); drained {drained} after the last page"
        )
        print(
            f"lost {len(a.lost)}, duplicate {len(a.duplicated)}, both {len(a.both)}, "
            f"articles with a missing story {a.missing_story_articles}, "
            f"wedged partitions {len(a.wedged)}, unhealthy workers {len(a.unhealthy)}"
        )
        poison = ", ".join(f"{kind} -> {reason}" for kind, (_, reason) in a.poison.items())
        print(f"poison: {poison}")
        big = "never" if a.big_page_seconds is None else f"{a.big_page_seconds:.1f} s"
        print(f"9 MB page without text dead-lettered after {big} (budget {self.budget:g} s)")
        problems = self.failures()
        print("targets: " + ("all met" if not problems else "MISSED: " + "; ".join(problems)))


def run(
    pages: int = 800, hold: float = 45.0, *, settle: float = 5.0, rate: float | None = None
) -> Report:
    started = time.monotonic()
    settings, nodes = stack_settings()
    stack.up(["kafka", "elasticsearch", "postgres", "workers"], settings=settings)
    run_id = uuid.uuid4().hex[:8]
    corpus = corpus_pages(pages, run_id)
    progress = Progress(settings)
    progress.start()
    # Spread the pages over the faults (seven, three of them held), so each finds them flowing.
    planned = 7 * (settle + 15) + 3 * hold + settings.enrich_extract_timeout_seconds
    feeder = Feeder(settings, corpus, rate or max(1.0, pages / planned))
    budget = settings.enrich_extract_timeout_seconds + settings.enrich_batch_seconds
    chaos = Chaos(settings, nodes, hold, progress)
    faults: list[Callable[[], None]] = [
        lambda: chaos.poison(feeder, run_id),
        lambda: chaos.kill_worker("enrich"),
        lambda: chaos.kill_worker("dedup"),
        lambda: chaos.kill_worker("index"),
        lambda: chaos.elasticsearch("freeze"),
        lambda: chaos.elasticsearch("stop"),
        chaos.kafka,
    ]
    feeder.start()
    for fault in faults:
        time.sleep(settle)
        fault()
    feeder.done.wait()
    feeder.close()
    last_page = time.monotonic()
    drained = wait_until(progress.drained, timeout=600, step=1.0)
    progress.stopping.set()
    accounting = account(settings, feeder.sent, budget)
    profile = f"cluster ({nodes} Kafka, {nodes} Elasticsearch)" if nodes > 1 else "single node"
    return Report(
        profile=profile,
        results=chaos.results,
        accounting=accounting,
        drained_after=None if drained is None else time.monotonic() - last_page,
        seconds=time.monotonic() - started,
        budget=budget,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=800)
    parser.add_argument("--hold", type=float, default=45.0, help="seconds a fault lasts")
    parser.add_argument("--short", action="store_true", help="the make test variant")
    args = parser.parse_args(argv)
    if not available():
        print("the shared corpus is absent (expected beside the repository)")
        return 2
    if args.short:
        report = run(pages=min(args.pages, 90), hold=5.0, settle=2.0)
    else:
        report = run(pages=args.pages, hold=args.hold)
    report.print()
    return 0 if not report.failures() else 1


if __name__ == "__main__":
    raise SystemExit(main())
