"""Extraction in child processes: budgets, recovery, order, and children that die with the
parent. The injected extraction functions live at module level: a spawned child imports them by
name."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.corpus import SETS, available, load, subset
from enrich.extract import Extraction, ExtractionError, extract_page
from enrich.sandbox import (
    NOT_STARTED,
    ExtractionBudget,
    ExtractionPool,
    PageJob,
    PoolStartError,
    auto_processes,
)
from enrich.worker import EnrichStage
from newsflow.contracts import RawPage
from newsflow.errors import PermanentError, RetryableError
from newsflow.runtime import Deferred, Done, Failed, Inbound
from newsflow.selectors import ExtractionOverrides
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.urls import url_id
from pipeline import stages
from tests.pages import article_html

log = logging.getLogger(__name__)

PARAGRAPHS = [
    "The bridge over the river reopened on Monday after six months of repairs, the council "
    "said, and the first buses crossed it shortly after noon to cheers from a small crowd.",
    "Engineers replaced the worn bearings and resurfaced the deck, and the council said the "
    "work had finished two weeks early and slightly under its budget of four million pounds.",
    "Residents who had faced a detour of several miles welcomed the news, though some said "
    "the temporary traffic lights on the approach road should be removed as soon as possible.",
]
ARTICLE = article_html("Bridge reopens after repairs", PARAGRAPHS)
ARTICLE_URL = "https://herald.example/2026/11/bridge-reopens-after-repairs"
CORPUS_PAGES_PER_SET = 10


def fake_extraction(title: str) -> Extraction:
    return Extraction(
        title=title, text="body", is_article=True, article_reason="test", extractor="test"
    )


def by_url(html: str | bytes, url: str | None, **_: object) -> Extraction:
    """Does what the URL says: sleep, hog memory, die, fail; else returns its URL as title."""
    url = url or ""
    if "slow" in url:
        time.sleep(120)
    elif "nap" in url:
        time.sleep(float(url.rsplit("/", 1)[-1]))
    elif "hog" in url:
        hoard = [bytearray(64 * 1024 * 1024)]
        while True:
            hoard.append(bytearray(64 * 1024 * 1024))
    elif "huge" in url:
        bytearray(64 * 1024 * 1024 * 1024)
    elif "swallow" in url:  # like the extractor's cascade: a failing backend is logged, skipped
        try:
            bytearray(64 * 1024 * 1024 * 1024)
        except MemoryError:
            log.warning("backend failed on %s", url, exc_info=True)
    elif "exit" in url:
        os._exit(3)
    elif "oom" in url:
        os.kill(os.getpid(), signal.SIGKILL)
    elif "bug" in url:
        raise ValueError("a bug in a backend")
    elif "empty" in url:
        raise ExtractionError("empty_text", "no body text found")
    elif "chatty" in url:
        log.warning("something odd on %s", url)
    return fake_extraction(url)


def with_body(html: str | bytes, url: str | None, **_: object) -> Extraction:
    """``by_url``, with the fields an article needs (the stage builds one from it)."""
    return by_url(html, url).model_copy(update={"body_method": "test"})


def budget(timeout: float = 2.0, *, memory_mb: int = 512, processes: int = 1) -> ExtractionBudget:
    return ExtractionBudget(timeout_seconds=timeout, memory_mb=memory_mb, processes=processes)


@pytest.fixture
def pool() -> Iterator[ExtractionPool]:
    """Children that do not warm up (the functions here do not need it), with a time budget
    generous enough for a busy machine: the tests of the time budget set their own."""
    with ExtractionPool(budget(timeout=30), function=by_url, warm_up=None) as started:
        yield started


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- one page, in a child, as in this process --------------------------------------------------


def test_a_normal_page_gives_the_same_extraction_as_in_process() -> None:
    overrides = {"herald": ExtractionOverrides(title="//h1", drop=[".byline"])}
    jobs = [
        PageJob(ARTICLE, ARTICLE_URL),
        PageJob(ARTICLE.encode(), ARTICLE_URL, outlet="herald"),
        PageJob(
            article_html("", PARAGRAPHS),
            ARTICLE_URL,
            feed_title="Bridge reopens (feed)",
            feed_published_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        ),
        PageJob("<html><body><script>render()</script></body></html>", ARTICLE_URL),
    ]
    with ExtractionPool(budget(timeout=30, memory_mb=1024), overrides) as children:
        got = children.extract(jobs)
    for job, outcome in zip(jobs, got, strict=True):
        try:
            expected: Extraction | ExtractionError = extract_page(
                job.html,
                job.url,
                feed_title=job.feed_title,
                feed_published_at=job.feed_published_at,
                overrides=overrides.get(job.outlet or ""),
            )
        except ExtractionError as exc:
            expected = exc
        if isinstance(expected, ExtractionError):
            assert isinstance(outcome, ExtractionError)
            assert (outcome.reason, outcome.detail) == (expected.reason, expected.detail)
        else:
            assert outcome == expected
    assert got[1] != got[0], "the outlet's overrides were applied in the child"


@pytest.mark.skipif(not available(), reason="the shared corpus (../shared/corpus) is absent")
def test_real_pages_give_the_same_extractions_in_children_as_in_process() -> None:
    pages = [page for name in SETS for page in subset(load(name), CORPUS_PAGES_PER_SET)]
    jobs = [PageJob(page.html(), page.url) for page in pages]
    expected = [_in_process(job) for job in jobs]
    with ExtractionPool(budget(timeout=60, memory_mb=1024, processes=2)) as children:
        got = children.extract(jobs)
    assert [_comparable(o) for o in got] == [_comparable(o) for o in expected]
    assert sum(isinstance(o, Extraction) for o in got) >= len(jobs) * 0.9


def _in_process(job: PageJob) -> Extraction | ExtractionError:
    try:
        return extract_page(job.html, job.url)
    except ExtractionError as exc:
        return exc


def _comparable(outcome: object) -> object:
    if isinstance(outcome, ExtractionError):
        return ("error", outcome.reason, outcome.detail)
    return outcome


def test_the_extractors_own_failures_and_bugs_keep_their_meaning(pool: ExtractionPool) -> None:
    empty, bug, fine = pool.extract(
        [PageJob("x", "http://a.example/empty"), PageJob("x", "http://a.example/bug"),
         PageJob("x", "http://a.example/fine")]
    )  # fmt: skip
    assert isinstance(empty, ExtractionError)
    assert (empty.reason, empty.detail) == ("empty_text", "no body text found")
    # What the runner makes of an unexpected exception in this process: retried, then parked.
    assert isinstance(bug, RetryableError)
    assert (bug.reason, bug.detail) == ("unexpected_error", "ValueError: a bug in a backend")
    assert fine == fake_extraction("http://a.example/fine")
    assert pool.restarts == 0, "a bug does not cost the process"


def test_a_childs_log_records_reach_this_process(
    pool: ExtractionPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        pool.extract([PageJob("x", "http://a.example/chatty")])
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (__name__, "something odd on http://a.example/chatty")
    ]


# --- over budget: the page fails, the pool recovers ----------------------------------------


def test_a_slow_page_times_out_within_its_budget_and_the_next_page_succeeds() -> None:
    with ExtractionPool(budget(timeout=2), function=by_url, warm_up=None) as pool:
        old = pool.pids
        started = time.monotonic()
        [outcome] = pool.extract([PageJob("x", "http://a.example/slow")])
        elapsed = time.monotonic() - started
        assert isinstance(outcome, PermanentError) and outcome.reason == "extract_timeout"
        assert 2.0 <= elapsed < 2.0 + 5.0  # the budget, the kill and a fresh process's start
        assert pool.restarts == 1 and pool.pids != old
        assert _gone_within(old, 5)
        assert pool.extract([PageJob("x", "http://a.example/next")]) == [
            fake_extraction("http://a.example/next")
        ]


@pytest.mark.parametrize("kind", ["hog", "huge", "swallow", "oom"])
def test_a_memory_hog_fails_with_extract_memory_and_the_next_page_succeeds(
    pool: ExtractionPool, kind: str
) -> None:
    [outcome] = pool.extract([PageJob("x", f"http://a.example/{kind}")])
    assert isinstance(outcome, PermanentError) and outcome.reason == "extract_memory", outcome
    assert pool.restarts == 1
    assert pool.extract([PageJob("x", "http://a.example/next")]) == [
        fake_extraction("http://a.example/next")
    ]


def test_a_process_that_exits_fails_with_extract_crashed_and_the_next_page_succeeds(
    pool: ExtractionPool,
) -> None:
    [outcome] = pool.extract([PageJob("x", "http://a.example/exit")])
    assert isinstance(outcome, PermanentError) and outcome.reason == "extract_crashed"
    assert "exit code 3" in outcome.detail
    assert pool.extract([PageJob("x", "http://a.example/next")]) == [
        fake_extraction("http://a.example/next")
    ]


def test_a_memory_limit_below_what_the_extractor_needs_refuses_to_start() -> None:
    with pytest.raises(PoolStartError, match="with a 100 MB memory limit"):
        ExtractionPool(budget(memory_mb=100)).start()


# --- several processes -----------------------------------------------------------------------


def test_pages_run_in_parallel_and_results_keep_the_input_order() -> None:
    naps = [0.9, 0.1, 0.6, 0.1, 0.8, 0.2]
    jobs = [PageJob("x", f"http://a.example/nap/{nap}") for nap in naps]
    with ExtractionPool(budget(timeout=10, processes=3), function=by_url, warm_up=None) as pool:
        started = time.monotonic()
        got = pool.extract(jobs)
        elapsed = time.monotonic() - started
    assert got == [fake_extraction(job.url or "") for job in jobs]
    assert elapsed < sum(naps) - 0.5, "three processes share the batch"


def test_one_slow_page_does_not_hold_up_the_others() -> None:
    urls = ["slow", "a", "exit", "b", "c", "bug"]
    jobs = [PageJob("x", f"http://a.example/{url}") for url in urls]
    with ExtractionPool(budget(timeout=3, processes=2), function=by_url, warm_up=None) as pool:
        started = time.monotonic()
        got = pool.extract(jobs)
        elapsed = time.monotonic() - started
    reasons = [o.reason if isinstance(o, PermanentError | RetryableError) else "ok" for o in got]
    assert reasons == ["extract_timeout", "ok", "extract_crashed", "ok", "ok", "unexpected_error"]
    assert elapsed < 3 + 6


def test_no_page_starts_after_the_batch_time_but_the_first_always_does(
    pool: ExtractionPool,
) -> None:
    jobs = [PageJob("x", f"http://a.example/nap/{nap}") for nap in (0.3, 0.3, 0.3, 0.3)]
    # Time is up before the batch begins: the first page still runs (the stream moves).
    assert pool.extract(jobs, start_by=time.monotonic() - 1) == [
        fake_extraction(jobs[0].url or ""),
        NOT_STARTED,
        NOT_STARTED,
        NOT_STARTED,
    ]
    # Time for about two pages: the rest, a suffix, is left for the next batch.
    got = pool.extract(jobs, start_by=time.monotonic() + 0.45)
    done = [outcome for outcome in got if outcome is not NOT_STARTED]
    assert 1 <= len(done) < len(jobs)
    assert got == done + [NOT_STARTED] * (len(jobs) - len(done))


# --- lifetime --------------------------------------------------------------------------------


def test_close_stops_every_process() -> None:
    pool = ExtractionPool(budget(processes=2), function=by_url, warm_up=None)
    pool.start()
    pids = pool.pids
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    pool.close()
    assert _gone_within(pids, 5)
    pool.close()  # twice is fine


def test_the_pool_outlives_the_threads_that_used_it() -> None:
    """A child dies with the thread that started it (PR_SET_PDEATHSIG): the pool starts its
    children, replacements included, from a thread of its own."""
    pool = ExtractionPool(budget(timeout=30), function=by_url, warm_up=None)
    outcomes: list[object] = []
    try:
        starter = threading.Thread(target=pool.start)
        starter.start()
        starter.join()
        crash = [PageJob("x", "http://a.example/exit")]  # its child is replaced, in this thread
        user = threading.Thread(target=lambda: outcomes.extend(pool.extract(crash)))
        user.start()
        user.join()
        assert pool.restarts == 1
        time.sleep(0.5)
        assert all(_alive(pid) for pid in pool.pids)
        assert pool.extract([PageJob("x", "http://a.example/next")]) == [
            fake_extraction("http://a.example/next")
        ]
    finally:
        pool.close()
    [crashed] = outcomes
    assert isinstance(crashed, PermanentError) and crashed.reason == "extract_crashed"


PARENT = """
import sys
from enrich.sandbox import ExtractionBudget, ExtractionPool, PageJob
from tests.unit.test_sandbox import by_url

pool = ExtractionPool(ExtractionBudget(timeout_seconds=120, processes=2), function=by_url,
                      warm_up=None)
pool.start()
print(" ".join(str(pid) for pid in pool.pids), flush=True)
pool.extract([PageJob("x", "http://a.example/slow"), PageJob("x", "http://a.example/slow")])
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_children_die_with_their_parent(signum: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        time.sleep(0.5)  # both are busy with a slow page
        parent.send_signal(signum)
        parent.wait(10)
        assert _gone_within(pids, 5), "no orphan extraction process"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


# --- the enrich stage ------------------------------------------------------------------------


def _inbound(path: str, html: str, offset: int) -> Inbound[RawPage]:
    url = f"https://herald.example/{path}"
    page = RawPage(
        id=url_id(url),
        url=url,
        fetched_url=url,
        outlet="herald",
        http_status=200,
        html=html,
        fetched_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    return Inbound("raw", 0, offset, page.id, None, page)


def test_the_stage_with_a_budget_gives_what_it_gives_without() -> None:
    overrides = {"herald": ExtractionOverrides(title="//h1")}
    batch = [
        _inbound("2026/11/bridge-reopens-after-repairs", ARTICLE, 0),
        _inbound("empty", "<html><body><script>render()</script></body></html>", 1),
        _inbound("binary", "\x00\x01\x02" * 100, 2),
    ]
    here = EnrichStage(output_topic="articles", overrides=overrides).process(batch)
    stage = EnrichStage(output_topic="articles", overrides=overrides, budget=budget(timeout=30))
    try:
        stage.start()
        pids = stage.pool.pids if stage.pool else []
        assert len(pids) == 1
        children = stage.process(batch)
    finally:
        stage.close()
    assert _gone_within(pids, 5)
    assert isinstance(children[0], Done) and isinstance(here[0], Done)
    [got_article], [expected_article] = children[0].outputs, here[0].outputs
    assert got_article.message.model_dump(exclude={"extracted_at"}) == (
        expected_article.message.model_dump(exclude={"extracted_at"})
    )
    for got, expected in zip(children[1:], here[1:], strict=True):
        assert isinstance(got, Failed) and isinstance(expected, Failed)
        assert isinstance(got.error, PermanentError)
        assert (got.error.reason, got.error.detail) == (
            expected.error.reason,
            expected.error.detail,
        )


def test_the_stage_defers_the_pages_its_batch_time_did_not_reach() -> None:
    stage = EnrichStage(output_topic="articles")
    stage.pool = ExtractionPool(
        ExtractionBudget(timeout_seconds=30, memory_mb=512, batch_seconds=0.0),
        function=with_body,
        warm_up=None,
    )
    batch = [_inbound(f"nap/{nap}", "<p>x</p>", n) for n, nap in enumerate((0.1, 0.1, 0.1))]
    try:
        results = stage.process(batch)
    finally:
        stage.close()
    assert isinstance(results[0], Done)
    assert results[1:] == [Deferred(), Deferred()]


# --- how many processes ----------------------------------------------------------------------


def test_auto_processes_share_the_cpus_among_the_workers_of_a_host() -> None:
    assert auto_processes(1, cpus=2) == 2  # one worker on 2 cores extracts on both
    assert auto_processes(2, cpus=2) == 1
    assert auto_processes(3, cpus=2) == 1  # never none
    assert auto_processes(2, cpus=8) == 4
    assert auto_processes(1) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "auto"), ("auto", "auto"), ("3", 3), ("0", 0)]
)
def test_the_process_count_is_auto_unless_a_number_is_given(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: object
) -> None:
    monkeypatch.delenv("NEWSFLOW_ENRICH_EXTRACT_PROCESSES", raising=False)
    if value is not None:
        monkeypatch.setenv("NEWSFLOW_ENRICH_EXTRACT_PROCESSES", value)
    assert Settings().enrich_extract_processes == expected


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_process_count_that_is_neither_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NEWSFLOW_ENRICH_EXTRACT_PROCESSES", value)
    with pytest.raises(ValueError, match="enrich_extract_processes"):
        Settings()


@pytest.mark.parametrize(
    ("processes", "workers", "expected"), [("auto", 1, 4), ("auto", 3, 1), (2, 1, 2), (0, 1, None)]
)
def test_the_enrich_worker_takes_its_share_of_the_hosts_cpus(
    monkeypatch: pytest.MonkeyPatch, processes: int | str, workers: int, expected: int | None
) -> None:
    monkeypatch.setattr("enrich.sandbox.available_cpus", lambda: 4)
    monkeypatch.setattr(EnrichStage, "start", lambda self: None)
    settings = Settings(
        enrich_extract_processes=processes,
        enrich_workers_per_host=workers,
        outlets_file=PROJECT_ROOT / "no-such-registry.yaml",
    )
    stage = stages.CONSTRUCTORS["enrich"](settings)
    assert isinstance(stage, EnrichStage)
    assert (stage.pool.budget.processes if stage.pool else None) == expected
