"""Extraction in child processes, each page within a time and memory budget.

One hostile page (megabytes of markup and no text) can keep lxml and trafilatura busy for a
minute and take hundreds of megabytes; in the worker's own process nothing could stop it, and
the whole consumer group would wait. Here a small pool of long-lived children extracts the
pages; the parent waits up to the time budget and, on an overrun, kills the child, starts a
fresh one and fails the page with a permanent reason:

- ``extract_timeout``: the page took longer than the time budget;
- ``extract_memory``: the child hit its address-space limit (a ``MemoryError``, even one the
  extractor caught and logged, or a peak at the limit), or was killed by SIGKILL it was not
  sent by the pool (the kernel's OOM killer);
- ``extract_crashed``: the child died any other way (a crash in a C library, an exit).

The page then goes to the dead-letter topic with its reason and can be replayed. Children are
started with ``spawn`` (the worker runs Kafka client threads, so a plain fork is unsafe), import
and warm up the extractor before they take pages, ignore SIGINT and SIGTERM (the parent stops
them, after finishing its batch), and die with the parent: ``PR_SET_PDEATHSIG`` on Linux,
elsewhere a thread watching the parent's pid. ``PR_SET_PDEATHSIG`` ties a child to the thread
that started it, so the pool starts every child from a thread of its own that lives as long as
the pool: the pool may be used from any thread (the enrich worker extracts on one thread while
it produces on another), one batch at a time.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.util  # its exit hook must be registered before ours (see _close_all)
import os
import resource
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from enrich.extract import Extraction, ExtractionError, extract_page
from newsflow.errors import PermanentError, RetryableError, StageError, TransientError
from newsflow.selectors import ExtractionOverrides

log = logging.getLogger(__name__)

MB = 1024 * 1024
STARTUP_TIMEOUT_SECONDS = 60.0
# A child that cannot even send its reply for lack of memory exits with this code.
MEMORY_EXIT_CODE = 86
# At most this many log records of one page are sent back to the worker's log.
MAX_RECORDS_PER_PAGE = 50
_PR_SET_PDEATHSIG = 1

ExtractFunction = Callable[..., Extraction]


class NotStarted:
    """A page the batch had no time left for: the stage defers it to the next batch."""

    def __repr__(self) -> str:
        return "NOT_STARTED"


NOT_STARTED = NotStarted()

# What one page comes to: its fields, the extractor's own verdict on a page it cannot extract,
# the pool's (extract_timeout, extract_memory, extract_crashed, unexpected_error), or
# NOT_STARTED when the batch's time ran out before it.
Outcome = Extraction | ExtractionError | StageError | NotStarted


@dataclass(frozen=True, slots=True)
class ExtractionBudget:
    """What one page may take (seconds; megabytes of address space per process), and how
    many processes share a batch."""

    timeout_seconds: float = 20.0
    memory_mb: int = 1024
    processes: int = 1
    # No page of a batch starts later than this after the batch began (the first always
    # does): a batch takes at most this plus one page's budget, well within the consumer's
    # poll interval, however many slow pages it holds.
    batch_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class PageJob:
    """The arguments of ``extract_page`` for one page; ``outlet`` picks its overrides."""

    html: str | bytes
    url: str | None = None
    outlet: str | None = None
    feed_title: str | None = None
    feed_published_at: datetime | None = None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container's cpuset limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_processes(workers_per_host: int, cpus: int | None = None) -> int:
    """Extraction processes for one of ``workers_per_host`` enrich workers: a share of the
    CPUs each, at least one. The children do the CPU-bound work; the worker's own is light
    and overlaps theirs, so a CPU left without a child would be a CPU idle."""
    return max(1, (available_cpus() if cpus is None else cpus) // max(1, workers_per_host))


class PoolStartError(RuntimeError):
    """An extraction process could not start (e.g. a memory limit below what it needs)."""


def warm_up_extraction() -> None:
    """Import and exercise the extractor once, so a child's first page is not its slowest."""
    paragraph = (
        "The committee met on Tuesday to discuss the plans for the new bridge over the river, "
        "and agreed that work should begin in the spring after the floods have passed."
    )
    html = (
        "<html><head><title>Bridge plans agreed</title></head><body><article>"
        "<h1>Bridge plans agreed</h1>" + f"<p>{paragraph}</p>" * 4 + "</article></body></html>"
    )
    extract_page(html, "https://warm-up.example/2024/01/bridge-plans-agreed")


# --- the child ------------------------------------------------------------------------------


class _Capture(logging.Handler):
    """Keeps a page's log records for the parent, and notices a ``MemoryError`` that the
    extractor caught and logged (it would otherwise degrade the page's result silently)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.saw_memory_error = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and _caused_by_memory(record.exc_info[1]):
            self.saw_memory_error = True
        if len(self.records) >= MAX_RECORDS_PER_PAGE:
            return
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info))
                record.exc_info = None
        except Exception:  # a record that cannot be rendered is not worth a page
            return
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        self.saw_memory_error = False
        return records


def _caused_by_memory(error: BaseException | None) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MemoryError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(0)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(0)


def _peak_address_space() -> int | None:
    """The child's peak virtual memory in bytes (Linux), ``None`` where unknown."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reached_limit(limit: int) -> bool:
    """Did the address space reach the limit? An allocation there failed, even when nobody
    raised: lxml, for one, reports a failed allocation as an ``unknown error``."""
    peak = _peak_address_space()
    return peak is not None and peak >= limit - limit // 32


def _child_main(
    conn: multiprocessing.connection.Connection,
    parent_pid: int,
    function: ExtractFunction,
    overrides: Mapping[str, Mapping[str, Any]],
    memory_mb: int,
    log_level: int,
    warm_up: Callable[[], None] | None,
) -> None:
    _die_with_parent(parent_pid)
    # A signal to the whole process group must not cost in-flight pages their result: the
    # parent finishes its batch, then stops its children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    capture = _Capture()
    root = logging.getLogger()
    root.handlers[:] = [capture]
    root.setLevel(log_level)
    limit = memory_mb * MB
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        wanted = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
        selectors = {
            name: ExtractionOverrides.model_validate(data) for name, data in overrides.items()
        }
        if warm_up is not None:
            warm_up()
        if _reached_limit(limit):
            raise MemoryError(f"{memory_mb} MB leave no room to extract a page")
    except BaseException as exc:  # told to the parent, which refuses to start
        conn.send(("failed", f"{type(exc).__name__}: {exc}", capture.take()))
        return
    conn.send(("ready", None, capture.take()))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        reply = _extract_one(function, job, selectors, capture, limit)
        try:
            conn.send(reply)
        except MemoryError:
            os._exit(MEMORY_EXIT_CODE)
        if reply[0] == "memory":  # what failed to allocate may have left things half-done
            return


def _extract_one(
    function: ExtractFunction,
    job: PageJob,
    overrides: Mapping[str, ExtractionOverrides],
    capture: _Capture,
    limit: int,
) -> tuple[str, Any, list[logging.LogRecord]]:
    kind: str
    payload: Any
    try:
        payload = function(
            job.html,
            job.url,
            feed_title=job.feed_title,
            feed_published_at=job.feed_published_at,
            overrides=overrides.get(job.outlet) if job.outlet else None,
        )
        kind = "ok"
    except MemoryError:
        kind, payload = "memory", "MemoryError"
    except ExtractionError as exc:
        kind, payload = "error", (exc.reason, exc.detail)
        if _caused_by_memory(exc):
            kind, payload = "memory", f"MemoryError ({exc})"
    except Exception as exc:
        kind, payload = "exception", (type(exc).__name__, str(exc), traceback.format_exc())
        if _caused_by_memory(exc):
            kind, payload = "memory", f"MemoryError ({type(exc).__name__}: {exc})"
    if kind != "memory" and capture.saw_memory_error:
        kind, payload = "memory", "a MemoryError was caught and logged during extraction"
    elif kind != "memory" and _reached_limit(limit):
        kind, payload = "memory", "the address space reached its limit"
    return kind, payload, capture.take()


# --- the parent -----------------------------------------------------------------------------


class _Child:
    """One extraction process and the page it is working on."""

    def __init__(self, pool: ExtractionPool, number: int) -> None:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_child_main,
            args=(
                child_end,
                os.getpid(),
                pool.function,
                pool.overrides_data,
                pool.budget.memory_mb,
                logging.getLogger().getEffectiveLevel(),
                pool.warm_up,
            ),
            name=f"newsflow-extract-{number}",
            daemon=True,
        )
        self.conn = parent_end
        self.memory_mb = pool.budget.memory_mb
        try:
            self.process.start()
        finally:
            child_end.close()  # the child's end lives in the child: EOF here when it dies
        self.job: int | None = None  # index in the batch of the page it works on
        self.url: str | None = None
        self.deadline = 0.0

    def await_ready(self, deadline: float) -> None:
        name, limit = self.process.name, f"{self.memory_mb} MB memory limit"
        try:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise PoolStartError(f"{name} not ready after {STARTUP_TIMEOUT_SECONDS:g} s")
            kind, detail, records = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(5)
            raise PoolStartError(
                f"{name} died while starting ({_exit_description(self)}), with a {limit}"
            ) from exc
        _replay(records)
        if kind != "ready":
            raise PoolStartError(f"{name} could not start, with a {limit}: {detail}")

    def send(self, index: int, job: PageJob, timeout: float) -> None:
        self.job, self.url = index, job.url
        self.deadline = time.monotonic() + timeout
        self.conn.send(job)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle child to exit; kill it when it does not."""
        if self.process.is_alive() and self.job is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(2)
        self.kill()


def _exit_description(child: _Child) -> str:
    code = child.process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _replay(records: Iterable[logging.LogRecord]) -> None:
    """Log a child's records here, as if the extraction had run in this process."""
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


_open_pools: weakref.WeakSet[ExtractionPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Runs before multiprocessing's own exit hook (registered earlier, run later), which would
    # otherwise wait forever for children that ignore SIGTERM.
    for pool in list(_open_pools):
        pool.close()


class ExtractionPool:
    """Long-lived extraction processes; ``extract`` runs a batch across them, in input order,
    one batch at a time (from any thread).

    ``function`` (``extract_page`` by default) must be importable by name, like any target of
    a spawned process; tests inject slow, greedy or crashing ones.
    """

    def __init__(
        self,
        budget: ExtractionBudget,
        overrides: Mapping[str, ExtractionOverrides] | None = None,
        *,
        function: ExtractFunction = extract_page,
        warm_up: Callable[[], None] | None = warm_up_extraction,
    ) -> None:
        if budget.processes < 1:
            raise ValueError("an extraction pool needs at least one process")
        self.budget = budget
        # Compiled selectors do not pickle: children get the declarations and compile them.
        self.overrides_data = {
            name: value.model_dump() for name, value in (overrides or {}).items()
        }
        self.function = function
        self.warm_up = warm_up
        self.children: list[_Child] = []
        self.restarts = 0
        self._started_children = 0
        self._launcher: ThreadPoolExecutor | None = None  # the children's parent thread

    def __enter__(self) -> ExtractionPool:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "children", None):
            self.close()

    def start(self) -> None:
        """Start every process and wait until each is warm; raises ``PoolStartError``."""
        if self.children:
            return
        _open_pools.add(self)
        try:
            for _ in range(self.budget.processes):
                self.children.append(self._launch())
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
            for child in self.children:
                child.await_ready(deadline)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        children, self.children = getattr(self, "children", []), []
        for child in children:
            child.stop()
        launcher, self._launcher = getattr(self, "_launcher", None), None
        if launcher is not None:
            launcher.shutdown(wait=False)
        _open_pools.discard(self)

    @property
    def pids(self) -> list[int]:
        return [child.process.pid for child in self.children if child.process.pid is not None]

    def extract(self, jobs: Sequence[PageJob], *, start_by: float | None = None) -> list[Outcome]:
        """One outcome per job, in order. Raises ``TransientError`` (``extract_unavailable``)
        when a replacement process cannot start: the batch is re-read later.

        ``start_by`` (monotonic time): no job starts after it, except the first, so a batch
        of slow pages takes at most that plus one budget; the jobs not started come back as
        :data:`NOT_STARTED`."""
        outcomes: list[Outcome | None] = [None] * len(jobs)
        queue = deque(enumerate(jobs))
        try:
            self.start()
            while queue or any(child.job is not None for child in self.children):
                started_one = len(queue) < len(jobs)
                if queue and started_one and start_by is not None and time.monotonic() >= start_by:
                    for index, _job in queue:
                        outcomes[index] = NOT_STARTED
                    queue.clear()
                self._dispatch(queue)
                self._collect(outcomes)
        except PoolStartError as exc:
            self.close()  # the next batch starts every process afresh
            raise TransientError("extract_unavailable", str(exc)) from exc
        except BaseException:  # interrupted mid-batch: children may hold pages nobody awaits
            self.close()
            raise
        done = [outcome for outcome in outcomes if outcome is not None]
        if len(done) != len(jobs):
            raise RuntimeError(f"extraction pool: {len(jobs) - len(done)} page(s) without outcome")
        return done

    def _dispatch(self, queue: deque[tuple[int, PageJob]]) -> None:
        for slot, child in enumerate(self.children):
            if child.job is not None or not queue:
                continue
            index, job = queue.popleft()
            try:
                child.send(index, job, self.budget.timeout_seconds)
            except (OSError, ValueError):  # it died while idle: the page is not to blame
                queue.appendleft((index, job))
                child.job = None
                log.warning("%s died while idle (%s)", child.process.name, _exit_description(child))
                self._replace(slot)

    def _collect(self, outcomes: list[Outcome | None]) -> None:
        busy = [slot for slot, child in enumerate(self.children) if child.job is not None]
        if not busy:
            return
        soonest = min(self.children[slot].deadline for slot in busy)
        conns = {id(self.children[slot].conn): slot for slot in busy}
        ready = multiprocessing.connection.wait(
            [self.children[slot].conn for slot in busy],
            timeout=max(0.0, soonest - time.monotonic()),
        )
        for conn in ready:
            self._receive(conns[id(conn)], outcomes)
        now = time.monotonic()
        for slot in busy:
            child = self.children[slot]
            if child.job is None or now < child.deadline:
                continue
            if child.conn.poll():  # answered while another child was being replaced
                self._receive(slot, outcomes)
            else:
                outcomes[child.job] = PermanentError(
                    "extract_timeout",
                    f"extraction took longer than {self.budget.timeout_seconds:g} s",
                )
                log.warning(
                    "%s: extraction of %s over its %g s budget: process killed",
                    child.process.name,
                    child.url,
                    self.budget.timeout_seconds,
                )
                self._replace(slot)

    def _receive(self, slot: int, outcomes: list[Outcome | None]) -> None:
        child = self.children[slot]
        index = child.job
        assert index is not None
        try:
            kind, payload, records = child.conn.recv()
        except (EOFError, OSError):
            outcomes[index] = self._death_outcome(child)
            self._replace(slot)
            return
        except Exception as exc:  # an answer that does not unpickle
            outcomes[index] = PermanentError(
                "extract_crashed", f"unreadable answer: {type(exc).__name__}: {exc}"
            )
            self._replace(slot)
            return
        _replay(records)
        child.job = None
        if kind == "ok":
            outcomes[index] = payload
        elif kind == "error":
            reason, detail = payload
            outcomes[index] = ExtractionError(reason, detail)
        elif kind == "memory":
            outcomes[index] = PermanentError(
                "extract_memory", f"over the {self.budget.memory_mb} MB limit: {payload}"
            )
            log.warning(
                "%s: extraction of %s over its %d MB limit: process replaced",
                child.process.name,
                child.url,
                self.budget.memory_mb,
            )
            self._replace(slot)
        else:  # "exception": a bug, as the runner would call it in this process
            name, message, trace = payload
            log.error("extraction of %s raised %s: %s\n%s", child.url, name, message, trace)
            outcomes[index] = RetryableError("unexpected_error", f"{name}: {message}")

    def _death_outcome(self, child: _Child) -> StageError:
        child.process.join(5)
        code = child.process.exitcode
        died = _exit_description(child)
        log.warning("%s died extracting %s (%s)", child.process.name, child.url, died)
        if code in (-signal.SIGKILL, MEMORY_EXIT_CODE):
            return PermanentError("extract_memory", f"the extraction process was {died}")
        return PermanentError("extract_crashed", f"the extraction process died ({died})")

    def _launch(self) -> _Child:
        self._started_children += 1
        if self._launcher is None:
            self._launcher = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="newsflow-extract-launcher"
            )
        return self._launcher.submit(_Child, self, self._started_children).result()

    def _replace(self, slot: int) -> None:
        self.children[slot].kill()
        self.restarts += 1
        child = self._launch()
        self.children[slot] = child
        child.await_ready(time.monotonic() + STARTUP_TIMEOUT_SECONDS)
