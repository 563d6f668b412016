"""Dedup cost as its window fills: CPU per article through the stage, snapshots, restore.

    .venv/bin/python -m bench.dedup_scale [--windows 0,10000,100000,1000000] [--articles 600]

For each window size, a :class:`DedupStage` is preloaded with that many articles spread over
the 30 days before the timed stream starts (a realistic window, built quickly: store rows
with random signatures and keys, and the clustering window's stories from synthetic
articles whose words, names and story sizes follow the corpus), its snapshot written once;
then real articles (the labelled near-duplicate stream's first ``--articles``, as
``Article`` messages) go through ``process`` in batches, each batch acknowledged
(``after_commit``) and snapshotted, as the worker does every 5 s at ~10 articles/s. Every
window is preloaded first, and their batches take turns: the host's speed drifts (seen: the
same code 40% slower within the hour), and windows timed one after the other took different
drifts as a difference of window size. CPU is ``process_time`` of this process. Restore is
``read_snapshot`` of the final snapshot.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from kafka import TopicPartition

from bench.dedup import synthetic_window
from bench.dedup_stream import (
    T0,
    dedup_stream,
    distinct,
    fundus_articles,
    wcxb_articles,
)
from enrich.dedup.cluster import Story, StoryClusterer
from enrich.dedup.persist import MIN_CHECKPOINT_BYTES, write_file
from enrich.dedup.stage import DedupStage, read_snapshot, snapshot_path
from newsflow.contracts import Article
from newsflow.runtime import Inbound
from newsflow.urls import url_id

TOPIC = "bench.articles"
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\s+[A-Z][a-z]{2,}\b")
_WORD = re.compile(r"[a-z]{2,}")


def stream_articles(limit: int, span: float | None = None) -> list[Article]:
    """The labelled near-duplicate stream as the articles topic carries it; ``span``: the
    seconds its first ``limit`` items are squeezed into (the preloaded window's rate)."""
    items, _ = dedup_stream()
    items = items[:limit]
    times = [datetime.fromisoformat(item.published_at) for item in items]
    natural = (times[-1] - T0).total_seconds() or 1.0
    squeeze = 1.0 if span is None else min(1.0, span / natural)
    out = []
    for item, at in zip(items, times, strict=True):
        when = T0 + (at - T0) * squeeze
        out.append(
            Article(
                id=url_id(item.url),
                url=item.url,
                outlet=item.outlet,
                title=item.title,
                text=item.text,
                published_at=when,
                content_hash=hashlib.sha256(item.text.casefold().encode()).hexdigest(),
                fetched_at=when,
                extractor="bench",
            )
        )
    return out


# --- a synthetic window ---------------------------------------------------------------------


@dataclass
class Vocabulary:
    """Word and name frequencies of the corpus bodies: what synthetic articles are drawn from."""

    words: list[str]
    word_p: np.ndarray
    names: list[str]
    name_p: np.ndarray

    @classmethod
    def from_corpus(cls) -> Vocabulary:
        words: Counter[str] = Counter()
        names: Counter[str] = Counter()
        for base in distinct(wcxb_articles() + fundus_articles()):
            text = " ".join(base.paragraphs)
            words.update(_WORD.findall(text.lower()))
            names.update(_NAME.findall(text))
        w, wc = zip(*words.most_common(60_000), strict=True)
        n, nc = zip(*names.most_common(20_000), strict=True)
        word_p = np.asarray(wc, dtype=np.float64)
        name_p = np.asarray(nc, dtype=np.float64)
        return cls(list(w), word_p / word_p.sum(), list(n), name_p / name_p.sum())


class Writer:
    """Synthetic articles: corpus word frequencies, corpus names plus new ones, and stories of
    several articles sharing names and topic words."""

    def __init__(self, vocab: Vocabulary, seed: int = 5):
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.coin = random.Random(seed)

    def _words(self, n: int) -> list[str]:
        picks = self.rng.choice(len(self.vocab.words), size=n, p=self.vocab.word_p)
        return [self.vocab.words[i] for i in picks.tolist()]

    def _name(self) -> str:
        if self.coin.random() < 0.5:  # a name new to the corpus: most stories have one
            first = self.coin.choice(self.vocab.words).capitalize()
            last = self.coin.choice(self.vocab.words).capitalize()
            return f"{first} {last}{self.coin.randrange(99)}"
        i = int(self.rng.choice(len(self.vocab.names), p=self.vocab.name_p))
        return self.vocab.names[i]

    def topic(self) -> tuple[list[str], list[str]]:
        """What the articles of one story share: names and topic words."""
        return [self._name() for _ in range(3)], self._words(12)

    def article(self, topic: tuple[list[str], list[str]]) -> tuple[str, str]:
        names, shared = topic
        title = self._words(7) + self.coin.sample(shared, 3)
        title.insert(self.coin.randrange(len(title)), self.coin.choice(names))
        lead = self._words(110) + self.coin.sample(shared, 8)
        self.coin.shuffle(lead)
        for name in [*names, self._name()]:
            lead.insert(self.coin.randrange(len(lead)), name)
        return " ".join(title).capitalize(), " ".join(lead)


def _story_sizes(originals: int, coin: random.Random) -> Iterator[int]:
    """Most stories are one article; some are several (a heavy tail)."""
    left = originals
    while left > 0:
        size = 1 if coin.random() < 0.75 else min(left, int(coin.paretovariate(1.5)) + 1)
        left -= size
        yield size


def fill_stories(clusterer: StoryClusterer, n: int, end: int, writer: Writer) -> int:
    """The clustering window's stories for ``n`` articles in the 30 days before ``end``: the
    last ``window_seconds`` of them, 60% originals. Returns the number of stories."""
    config = clusterer.config
    active = int(n * config.window_seconds / (30 * 86400) * 0.6)
    coin = random.Random(9)
    sizes = list(_story_sizes(active, coin))
    docs: list[tuple[int, int, str, str, str]] = []  # (time, story, title, lead, outlet)
    for number, size in enumerate(sizes):
        topic = writer.topic()
        born = end - coin.randrange(config.window_seconds)
        for j in range(size):
            title, lead = writer.article(topic)
            at = min(end, born + j * coin.randrange(60, 6 * 3600))
            docs.append((at, number, title, lead, f"outlet-{coin.randrange(400)}"))
    docs.sort()
    # The document frequencies of the whole window: its vocabulary reaches the table's cap.
    rare = np.random.default_rng(11)
    extra = min(int(0.9 * config.df_max_terms), 5 * n)
    for term in rare.integers(0, 2**63, size=extra, dtype=np.uint64).tolist():
        clusterer.df[term] = 1 + (term % 3)
    clusterer.docs = min(config.df_horizon, n // 2)
    vectors = []
    for _, _, title, lead, _ in docs:
        tf = clusterer.terms(title, lead)
        clusterer._learn_df(tf)
        vectors.append(tf)
    made: dict[int, Story] = {}
    for (at, key, title, _, outlet), tf in zip(docs, vectors, strict=True):
        vec = clusterer.vector(tf)
        story = made.get(key)
        if story is None:
            sid = hashlib.sha1(f"story-{key}".encode()).hexdigest()
            story = made[key] = Story(sid, at, at, sid, title)
            clusterer.stories[sid] = story
        story.articles += 2  # and a copy
        story.originals += 1
        story.last_seen = max(story.last_seen, at)
        if outlet not in story.outlets:
            story.outlets.append(outlet)
        clusterer._add_member(story, vec)
    return len(made)


def preload(stage: DedupStage, n: int, writer: Writer) -> int:
    """Fill the stage's engine with a window of ``n`` articles ending at the stream's start;
    returns the number of stories in the clustering window."""
    engine = stage.engine
    end = int(T0.timestamp())
    engine.watermark = end
    if n == 0:
        return 0
    synthetic_window(engine, n)
    engine.observed = n
    stories = fill_stories(engine.clusterer, n, end, writer)
    engine.clusterer.prepare()  # as a worker that restored this window has it
    return stories


# --- the measurement ------------------------------------------------------------------------


@contextmanager
def cpu(into: list[float]) -> Iterator[None]:
    start = time.process_time()
    yield
    into.append(time.process_time() - start)


@dataclass
class Figures:
    window: int
    stories: int
    articles: int
    process_ms: float
    snapshot_ms: float
    snapshot_p99_ms: float
    per_article_p99_ms: float
    snapshot_bytes: int
    first_snapshot_s: float
    checkpoint_s: float
    checkpoint_ms: float  # per article, amortized
    restore_s: float
    restore_cpu_s: float
    restored_articles: int

    @property
    def total_ms(self) -> float:
        return self.process_ms + self.snapshot_ms + self.checkpoint_ms


def _disk_bytes(path: Path) -> int:
    parent = path.parent
    return sum(p.stat().st_size for p in parent.rglob("*") if p.is_file())


class WindowRun:
    """One window's stage, fed the timed articles a batch at a time.

    The windows' batches take turns (``step``), so that a host that slows down for a while
    slows every window alike: their figures compare within the run.
    """

    def __init__(self, n: int, articles: list[Article], batch: int) -> None:
        self.n = n
        self.articles = articles
        self.batch = batch
        self.state = Path(tempfile.mkdtemp(prefix="dedup-scale-"))
        self.stage = DedupStage(
            input_topic=TOPIC,
            output_topic="bench.deduped",
            state_dir=self.state,
            snapshot_every_seconds=0,
        )
        self.tp = TopicPartition(TOPIC, 0)
        self.stage.on_partitions_assigned([self.tp])
        self.stories = 0
        self.first_snapshot = 0.0
        self.process: list[float] = []
        self.snapshot: list[float] = []
        self.per_article: list[float] = []
        self.offset = 0

    @property
    def batches(self) -> int:
        return -(-len(self.articles) // self.batch)

    def preload(self, writer: Writer, log: Callable[[str], None]) -> None:
        started = time.perf_counter()
        self.stories = preload(self.stage, self.n, writer)
        took = time.perf_counter() - started
        log(f"  window {self.n:,}: preloaded in {took:.1f} s ({self.stories:,} stories)")
        # The steady state: a snapshot of the window exists before the timed articles.
        self.stage.dirty = True
        start = time.process_time()
        self.stage.save()
        self.first_snapshot = time.process_time() - start

    def step(self, number: int) -> None:
        """The ``number``-th batch through ``process``, then acknowledged and snapshotted."""
        first = number * self.batch
        inbound = [
            Inbound(TOPIC, 0, self.offset + j, a.id, None, a)
            for j, a in enumerate(self.articles[first : first + self.batch])
        ]
        if not inbound:
            return
        self.offset += len(inbound)
        with cpu(self.process):
            self.stage.process(inbound)
        self.per_article.append(self.process[-1] / len(inbound))
        with cpu(self.snapshot):
            self.stage.after_commit({self.tp: self.offset})

    def finish(self) -> Figures:
        """A checkpoint's cost, then a restore of the final snapshot."""
        stage, state, batch = self.stage, self.state, self.batch
        size = _disk_bytes(stage.path)
        count = len(self.articles)
        # A checkpoint (written when the deltas outgrow the last one): its CPU, spread over
        # the articles whose deltas it takes to trigger the next one.
        snapshots = stage.snapshots
        delta_bytes = snapshots.delta_bytes / max(1, len(snapshots.deltas) * batch)
        start = time.process_time()
        arrays, meta = snapshots._checkpoint(stage.engine, snapshots.segment_files)
        checkpoint_bytes = write_file(state / "checkpoint-probe.npz", arrays, meta)
        checkpoint_cpu = time.process_time() - start
        (state / "checkpoint-probe.npz").unlink()
        between = max(checkpoint_bytes, MIN_CHECKPOINT_BYTES) / max(delta_bytes, 1.0)
        del stage, snapshots, self.stage  # its memory, before the restore
        gc.collect()
        wall = time.perf_counter()
        start = time.process_time()
        restored = read_snapshot(snapshot_path(state, TOPIC), TOPIC)
        restore_cpu = time.process_time() - start
        restore_wall = time.perf_counter() - wall
        assert restored is not None
        engine, offsets = restored
        assert offsets == {0: self.offset}, offsets
        return Figures(
            window=self.n,
            stories=self.stories,
            articles=count,
            process_ms=1000 * sum(self.process) / count,
            snapshot_ms=1000 * sum(self.snapshot) / count,
            snapshot_p99_ms=1000 * float(np.percentile(self.snapshot, 99)),
            per_article_p99_ms=1000 * float(np.percentile(self.per_article, 99)),
            snapshot_bytes=size,
            first_snapshot_s=self.first_snapshot,
            checkpoint_s=checkpoint_cpu,
            checkpoint_ms=1000 * checkpoint_cpu / between,
            restore_s=restore_wall,
            restore_cpu_s=restore_cpu,
            restored_articles=len(engine.store),
        )


def turns(batches: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(run, batch number) for runs of so many ``batches`` each, batch by batch, the runs'
    order rotated each time: no window's batch always follows the same other's."""
    runs = len(batches)
    for number in range(max(batches, default=0)):
        for i in range(runs):
            run = (i + number) % runs
            if number < batches[run]:
                yield run, number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="0,10000,100000,1000000")
    parser.add_argument("--articles", type=int, default=600, help="timed articles per window")
    parser.add_argument("--batch", type=int, default=50, help="articles per acknowledged batch")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    writer = Writer(Vocabulary.from_corpus())

    def log(line: str) -> None:
        print(line, flush=True)

    runs: list[WindowRun] = []
    try:
        for n in windows:
            span = args.articles * 30 * 86400 / n if n else None
            runs.append(WindowRun(n, stream_articles(args.articles, span), args.batch))
            runs[-1].preload(writer, log)
        gc.collect()
        log("  the windows' batches in turns")
        for i, number in turns([run.batches for run in runs]):
            runs[i].step(number)
        results = [run.finish() for run in runs]
    finally:
        for run in runs:
            shutil.rmtree(run.state, ignore_errors=True)
    head = (
        f"{'window':>10} {'stories':>8} {'process':>9} {'snapshot':>9} {'ckpt':>6} "
        f"{'total':>7} {'batch p99':>10} {'snap p99':>9} {'on disk':>9} {'1st snap':>9} "
        f"{'ckpt':>7} {'restore':>8}"
    )
    print(f"\nms CPU per article, {args.articles} real articles in batches of {args.batch}")
    print(head)
    print("-" * len(head))
    for f in results:
        print(
            f"{f.window:>10,} {f.stories:>8,} {f.process_ms:>9.2f} {f.snapshot_ms:>9.2f} "
            f"{f.checkpoint_ms:>6.2f} {f.total_ms:>7.2f} {f.per_article_p99_ms:>10.2f} "
            f"{f.snapshot_p99_ms:>9.0f} {f.snapshot_bytes / 2**20:>8.1f}M "
            f"{f.first_snapshot_s:>8.2f}s {f.checkpoint_s:>6.2f}s {f.restore_s:>7.2f}s"
        )
    print(
        "process: DedupStage.process per article; snapshot: after_commit (a snapshot per "
        "batch) per article; ckpt: a checkpoint's CPU per article, amortized over the "
        "articles whose deltas trigger the next one (and its CPU, s); batch p99: process per "
        "article, worst batches; snap p99: one snapshot, ms; restore: wall time of "
        "read_snapshot (CPU " + ", ".join(f"{f.restore_cpu_s:.2f}s" for f in results) + ")"
    )


if __name__ == "__main__":
    main()
