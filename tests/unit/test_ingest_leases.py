"""The per-host in-flight cap shared through the crawl state (SQLite here, PostgreSQL live)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ingest.state import StateStore

HOST = "news.example:443"


def test_leases_cap_in_flight_requests_per_host(tmp_path: Path) -> None:
    now = [1000.0]
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = StateStore.from_url(url, clock=lambda: now[0])
    second = StateStore.from_url(url, clock=lambda: now[0])
    a = first.acquire_lease(HOST, cap=2, ttl=30)
    b = second.acquire_lease(HOST, cap=2, ttl=30)
    assert a and b and a != b
    assert first.acquire_lease(HOST, cap=2, ttl=30) is None
    assert first.acquire_lease("other.example:443", cap=2, ttl=30) is not None
    second.release_lease(b)
    assert first.acquire_lease(HOST, cap=2, ttl=30) is not None


def test_a_dead_holders_lease_expires(tmp_path: Path) -> None:
    now = [1000.0]
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}", clock=lambda: now[0])
    assert store.acquire_lease(HOST, cap=1, ttl=30)
    assert store.acquire_lease(HOST, cap=1, ttl=30) is None
    now[0] += 31
    assert store.acquire_lease(HOST, cap=1, ttl=30) is not None


def test_leases_are_shared_between_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    holder = (
        "import sys; from ingest.state import StateStore; "
        "s = StateStore.from_url(sys.argv[1]); "
        "print(s.acquire_lease('news.example:443', cap=1, ttl=60))"
    )
    taken = subprocess.run(
        [sys.executable, "-c", holder, url], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert taken and taken != "None"
    assert StateStore.from_url(url).acquire_lease(HOST, cap=1, ttl=60) is None
