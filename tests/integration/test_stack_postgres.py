"""The local stack's PostgreSQL, in a run dir of its own on a free port (the shared stack's
database is never touched): password auth, and a socket only its account can reach."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from devstack.stack import components
from devstack.stack._proc import launch
from devstack.stack.components import (
    PG_DATABASE,
    Ctx,
    PostgresGroup,
    PostgresServer,
    find_postgres_bin,
    postgres_password,
    postgres_password_file,
)
from ingest.state import ensure_schema
from newsflow.settings import Settings, get_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_postgres_bin() is None, reason="no PostgreSQL server installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Ctx, PostgresGroup, int]]:
    # Under /tmp, not pytest's 0700 tmp dir: as root, the database runs as its own account.
    scratch = Path(tempfile.mkdtemp(prefix="newsflow-pgtest-"))
    scratch.chmod(0o711)
    shared = scratch / "var-tmp"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    monkeypatch.setattr(components, "SHARED_BASE_ROOT", shared)
    monkeypatch.delenv("NEWSFLOW_PG_BASE_DIR", raising=False)
    port = _free_port()
    monkeypatch.setenv("NEWSFLOW_PG_PORT", str(port))
    run_dir = scratch / "run"
    ctx = Ctx(settings=Settings(run_dir=run_dir), run_dir=run_dir)
    group = PostgresGroup(ctx)
    group.install()
    (server,) = group.members()
    assert isinstance(server, PostgresServer)
    launch(server.launch_spec(ctx))
    try:
        deadline = time.monotonic() + 60
        while not server.check(ctx).ok:
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.3)
        yield ctx, group, port
    finally:
        assert group.bin is not None
        owner = group.owner
        subprocess.run(
            [str(group.bin / "pg_ctl"), "stop", "-D", str(group.base / "data"), "-m", "fast"],
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_database_wants_the_generated_password(
    running: tuple[Ctx, PostgresGroup, int],
) -> None:
    ctx, _, port = running
    assert stat.S_IMODE(postgres_password_file(ctx).stat().st_mode) == 0o600
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=port, user=PG_DATABASE, dbname="postgres")
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(
            host="127.0.0.1", port=port, user=PG_DATABASE, dbname="postgres", password="guess"
        )
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=PG_DATABASE,
        dbname="postgres",
        password=postgres_password(ctx),
    )
    connection.close()


def test_the_socket_is_not_world_reachable(running: tuple[Ctx, PostgresGroup, int]) -> None:
    _, group, port = running
    socket_dir = group.base / "run"
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    sock = socket_dir / f".s.PGSQL.{port}"
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert stat.S_IMODE(os.lstat(sock).st_mode) & 0o077 == 0
    hba = (group.base / "data" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)


def test_the_crawl_state_connects_with_the_generated_password(
    running: tuple[Ctx, PostgresGroup, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`newsflow init` and the DAGs use a state URL without a password, as by default."""
    ctx, _, port = running
    monkeypatch.setenv("NEWSFLOW_RUN_DIR", str(ctx.run_dir))
    monkeypatch.delenv("PGPASSFILE", raising=False)
    get_settings.cache_clear()
    try:
        engine = ensure_schema(f"postgresql+psycopg2://{PG_DATABASE}@127.0.0.1:{port}/newsflow")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM ingest_urls").scalar() == 0
        engine.dispose()
    finally:
        get_settings.cache_clear()
