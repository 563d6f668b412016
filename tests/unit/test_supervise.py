"""The workers' supervisor: backoff, its state file, and restarting a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.stack._proc import proc_start_ticks
from devstack.stack.supervise import Backoff, ExitInfo, SupervisorState, read_state, write_state

REPO = Path(__file__).resolve().parents[2]


def test_backoff_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1, maximum=30, reset_after=60)
    assert [backoff.delay_after(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_starts_over_after_a_healthy_run() -> None:
    backoff = Backoff(initial=1, maximum=30, reset_after=60)
    for _ in range(4):
        backoff.delay_after(1)
    assert backoff.delay_after(60) == 1
    assert backoff.delay_after(2) == 2


def test_exit_info_names_the_signal_or_the_code() -> None:
    killed = ExitInfo.from_returncode(-signal.SIGKILL, at=0, ran_seconds=12.345)
    assert (killed.code, killed.signal, killed.ran_seconds) == (None, "SIGKILL", 12.35)
    assert killed.describe().startswith("SIGKILL at ")
    failed = ExitInfo.from_returncode(3, at=0, ran_seconds=1)
    assert (failed.code, failed.signal) == (3, None)
    assert failed.describe().startswith("exit 3 at ")


def test_state_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "enrich-worker.supervisor.json"
    state = SupervisorState("enrich-worker", ["newsflow", "worker", "enrich"], 1, 99)
    state.phase = "backoff"
    state.restarts = 2
    state.exits = 2
    state.last_exit = ExitInfo(None, "SIGKILL", at=time.time(), ran_seconds=4.0)
    state.next_start_at = time.time() + 4
    write_state(path, state)
    loaded = read_state(path)
    assert loaded == state
    assert loaded.updated_at > 0
    assert "restarting in" in loaded.summary() and "2 restart(s)" in loaded.summary()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically through a temporary file


def test_unreadable_state_file_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path / "missing.json") is None
    (tmp_path / "torn.json").write_text('{"name": "x", ')
    assert read_state(tmp_path / "torn.json") is None


def test_state_of_a_dead_supervisor_is_not_alive(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    state = SupervisorState("w", ["x"], int(done.stdout), 12345, child_pid=int(done.stdout))
    assert not state.supervisor_alive()
    assert not state.child_alive()
    me = SupervisorState("w", ["x"], os.getpid(), proc_start_ticks(os.getpid()))
    assert me.supervisor_alive()


# --- a real supervisor over a real child ------------------------------------------------------


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    path = tmp_path / "sleeper.supervisor.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.stack.supervise", "--name", "sleeper",
         "--state", str(path), "--initial-backoff", "0.2", "--max-backoff", "5",
         "--", sys.executable, "-c", "import time; time.sleep(300)"],
        env=env,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(lambda: (s := read_state(path)) is not None and s.child_alive())
    yield proc, path
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    state = read_state(path)
    if state is not None and state.child_alive() and state.child_pid:
        os.kill(state.child_pid, signal.SIGKILL)


def _running(path: Path) -> SupervisorState:
    state = read_state(path)
    assert state is not None
    return state


def test_a_killed_child_is_restarted_and_recorded(
    supervised: tuple[subprocess.Popen[bytes], Path],
) -> None:
    _proc, path = supervised
    first = _running(path)
    assert (first.phase, first.restarts, first.last_exit) == ("running", 0, None)
    assert first.child_pid is not None
    os.kill(first.child_pid, signal.SIGKILL)
    _wait_for(lambda: _running(path).restarts == 1 and _running(path).child_alive())
    second = _running(path)
    assert second.child_pid != first.child_pid
    assert second.last_exit is not None and second.last_exit.signal == "SIGKILL"
    assert second.phase == "running"


def test_sigterm_stops_the_child_and_then_the_supervisor(
    supervised: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, path = supervised
    child = _running(path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    final = _running(path)
    assert final.phase == "stopped"
    assert final.last_exit is not None and final.last_exit.signal == "SIGTERM"
    assert not child.child_alive()


def test_a_killed_supervisor_takes_its_child_along(
    supervised: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, path = supervised
    child = _running(path)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not child.child_alive())
    assert not _running(path).supervisor_alive()


def test_sigusr1_cuts_the_backoff_short(tmp_path: Path) -> None:
    path = tmp_path / "crasher.supervisor.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.stack.supervise", "--name", "crasher",
         "--state", str(path), "--initial-backoff", "60",
         "--", sys.executable, "-c", "raise SystemExit(3)"],
        env=env,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(lambda: (s := read_state(path)) is not None and s.phase == "backoff")
        state = _running(path)
        assert state.last_exit is not None and state.last_exit.code == 3
        proc.send_signal(signal.SIGUSR1)
        _wait_for(lambda: _running(path).exits >= 2, timeout=10)  # long before 60 s
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_supervisor_stays_small() -> None:
    """One runs per worker for the stack's lifetime: it imports no settings, client or app."""
    code = (
        "import sys, devstack.stack.supervise; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('newsflow', 'pydantic', 'kafka', 'httpx', 'typer')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
