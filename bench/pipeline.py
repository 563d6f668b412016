"""Pipeline throughput: real pages from the raw-pages topic until searchable, beside plain
trafilatura on the same pages, in the same run.

    .venv/bin/python -m bench.pipeline [--pages 600] [--enrich-workers 1,2] [--sets zyte,wcxb]
        [--extract-processes N] [--with-alert] [--keep]

The pages are real: from ``../shared/corpus``, an even share of each set in ``--sets`` (a set
with fewer pages gives the rest to the others: 600 is all 181 Zyte pages and 419 WCXB
*article* pages; WCXB's other page types are left out), decoded as ingest decodes them.

What it measures, in order:

1. Baselines, in this process, before any worker of the run starts: plain
   ``trafilatura.extract`` (default settings) and the enrich stage's own ``extract_page``,
   each over the same pages in one process: docs/s (wall clock) and CPU ms per page. Plain
   trafilatura is measured again before each later round, and each round's ratio is to the
   measurement just before it: on a shared machine the same code's speed drifts within a run
   (seen: 31 then 39 CPU ms per page, minutes apart).
2. For each count N in ``--enrich-workers``, a round of its own, on the running stack's Kafka
   and Elasticsearch (brought up if need be), with topics, index prefix, consumer groups and
   dedup state of its own (``pipebench-<run>-e<N>``): the stack's own topics, indices and
   workers are untouched, and every round starts from an empty dedup window. It starts N enrich
   workers (one consumer group), one dedup and one index worker (and an alert worker with
   ``--with-alert``; alerts are not on the way to the index) as processes of its own, wired as
   ``newsflow worker`` wires them (``pipeline.stages.build_runner``, the settings' defaults
   but for the round's names, ``--extract-processes`` and ``NEWSFLOW_ENRICH_WORKERS_PER_HOST``
   set to N). It waits until every group is
   stable with its members and one warm-up page per raw-pages partition is searchable, then
   sends real pages that no round measures (WCXB's pages of its other types) in batches of
   ``--warm-up-pages`` (200), each until it is searchable or dead-lettered, so that the
   workers' caches and Kafka's and Elasticsearch's JIT-compiled code are as warm as in a
   pipeline in service: a JVM that has just started spends much of its CPU compiling, for
   longer than one batch (seen: 13 ms a page in Elasticsearch's compiler threads after 200
   pages). Batches go on until the JVMs' compiler threads spent at most ``--warm-up-jit-ms``
   (3) ms per page in the last one, or ``--warm-up-max-pages`` (600) were sent; the table
   gives both. Then it produces the pages
   with the ingest producer (``make_producer``; the values encoded beforehand) at URLs of
   the round's own (the page's URL plus ``?pipebench=...``: the path the extractor sees is
   the page's own), and samples twice a second each stage's committed
   offsets and its input's end offsets, the round's pages searchable (their ids counted in
   the articles index) and dead-lettered, and ``/proc`` of every worker and its descendants.

Per round, the table has:

- end to end: pages ÷ seconds from the first produce until the last page was searchable or
  dead-lettered (seen by a sample: +0.5 s at most), and its ratio to plain trafilatura's
  docs/s measured just before the round (printed below it); the seconds the producing took
  (it runs in this process, beside the workers);
- per stage: the messages each enrich worker consumed (``newsflow_messages_in_total``: how the
  partitions split); service rate, messages ÷ seconds busy (``newsflow_batch_seconds_sum``
  from each worker's /metrics, before and after: the rate of one busy worker) with the busy
  share of the stage's drain window; drain rate, messages ÷ seconds from the first of the
  round's messages on its input (for enrich: the first produce) to its last commit (sampled);
- CPU seconds (utime + stime of ``/proc/<pid>/stat``, from after the warm-up to the end) and
  ms per page of the enrich workers, their extraction processes (every descendant), dedup,
  index, Kafka and Elasticsearch (the stack's processes: the sampling's requests are in
  theirs; with their JIT compiler threads' share, high in a JVM that has just started) and
  this process (producing and sampling); peak RSS (``VmHWM``) of the largest
  process of each kind, over the round;
- every worker kind's CPU ms/s while idle (3 s before the pages): the floor under its figures;
- the dedup worker's CPU ms per article as its window fills, per ``--dedup-bucket`` articles:
  the CPU at the first sample that saw each committed count, spread evenly over the articles
  of each step from count to count, from the last sample before enrich's first output reached
  it (its waits for enrich's next batch are in it: see its idle rate).

The machine may be shared: the load average is printed at start and end, and the figures
compare within one run, not across runs. A round fails, naming the stage that is behind, when
nothing progresses for ``--stall-seconds`` or the round outlasts ``--timeout``, and as soon as
a worker exits. On exit the workers are stopped and the round's topics, indices, templates,
consumer groups, dedup state and logs deleted (``--keep`` keeps them; logs are kept on failure).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from newsflow import topology
from newsflow.contracts import RawPage, encode
from newsflow.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from bench.corpus import Page

SAMPLE_SECONDS = 0.5
READY_TIMEOUT_SECONDS = 300.0
IDLE_MEASURE_SECONDS = 3.0
DRAIN_AFTER_DONE_SECONDS = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PATH_STAGES = tuple(row.name for row in topology.path_to("index"))  # enrich, dedup, index


class BenchError(RuntimeError):
    """The round cannot go on; the message says why and where."""


# --- /proc ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime, this process alone (not its reaped children)
    start_ticks: int  # since boot: with the pid, names the process (pids are reused)


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line (the command name may hold spaces and parentheses)."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is the state, field 3 of proc(5)
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
    )


def parse_status_kb(text: str, key: str = "VmHWM") -> int | None:
    """A ``kB`` figure of ``/proc/<pid>/status`` (None when absent, as for a zombie)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


def read_processes(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    table: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return table


def descendants(root: int, table: Mapping[int, ProcStat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return sorted(found)


# HotSpot's JIT compiler threads, as /proc names them (cut to 15 characters)
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")


def thread_ticks(pid: int, names: Sequence[str], proc: Path = Path("/proc")) -> dict[int, int]:
    """CPU ticks of each of ``pid``'s threads whose name starts with one of ``names``."""
    found: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in (proc / str(pid) / "task").iterdir():
            try:
                text = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if text[text.index("(") + 1 : text.rindex(")")].startswith(tuple(names)):
                found[int(entry.name)] = parse_stat(text).cpu_ticks
    return found


@dataclass(slots=True)
class ProcessUsage:
    is_root: bool
    counted_from: int  # CPU ticks when the measurement began (0: born after)
    cpu_ticks: int  # as last seen
    peak_kb: int = 0


class ProcessTree:
    """A worker process and its descendants (the extraction processes): CPU and peak memory.

    A descendant that dies between two samples loses the CPU it spent since the last one.
    """

    def __init__(
        self, label: str, root: int, proc: Path = Path("/proc"), *, jvm: bool = False
    ) -> None:
        self.label = label
        self.root = root
        self.proc = proc
        self.usage: dict[tuple[int, int], ProcessUsage] = {}
        self.marked = False
        self.jvm = jvm  # its processes' JIT compiler threads are counted apart too
        self.jit: dict[int, ProcessUsage] = {}  # by thread id

    def update(self, table: Mapping[int, ProcStat]) -> None:
        if self.root not in table:
            return
        pids = [self.root, *descendants(self.root, table)]
        for pid in pids:
            stat = table[pid]
            key = (pid, stat.start_ticks)
            usage = self.usage.get(key)
            if usage is None:
                counted_from = 0 if self.marked else stat.cpu_ticks
                usage = self.usage[key] = ProcessUsage(pid == self.root, counted_from, 0)
            usage.cpu_ticks = max(usage.cpu_ticks, stat.cpu_ticks)
            try:
                peak = parse_status_kb((self.proc / str(pid) / "status").read_text())
            except OSError:
                peak = None
            if peak is not None:
                usage.peak_kb = max(usage.peak_kb, peak)
        for pid in pids if self.jvm else ():
            for tid, ticks in thread_ticks(pid, JIT_THREADS, self.proc).items():
                thread = self.jit.get(tid)
                if thread is None:
                    thread = self.jit[tid] = ProcessUsage(True, 0 if self.marked else ticks, 0)
                thread.cpu_ticks = max(thread.cpu_ticks, ticks)

    def mark(self) -> None:
        """CPU counts from here on."""
        for usage in [*self.usage.values(), *self.jit.values()]:
            usage.counted_from = usage.cpu_ticks
        self.marked = True

    def jit_seconds(self) -> float:
        """Since ``mark``: the JIT compiler threads of the tree's processes (a thread that
        ended since the last sample loses what it spent after it)."""
        return sum(u.cpu_ticks - u.counted_from for u in self.jit.values()) / CLOCK_TICKS

    def cpu_seconds(self, root: bool | None = None) -> float:
        """Since ``mark``: the root (True), its descendants (False) or all (None)."""
        ticks = sum(
            u.cpu_ticks - u.counted_from
            for u in self.usage.values()
            if root is None or u.is_root == root
        )
        return ticks / CLOCK_TICKS

    def peak_kb(self, root: bool) -> int | None:
        peaks = [u.peak_kb for u in self.usage.values() if u.is_root == root and u.peak_kb]
        return max(peaks) if peaks else None


# --- figures --------------------------------------------------------------------------------


def rate(count: float, seconds: float | None) -> float | None:
    return count / seconds if seconds and seconds > 0 else None


def ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def first_reached(series: Sequence[tuple[float, int]], threshold: int) -> float | None:
    """When a (time, value) series first reached ``threshold``."""
    for at, value in series:
        if value >= threshold:
            return at
    return None


def allocate(available: Mapping[str, int], total: int) -> dict[str, int]:
    """An even share of ``total`` per set; what a set lacks goes to the others, in order."""
    shares = dict.fromkeys(available, 0)
    remaining = min(total, sum(available.values()))
    open_sets = [name for name, count in available.items() if count > 0]
    while remaining > 0 and open_sets:
        each, extra = divmod(remaining, len(open_sets))
        for i, name in enumerate(open_sets):
            take = min(available[name] - shares[name], each + (1 if i < extra else 0))
            shares[name] += take
            remaining -= take
        open_sets = [name for name in open_sets if shares[name] < available[name]]
    return shares


@dataclass(frozen=True, slots=True)
class Bucket:
    first: int  # 1-based article numbers in the window, inclusive
    last: int
    ms_per_article: float


def cost_per_bucket(points: Sequence[tuple[int, float]], bucket: int) -> list[Bucket]:
    """CPU ms per article for articles 1..bucket, bucket+1..2*bucket, ... from (articles
    committed, CPU seconds) points that start at the origin (0 articles) and grow in time.

    A count's CPU is the CPU at the first point that saw it (the commit ends the work on the
    articles before it; the points after it while the count stands are the next batch's work
    or idle time). Within one step from count to count, CPU is spread evenly."""
    steps: list[tuple[int, float]] = []
    for articles, cpu in points:
        if not steps or articles > steps[-1][0]:
            steps.append((articles, cpu))
    if len(steps) < 2:
        return []

    def cpu_at(articles: int) -> float:
        for (n0, c0), (n1, c1) in itertools.pairwise(steps):
            if n0 <= articles <= n1:
                return c0 + (c1 - c0) * (articles - n0) / (n1 - n0)
        return steps[-1][1]

    total = steps[-1][0]
    bounds = [steps[0][0], *range(steps[0][0] + bucket, total, bucket), total]
    return [
        Bucket(a + 1, b, 1000 * (cpu_at(b) - cpu_at(a)) / (b - a))
        for a, b in itertools.pairwise(bounds)
    ]


def metric_total(text: str, sample: str, **labels: str) -> float:
    """The sum of a Prometheus exposition's samples named ``sample`` with these labels."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                total += found.value
    return total


def round_url(url: str | None, fallback: str, marker: str) -> str:
    """The page's own URL (``fallback`` without one) with ``pipebench=<marker>`` in its query:
    a document of the round's own, at a path the extractor reads as the page's."""
    from newsflow.urls import InvalidURLError, normalize_url

    base = url or fallback
    try:
        normalize_url(base)
    except InvalidURLError:
        base = fallback
    parts = urlsplit(base)
    query = f"{parts.query}&pipebench={marker}" if parts.query else f"pipebench={marker}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


# --- pages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WarmUp:
    """How a round was warmed: pages sent, and the JVMs' JIT CPU per page in the last batch."""

    pages: int
    jit_ms_per_page: float | None


def warmed_up(jit_seconds: float, pages: int, limit_ms: float) -> bool:
    """Whether a warm-up batch of ``pages`` left the JVMs compiling no more than ``limit_ms``
    per page: their code is then as warm as a service's, not as a fresh start's."""
    return pages > 0 and 1000 * jit_seconds / pages <= limit_ms


@dataclass(frozen=True, slots=True)
class CorpusPage:
    set: str
    id: str
    url: str | None
    html: str  # decoded, as ingest puts it on the topic


def select_pages(sets: Sequence[str], count: int) -> list[CorpusPage]:
    from bench.corpus import load, subset

    candidates = {
        name: [p for p in load(name) if name != "wcxb" or p.page_type == "article"] for name in sets
    }
    shares = allocate({name: len(found) for name, found in candidates.items()}, count)
    return decoded([page for name in sets for page in subset(candidates[name], shares[name])])


def select_warm_up_pages(count: int) -> list[CorpusPage]:
    """Real pages that no round measures: WCXB's pages of its other types (listings, forums,
    documentation, products, services), evenly spread."""
    from bench.corpus import load, subset

    return decoded(subset([p for p in load("wcxb") if p.page_type != "article"], count))


def decoded(pages: Iterable[Page]) -> list[CorpusPage]:
    """The corpus pages with their HTML decoded as ingest decodes it."""
    from newsflow.decoding import decode_html

    return [CorpusPage(page.set, page.id, page.url, decode_html(page.html())) for page in pages]


def warm_up_html(seed: str) -> str:
    """A small article of words of its own: it warms the stages without being a copy of
    anything the round measures."""
    import hashlib

    words = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:7] for i in range(240)]
    paragraphs = "".join(
        "<p>" + " ".join(f"the {w} of" if j % 5 == 0 else w for j, w in enumerate(chunk)) + ".</p>"
        for chunk in (words[i : i + 40] for i in range(0, len(words), 40))
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Warm-up {words[0]}</title>"
        '<meta property="og:type" content="article"></head><body><main><article>'
        f"<h1>Warm-up {words[0]}</h1>{paragraphs}</article></main></body></html>"
    )


# --- baselines ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    name: str
    pages: int
    seconds: float
    cpu_seconds: float
    without_text: int

    @property
    def docs_per_second(self) -> float | None:
        return rate(self.pages, self.seconds)

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_seconds / self.pages if self.pages else 0.0


TRAFILATURA_BASELINE = "trafilatura.extract (default settings)"


def time_extraction(
    name: str, pages: Sequence[tuple[str, str]], extract: Callable[[str, str], bool]
) -> Baseline:
    """``extract(html, url)`` over every page, after one warm-up page; it returns whether it
    found text."""
    extract(warm_up_html(name), "https://warm-up.pipebench.example/")
    gc.collect()
    without_text = 0
    started, cpu = time.perf_counter(), time.process_time()
    for html, url in pages:
        if not extract(html, url):
            without_text += 1
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return Baseline(name, len(pages), seconds, cpu_seconds, without_text)


def trafilatura_found(html: str, _url: str) -> bool:
    import trafilatura

    return bool(trafilatura.extract(html))


def extract_page_found(html: str, url: str) -> bool:
    from enrich.extract import ExtractionError, extract_page

    try:
        extract_page(html, url)
    except ExtractionError:
        return False
    return True


# --- workers --------------------------------------------------------------------------------


def run_worker(stage: str, group: str, port_file: Path) -> None:
    """``--worker STAGE``: one stage, as ``newsflow worker`` runs it, in the round's group; its
    /metrics port (a free one) goes to ``port_file``. It stops when the bench dies."""
    from newsflow.observability import MetricsServer
    from pipeline.stages import StageStartError, build_runner

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    parent = os.getppid()
    try:
        runner = build_runner(stage, Settings(), group_id=group)
    except StageStartError as exc:
        raise SystemExit(str(exc)) from None
    runner.install_signal_handlers()
    server = MetricsServer(runner.metrics.registry, runner.health, port=0).start()
    written = port_file.with_suffix(".tmp")
    written.write_text(str(server.port))
    written.replace(port_file)

    def stop_when_orphaned() -> None:
        while not runner.stop_event.wait(1.0):
            if os.getppid() != parent:
                runner.stop()

    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    try:
        runner.run()
    finally:
        server.close()
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()


@dataclass
class Worker:
    stage: str
    number: int
    process: subprocess.Popen[bytes]
    log: Path
    port_file: Path
    tree: ProcessTree
    port: int | None = None

    @property
    def name(self) -> str:
        return f"{self.stage} worker {self.number}"

    def metrics(self) -> str | None:
        import httpx

        if self.port is None:
            return None
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        except httpx.HTTPError:
            return None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text[-lines:])


# --- sampling -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    started: float  # monotonic, before anything was read
    at: float  # monotonic, after everything was read
    committed: dict[str, int]  # stage -> committed offsets on its input, summed
    ends: dict[str, int]  # stage -> its input's end offsets, summed
    searchable: int
    lettered: int
    dedup_cpu: float  # the dedup worker's CPU seconds since the trees' mark


def behind(stages: Sequence[str], base: Sample, latest: Sample, pages: int, silent: float) -> str:
    """Which stage holds the round up, and every stage's progress, for a failure message."""
    lines = []
    first: str | None = None
    for stage in stages:
        arrived = latest.ends[stage] - base.ends[stage]
        done = latest.committed[stage] - base.committed[stage]
        if latest.ends[stage] > latest.committed[stage] and first is None:
            first = stage
        lines.append(f"  {stage}: committed {done} of the {arrived} messages on its input")
    if first is not None:
        head = f"{first} is behind (nothing progressed for {silent:.0f} s)"
    else:
        pending = pages - latest.searchable - latest.lettered
        head = (
            f"every stage committed all of its input, yet {pending} page(s) are neither "
            f"searchable nor dead-lettered (nothing progressed for {silent:.0f} s)"
        )
    tail = f"  pages: {latest.searchable} searchable, {latest.lettered} dead-lettered of {pages}"
    return "\n".join([head, *lines, tail])


def _partitions(consumer: Any, topic: str) -> list[Any]:
    """A fresh topic's partitions (its metadata may take a moment to reach a new client)."""
    from kafka import TopicPartition

    deadline = time.monotonic() + 30
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise BenchError(f"topic {topic} has no partitions")
        time.sleep(0.5)


class Sampler(threading.Thread):
    """Twice a second: offsets, searchable and dead-lettered pages, and /proc of the trees.

    The trees are updated under ``lock``; read them under it while the sampler runs."""

    def __init__(
        self,
        settings: Settings,
        groups: Mapping[str, str],
        trees: Sequence[ProcessTree],
        dedup: ProcessTree,
    ) -> None:
        super().__init__(name="pipebench-sampler", daemon=True)
        from kafka import KafkaConsumer

        from newsflow.es import IndexNames, make_client
        from newsflow.kafka_io import make_admin, security_config

        self.groups = dict(groups)  # stage -> consumer group
        self.trees = list(trees)
        self.dedup = dedup
        self.admin = make_admin(settings)
        client = {
            "bootstrap_servers": settings.kafka_bootstrap,
            "enable_auto_commit": False,
            **security_config(settings),
        }
        self.consumer = KafkaConsumer(**client)
        self.partitions = {
            stage: _partitions(
                self.consumer, topology.topic_name(topology.stage(stage).input, settings)
            )
            for stage in self.groups
        }
        self.letters = KafkaConsumer(**client)
        dead = _partitions(self.letters, topology.topic_name(topology.DEAD_LETTERS, settings))
        self.letters.assign(dead)
        self.letters.seek_to_beginning(*dead)
        self.es = make_client(settings)
        self.articles = IndexNames(settings.index_prefix).articles
        self.lettered: dict[str, str] = {}  # page id -> reason
        self.samples: list[Sample] = []
        self.ids: list[str] = []
        self.generation = 0  # of the ids watched: a sample of older ids decides nothing
        self.done_at: float | None = None
        self.error: str | None = None
        self.error_since: float | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def watch(self, ids: Sequence[str]) -> None:
        """From the next sample on, ``done_at`` is when every one of ``ids`` was searchable or
        dead-lettered."""
        with self.lock:
            self.ids = list(ids)
            self.generation += 1
            self.done_at = None

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # a slow broker or node: next time
                self.error = f"{type(exc).__name__}: {exc}"
                self.error_since = self.error_since or began
            else:
                self.error, self.error_since = None, None
            self.stopping.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began)))

    def sample(self) -> Sample:
        from newsflow.contracts import DeadLetter, decode

        started = time.monotonic()
        with self.lock:
            ids, generation = self.ids, self.generation
        table = read_processes()
        with self.lock:
            for tree in self.trees:
                tree.update(table)
            dedup_cpu = self.dedup.cpu_seconds()
        offsets = self.admin.list_group_offsets(
            {self.groups[stage]: tps for stage, tps in self.partitions.items()}
        )
        ends = self.consumer.end_offsets([tp for tps in self.partitions.values() for tp in tps])
        committed: dict[str, int] = {}
        for stage, tps in self.partitions.items():
            found = offsets.get(self.groups[stage], {})
            committed[stage] = sum(max(found[tp].offset, 0) for tp in tps if tp in found)
        for records in self.letters.poll(timeout_ms=50).values():
            for record in records:
                with contextlib.suppress(Exception):  # not a letter: not one of the pages'
                    letter = decode(DeadLetter, record.value)
                    if letter.key is not None:
                        self.lettered.setdefault(letter.key, letter.reason)
        waiting = [i for i in ids if i not in self.lettered]
        searchable = self.count(waiting)
        sample = Sample(
            started=started,
            at=time.monotonic(),
            committed=committed,
            ends={stage: sum(ends[tp] for tp in tps) for stage, tps in self.partitions.items()},
            searchable=searchable,
            lettered=len(ids) - len(waiting),
            dedup_cpu=dedup_cpu,
        )
        with self.lock:
            self.samples.append(sample)
            if ids and searchable == len(waiting) and generation == self.generation:
                self.done_at = self.done_at or sample.at
        return sample

    def count(self, ids: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            response = self.es.count(index=self.articles, query={"ids": {"values": chunk}})
            total += int(response["count"])
        return total

    def latest(self) -> Sample | None:
        with self.lock:
            return self.samples[-1] if self.samples else None

    def next_sample(self, after: float) -> Sample:
        """The first sample that began after ``after``."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.samples if s.started > after]
            if found:
                return found[0]
            time.sleep(SAMPLE_SECONDS / 5)
        raise BenchError(f"no sample for {READY_TIMEOUT_SECONDS:g} s: {self.error}")

    def close(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=30)
        for client in (self.admin, self.consumer, self.letters, self.es):
            with contextlib.suppress(Exception):
                client.close()


# --- a round --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageFigures:
    messages: int
    busy_seconds: float | None  # summed over the stage's workers
    workers: int
    window: float | None  # the first of the round's messages on its input → its last commit

    @property
    def service_rate(self) -> float | None:
        return rate(self.messages, self.busy_seconds)

    @property
    def busy_share(self) -> float | None:
        if self.busy_seconds is None or not self.window:
            return None
        return self.busy_seconds / (self.workers * self.window)

    @property
    def drain_rate(self) -> float | None:
        return rate(self.messages, self.window)


def stage_figures(
    stage: str,
    samples: Sequence[Sample],
    workers: int,
    busy_seconds: float | None,
    first_input: float | None = None,
) -> StageFigures:
    """From the samples of the round (the first taken before its first produce); without
    ``first_input``, the stage's first input is when a sample first saw its input grow."""
    base, final = samples[0], samples[-1].committed[stage]
    messages = final - base.committed[stage]
    if first_input is None:
        first_input = first_reached([(s.at, s.ends[stage]) for s in samples], base.ends[stage] + 1)
    last_commit = first_reached([(s.at, s.committed[stage]) for s in samples], final)
    window = None
    if messages and first_input is not None and last_commit is not None:
        window = last_commit - first_input
    return StageFigures(messages, busy_seconds, workers, window)


def dedup_points(samples: Sequence[Sample]) -> list[tuple[int, float]]:
    """(articles dedup committed, its CPU seconds) from the last sample before enrich's first
    output reached it: its wait for the first batch is not an article's cost."""
    base = samples[0]
    start = next(
        (max(0, i - 1) for i, s in enumerate(samples) if s.ends["dedup"] > base.ends["dedup"]), 0
    )
    origin = samples[start]
    return [
        (s.committed["dedup"] - base.committed["dedup"], s.dedup_cpu - origin.dedup_cpu)
        for s in samples[start:]
    ]


@dataclass
class RoundResult:
    enrich_workers: int
    pages: int
    seconds: float
    searchable: int
    letters: Counter[str]
    produce_seconds: float
    stages: dict[str, StageFigures]
    cpu: dict[str, float]  # kind of worker -> CPU seconds
    other_cpu: dict[str, float]  # Kafka, Elasticsearch, this process -> CPU seconds
    peak_mb: dict[str, float]  # kind -> the largest process's VmHWM
    idle_cpu_ms_per_s: dict[str, float]
    dedup_buckets: list[Bucket]
    enrich_split: list[float | None]  # messages each enrich worker consumed
    warm_up: WarmUp | None = None

    @property
    def docs_per_second(self) -> float | None:
        return rate(self.pages, self.seconds)


def stage_env(tag: str, state_dir: Path, extract_processes: int | None) -> dict[str, str]:
    """The NEWSFLOW_* variables that give a worker the round's topics, index and state."""
    env = {
        f"NEWSFLOW_{row.name_field.upper()}": f"{tag}.{row.key.replace('_', '-')}.v1"
        for row in topology.TOPICS
    }
    env["NEWSFLOW_INDEX_PREFIX"] = tag
    env["NEWSFLOW_DEDUP_STATE_DIR"] = str(state_dir)
    if extract_processes is not None:
        env["NEWSFLOW_ENRICH_EXTRACT_PROCESSES"] = str(extract_processes)
    return env


def settings_for(base: Settings, env: Mapping[str, str]) -> Settings:
    """``base`` with the fields ``env`` names (NEWSFLOW_<FIELD>) set from it."""
    update = {
        name: env[f"NEWSFLOW_{name.upper()}"]
        for name in Settings.model_fields
        if f"NEWSFLOW_{name.upper()}" in env
    }
    return Settings(**{**base.model_dump(), **update})


def service_trees(settings: Settings) -> list[ProcessTree]:
    """Kafka's and Elasticsearch's processes, where this stack runs them."""
    from devstack import stack

    trees = []
    with contextlib.suppress(Exception):
        for status in stack.status(["kafka", "elasticsearch"], settings=settings):
            if status.pid is not None:
                trees.append(ProcessTree(status.group, status.pid, jvm=True))
    return trees


class Round:
    def __init__(
        self, base: Settings, args: argparse.Namespace, run: str, enrich_workers: int
    ) -> None:
        self.args = args
        self.enrich_workers = enrich_workers
        self.tag = f"pipebench-{run}-e{enrich_workers}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.env = stage_env(self.tag, self.dir / "dedup", args.extract_processes)
        # As an operator running N enrich workers on one host sets it: "auto" extraction
        # processes then share the host's CPUs among the workers.
        self.env["NEWSFLOW_ENRICH_WORKERS_PER_HOST"] = str(enrich_workers)
        self.settings = settings_for(base, self.env)
        self.stages = (*PATH_STAGES, "alert") if args.with_alert else PATH_STAGES
        self.groups = {stage: f"{self.tag}-{stage}" for stage in self.stages}
        self.workers: list[Worker] = []
        self.services = service_trees(base)
        self.created = False

    # -- setup and teardown

    def create(self) -> None:
        from alert.store import ensure_alert_indices
        from index.indices import ensure_indices
        from newsflow.es import make_client
        from newsflow.kafka_io import ensure_topics

        self.created = True
        ensure_topics(self.settings)
        es = make_client(self.settings)
        try:
            ensure_indices(es, self.settings)
            if self.args.with_alert:
                ensure_alert_indices(es, self.settings)
        finally:
            es.close()

    def start_workers(self) -> None:
        env = {**os.environ, **self.env}
        env.pop("NEWSFLOW_KAFKA_GROUP_INSTANCE_PREFIX", None)  # one id per live member
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        for stage in self.stages:
            for number in range(1, (self.enrich_workers if stage == "enrich" else 1) + 1):
                log, port_file = (self.dir / f"{stage}-{number}.{ext}" for ext in ("log", "port"))
                command = [sys.executable, "-m", "bench.pipeline", "--worker", stage]
                command += ["--group", self.groups[stage], "--port-file", str(port_file)]
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        command,
                        env=env,
                        cwd=PROJECT_ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                tree = ProcessTree(f"{stage} {number}", process.pid)
                self.workers.append(Worker(stage, number, process, log, port_file, tree))

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=10)

    def delete(self, *, keep_logs: bool) -> None:
        """The round's topics, indices, templates, groups and dedup state (and logs)."""
        from newsflow.es import make_client
        from newsflow.kafka_io import make_admin

        if self.created:
            es = make_client(self.settings)
            try:
                pattern = f"{self.tag}-*"
                indices = list(es.indices.get(index=pattern, allow_no_indices=True))
                if indices:
                    es.indices.delete(index=",".join(indices))
                with contextlib.suppress(Exception):  # none: a 404
                    for template in es.indices.get_index_template(name=pattern)["index_templates"]:
                        es.indices.delete_index_template(name=template["name"])
            finally:
                es.close()
            admin = make_admin(self.settings)
            try:
                topics = [t for t in admin.list_topics() if t.startswith(f"{self.tag}.")]
                if topics:
                    admin.delete_topics(topics)
                with contextlib.suppress(Exception):  # never joined: nothing to delete
                    admin.delete_groups(list(self.groups.values()))
            finally:
                admin.close()
        shutil.rmtree(self.dir / "dedup" if keep_logs else self.dir, ignore_errors=True)

    # -- waiting

    def check_workers(self) -> None:
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None:
                raise BenchError(
                    f"{worker.name} exited with code {code}; the end of its log "
                    f"({worker.log}):\n{worker.log_tail()}"
                )

    def wait_ready(self) -> float:
        """Until every worker serves /metrics and every group is stable with its members."""
        from newsflow.kafka_io import make_admin

        started = time.monotonic()
        expected = {
            self.groups[s]: sum(1 for w in self.workers if w.stage == s) for s in self.stages
        }
        admin = make_admin(self.settings)
        state: dict[str, str] = {}
        try:
            while True:
                self.check_workers()
                for worker in self.workers:
                    if worker.port is None and worker.port_file.is_file():
                        worker.port = int(worker.port_file.read_text())
                with contextlib.suppress(Exception):  # a group not known yet
                    described = admin.describe_groups(list(expected))
                    state = {
                        group: f"{info.get('group_state') or 'unknown'}, "
                        f"{len(info.get('members') or [])} of {expected[group]} member(s)"
                        for group, info in described.items()
                    }
                    if all(w.port is not None for w in self.workers) and all(
                        described[g].get("group_state") == "Stable"
                        and len(described[g].get("members") or []) == n
                        for g, n in expected.items()
                    ):
                        return time.monotonic() - started
                if time.monotonic() - started > READY_TIMEOUT_SECONDS:
                    raise BenchError(
                        f"workers not ready after {READY_TIMEOUT_SECONDS:g} s: "
                        + ("; ".join(f"{g}: {s}" for g, s in state.items()) or "no group yet")
                    )
                time.sleep(1.0)
        finally:
            admin.close()

    def wait_for(
        self, sampler: Sampler, pages: int, base: Sample, timeout: float, stall: float
    ) -> float:
        """Until the watched pages are all searchable or dead-lettered: when that was seen."""
        last_change, seen = base.at, None
        while True:
            with sampler.lock:
                done_at = sampler.done_at
            if done_at is not None:
                return done_at
            self.check_workers()
            now = time.monotonic()
            latest = sampler.latest() or base
            progress = (latest.committed, latest.ends, latest.searchable, latest.lettered)
            if progress != seen:
                seen, last_change = progress, latest.at
            if sampler.error_since is not None and now - sampler.error_since > stall:
                raise BenchError(f"sampling has failed for {stall:g} s: {sampler.error}")
            silent = now - last_change
            if silent > stall or now - base.at > timeout:
                reason = (
                    f"no progress for --stall-seconds {stall:g}"
                    if silent > stall
                    else f"the round outlasted --timeout {timeout:g} s"
                )
                raise BenchError(f"{reason}: {behind(self.stages, base, latest, pages, silent)}")
            time.sleep(SAMPLE_SECONDS / 2)

    def wait_drained(self, sampler: Sampler) -> None:
        """Every stage committed all of its input (alert's too), so the counters are final."""
        deadline = time.monotonic() + DRAIN_AFTER_DONE_SECONDS
        while time.monotonic() < deadline:
            self.check_workers()
            latest = sampler.next_sample(time.monotonic())
            if all(latest.committed[s] >= latest.ends[s] for s in self.stages):
                return
        say(f"{self.tag}: not every stage drained within {DRAIN_AFTER_DONE_SECONDS:g} s")

    # -- the run

    def raw_pages(self, pages: Sequence[CorpusPage], part: str = "") -> list[RawPage]:
        from newsflow.urls import host_of, normalize_url, url_id

        found = []
        for page in pages:
            marker = "-".join(filter(None, (self.tag, part, page.set, page.id)))
            url = round_url(page.url, fallback_url(page), marker)
            found.append(
                RawPage(
                    id=url_id(url),
                    url=normalize_url(url),
                    fetched_url=url,
                    outlet=host_of(url) or page.set,
                    http_status=200,
                    content_type="text/html; charset=utf-8",
                    html=page.html,
                )
            )
        if len({page.id for page in found}) != len(found):
            raise BenchError("two pages of the selection have one URL")
        return found

    def warm_up(self, sampler: Sampler, producer: Any, pages: Sequence[CorpusPage]) -> WarmUp:
        """One page per raw-pages partition, all the way to the index: every enrich worker
        has extracted a page, and every stage has written once. Then ``pages`` in batches,
        until Kafka's and Elasticsearch's JIT compilers have settled: the workers' caches and
        the JVMs' compiled code are then as warm as in a pipeline in service, not as just
        after a start."""
        from newsflow.urls import url_id

        partitions = sorted(producer.partitions_for(self.settings.topic_raw_pages))
        first = []
        for partition in partitions:
            url = f"https://warm-up.pipebench.example/{self.tag}/{partition}"
            first.append(
                RawPage(
                    id=url_id(url),
                    url=url,
                    fetched_url=url,
                    outlet="pipebench-warm-up",
                    http_status=200,
                    html=warm_up_html(f"{self.tag}-{partition}"),
                )
            )
        self.through(sampler, producer, first, READY_TIMEOUT_SECONDS, partitions)
        warm = self.raw_pages(pages, "warm-up")
        size = max(self.args.warm_up_pages, 1)
        sent, jit_ms = 0, None
        for start in range(0, len(warm), size):
            batch = warm[start : start + size]
            jit_before = self.jit_seconds(sampler)
            self.through(sampler, producer, batch, self.args.timeout)
            jit = self.jit_seconds(sampler) - jit_before
            sent += len(batch)
            jit_ms = 1000 * jit / len(batch)
            say(f"{self.tag}: {sent} warm-up pages; the JVMs compiled {jit_ms:.1f} ms a page")
            if warmed_up(jit, len(batch), self.args.warm_up_jit_ms):
                break
        return WarmUp(sent, jit_ms)

    def jit_seconds(self, sampler: Sampler) -> float:
        """CPU seconds of Kafka's and Elasticsearch's JIT compiler threads, as last sampled."""
        with sampler.lock:
            return sum(tree.jit_seconds() for tree in self.services)

    def through(
        self,
        sampler: Sampler,
        producer: Any,
        pages: Sequence[RawPage],
        timeout: float,
        partitions: Sequence[int] | None = None,
    ) -> None:
        """Produce ``pages`` (to ``partitions``, one each, else where the producer puts them)
        and wait until every one is searchable or dead-lettered."""
        topic = self.settings.topic_raw_pages
        for i, page in enumerate(pages):
            partition = partitions[i] if partitions is not None else None
            producer.send(topic, key=page.id.encode(), value=encode(page), partition=partition)
        producer.flush()
        sampler.watch([page.id for page in pages])
        base = sampler.next_sample(time.monotonic())
        self.wait_for(sampler, len(pages), base, timeout, self.args.stall_seconds)

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds of Kafka and Elasticsearch, each followed by its JIT compiler's share."""
        cpu: dict[str, float] = {}
        for tree in self.services:
            cpu[tree.label] = tree.cpu_seconds()
            cpu[f"  of which {tree.label}'s JIT compiler threads"] = tree.jit_seconds()
        return cpu

    def measure_idle(self, sampler: Sampler) -> dict[str, float]:
        """CPU ms/s of each kind of worker with nothing to do: the floor under its figures."""
        with sampler.lock:
            for tree in sampler.trees:
                tree.mark()
        marked = time.monotonic()
        time.sleep(IDLE_MEASURE_SECONDS)
        sampler.next_sample(time.monotonic())
        idle: dict[str, float] = {}
        with sampler.lock:
            seconds = time.monotonic() - marked
            for worker in self.workers:
                spent = worker.tree.cpu_seconds()
                idle[worker.stage] = idle.get(worker.stage, 0.0) + 1000 * spent / seconds
        return idle

    def run(self, pages: Sequence[CorpusPage], warm_up: Sequence[CorpusPage] = ()) -> RoundResult:
        from newsflow.kafka_io import make_producer

        say(f"{self.tag}: topics and indices")
        self.create()
        raw = self.raw_pages(pages)
        values = [encode(page) for page in raw]
        ids = [page.id for page in raw]
        self.start_workers()
        say(f"{self.tag}: {len(self.workers)} workers starting (logs in {self.dir})")
        ready = self.wait_ready()
        say(f"{self.tag}: workers ready after {ready:.0f} s; one warm-up page per partition")
        dedup = next(w.tree for w in self.workers if w.stage == "dedup")
        trees = [w.tree for w in self.workers] + self.services
        sampler = Sampler(self.settings, self.groups, trees, dedup)
        producer = make_producer(self.settings, client_id=f"{self.tag}-bench")
        topic = self.settings.topic_raw_pages
        try:
            sampler.start()
            warmed = self.warm_up(sampler, producer, warm_up)
            idle = self.measure_idle(sampler)
            before = {w.name: w.metrics() for w in self.workers}
            with sampler.lock:
                for tree in trees:
                    tree.mark()
            sampler.watch(ids)
            base = sampler.next_sample(time.monotonic())
            say(f"{self.tag}: producing {len(raw)} pages")
            gc.collect()
            bench_cpu = time.process_time()
            started = time.monotonic()
            sent = [
                producer.send(topic, key=i.encode(), value=v)
                for i, v in zip(ids, values, strict=True)
            ]
            producer.flush()
            produced = time.monotonic()
            failed = [f for f in sent if f.failed()]
            if failed:
                raise BenchError(f"{len(failed)} page(s) not produced: {failed[0].exception!r}")
            del values, sent
            done_at = self.wait_for(
                sampler, len(raw), base, self.args.timeout, self.args.stall_seconds
            )
            say(f"{self.tag}: every page searchable or dead-lettered; waiting for the stages")
            self.wait_drained(sampler)
            bench_cpu = time.process_time() - bench_cpu
            after = {w.name: w.metrics() for w in self.workers}
            last = sampler.next_sample(time.monotonic())
        finally:
            producer.close()
            sampler.close()
        samples = [s for s in sampler.samples if base.started <= s.started <= last.started]
        figures = {}
        for stage in self.stages:
            workers = [w for w in self.workers if w.stage == stage]
            busy = busy_seconds(stage, [(before[w.name], after[w.name]) for w in workers])
            first_input = started if stage == "enrich" else None
            figures[stage] = stage_figures(stage, samples, len(workers), busy, first_input)
        return RoundResult(
            enrich_workers=self.enrich_workers,
            pages=len(raw),
            seconds=done_at - started,
            searchable=last.searchable,
            letters=Counter(sampler.lettered[i] for i in ids if i in sampler.lettered),
            produce_seconds=produced - started,
            stages=figures,
            cpu=self.cpu_by_kind(),
            other_cpu={**self.service_cpu(), "this process (producer, sampler)": bench_cpu},
            peak_mb=self.peaks_by_kind(),
            idle_cpu_ms_per_s=idle,
            dedup_buckets=cost_per_bucket(dedup_points(samples), self.args.dedup_bucket),
            enrich_split=[
                counter_delta("newsflow_messages_in_total", "enrich", before[w.name], after[w.name])
                for w in self.workers
                if w.stage == "enrich"
            ],
            warm_up=warmed,
        )

    # -- per kind of process

    def cpu_by_kind(self) -> dict[str, float]:
        cpu: dict[str, float] = {}
        for worker in self.workers:
            parts: list[tuple[str, bool | None]]
            if worker.stage == "enrich":
                parts = [("enrich workers", True), ("extraction processes", False)]
            else:
                parts = [(worker.stage, None)]
            for kind, root in parts:
                cpu[kind] = cpu.get(kind, 0.0) + worker.tree.cpu_seconds(root)
        return cpu

    def peaks_by_kind(self) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for worker in self.workers:
            kinds = [(f"{worker.stage} worker", True)]
            if worker.stage == "enrich":
                kinds.append(("extraction process", False))
            for kind, root in kinds:
                kb = worker.tree.peak_kb(root)
                if kb is not None:
                    peaks[kind] = max(peaks.get(kind, 0.0), kb / 1024)
        return peaks


def counter_delta(sample: str, stage: str, before: str | None, after: str | None) -> float | None:
    """How much a worker's counter grew between two scrapes of its /metrics."""
    if before is None or after is None:
        return None
    return metric_total(after, sample, stage=stage) - metric_total(before, sample, stage=stage)


def busy_seconds(stage: str, texts: Sequence[tuple[str | None, str | None]]) -> float | None:
    """Seconds in batches, summed over the stage's workers (None: a scrape missing)."""
    deltas = [counter_delta("newsflow_batch_seconds_sum", stage, *pair) for pair in texts]
    return None if None in deltas else sum(d for d in deltas if d is not None)


def fallback_url(page: CorpusPage) -> str:
    return f"https://{page.set}.pipebench.example/{page.id}"


# --- the table ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _service(figures: StageFigures | None) -> str:
    if figures is None:
        return "-"
    share = figures.busy_share
    return f"{_num(figures.service_rate)} ({_num(None if share is None else 100 * share, 0, '%')})"


def _cpu(seconds: float | None, pages: int) -> str:
    return "-" if seconds is None else f"{seconds:.1f} ({1000 * seconds / pages:.0f})"


def _warm_up(warm_up: WarmUp | None) -> str:
    if warm_up is None:
        return "-"
    return f"{warm_up.pages} ({_num(warm_up.jit_ms_per_page)})"


def format_table(
    baselines: Sequence[Baseline],
    rounds: Sequence[RoundResult],
    references: Sequence[Baseline] = (),
) -> str:
    """The baselines, then one column per round; each round's ratio is to ``references``
    (plain trafilatura measured just before that round), else to the first baseline."""
    lines = [f"{'baseline, one process, the same pages':<48}{'docs/s':>10}{'CPU ms/page':>13}"]
    for b in baselines:
        note = f"   ({b.without_text} without text)" if b.without_text else ""
        lines.append(f"  {b.name:<46}{_num(b.docs_per_second):>10}{b.cpu_ms_per_page:>13.0f}{note}")
    if not rounds:
        return "\n".join(lines)
    first = baselines[0].docs_per_second if baselines else None
    # a round that failed has its reference but no column
    measured = [b.docs_per_second for b in references][: len(rounds)]
    reference_rates = measured or [first] * len(rounds)

    def row(label: str, cells: Iterable[str] = ()) -> None:
        lines.append(f"{label:<48}" + "".join(f"{cell:>20}" for cell in cells))

    def union(keys: Iterable[Any]) -> list[Any]:
        return list(dict.fromkeys(keys))

    lines.append("")
    row("", (f"{r.enrich_workers} enrich worker{'s' * (r.enrich_workers > 1)}" for r in rounds))
    row("end to end docs/s", (_num(r.docs_per_second) for r in rounds))
    row(
        "  × plain trafilatura",
        (
            _num(ratio(r.docs_per_second, reference), 2, "×")
            for r, reference in zip(rounds, reference_rates, strict=True)
        ),
    )
    if references:
        row("    plain trafilatura docs/s, just before", (_num(rate) for rate in reference_rates))
    row("  seconds, first produce → all searchable", (_num(r.seconds) for r in rounds))
    row(
        "  searchable / dead-lettered",
        (f"{r.searchable} / {sum(r.letters.values())}" for r in rounds),
    )
    row("  seconds producing", (_num(r.produce_seconds) for r in rounds))
    row("  warm-up pages (JVMs' JIT ms/page, last batch)", (_warm_up(r.warm_up) for r in rounds))
    row(
        "enrich: messages per worker",
        (" / ".join(_num(n, 0) for n in r.enrich_split) for r in rounds),
    )
    for stage in union(s for r in rounds for s in r.stages):
        row(
            f"{stage}: service msg/s per busy worker (busy)",
            (_service(r.stages.get(stage)) for r in rounds),
        )
        row(
            f"{stage}: drain msg/s (messages)",
            (
                "-"
                if (f := r.stages.get(stage)) is None
                else f"{_num(f.drain_rate)} ({f.messages})"
                for r in rounds
            ),
        )
    row("CPU seconds (ms per page)")
    for kind in union(k for r in rounds for k in r.cpu):
        row(f"  {kind}", (_cpu(r.cpu.get(kind), r.pages) for r in rounds))
    row("  all the workers", (_cpu(sum(r.cpu.values()), r.pages) for r in rounds))
    for kind in union(k for r in rounds for k in r.other_cpu):
        row(f"  {kind}", (_cpu(r.other_cpu.get(kind), r.pages) for r in rounds))
    row("peak RSS MB (VmHWM, the largest of its kind)")
    for kind in union(k for r in rounds for k in r.peak_mb):
        row(f"  {kind}", (_num(r.peak_mb.get(kind), 0) for r in rounds))
    row("idle CPU ms/s before the pages (all of a kind)")
    for kind in union(k for r in rounds for k in r.idle_cpu_ms_per_s):
        row(f"  {kind}", (_num(r.idle_cpu_ms_per_s.get(kind)) for r in rounds))
    row("dedup CPU ms/article as its window fills")
    for first, last in union((b.first, b.last) for r in rounds for b in r.dedup_buckets):
        cells = []
        for r in rounds:
            found = [b for b in r.dedup_buckets if (b.first, b.last) == (first, last)]
            cells.append(_num(found[0].ms_per_article) if found else "-")
        row(f"  articles {first}–{last}", cells)
    for r in rounds:
        if r.letters:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(r.letters.items()))
            lines.append(f"dead letters with {r.enrich_workers} enrich worker(s): {reasons}")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} CPUs)"


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of counts ≥ 1, e.g. 1,2")
    return counts


def set_names(text: str) -> list[str]:
    from bench.corpus import SETS

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in SETS for name in names):
        raise argparse.ArgumentTypeError(f"comma-separated sets among {', '.join(SETS)}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument(
        "--enrich-workers", type=worker_counts, default=[1, 2], help="one round per count"
    )
    parser.add_argument("--sets", type=set_names, default=["zyte", "wcxb"])
    parser.add_argument(
        "--extract-processes",
        type=int,
        default=None,
        help="NEWSFLOW_ENRICH_EXTRACT_PROCESSES of the enrich workers (default: the settings')",
    )
    parser.add_argument(
        "--warm-up-pages",
        type=int,
        default=200,
        help="a warm-up batch: pages of WCXB's other types, before a round is measured",
    )
    parser.add_argument(
        "--warm-up-max-pages",
        type=int,
        default=600,
        help="warm-up batches stop at this many pages, warm or not",
    )
    parser.add_argument(
        "--warm-up-jit-ms",
        type=float,
        default=3.0,
        help="warm-up batches stop once the JVMs' JIT compilers spent this many ms a page",
    )
    parser.add_argument("--with-alert", action="store_true", help="run the alert stage too")
    parser.add_argument("--dedup-bucket", type=int, default=100, help="articles per dedup row")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds a round may take (120 + 1 per page)"
    )
    parser.add_argument(
        "--stall-seconds", type=float, default=180.0, help="a round fails without progress"
    )
    parser.add_argument("--keep", action="store_true", help="keep topics, indices, state, logs")
    parser.add_argument("--worker", choices=topology.stage_names(), help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 120.0 + args.pages
    return args


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.group, args.port_file)
        return 0

    from bench.chaos import stack_settings
    from bench.corpus import available
    from devstack import stack

    if not available():
        print("the shared corpus is absent (expected beside the repository)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"load average at start: {load_average()}", flush=True)
    settings, _ = stack_settings()
    say("stack: Kafka and Elasticsearch")
    stack.up(["kafka", "elasticsearch"], settings=settings)
    pages = select_pages(args.sets, args.pages)
    warm_up = select_warm_up_pages(args.warm_up_max_pages) if args.warm_up_pages > 0 else []
    sets = " + ".join(f"{n} {name}" for name, n in Counter(p.set for p in pages).items())
    megabytes = sum(len(p.html.encode()) for p in pages) / 1e6
    processes = (
        settings.enrich_extract_processes
        if args.extract_processes is None
        else args.extract_processes
    )
    print(
        f"pages: {len(pages)} ({sets}; {megabytes:.1f} MB of HTML); raw-pages partitions "
        f"{settings.topic_partitions}, batch {settings.worker_batch_size}, extraction "
        f"processes per enrich worker {processes}; warm-up batches of {args.warm_up_pages} "
        f"pages until the JVMs compile ≤ {args.warm_up_jit_ms:g} ms a page, "
        f"at most {len(warm_up)}",
        flush=True,
    )
    say("baselines: plain trafilatura, then extract_page")
    inputs = [(p.html, round_url(p.url, fallback_url(p), "baseline")) for p in pages]
    baselines = [
        time_extraction(TRAFILATURA_BASELINE, inputs, trafilatura_found),
        time_extraction("extract_page (the enrich stage's own)", inputs, extract_page_found),
    ]
    run = uuid.uuid4().hex[:6]
    results: list[RoundResult] = []
    references: list[Baseline] = []
    failure: str | None = None
    for count in args.enrich_workers:
        if references:
            say("plain trafilatura again, before the next round")
            references.append(time_extraction(TRAFILATURA_BASELINE, inputs, trafilatura_found))
        else:
            references.append(baselines[0])
        bench_round = Round(settings, args, run, count)
        try:
            results.append(bench_round.run(pages, warm_up))
        except BenchError as exc:
            failure = f"the round with {count} enrich worker(s) failed: {exc}"
        except KeyboardInterrupt:
            failure = "interrupted"
        except Exception as exc:
            failure = f"the round with {count} enrich worker(s) failed: {exc!r}"
            logging.getLogger(__name__).exception("round failed")
        finally:
            bench_round.stop_workers()
            if not args.keep:
                bench_round.delete(keep_logs=failure is not None)
        if failure:
            failure += f"\n(the workers' logs: {bench_round.dir})"
            break
    print()
    print(format_table(baselines, results, references))
    print(f"\nload average at end: {load_average()}")
    print("the machine may be shared: these figures compare within this run only")
    if failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
