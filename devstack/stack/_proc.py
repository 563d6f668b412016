"""Detached processes and their records: start, find, stop.

Every service of the stack must outlive the ``newsflow stack up`` command (and the pytest session
that called ``up``). So each one is started through a tiny launcher process that spawns it in a
session of its own and exits: the service is re-parented to init, is never our zombie, and the
caller holds no ``Popen`` object that would warn about a child still running. What we started is
recorded as JSON under ``<run_dir>/stack/`` with the process start time, so a recycled PID is
never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# Marker put in the environment of every process we start: `down(only_started_by_us=False)`
# finds stragglers by it (e.g. after the run dir's records were deleted).
MARKER_ENV = "NEWSFLOW_STACK_RUN_DIR"

_LAUNCHER = r"""
import json, os, subprocess, sys
spec = json.load(sys.stdin)
log = open(spec["log"], "ab", buffering=0)
extra = {}
if spec.get("uid") is not None:
    extra = {"user": spec["uid"], "group": spec["gid"], "extra_groups": []}
proc = subprocess.Popen(
    spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, **extra,
)
sys.stdout.write(str(proc.pid))
sys.stdout.flush()
os._exit(0)
"""


class ProcessError(RuntimeError):
    """A process could not be started (bad executable, permissions, ...)."""


@dataclass(frozen=True)
class LaunchSpec:
    """What to run for one stack member, and as whom."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class ProcRecord:
    """A process we started, as stored in ``<run_dir>/stack/<name>.json``."""

    name: str
    pid: int
    pgid: int  # also the session id: launched processes lead a session of their own
    start_ticks: int
    argv: list[str]
    log: str
    started_at: float

    def alive(self) -> bool:
        return proc_start_ticks(self.pid) == self.start_ticks


def proc_start_ticks(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks, or None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def launch(spec: LaunchSpec) -> tuple[int, int]:
    """Start ``spec`` detached; returns (pid, start_ticks)."""
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with spec.log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n===== {stamp} newsflow stack: {' '.join(spec.argv)}\n")
    payload = {
        "argv": list(spec.argv),
        "env": dict(spec.env),
        "cwd": str(spec.cwd),
        "log": str(spec.log),
        "uid": spec.uid,
        "gid": spec.gid,
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise ProcessError(f"could not start {spec.argv[0]}: {tail[0]}")
    pid = int(done.stdout.strip())
    ticks = proc_start_ticks(pid)
    if ticks is None:  # died at once: the log says why
        raise ProcessError(f"{spec.argv[0]} exited immediately; see {spec.log}")
    return pid, ticks


def save_record(state_dir: Path, record: ProcRecord) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{record.name}.json.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(state_dir / f"{record.name}.json")


def load_record(state_dir: Path, name: str) -> ProcRecord | None:
    """Our record for ``name`` if that process is still alive; stale records are removed."""
    path = state_dir / f"{name}.json"
    try:
        record = ProcRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if record.alive():
        return record
    path.unlink(missing_ok=True)
    return None


def drop_record(state_dir: Path, name: str) -> None:
    (state_dir / f"{name}.json").unlink(missing_ok=True)


def session_pids(sid: int) -> list[int]:
    """Live processes of a session.

    We start every service as a session leader, and its descendants stay in that session even
    when they make process groups of their own (Airflow's task supervisors do), so the session
    is what `down` must empty.
    """
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _group_alive(sid: int) -> bool:
    return bool(session_pids(sid))


def _signal_group(sid: int, sig: signal.Signals) -> None:
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class _Stopping:
    pid: int
    pgid: int
    grace: float
    stage: int = 0


def stop_groups(targets: Iterable[tuple[int, int, float]]) -> list[int]:
    """Stop (pid, session id, grace_seconds) targets concurrently; returns sessions SIGKILLed.

    The leader gets SIGTERM first so it can shut its children down in order (the Airflow
    scheduler hangs if its executor workers die under it), and again after a quarter of the
    grace (the scheduler's "signal again to stop waiting for running tasks"). What is still
    alive gets SIGTERM for the whole session at 3/4 of the grace and SIGKILL at the end: whole
    sessions, because Elasticsearch and Airflow run their real work in child processes.
    """
    items = [_Stopping(pid, pg, grace) for pid, pg, grace in targets if _group_alive(pg)]
    for it in items:
        _signal_leader(it.pid)
    start = time.monotonic()
    killed: list[int] = []
    pending = items
    while pending:
        time.sleep(0.2)
        elapsed = time.monotonic() - start
        still: list[_Stopping] = []
        for it in pending:
            if not _group_alive(it.pgid):
                continue
            if elapsed >= it.grace:
                _signal_group(it.pgid, signal.SIGKILL)
                killed.append(it.pgid)
                continue
            if it.stage == 0 and elapsed >= it.grace / 4:
                it.stage = 1
                _signal_leader(it.pid)
            elif it.stage == 1 and elapsed >= it.grace * 0.75:
                it.stage = 2
                _signal_group(it.pgid, signal.SIGTERM)
            still.append(it)
        pending = still
    end = time.monotonic() + 5
    while any(_group_alive(pg) for pg in killed) and time.monotonic() < end:
        time.sleep(0.1)
    return sorted(killed)


def _signal_leader(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)


def find_marked(marker_value: str) -> list[int]:
    """PIDs of processes whose environment carries our run-dir marker."""
    needle = f"{MARKER_ENV}={marker_value}".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def sid_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, for error messages that should not need a second command."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
