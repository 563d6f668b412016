"""The local stack's files on a shared machine: what root creates under /var/tmp, and which
files hold secrets."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from devstack.stack import components
from devstack.stack.components import (
    AirflowGroup,
    Ctx,
    StackConfigError,
    postgres_password,
    postgres_password_file,
    postgres_port,
    render,
    service_base,
)
from ingest.state import stack_password_args
from newsflow.settings import Settings

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


@pytest.fixture
def shared_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "var-tmp"
    root.mkdir()
    root.chmod(0o1777)
    monkeypatch.setattr(components, "SHARED_BASE_ROOT", root)
    monkeypatch.delenv("NEWSFLOW_PG_BASE_DIR", raising=False)
    return root


@pytest.fixture
def ctx(tmp_path: Path) -> Ctx:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return Ctx(settings=Settings(run_dir=run_dir), run_dir=run_dir)


def _parent_for(ctx: Ctx, root: Path) -> Path:
    digest = hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()[:10]
    return root / f"newsflow-{digest}"


@as_root
def test_root_creates_a_private_parent(ctx: Ctx, shared_root: Path) -> None:
    base = service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    parent = _parent_for(ctx, shared_root)
    assert base == parent / "postgres"
    st = os.lstat(parent)
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o711
    assert (ctx.run_dir / "postgres").resolve() == base


@as_root
def test_a_parent_created_by_another_user_is_refused(ctx: Ctx, shared_root: Path) -> None:
    parent = _parent_for(ctx, shared_root)
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(StackConfigError, match="belongs to uid"):
        service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    assert not (parent / "postgres").exists()


@as_root
def test_a_symlinked_parent_is_refused(ctx: Ctx, shared_root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    _parent_for(ctx, shared_root).symlink_to(victim, target_is_directory=True)
    with pytest.raises(StackConfigError, match="not a plain directory"):
        service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    assert list(victim.iterdir()) == []


@as_root
def test_a_planted_service_symlink_is_refused(ctx: Ctx, shared_root: Path, tmp_path: Path) -> None:
    """The reviewer's attack: ``postgres`` swapped for a link to the victim's tree."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("mine")
    os.chown(victim, NOBODY, NOBODY)
    base = service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    base.rmdir()
    base.symlink_to(victim, target_is_directory=True)
    with pytest.raises(StackConfigError, match="symlink"):
        service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    assert os.lstat(victim).st_uid == NOBODY
    assert (victim / "precious").read_text() == "mine"


@as_root
def test_a_reused_parent_taken_over_since_is_refused(ctx: Ctx, shared_root: Path) -> None:
    service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")
    os.chown(_parent_for(ctx, shared_root), NOBODY, NOBODY)
    with pytest.raises(StackConfigError, match="belongs to uid"):
        service_base(ctx, "postgres", True, "NEWSFLOW_PG_BASE_DIR")


def test_rendered_secrets_are_private_from_their_creation(tmp_path: Path) -> None:
    template = tmp_path / "t.tmpl"
    template.write_text("key = @KEY@\n")
    dest = tmp_path / "out" / "secret.cfg"
    render(template, dest, {"KEY": "s3cret"}, mode=0o600)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    dest.chmod(0o644)  # a file left by an older stack: tightened on the next render
    render(template, dest, {"KEY": "s3cret"}, mode=0o600)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert dest.read_text() == "key = s3cret\n"
    assert [p.name for p in dest.parent.iterdir()] == ["secret.cfg"]


def test_airflow_s_config_and_secrets_are_private(tmp_path: Path) -> None:
    """airflow.cfg holds the Fernet key, the API secret key and the JWT secret."""
    ctx = Ctx(settings=Settings(run_dir=tmp_path), run_dir=tmp_path)
    group = AirflowGroup(ctx)
    group.install()
    assert stat.S_IMODE(group.home.stat().st_mode) == 0o700
    config = group.home / "airflow.cfg"
    assert "fernet_key" in config.read_text()
    for path in (config, group.home / "secrets.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    if group.uses_postgres():
        passfile = postgres_password_file(ctx)
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        assert f":{postgres_password(ctx)}@" in config.read_text()


def test_the_crawl_state_finds_the_stack_s_password(tmp_path: Path) -> None:
    """The default state URL names no password; the stack's libpq password file has it."""
    ctx = Ctx(settings=Settings(run_dir=tmp_path), run_dir=tmp_path)
    password = postgres_password(ctx)
    assert postgres_password(ctx) == password  # generated once
    url = f"postgresql+psycopg2://airflow@127.0.0.1:{postgres_port()}/newsflow"
    passfile = str(postgres_password_file(ctx))
    assert stack_password_args(url, tmp_path) == {"passfile": passfile}
    assert stack_password_args(url.replace("airflow@", "airflow:own@"), tmp_path) == {}
    assert stack_password_args(url.replace("127.0.0.1", "db.example"), tmp_path) == {}
    assert stack_password_args("sqlite:///state.db", tmp_path) == {}
    assert stack_password_args(url, tmp_path / "elsewhere") == {}
