"""Keeps one stack worker running: restarts it with backoff and records what happened.

    python -m devstack.stack.supervise --name enrich-worker --state STATE.json -- CMD ...

Why a process per worker, not a loop inside ``newsflow stack up``: ``up`` is a command that
returns, and the stack's services outlive it (see ``_proc``). So ``up`` launches this small
supervisor as the recorded process of each worker; it runs the worker as its child, and
when the child exits for any reason other than our own stop (a crash, ``kill -9``, OOM), it
starts it again after a backoff: 1 s, doubling up to 30 s, back to 1 s once a run has lasted
30 s. SIGUSR1 skips the current wait (``stack up`` sends it, so a dead worker comes back at
once), SIGTERM stops the child (forwarded, so it finishes its batch) and then the supervisor.

The child gets SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a killed
supervisor leaves no unsupervised worker behind: ``stack status`` shows the member ``dead``
and ``stack up`` starts a new supervisor. Restarts, the last exit (code or signal, when,
after how long) and the child's pid are kept in the state file, rewritten atomically on
every change, which ``stack status`` reads.

Standard library only, and nothing of the stack's heavier modules: one of these runs per
worker for as long as the stack does.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from devstack.stack._proc import proc_start_ticks

Phase = Literal["starting", "running", "backoff", "stopping", "stopped"]

_PR_SET_PDEATHSIG = 1
_TICK_SECONDS = 0.1


@dataclass
class Backoff:
    """Delays between restarts: ``initial`` doubling to ``maximum``; a run that lasted
    ``reset_after`` seconds counted as healthy, so the delay after it is ``initial`` again."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 30.0
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay_after(self, ran_seconds: float) -> float:
        if ran_seconds >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay


@dataclass(frozen=True)
class ExitInfo:
    """How a child ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: str | None
    at: float  # epoch seconds
    ran_seconds: float

    @classmethod
    def from_returncode(cls, returncode: int, at: float, ran_seconds: float) -> ExitInfo:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            return cls(None, name, at, round(ran_seconds, 2))
        return cls(returncode, None, at, round(ran_seconds, 2))

    def describe(self) -> str:
        how = self.signal if self.signal else f"exit {self.code}"
        when = time.strftime("%H:%M:%S", time.localtime(self.at))
        return f"{how} at {when} after {self.ran_seconds:.0f}s"


@dataclass
class SupervisorState:
    """What ``<run_dir>/stack/<name>.supervisor.json`` holds."""

    name: str
    argv: list[str]
    supervisor_pid: int
    supervisor_ticks: int | None
    phase: Phase = "starting"
    child_pid: int | None = None
    child_ticks: int | None = None
    child_started_at: float | None = None
    restarts: int = 0  # children started after the first
    exits: int = 0
    last_exit: ExitInfo | None = None
    next_start_at: float | None = None  # while in backoff
    updated_at: float = 0.0

    def supervisor_alive(self) -> bool:
        ticks = proc_start_ticks(self.supervisor_pid)
        return ticks is not None and ticks == self.supervisor_ticks

    def child_alive(self) -> bool:
        if self.child_pid is None:
            return False
        ticks = proc_start_ticks(self.child_pid)
        return ticks is not None and ticks == self.child_ticks

    def summary(self) -> str:
        """One line for ``stack status``: what the supervisor is doing and what happened last."""
        parts: list[str] = []
        if self.phase == "backoff" and self.next_start_at is not None:
            wait = max(0.0, self.next_start_at - time.time())
            parts.append(f"restarting in {wait:.0f}s")
        if self.restarts:
            parts.append(f"{self.restarts} restart(s)")
        if self.last_exit is not None:
            parts.append(f"last exit {self.last_exit.describe()}")
        return ", ".join(parts)


def state_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.supervisor.json"


def write_state(path: Path, state: SupervisorState) -> None:
    state.updated_at = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


def read_state(path: Path) -> SupervisorState | None:
    try:
        data = json.loads(path.read_text())
        exit_data = data.pop("last_exit", None)
        state = SupervisorState(**data)
        state.last_exit = ExitInfo(**exit_data) if exit_data else None
    except (OSError, ValueError, TypeError):
        return None
    return state


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGTERM when the supervisor dies (and exits if it already
    has, between the fork and this call)."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


class Supervisor:
    """Runs ``argv`` until told to stop, restarting it after every exit."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        path: Path,
        backoff: Backoff | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.path = path
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.stopping = False
        self.wake = False
        self.child: subprocess.Popen[bytes] | None = None
        pid = os.getpid()
        self.state = SupervisorState(name, self.argv, pid, proc_start_ticks(pid))

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        sys.stderr.write(f"{stamp} supervise[{self.name}]: {message}\n")
        sys.stderr.flush()

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def stop_requested(self) -> bool:
        """Set by SIGTERM (a method, so checks after a blocking call are not narrowed away)."""
        return self.stopping

    def _on_wake(self, _signum: int, _frame: FrameType | None) -> None:
        self.wake = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_wake)

    def _save(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        write_state(self.path, self.state)

    def _start_child(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(self.argv, preexec_fn=_die_with_parent(os.getpid()))
        self._save(
            phase="running",
            child_pid=child.pid,
            child_ticks=proc_start_ticks(child.pid),
            child_started_at=time.time(),
            next_start_at=None,
        )
        self.say(f"started pid {child.pid}: {' '.join(self.argv)}")
        return child

    def _sleep(self, seconds: float) -> None:
        """Wait for the backoff, cut short by SIGUSR1 or a stop."""
        end = self.clock() + seconds
        while not self.stop_requested() and not self.wake and self.clock() < end:
            time.sleep(min(_TICK_SECONDS, max(0.0, end - self.clock())))
        self.wake = False

    def run(self) -> int:
        """Until SIGTERM: start the child, wait for it, record its exit, back off, repeat."""
        self._save(phase="starting")
        first = True
        while not self.stopping:
            if not first:
                self.state.restarts += 1
            first = False
            try:
                self.child = self._start_child()
            except OSError as exc:  # no such executable, ...: the same backoff as a crash
                self.say(f"cannot start: {exc}")
                started = self.clock()
                returncode = 127
            else:
                started = self.clock()
                if self.stop_requested():  # SIGTERM came between the fork and self.child
                    self.child.send_signal(signal.SIGTERM)
                returncode = self.child.wait()
            ran = self.clock() - started
            info = ExitInfo.from_returncode(returncode, time.time(), ran)
            self.state.exits += 1
            if self.stop_requested():
                self._save(phase="stopped", last_exit=info, child_pid=None, child_ticks=None)
                self.say(f"stopped ({info.describe()})")
                return 0
            delay = self.backoff.delay_after(ran)
            self._save(
                phase="backoff",
                last_exit=info,
                child_pid=None,
                child_ticks=None,
                next_start_at=time.time() + delay,
            )
            self.say(f"worker ended ({info.describe()}); restarting in {delay:.0f}s")
            self._sleep(delay)
        self._save(phase="stopped", next_start_at=None)
        return 0


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.stack.supervise",
        description="Run a command, restarting it with backoff whenever it exits.",
    )
    parser.add_argument("--name", required=True, help="the stack member (for the log)")
    parser.add_argument("--state", required=True, type=Path, help="the state file to keep")
    parser.add_argument("--initial-backoff", type=float, default=1.0)
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--reset-after", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    parsed = parser.parse_args(args)
    command = parsed.command[1:] if parsed.command[:1] == ["--"] else parsed.command
    if not command:
        parser.error("no command to supervise (give it after --)")
    backoff = Backoff(parsed.initial_backoff, parsed.max_backoff, parsed.reset_after)
    supervisor = Supervisor(parsed.name, command, parsed.state, backoff)
    supervisor.install_signal_handlers()
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
