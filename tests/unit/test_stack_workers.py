"""A stack worker's health: its supervisor and process, its /health, and its partitions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from devstack.stack._proc import proc_start_ticks
from devstack.stack.components import Ctx, PipelineWorker, WorkersGroup
from devstack.stack.supervise import ExitInfo, SupervisorState, state_path, write_state
from newsflow.observability import MetricsServer
from newsflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Health:
    def __init__(self) -> None:
        self.ok = True
        self.body: dict[str, Any] = {"stage": "enrich", "assigned": ["raw[0]", "raw[1]"]}

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, self.body


@pytest.fixture
def health() -> _Health:
    return _Health()


@pytest.fixture
def setup(tmp_path: Path, health: _Health) -> Iterator[tuple[Ctx, PipelineWorker]]:
    port = _free_port()  # the enrich stage's offset is 0: its port is the base port
    settings = Settings(run_dir=tmp_path, worker_metrics_base_port=port)
    ctx = Ctx(settings=settings, run_dir=tmp_path)
    (worker,) = [m for m in WorkersGroup(ctx).members() if m.name == "enrich-worker"]
    assert isinstance(worker, PipelineWorker)
    server = MetricsServer(CollectorRegistry(), health, port=port).start()
    yield ctx, worker
    server.close()


def test_healthy_when_it_answers_and_holds_partitions(setup: tuple[Ctx, PipelineWorker]) -> None:
    ctx, worker = setup
    result = worker.check(ctx)
    assert result.ok, result.detail
    assert "2 partition(s)" in result.detail


def test_without_partitions_it_is_not_healthy_unless_a_spare(
    setup: tuple[Ctx, PipelineWorker], health: _Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, worker = setup
    health.body["assigned"] = []
    monkeypatch.setattr(PipelineWorker, "_spare_member", lambda self, ctx: None)
    result = worker.check(ctx)
    assert not result.ok and "no partitions" in result.detail
    spare = "4 members for 3 partition(s)"
    monkeypatch.setattr(PipelineWorker, "_spare_member", lambda self, ctx: spare)
    result = worker.check(ctx)
    assert result.ok and spare in result.detail


def test_an_unhealthy_answer_is_unhealthy(
    setup: tuple[Ctx, PipelineWorker], health: _Health
) -> None:
    ctx, worker = setup
    health.ok = False
    health.body["seconds_since_poll"] = 999
    result = worker.check(ctx)
    assert not result.ok and "503" in result.detail and "999" in result.detail


def test_another_stage_on_the_port_is_not_this_worker(
    setup: tuple[Ctx, PipelineWorker], health: _Health
) -> None:
    ctx, worker = setup
    health.body["stage"] = "index"
    assert not worker.check(ctx).ok


def test_nothing_on_the_port_is_unhealthy(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, worker_metrics_base_port=_free_port())
    ctx = Ctx(settings=settings, run_dir=tmp_path)
    worker = WorkersGroup(ctx).members()[0]
    result = worker.check(ctx)
    assert not result.ok and "not answering" in result.detail


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_its_process_counts_not_just_the_port(setup: tuple[Ctx, PipelineWorker]) -> None:
    """Our supervisor alive but its worker gone: unhealthy even if the port answers."""
    ctx, worker = setup
    me = os.getpid()
    state = SupervisorState("enrich-worker", ["x"], me, proc_start_ticks(me), phase="backoff")
    state.child_pid = _dead_pid()
    state.last_exit = ExitInfo(None, "SIGKILL", at=0, ran_seconds=3)
    write_state(state_path(ctx.state_dir, worker.name), state)
    result = worker.check(ctx)
    assert not result.ok and "worker not running" in result.detail
    assert "SIGKILL" in result.detail


def test_a_dead_supervisor_is_reported(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, worker_metrics_base_port=_free_port())
    ctx = Ctx(settings=settings, run_dir=tmp_path)
    worker = WorkersGroup(ctx).members()[0]
    state = SupervisorState("enrich-worker", ["x"], _dead_pid(), 1, phase="running")
    write_state(state_path(ctx.state_dir, worker.name), state)
    result = worker.check(ctx)
    assert not result.ok and f"supervisor (pid {state.supervisor_pid}) died" in result.detail
    assert worker.revive(ctx) is False  # nothing to nudge: `up` starts a new supervisor


def test_a_worker_on_the_port_counts_whoever_started_it(
    setup: tuple[Ctx, PipelineWorker],
) -> None:
    ctx, worker = setup
    state = SupervisorState("enrich-worker", ["x"], _dead_pid(), 1, phase="running")
    write_state(state_path(ctx.state_dir, worker.name), state)
    assert worker.check(ctx).ok


def test_the_stack_needs_the_workers_metrics_ports(tmp_path: Path) -> None:
    from devstack.stack.components import StackConfigError

    ctx = Ctx(settings=Settings(run_dir=tmp_path, worker_metrics_base_port=0), run_dir=tmp_path)
    with pytest.raises(StackConfigError, match="METRICS_BASE_PORT"):
        WorkersGroup(ctx).members()[0].url(ctx)


def test_workers_run_under_their_supervisor_as_static_members(tmp_path: Path) -> None:
    ctx = Ctx(settings=Settings(run_dir=tmp_path), run_dir=tmp_path)
    worker = WorkersGroup(ctx).members()[0]
    spec = worker.launch_spec(ctx)
    assert list(spec.argv[1:3]) == ["-m", "devstack.stack.supervise"]
    assert list(spec.argv[-2:]) == ["worker", "enrich"]
    assert Settings(
        kafka_group_instance_prefix=spec.env["NEWSFLOW_KAFKA_GROUP_INSTANCE_PREFIX"]
    ).kafka_group_instance_prefix
