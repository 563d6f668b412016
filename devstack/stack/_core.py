"""up / down / status / install: the orchestration over the components.

``up`` runs one thread per group so the slow boots overlap (Kafka, Elasticsearch and Airflow's
``db migrate`` at once); within a group, members start in order, and the Airflow scheduler waits
for Kafka and Elasticsearch so the first scheduled runs find them. A component that is already
healthy is left alone, whoever started it. ``down`` stops only what the records under
``<run_dir>/stack/`` say we started, unless asked to sweep.

Workers run under supervisors (``supervise``) that restart them: a worker ``up`` finds dead is
restarted at once (its supervisor's backoff is cut short) and a dead supervisor is replaced;
``status`` shows each worker's restarts and last exit from its supervisor's state file.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from devstack.stack._proc import (
    ProcRecord,
    drop_record,
    find_marked,
    launch,
    load_record,
    log_tail,
    port_open,
    save_record,
    sid_of,
    stop_groups,
)
from devstack.stack.components import (
    ALIASES,
    GROUP_ORDER,
    SHARED_BASE_ROOT,
    Ctx,
    Group,
    Health,
    Member,
    build_groups,
    es_link,
    make_ctx,
)
from devstack.stack.profile import cluster_env, forget_nodes, record_nodes
from newsflow.settings import Settings, get_settings

log = logging.getLogger("devstack.stack")

Action = Literal["started", "restarted", "already-running", "failed"]
# restarting: its supervisor waits out the backoff; dead: its supervisor died (run `up`).
State = Literal["running", "starting", "restarting", "unhealthy", "dead", "stopped"]

_POLL_SECONDS = 0.5
# How long to wait for someone else's process on our port to become healthy before giving up.
_FOREIGN_WAIT = 60.0
# A supervised member that exits this often while `up` waits for it has failed (it keeps
# being restarted with backoff all the same).
_EXITS_BEFORE_FAILING = 3


class StackError(RuntimeError):
    """Some component did not come up; the message names it and its log, with the log's tail."""

    def __init__(self, message: str, report: StackReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ComponentResult:
    """What ``up`` did for one process."""

    name: str
    group: str
    action: Action
    seconds: float  # from launch (or from the start of `up`) until healthy / failed
    url: str
    pid: int | None = None
    log: Path | None = None
    detail: str = ""


@dataclass
class StackReport:
    """Outcome of ``up``: per process, plus install time per group and the wall time."""

    results: list[ComponentResult] = field(default_factory=list)
    install_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def started(self) -> list[str]:
        """Groups of which this call started at least one process (what to `down` later)."""
        return _groups_of(r for r in self.results if r.action == "started")

    @property
    def already_running(self) -> list[str]:
        started = set(self.started)
        groups = _groups_of(r for r in self.results if r.action == "already-running")
        return [g for g in groups if g not in started]

    @property
    def failed(self) -> list[ComponentResult]:
        return [r for r in self.results if r.action == "failed"]


@dataclass(frozen=True)
class ComponentStatus:
    """One process of the stack as ``status`` sees it."""

    name: str
    group: str
    state: State
    healthy: bool
    managed: bool  # started by `up` from this run dir (else external or stopped)
    pid: int | None
    url: str
    detail: str
    log: Path | None
    restarts: int | None = None  # supervised members: restarts by the supervisor so far
    last_exit: str | None = None  # e.g. "SIGKILL at 13:40:02 after 95s"


def _groups_of(results: Iterable[ComponentResult]) -> list[str]:
    seen = {r.group for r in results}
    return [g for g in GROUP_ORDER if g in seen]


def resolve(
    components: Sequence[str] | str | None,
    groups: dict[str, Group],
    *,
    with_required: bool = True,
) -> list[Member]:
    """Names (groups, members, aliases, comma-separated) -> members in start order.

    ``with_required`` adds the groups the chosen members need running (for ``up``); ``down``
    stops exactly what was named.
    """
    if components is None:
        wanted = list(GROUP_ORDER)
    else:
        raw = [components] if isinstance(components, str) else list(components)
        wanted = [p.strip().lower() for item in raw for p in item.split(",") if p.strip()]
    members = {m.name: m for g in groups.values() for m in g.members()}
    chosen: set[str] = set()
    for name in wanted:
        name = ALIASES.get(name, name)
        if name in groups:
            chosen.update(m.name for m in groups[name].members())
        elif name in members:
            chosen.add(name)
        else:
            known = ", ".join([*GROUP_ORDER, *sorted(set(members) - set(GROUP_ORDER))])
            raise ValueError(f"unknown stack component {name!r}; known: {known}")
    for member in list(members.values()) if with_required else []:
        if member.name in chosen:  # a member needs its required groups running too
            for required in member.requires:
                chosen.update(m.name for m in groups[required].members())
    return [m for g in GROUP_ORDER for m in groups[g].members() if m.name in chosen]


def _safe_check(member: Member, ctx: Ctx) -> Health:
    import httpx  # lazy: keeps `import devstack.stack` cheap

    try:
        return member.check(ctx)
    except (httpx.ConnectError, httpx.TimeoutException):
        return Health(False, "not answering")
    except Exception as exc:  # a health probe must never take `up` or `status` down
        return Health(False, f"{type(exc).__name__}: {exc}".strip()[:300])


@contextmanager
def _locked(ctx: Ctx) -> Iterator[None]:
    """One `up`/`down` at a time per run dir (two pytest sessions, a Makefile and a shell)."""
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    with (ctx.state_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _failure_text(member: Member, ctx: Ctx, detail: str) -> str:
    """The reason, the logs to read, and their last lines (JVM/launch errors are in the first)."""
    own = member.log_path(ctx)
    extra = [p for p in member.more_logs(ctx) if p.exists()]
    text = f"{member.name}: {detail}\n  logs: {', '.join(str(p) for p in [own, *extra])}"
    for path, lines in [(own, 12), *((p, 8) for p in extra)]:
        tail = log_tail(path, lines)
        if tail:
            text += f"\n  --- {path.name} (last lines)\n  " + "\n  ".join(tail.splitlines())
    return text


@dataclass(frozen=True)
class _Waiting:
    """A member `up` waits on: since when, whose process, what to report once healthy."""

    member: Member
    since: float
    pid: int | None
    ours: bool
    action: Action
    exits: int = 0  # its supervisor's count of exits when the wait began


def _exits(member: Member, ctx: Ctx) -> int:
    state = member.supervision(ctx)
    return state.exits if state is not None else 0


class _GroupRun:
    """Brings up the wanted members of one group; runs in its own thread."""

    def __init__(
        self,
        group: Group,
        members: list[Member],
        ctx: Ctx,
        ready: dict[str, threading.Event],
        timeout: float | None,
        report: StackReport,
        lock: threading.Lock,
    ) -> None:
        self.group = group
        self.members = members
        self.ctx = ctx
        self.ready = ready
        self.timeout = timeout
        self.report = report
        self.lock = lock
        self.t0 = time.monotonic()

    def _add(self, result: ComponentResult) -> None:
        with self.lock:
            self.report.results.append(result)
        if result.action == "failed":
            log.error("%s failed: %s", result.name, result.detail.splitlines()[0])
        else:
            log.info("%s %s (%.1fs) %s", result.name, result.action, result.seconds, result.url)

    def _result(
        self, m: Member, action: Action, since: float, pid: int | None, detail: str
    ) -> ComponentResult:
        return ComponentResult(
            name=m.name,
            group=m.group,
            action=action,
            seconds=round(time.monotonic() - since, 2),
            url=m.url(self.ctx),
            pid=pid,
            log=m.log_path(self.ctx),
            detail=detail,
        )

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.ready[self.group.name].set()

    def _run(self) -> None:
        ctx = self.ctx
        todo: list[tuple[Member, ProcRecord | None]] = []
        for m in self.members:
            record = load_record(ctx.state_dir, m.name)
            health = _safe_check(m, ctx)
            if health.ok:
                pid = record.pid if record else None
                self._add(self._result(m, "already-running", self.t0, pid, health.detail))
            else:
                todo.append((m, record))
        if not todo:
            return
        t_install = time.monotonic()
        try:
            self.group.install()
        except Exception as exc:
            for m, _ in todo:
                detail = _failure_text(m, ctx, f"install failed: {exc}")
                self._add(self._result(m, "failed", self.t0, None, detail))
            return
        with self.lock:
            self.report.install_seconds[self.group.name] = round(time.monotonic() - t_install, 2)
        waiting: list[_Waiting] = []
        for m, record in todo:
            for dep in m.waits_for:
                event = self.ready.get(dep)
                if event is not None:
                    event.wait(timeout=self.timeout or 600)
            if record is not None:  # ours and alive: booting, or its worker died
                revived = m.revive(ctx)
                if revived:
                    log.info("%s: not running; its supervisor restarts it now", m.name)
                since = time.monotonic() if revived else self.t0
                action: Action = "restarted" if revived else "started"
                waiting.append(_Waiting(m, since, record.pid, True, action, _exits(m, ctx)))
                continue
            m.reclaim(ctx)
            busy = [f"{h}:{p}" for h, p in m.ports(ctx) if port_open(h, p)]
            if busy:  # someone else's process: maybe booting, so wait, but never start twice
                log.info("%s: %s in use by another process; waiting for it", m.name, busy)
                waiting.append(_Waiting(m, time.monotonic(), None, False, "already-running"))
                continue
            since = time.monotonic()
            try:
                m.prepare(ctx)
                spec = m.launch_spec(ctx)
                pid, ticks = launch(spec)
            except Exception as exc:
                self._add(self._result(m, "failed", since, None, _failure_text(m, ctx, str(exc))))
                continue
            record = ProcRecord(
                name=m.name,
                pid=pid,
                pgid=sid_of(pid) or pid,
                start_ticks=ticks,
                argv=[str(a) for a in spec.argv],
                log=str(spec.log),
                started_at=time.time(),
            )
            save_record(ctx.state_dir, record)
            log.info("%s: started pid %d, waiting for health (log %s)", m.name, pid, spec.log)
            waiting.append(_Waiting(m, since, pid, True, "started"))
        self._wait(waiting)

    def _wait(self, waiting: list[_Waiting]) -> None:
        ctx = self.ctx
        while waiting:
            still: list[_Waiting] = []
            for w in waiting:
                m, since, pid, ours = w.member, w.since, w.pid, w.ours
                health = _safe_check(m, ctx)
                limit = self.timeout if self.timeout is not None else m.start_timeout
                exits = _exits(m, ctx) - w.exits if ours else 0
                if health.ok:
                    self._add(self._result(m, w.action, since, pid, health.detail))
                elif ours and load_record(ctx.state_dir, m.name) is None:
                    detail = _failure_text(m, ctx, "process exited before becoming healthy")
                    self._add(self._result(m, "failed", since, pid, detail))
                elif exits >= _EXITS_BEFORE_FAILING:
                    state = m.supervision(ctx)
                    last = state.summary() if state is not None else ""
                    why = f"exited {exits} times before becoming healthy ({last}); still retried"
                    self._add(self._result(m, "failed", since, pid, _failure_text(m, ctx, why)))
                elif time.monotonic() - since > (limit if ours else min(limit, _FOREIGN_WAIT)):
                    why = f"not healthy after {limit:.0f}s ({health.detail})"
                    if not ours:
                        ports = ", ".join(f"{h}:{p}" for h, p in m.ports(ctx))
                        why = f"port {ports} is taken by a process that is not a healthy {m.name}"
                    self._add(self._result(m, "failed", since, pid, _failure_text(m, ctx, why)))
                else:
                    still.append(w)
            waiting = still
            if waiting:
                time.sleep(_POLL_SECONDS)


def up(
    components: Sequence[str] | str | None = None,
    *,
    timeout: float | None = None,
    settings: Settings | None = None,
    nodes: int | None = None,
) -> StackReport:
    """Start what is not running yet and wait until all of it is healthy.

    ``components``: group names (kafka, elasticsearch, airflow, samples), member names
    (e.g. airflow-scheduler) or aliases (es); default all. Idempotent. Raises StackError (with
    ``.report``) if any component failed; the others are left running. ``nodes``: 1, or 3 for
    the cluster profile (recorded: later calls default to it).
    """
    ctx = make_ctx(settings or get_settings(), nodes)
    if nodes is not None:
        with _locked(ctx):
            _switch_profile(ctx)
    groups = build_groups(ctx)
    members = resolve(components, groups)
    report = StackReport()
    t0 = time.monotonic()
    by_group: dict[str, list[Member]] = {}
    for m in members:
        by_group.setdefault(m.group, []).append(m)
    ready = {name: threading.Event() for name in by_group}
    lock = threading.Lock()
    with _locked(ctx):
        runs = [
            _GroupRun(groups[name], ms, ctx, ready, timeout, report, lock)
            for name, ms in by_group.items()
        ]
        with ThreadPoolExecutor(max_workers=max(1, len(runs))) as pool:
            for fut in [pool.submit(r.run) for r in runs]:
                fut.result()
    order = {m.name: i for i, m in enumerate(members)}
    report.results.sort(key=lambda r: order.get(r.name, 99))
    report.seconds = round(time.monotonic() - t0, 2)
    if report.failed:
        details = "\n".join(r.detail for r in report.failed)
        count = len(report.failed)
        raise StackError(f"stack up failed for {count} component(s):\n{details}", report)
    return report


def _switch_profile(ctx: Ctx) -> None:
    """Record ``ctx.nodes`` as the stack's shape, unless the other shape is still running."""
    recorded = make_ctx(ctx.settings)
    if recorded.nodes != ctx.nodes:
        live = [
            m.name
            for group in ("kafka", "elasticsearch")
            for m in build_groups(recorded)[group].members()
            if load_record(ctx.state_dir, m.name) is not None
        ]
        if live:
            raise StackError(
                f"the stack runs {recorded.nodes} node(s) ({', '.join(live)}): "
                f"`newsflow stack down` before `up --nodes {ctx.nodes}`"
            )
    record_nodes(ctx.run_dir, ctx.nodes)


def down(
    components: Sequence[str] | str | None = None,
    *,
    only_started_by_us: bool = True,
    grace_seconds: float = 30.0,
    purge: bool = False,
    settings: Settings | None = None,
) -> list[str]:
    """Stop what ``up`` started (whole process groups; SIGTERM, then SIGKILL after the grace).

    ``only_started_by_us=False`` also stops any process that carries this run dir's marker
    (e.g. left over after the records were deleted). ``purge`` then deletes the run dir's data
    and Elasticsearch's directory (only with all components). Returns the names stopped.
    """
    ctx = make_ctx(settings or get_settings())
    groups = build_groups(ctx)
    members = resolve(components, groups, with_required=False)
    stopped: list[str] = []
    with _locked(ctx):
        # Producers first: the scheduler (its running tasks still need the api-server to report
        # back), triggerer and samples; then the api-server and dag-processor; then Kafka + ES.
        phases = [[m for m in reversed(members) if m.stop_phase == n] for n in (0, 1, 2)]
        for phase in phases:
            records = [(m, load_record(ctx.state_dir, m.name)) for m in phase]
            live = [(m, r) for m, r in records if r is not None]
            for m, r in records:
                if r is None:  # e.g. a worker whose supervisor died: what it left, if anything
                    m.reclaim(ctx)
                    m.forget(ctx)
            if not live:
                continue
            log.info("stopping %s", ", ".join(m.name for m, _ in live))
            killed = stop_groups(
                [(r.pid, r.pgid, min(grace_seconds, m.stop_grace)) for m, r in live]
            )
            for m, r in live:
                drop_record(ctx.state_dir, m.name)
                m.forget(ctx)
                stopped.append(m.name)
                if r.pgid in killed:
                    log.warning("%s did not stop in time: killed", m.name)
        if not only_started_by_us:
            pids = find_marked(str(ctx.run_dir))
            sids = {sid for sid in (sid_of(p) for p in pids) if sid is not None and sid > 1}
            if sids:
                log.info("stopping %d leftover session(s) of %s", len(sids), ctx.run_dir)
                stop_groups([(sid, sid, grace_seconds) for sid in sorted(sids)])
        if purge:
            if components is not None:
                raise ValueError("purge removes the whole run dir: use it without --only")
            _purge(ctx)
            forget_nodes(ctx.run_dir)
    return stopped


def _purge(ctx: Ctx) -> None:
    for link in (es_link(ctx), ctx.run_dir / "postgres"):
        if not link.is_symlink():
            continue
        pointed = link.readlink()
        auto = pointed.parent.parent == SHARED_BASE_ROOT and pointed.parent.name.startswith(
            "newsflow-"
        )
        target = link.resolve()
        if auto:  # rmtree removes symlinks inside, never what they point to
            shutil.rmtree(pointed.parent, ignore_errors=True)
        elif link.name == "postgres":  # NEWSFLOW_PG_BASE_DIR: remove only what the stack put there
            for sub in ("data", "run"):
                shutil.rmtree(target / sub, ignore_errors=True)
        else:  # NEWSFLOW_ES_BASE_DIR: remove only what the stack put there
            for sub in (
                "dist",
                "config",
                "data",
                "logs",
                "tmp",
                *(p.name for p in target.glob("node-*")),
            ):
                shutil.rmtree(target / sub, ignore_errors=True)
    for child in ctx.run_dir.iterdir():
        if child.name == "stack":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def status(
    components: Sequence[str] | str | None = None, *, settings: Settings | None = None
) -> list[ComponentStatus]:
    """Each process: running/starting/unhealthy/stopped, pid (if ours), URL, health detail."""
    ctx = make_ctx(settings or get_settings())
    members = resolve(components, build_groups(ctx))

    def one(m: Member) -> ComponentStatus:
        record = load_record(ctx.state_dir, m.name)
        health = _safe_check(m, ctx)
        supervised = m.supervision(ctx)
        state: State
        if health.ok:
            state = "running"
        elif record is not None:
            started_at = record.started_at
            if supervised is not None and supervised.child_started_at is not None:
                started_at = supervised.child_started_at
            age = time.time() - started_at
            state = "starting" if age < m.start_timeout else "unhealthy"
            if supervised is not None and supervised.phase == "backoff":
                state = "restarting"
        elif supervised is not None and supervised.phase != "stopped":
            state = "dead"
        else:
            state = "stopped"
        last_exit = supervised.last_exit if supervised is not None else None
        return ComponentStatus(
            name=m.name,
            group=m.group,
            state=state,
            healthy=health.ok,
            managed=record is not None,
            pid=record.pid if record else None,
            url=m.url(ctx),
            detail=health.detail,
            log=m.log_path(ctx),
            restarts=supervised.restarts if supervised is not None else None,
            last_exit=last_exit.describe() if last_exit is not None else None,
        )

    with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        return list(pool.map(one, members))


def install(
    components: Sequence[str] | str | None = None, *, settings: Settings | None = None
) -> dict[str, float]:
    """Download/prepare without starting anything (Maven jars, ES zip, Airflow DB).

    For a Makefile/CI warm-up step; ``up`` does the same on demand. Returns seconds per group.
    """
    ctx = make_ctx(settings or get_settings())
    groups = build_groups(ctx)
    members = resolve(components, groups)
    names = [g for g in GROUP_ORDER if any(m.group == g for m in members)]
    took: dict[str, float] = {}
    with _locked(ctx):
        for name in names:
            t0 = time.monotonic()
            groups[name].install()
            took[name] = round(time.monotonic() - t0, 2)
    return took


def cluster_exports(settings: Settings | None = None) -> str:
    """``NAME=value ...`` a shell exports to use the recorded cluster ("" for one node)."""
    ctx = make_ctx(settings or get_settings())
    return " ".join(f"{k}={v}" for k, v in cluster_env(ctx.settings, ctx.nodes).items())


__all__ = [
    "ComponentResult",
    "ComponentStatus",
    "StackError",
    "StackReport",
    "cluster_exports",
    "down",
    "install",
    "status",
    "up",
]
