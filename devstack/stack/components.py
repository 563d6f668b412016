"""The services of the local stack: how each is installed, configured, started and checked.

A *group* is what a user names (``kafka``, ``elasticsearch``, ``airflow``, ``samples``); it owns
the install step (Maven download, ``airflow db migrate``) and one or more *members*, each one
long-running process with its own log, record and health check. Config files are rendered from
the templates under ``deploy/`` so that what runs is reviewable in the repo.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.stack._java import JavaError, Jdk, jdk_from_env, pick_jdk, run_maven
from devstack.stack._proc import MARKER_ENV, LaunchSpec, port_open, sid_of, stop_groups
from devstack.stack.profile import (
    EsNode,
    KafkaNode,
    check_ports,
    cluster_env,
    es_nodes,
    host_port,
    kafka_nodes,
    resolve_nodes,
)
from devstack.stack.supervise import SupervisorState, read_state, state_path
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.topology import STAGES, StageDef, metrics_port, topic_name

log = logging.getLogger("devstack.stack")

LOCAL_HOST = "127.0.0.1"

# Newest integ-test-zip on Maven Central per major line (9.x needs Java 21+, 8.19 runs on 17).
ES9_VERSION = "9.5.4"
ES8_VERSION = "8.19.21"
ES_DEFAULT_USER = "newsflow-es"
_M2_ES_DIR = Path("~/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch")

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


class StackConfigError(RuntimeError):
    """The stack cannot be set up as configured (missing JDK, module, bad setting)."""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Ctx:
    """Everything a component needs to know about this machine and checkout."""

    settings: Settings
    run_dir: Path
    repo: Path = PROJECT_ROOT
    nodes: int = 1  # Kafka and Elasticsearch nodes: 1, or 3 for the cluster profile

    @property
    def cluster(self) -> bool:
        return self.nodes > 1

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def state_dir(self) -> Path:
        return self.run_dir / "stack"

    @property
    def deploy_dir(self) -> Path:
        return self.repo / "deploy"


def make_ctx(settings: Settings, nodes: int | None = None) -> Ctx:
    """The context of one operation; ``nodes`` None: the shape recorded by the last ``up``."""
    run_dir = settings.run_dir.expanduser().resolve()
    resolved = resolve_nodes(run_dir, nodes)
    check_ports(settings, resolved)
    return Ctx(settings=settings, run_dir=run_dir, nodes=resolved)


def render(template: Path, dest: Path, values: Mapping[str, str], *, mode: int = 0o644) -> None:
    """Fill ``@NAME@`` placeholders; a placeholder without a value is a bug, so it raises.

    ``mode`` holds from the file's creation on (0600 for a file with secrets in it): it is
    written under a name of its own, created with that mode, then renamed into place."""
    text = template.read_text(encoding="utf-8")

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise StackConfigError(f"{template}: no value for @{key}@")
        return values[key]

    out = _PLACEHOLDER.sub(sub, text)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.read_text(encoding="utf-8") != out:
        write_private(dest, out, mode=mode)
    dest.chmod(mode)  # a file written before modes were set


def write_private(dest: Path, text: str, *, mode: int = 0o600) -> None:
    """Write ``dest`` whole (tmp file, then rename) with ``mode`` from the first byte on."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.chmod(mode)  # the umask may have taken bits off
    tmp.replace(dest)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (it holds secrets)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def base_env(ctx: Ctx) -> dict[str, str]:
    """Our environment plus the repo on PYTHONPATH and the run-dir marker.

    NEWSFLOW_* variables pass through unchanged, so services (and Airflow tasks) see the same
    settings as the command that started them; on a cluster, with every node's address and
    the replication settings (``profile.cluster_env``).
    """
    env = dict(os.environ)
    env.update(cluster_env(ctx.settings, ctx.nodes))
    env[MARKER_ENV] = str(ctx.run_dir)
    env["NEWSFLOW_RUN_DIR"] = str(ctx.run_dir)
    paths = [str(ctx.repo), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


_host_port = host_port


def _iso_age_seconds(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (datetime.now(UTC) - when).total_seconds()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Member(ABC):
    """One long-running process of the stack."""

    name: str
    group: str
    start_timeout: float = 120.0
    # Groups that should be healthy before this member starts (if they start in the same `up`).
    waits_for: tuple[str, ...] = ()
    # Groups that `up` starts along with this member, whatever was asked for.
    requires: tuple[str, ...] = ()
    # `down` stops phase 0 first (things that produce work), then 1, then 2 (Kafka, ES).
    stop_phase: int = 0
    # Seconds from SIGTERM to SIGKILL (capped by `down(grace_seconds=...)`).
    stop_grace: float = 30.0

    @abstractmethod
    def url(self, ctx: Ctx) -> str: ...

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        """Ports this member binds: in use by someone else means we must not start it."""
        return []

    def prepare(self, ctx: Ctx) -> None:  # noqa: B027 - optional hook
        """Write config and one-time state just before starting (idempotent)."""

    @abstractmethod
    def launch_spec(self, ctx: Ctx) -> LaunchSpec: ...

    @abstractmethod
    def check(self, ctx: Ctx) -> Health: ...

    def log_path(self, ctx: Ctx) -> Path:
        return ctx.logs_dir / f"{self.name}.log"

    def more_logs(self, ctx: Ctx) -> list[Path]:
        """Where the service writes its own detailed logs, for error messages."""
        return []

    def supervision(self, ctx: Ctx) -> SupervisorState | None:
        """The state file of this member's supervisor, for members that have one."""
        return None

    def revive(self, ctx: Ctx) -> bool:
        """Ours and alive but not healthy: have it restart now; False if it is just booting."""
        return False

    def reclaim(self, ctx: Ctx) -> None:  # noqa: B027 - optional hook
        """Before a fresh start: stop what a dead previous instance of ours left running."""

    def forget(self, ctx: Ctx) -> None:  # noqa: B027 - optional hook
        """After ``down`` stopped it: drop what only described the running process."""


class Group(ABC):
    """A user-facing component: an install step plus its member processes."""

    name: str

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    @abstractmethod
    def members(self) -> list[Member]: ...

    def install(self) -> None:  # noqa: B027 - optional hook
        """Fetch/migrate what the members need; idempotent and cheap when already done."""


# --------------------------------------------------------------------------- Kafka


class KafkaGroup(Group):
    name = "kafka"

    @property
    def home(self) -> Path:
        return self.ctx.run_dir / "kafka"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    def jdk(self) -> Jdk:
        # Kafka 4 needs Java 17+; prefer an LTS it is tested on (17/21) over the newest JDK.
        jdk = jdk_from_env("NEWSFLOW_KAFKA_JAVA_HOME") or pick_jdk(17, prefer_at_most=21)
        if jdk is None:
            raise StackConfigError("Kafka 4 needs a JDK 17+; set NEWSFLOW_KAFKA_JAVA_HOME")
        return jdk

    def members(self) -> list[Member]:
        return [KafkaBroker(self, node) for node in kafka_nodes(self.ctx.settings, self.ctx.nodes)]

    def cluster_id(self) -> str:
        """A fresh KRaft cluster id, or on a cluster the one its nodes share (kept on disk)."""
        path = self.home / "cluster-id"
        if self.ctx.cluster and path.is_file():
            return path.read_text().strip()
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        cluster_id = "A" + cluster_id[1:] if cluster_id.startswith("-") else cluster_id
        if self.ctx.cluster:
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(cluster_id + "\n")
        return cluster_id

    def install(self) -> None:
        pom = self.ctx.deploy_dir / "kafka" / "pom.xml"
        marker = self.libs / ".newsflow-installed"
        wanted = _file_sha256(pom)
        if marker.is_file() and marker.read_text().strip() == wanted:
            return
        if self.libs.exists():
            shutil.rmtree(self.libs)
        run_maven(
            pom,
            ["dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"],
            log=self.ctx.logs_dir / "install-kafka.log",
        )
        if not any(self.libs.glob("kafka_2.13-*.jar")):
            raise StackConfigError(f"mvn copied no kafka_2.13 jar into {self.libs}")
        # Without a backend SLF4J drops every broker log line silently; fail loudly instead.
        for backend in ("log4j-core-*.jar", "log4j-slf4j*-impl-*.jar"):
            if not any(self.libs.glob(backend)):
                raise StackConfigError(f"no logging backend ({backend}) in {self.libs}")
        marker.write_text(wanted + "\n")


class KafkaBroker(Member):
    """One combined KRaft broker+controller: the single node, or node N of the cluster (a
    static quorum of every node's controller; replicated topics need all brokers up)."""

    group = "kafka"
    start_timeout = 120.0
    stop_phase = 2

    def __init__(self, group: KafkaGroup, node: KafkaNode) -> None:
        self.g = group
        self.node = node
        self.cluster = group.ctx.cluster
        self.name = f"kafka-{node.node_id}" if self.cluster else "kafka"

    @property
    def home(self) -> Path:
        """Config, data and logs: ``<run_dir>/kafka`` (one node) or ``.../kafka/node-N``."""
        return self.g.home / f"node-{self.node.node_id}" if self.cluster else self.g.home

    def url(self, ctx: Ctx) -> str:
        return self.node.address

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [(self.node.host, self.node.port), (self.node.host, self.node.controller_port)]

    def more_logs(self, ctx: Ctx) -> list[Path]:
        return [self.home / "logs" / "server.log"]

    def _java_base(self, jdk: Jdk) -> list[str]:
        return [
            str(jdk.java),
            f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-Djava.awt.headless=true",
            "-cp",
            str(self.g.libs / "*"),
        ]

    def _config_values(self, ctx: Ctx) -> dict[str, str]:
        node, home = self.node, self.home
        values = {
            "NODE_ID": str(node.node_id),
            "HOST": node.host,
            "BROKER_PORT": str(node.port),
            "CONTROLLER_PORT": str(node.controller_port),
            "DATA_DIR": str(home / "data"),
            "LOG_DIR": str(home / "logs"),
        }
        if not self.cluster:  # a dynamic quorum of one, formatted --standalone
            return {
                **values,
                "QUORUM_KEY": "bootstrap.servers",
                "QUORUM": f"{node.host}:{node.controller_port}",
                "REPLICATION": "1",
                "MIN_ISR": "1",
            }
        nodes = kafka_nodes(ctx.settings, ctx.nodes)
        return {
            **values,
            "QUORUM_KEY": "voters",
            "QUORUM": ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes),
            "REPLICATION": str(len(nodes)),
            "MIN_ISR": str(len(nodes) - 1),
        }

    def prepare(self, ctx: Ctx) -> None:
        home = self.home
        data = home / "data"
        for sub in (data, home / "logs", home / "config"):
            sub.mkdir(parents=True, exist_ok=True)
        values = self._config_values(ctx)
        tmpl = ctx.deploy_dir / "kafka"
        render(tmpl / "server.properties.tmpl", home / "config" / "server.properties", values)
        render(tmpl / "log4j2.properties.tmpl", home / "config" / "log4j2.properties", values)
        if (data / "meta.properties").exists():
            return
        # KRaft storage is formatted once: one node as a standalone controller with a fresh
        # cluster id; a cluster's nodes with the id they share and their static voters.
        argv = [
            *self._java_base(self.g.jdk()),
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            *([] if self.cluster else ["--standalone"]),
            "--ignore-formatted",
            "--cluster-id",
            self.g.cluster_id(),
            "--config",
            str(home / "config" / "server.properties"),
        ]
        log = self.log_path(ctx)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"\n===== format storage: {' '.join(argv)}\n")
            fh.flush()
            done = subprocess.run(
                argv, stdout=fh, stderr=subprocess.STDOUT, check=False, timeout=120
            )
        if done.returncode != 0:
            raise StackConfigError(f"kafka storage format failed; see {log}")

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        jdk = self.g.jdk()
        # Three brokers share the machine with ES and Airflow: smaller heaps on a cluster.
        heap = os.environ.get("NEWSFLOW_KAFKA_HEAP", "384m" if self.cluster else "512m")
        java = self._java_base(jdk)
        argv = [
            java[0],
            "-Xms128m" if self.cluster else "-Xms256m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            *java[1:],
            "kafka.Kafka",
            str(self.home / "config" / "server.properties"),
        ]
        env = base_env(ctx)
        env["JAVA_HOME"] = str(jdk.home)
        return LaunchSpec(argv=argv, env=env, cwd=self.home, log=self.log_path(ctx))

    def check(self, ctx: Ctx) -> Health:
        """This node answers metadata and is one of the cluster's registered brokers."""
        node = self.node
        if not port_open(node.host, node.port):
            return Health(False, f"nothing listens on {node.address}")
        from kafka import KafkaAdminClient  # heavy-ish: only when the port is open

        from newsflow.kafka_io import open_client, security_config

        # A node still starting fails the bootstrap: open_client closes what that left open.
        admin = open_client(
            KafkaAdminClient,
            bootstrap_servers=node.address,
            client_id="newsflow-stack-health",
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
            **security_config(ctx.settings),
        )
        try:
            info = admin.describe_cluster()
        finally:
            admin.close()
        brokers = [b for b in info.get("brokers") or [] if not b.get("is_fenced")]
        ids = {b.get("broker_id") for b in brokers}
        detail = f"{len(brokers)} broker(s), cluster {info.get('cluster_id')}"
        if not self.cluster:
            return Health(len(brokers) > 0, detail)
        return Health(node.node_id in ids, f"broker {node.node_id}; {detail}")


# --------------------------------------------------------------------------- Elasticsearch


@dataclass(frozen=True)
class EsPlan:
    version: str
    jdk: Jdk
    base: Path  # install + config + data + logs, reachable by the user ES runs as
    uid: int | None = None  # None: run as ourselves
    gid: int | None = None
    user: str | None = None

    @property
    def dist(self) -> Path:
        return self.base / "dist" / f"elasticsearch-{self.version}"


def _ensure_system_user(name: str) -> tuple[int, int]:
    """The unprivileged account ES runs as when we are root (ES refuses to run as root)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 9):  # 9: created meanwhile by someone else
            raise StackConfigError(f"useradd {name} failed: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(path, uid, gid)
    st = os.lstat(root)
    if st.st_uid != uid or st.st_gid != gid:
        os.lchown(root, uid, gid)


def es_link(ctx: Ctx) -> Path:
    """``<run_dir>/elasticsearch``: the ES base itself, or a symlink to it (when root)."""
    return ctx.run_dir / "elasticsearch"


#: Where root keeps the services' directories when the run dir may be unreachable for them.
SHARED_BASE_ROOT = Path("/var/tmp")


def service_base(ctx: Ctx, name: str, as_root: bool, override_env: str) -> Path:
    """Where a service that refuses root (ES, PostgreSQL) keeps its files.

    The repo (hence the run dir) may sit under /root (mode 0700), so as root the service gets
    a directory under /var/tmp named after the run dir, linked from ``<run_dir>/<name>``.
    A missing link means a fresh run dir: any leftover directory is wiped to match.
    /var/tmp is world-writable, so that directory's parent must be ours alone (see
    :func:`private_parent`) before root creates, wipes or chowns anything beneath it.
    """
    link = ctx.run_dir / name
    override = os.environ.get(override_env)
    if not as_root and not override:
        if link.is_symlink():
            return link.resolve()
        link.mkdir(parents=True, exist_ok=True)
        return link
    if link.is_symlink():
        pointed = link.readlink()
        if _is_shared_base(pointed):
            private_parent(pointed.parent)
            _refuse_symlink(pointed)
            pointed.mkdir(exist_ok=True)
            return pointed
        target = link.resolve()
        target.mkdir(parents=True, exist_ok=True)
        return target
    if override:  # the user's directory: use it as it is, never wipe it
        target = Path(override).expanduser().resolve()
        target.mkdir(parents=True, exist_ok=True)
    else:
        digest = hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()[:10]
        parent = private_parent(SHARED_BASE_ROOT / f"newsflow-{digest}")
        target = parent / name
        _refuse_symlink(target)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
    if link.exists():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return target


def _is_shared_base(path: Path) -> bool:
    return path.parent.parent == SHARED_BASE_ROOT and path.parent.name.startswith("newsflow-")


def private_parent(path: Path) -> Path:
    """``path`` as a directory that only we can change: created atomically if missing, else
    refused unless it is a real directory (not a symlink) that we own. Mode 0711: the
    services' own users may pass through to their subdirectory, nobody else may list it or
    add entries (a planted ``postgres -> /home/victim`` would otherwise be chowned by root).
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o711)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StackConfigError(
            f"{path} is not a plain directory ({exc.strerror}): refusing to use it; remove it"
        ) from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise StackConfigError(
                f"{path} belongs to uid {owner}, not to us: someone else created it; "
                "refusing to use it (remove it, or set the service's *_BASE_DIR)"
            )
        os.fchmod(fd, 0o711)
    finally:
        os.close(fd)
    return path


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise StackConfigError(f"{path} is a symlink: refusing to use it; remove it")


class ElasticsearchGroup(Group):
    name = "elasticsearch"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self._plan: EsPlan | None = None

    def members(self) -> list[Member]:
        return [
            ElasticsearchNode(self, node) for node in es_nodes(self.ctx.settings, self.ctx.nodes)
        ]

    def _pick(self) -> tuple[str, Jdk]:
        forced = jdk_from_env("NEWSFLOW_ES_JAVA_HOME")
        version = os.environ.get("NEWSFLOW_ES_VERSION")
        if version:
            need = 21 if int(version.split(".")[0]) >= 9 else 17
            jdk = forced or pick_jdk(need)
            if jdk is None or jdk.major < need:
                raise StackConfigError(f"Elasticsearch {version} needs Java {need}+")
            return version, jdk
        if forced is not None:
            return (ES9_VERSION if forced.major >= 21 else ES8_VERSION), forced
        jdk = pick_jdk(21)
        if jdk is not None:
            return ES9_VERSION, jdk
        jdk = pick_jdk(17)
        if jdk is None:
            raise StackConfigError("Elasticsearch needs a JDK 17+ (21+ for 9.x)")
        log.warning(
            "no JDK 21+ found: running Elasticsearch %s on Java %d; the 9.x Python client "
            "cannot talk to it (install a JDK 21+ or set NEWSFLOW_ES_JAVA_HOME)",
            ES8_VERSION,
            jdk.major,
        )
        return ES8_VERSION, jdk

    def _base(self, as_root: bool) -> Path:
        return service_base(self.ctx, "elasticsearch", as_root, "NEWSFLOW_ES_BASE_DIR")

    def plan(self) -> EsPlan:
        if self._plan is None:
            version, jdk = self._pick()
            uid = gid = None
            user = None
            as_root = os.geteuid() == 0
            if as_root:
                user = os.environ.get("NEWSFLOW_ES_USER", ES_DEFAULT_USER)
                uid, gid = _ensure_system_user(user)
            self._plan = EsPlan(version, jdk, self._base(as_root), uid, gid, user)
        return self._plan

    def install(self) -> None:
        plan = self.plan()
        marker = plan.dist / ".newsflow-installed"
        if not marker.is_file():
            name = f"elasticsearch-{plan.version}.zip"
            cached = _M2_ES_DIR.expanduser() / plan.version / name
            if cached.is_file():  # skip a Maven start (~5 s) when ~/.m2 already has it
                _extract_zip(cached, plan.dist)
            else:
                downloads = self.ctx.run_dir / "downloads"
                run_maven(
                    self.ctx.deploy_dir / "elasticsearch" / "pom.xml",
                    [
                        "dependency:copy",
                        f"-Des.version={plan.version}",
                        f"-DoutputDirectory={downloads}",
                    ],
                    log=self.ctx.logs_dir / "install-elasticsearch.log",
                )
                _extract_zip(downloads / name, plan.dist)
                (downloads / name).unlink(missing_ok=True)  # ~/.m2 keeps the cached copy
            marker.write_text(f"{plan.version}\n")
        if plan.uid is not None and plan.gid is not None:
            _chown_tree(plan.dist, plan.uid, plan.gid)


def _extract_zip(archive: Path, dest: Path) -> None:
    """Unzip keeping the unix modes (bin/ scripts must stay executable); atomic via rename."""
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts[1:]  # drop the top-level elasticsearch-X.Y.Z/
            if not parts or ".." in parts:
                continue
            target = tmp.joinpath(*parts)
            mode = (info.external_attr >> 16) & 0o777
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            if mode:
                target.chmod(mode)
    for dirpath, _dirs, _files in os.walk(tmp):
        Path(dirpath).chmod(0o755)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


class ElasticsearchNode(Member):
    """One Elasticsearch node: the single node, or node N of a three-node cluster (each with
    its own config, data and logs under ``<es base>/node-N``, one shared distribution)."""

    group = "elasticsearch"
    start_timeout = 240.0
    stop_phase = 2

    def __init__(self, group: ElasticsearchGroup, node: EsNode) -> None:
        self.g = group
        self.node = node
        self.cluster = group.ctx.cluster
        self.name = f"elasticsearch-{node.number}" if self.cluster else "elasticsearch"

    def home(self, plan: EsPlan) -> Path:
        return plan.base / f"node-{self.node.number}" if self.cluster else plan.base

    def url(self, ctx: Ctx) -> str:
        return self.node.url

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        node = self.node
        return [(node.host, node.http_port), (node.host, node.transport_port)]

    def more_logs(self, ctx: Ctx) -> list[Path]:
        home = es_link(ctx) / f"node-{self.node.number}" if self.cluster else es_link(ctx)
        return [home / "logs" / "newsflow-local.log"]

    def _discovery(self, ctx: Ctx) -> str:
        if not self.cluster:
            return "discovery.type: single-node"
        nodes = es_nodes(ctx.settings, ctx.nodes)
        seeds = ", ".join(n.transport_address for n in nodes)
        masters = ", ".join(n.node_name for n in nodes)
        # initial_master_nodes only matters for the very first election; later starts find
        # the cluster state in the data directory.
        return f"discovery.seed_hosts: [{seeds}]\ncluster.initial_master_nodes: [{masters}]"

    def prepare(self, ctx: Ctx) -> None:
        plan = self.g.plan()
        home = self.home(plan)
        conf = home / "config"
        stamp = conf / ".newsflow-version"
        if not stamp.is_file() or stamp.read_text().strip() != plan.version:
            if conf.exists():
                shutil.rmtree(conf)
            shutil.copytree(plan.dist / "config", conf)
            stamp.write_text(f"{plan.version}\n")
        for sub in ("data", "logs", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        tmpl = ctx.deploy_dir / "elasticsearch"
        render(
            tmpl / "elasticsearch.yml.tmpl",
            conf / "elasticsearch.yml",
            {
                "NODE_NAME": self.node.node_name,
                "DATA_DIR": str(home / "data"),
                "LOG_DIR": str(home / "logs"),
                "HOST": self.node.host,
                "HTTP_PORT": str(self.node.http_port),
                "TRANSPORT_PORT": str(self.node.transport_port),
                "DISCOVERY": self._discovery(ctx),
            },
        )
        # Three nodes share the machine with Kafka and Airflow: a smaller heap each.
        render(
            tmpl / "jvm.options.tmpl",
            conf / "jvm.options.d" / "newsflow.options",
            {
                "HEAP_MIN": os.environ.get("NEWSFLOW_ES_HEAP_MIN", "512m"),
                "HEAP_MAX": os.environ.get(
                    "NEWSFLOW_ES_HEAP_MAX", "512m" if self.cluster else "1g"
                ),
            },
        )
        if plan.uid is not None and plan.gid is not None:
            for sub in ("config", "data", "logs", "tmp"):
                _chown_tree(home / sub, plan.uid, plan.gid)
            _chown_tree_top(home, plan.uid, plan.gid)
            _chown_tree_top(plan.base, plan.uid, plan.gid)

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        plan = self.g.plan()
        home = self.home(plan)
        env = base_env(ctx)
        env.update(
            ES_JAVA_HOME=str(plan.jdk.home),
            ES_PATH_CONF=str(home / "config"),
            ES_TMPDIR=str(home / "tmp"),
        )
        env.pop("JAVA_HOME", None)
        if plan.user is not None:
            env.update(HOME=str(plan.base), USER=plan.user, LOGNAME=plan.user)
        return LaunchSpec(
            argv=[str(plan.dist / "bin" / "elasticsearch")],
            env=env,
            cwd=home / "logs",  # jvm.options writes gc.log / hs_err relative to the cwd
            log=self.log_path(ctx),
            uid=plan.uid,
            gid=plan.gid,
        )

    def check(self, ctx: Ctx) -> Health:
        """This node answers, and the cluster it is in is yellow or green (on a cluster, that
        needs an elected master: two of the three nodes)."""
        import httpx  # lazy: httpx pulls in click and rich

        s = ctx.settings
        auth = None
        if s.es_username and s.es_password is not None:
            auth = (s.es_username, s.es_password.get_secret_value())
        verify: str | bool = str(s.es_ca_certs) if s.es_ca_certs else True
        resp = httpx.get(f"{self.url(ctx)}/_cluster/health", timeout=3.0, auth=auth, verify=verify)
        if resp.status_code != 200:
            return Health(False, f"HTTP {resp.status_code}")
        body = resp.json()
        state = body.get("status")
        detail = f"cluster {state}"
        if self.cluster:
            detail += f", {body.get('number_of_nodes')} node(s)"
        return Health(state in ("yellow", "green"), detail)


def _chown_tree_top(path: Path, uid: int, gid: int) -> None:
    st = os.lstat(path)
    if st.st_uid != uid or st.st_gid != gid:
        os.lchown(path, uid, gid)


# --------------------------------------------------------------------------- PostgreSQL

PG_DEFAULT_USER = "newsflow-pg"
PG_DATABASE = "airflow"


def find_postgres_bin() -> Path | None:
    """A PostgreSQL server installation (Debian keeps it off PATH), newest first."""
    forced = os.environ.get("NEWSFLOW_PG_BIN")
    candidates = [Path(forced)] if forced else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "postgres").is_file() and (directory / "initdb").is_file():
            return directory
    return None


def postgres_port() -> int:
    return int(os.environ.get("NEWSFLOW_PG_PORT", "5433"))


def postgres_password_file(ctx: Ctx) -> Path:
    """A libpq password file (ingest.state.STACK_PASSFILE): the crawl state's default URL
    names no password, and finds it here."""
    return ctx.run_dir / "postgres.pgpass"


def postgres_password(ctx: Ctx) -> str:
    """The database role's password: generated once per run dir, kept in a 0600 file (and in
    Airflow's 0600 airflow.cfg), so no local user can connect as the stack's Airflow."""
    path = postgres_password_file(ctx)
    password = ""
    if path.is_file():
        password = path.read_text(encoding="utf-8").strip().rsplit(":", 1)[-1]
    password = password or secrets.token_urlsafe(24)  # no ':' or '\\' to escape
    entry = f"{LOCAL_HOST}:{postgres_port()}:*:{PG_DATABASE}:{password}\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != entry:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        write_private(path, entry)
    path.chmod(0o600)
    return password


class PostgresGroup(Group):
    """Airflow's metadata database. SQLite serializes writers, and four Airflow processes
    writing at once stall each other; where no server is installed Airflow falls back to it."""

    name = "postgres"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.bin = find_postgres_bin()
        self._owner: tuple[int, int] | None = None
        self._base: Path | None = None

    def members(self) -> list[Member]:
        return [PostgresServer(self)] if self.bin is not None else []

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the unprivileged account when we are root (initdb refuses root)."""
        if os.geteuid() != 0:
            return None
        if self._owner is None:
            self._owner = _ensure_system_user(os.environ.get("NEWSFLOW_PG_USER", PG_DEFAULT_USER))
        return self._owner

    @property
    def base(self) -> Path:
        if self._base is None:
            self._base = service_base(
                self.ctx, "postgres", os.geteuid() == 0, "NEWSFLOW_PG_BASE_DIR"
            )
        return self._base

    def _run(self, argv: list[str], log: Path) -> None:
        owner = self.owner
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            done = subprocess.run(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                user=owner[0] if owner else None,
                group=owner[1] if owner else None,
                check=False,
                timeout=300,
            )
        if done.returncode != 0:
            raise StackConfigError(f"{Path(argv[0]).name} failed; see {log}")

    def install(self) -> None:
        assert self.bin is not None
        data = self.base / "data"
        if (data / "PG_VERSION").is_file():
            return
        owner = self.owner
        if owner is not None:
            _chown_tree(self.base, *owner)
        # initdb runs as the database's account: it reads the password from a file of its own.
        pwfile = self.base / ".initdb-password"
        write_private(pwfile, postgres_password(self.ctx) + "\n")
        if owner is not None:
            os.chown(pwfile, *owner)
        try:
            self._run(
                [
                    str(self.bin / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    PG_DATABASE,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",  # password auth: no local user connects without it
                    "--encoding",
                    "UTF8",
                    "--no-instructions",
                ],
                self.ctx.logs_dir / "install-postgres.log",
            )
        finally:
            pwfile.unlink(missing_ok=True)


class PostgresServer(Member):
    name = "postgres"
    group = "postgres"
    start_timeout = 60.0
    stop_phase = 2
    stop_grace = 20.0

    def __init__(self, group: PostgresGroup) -> None:
        self.g = group

    def url(self, ctx: Ctx) -> str:
        return f"postgresql://{PG_DATABASE}@{LOCAL_HOST}:{postgres_port()}/{PG_DATABASE}"

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [(LOCAL_HOST, postgres_port())]

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        assert self.g.bin is not None
        socket_dir = private_dir(self.g.base / "run")
        owner = self.g.owner
        if owner is not None:
            _chown_tree(socket_dir, *owner)
        argv = [
            str(self.g.bin / "postgres"),
            "-D", str(self.g.base / "data"),
            "-h", LOCAL_HOST,
            "-p", str(postgres_port()),
            "-k", str(socket_dir),
            "-c", "unix_socket_permissions=0700",  # the socket is the database account's
            # A disposable dev database: durability traded for speed.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        env = base_env(ctx)
        env.pop("PGDATA", None)
        return LaunchSpec(
            argv=argv,
            env=env,
            cwd=self.g.base,
            log=self.log_path(ctx),
            uid=owner[0] if owner else None,
            gid=owner[1] if owner else None,
        )

    def check(self, ctx: Ctx) -> Health:
        assert self.g.bin is not None
        done = subprocess.run(
            [
                str(self.g.bin / "pg_isready"),
                "-h",
                LOCAL_HOST,
                "-p",
                str(postgres_port()),
                "-d",
                PG_DATABASE,
                "-U",
                PG_DATABASE,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return Health(done.returncode == 0, done.stdout.strip() or done.stderr.strip())


# --------------------------------------------------------------------------- Airflow

# Inherited AIRFLOW__* variables would silently override the stack's airflow.cfg in some
# processes and not others; the rendered file is the single source of truth.
_AIRFLOW_ENV_DROP = ("AIRFLOW_HOME", "AIRFLOW_CONFIG")


class AirflowGroup(Group):
    name = "airflow"

    @property
    def home(self) -> Path:
        return self.ctx.run_dir / "airflow"

    @property
    def url(self) -> str:
        return self.ctx.settings.airflow_url.rstrip("/")

    def members(self) -> list[Member]:
        members: list[Member] = [
            AirflowApiServer(self),
            AirflowDaemon(
                self, "airflow-dag-processor", ["dag-processor"], "dag_processor", stop_phase=1
            ),
        ]
        if os.environ.get("NEWSFLOW_AIRFLOW_TRIGGERER", "1") not in ("0", "false", "no"):
            members.append(
                AirflowDaemon(
                    self, "airflow-triggerer", ["triggerer", "--skip-serve-logs"], "triggerer"
                )
            )
        members.append(
            AirflowDaemon(
                self,
                "airflow-scheduler",
                ["scheduler", "--skip-serve-logs"],
                "scheduler",
                # DAG tasks publish to Kafka, to topics the workers' start creates.
                waits_for=("kafka", "workers"),
            )
        )
        return members

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("airflow")
        return [str(exe)] if exe.is_file() else [sys.executable, "-m", "airflow"]

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in base_env(self.ctx).items()
            if not k.startswith("AIRFLOW__") and k not in _AIRFLOW_ENV_DROP
        }
        env["AIRFLOW_HOME"] = str(self.home)
        env["AIRFLOW_CONFIG"] = str(self.home / "airflow.cfg")
        return env

    def _secrets(self) -> dict[str, str]:
        """JWT/API/Fernet secrets, generated once per run dir and shared by all processes."""
        path = self.home / "secrets.json"
        if path.is_file():
            data: dict[str, str] = json.loads(path.read_text())
            return data
        data = {
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
        private_dir(self.home)
        write_private(path, json.dumps(data))
        return data

    def _password_mode(self) -> bool:
        """With NEWSFLOW_AIRFLOW_PASSWORD set, the API requires that user's password."""
        s = self.ctx.settings
        password = s.airflow_password.get_secret_value() if s.airflow_password else ""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        if not password:
            return False
        # SimpleAuthManager keeps plaintext passwords in this file and only generates missing
        # ones, so writing ours before the api-server starts makes it the login password.
        private_dir(self.home)
        write_private(path, json.dumps({s.airflow_username: password}) + "\n")
        return True

    def write_config(self) -> None:
        host, port = _host_port(self.url, 8080)
        sec = self._secrets()
        all_admins = not self._password_mode()
        dags = os.environ.get("NEWSFLOW_AIRFLOW_DAGS_FOLDER") or str(self.ctx.repo / "dags")
        render(
            self.ctx.deploy_dir / "airflow" / "airflow.cfg.tmpl",
            self.home / "airflow.cfg",
            {
                "DAGS_FOLDER": dags,
                "PARALLELISM": os.environ.get("NEWSFLOW_AIRFLOW_PARALLELISM", "4"),
                "AIRFLOW_URL": self.url,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW_USER": self.ctx.settings.airflow_username,
                "ALL_ADMINS": str(all_admins),
                "API_HOST": host,
                "API_PORT": str(port),
                "API_SECRET_KEY": sec["api_secret_key"],
                "JWT_SECRET": sec["jwt_secret"],
                "FERNET_KEY": sec["fernet_key"],
                "SQL_ALCHEMY_CONN": self.sql_alchemy_conn(),
                "SQLITE_ONLY": "" if not self.uses_postgres() else "# sqlite only: ",
            },
            mode=0o600,  # the Fernet key, the API secret key, the JWT secret, the DB password
        )

    def install(self) -> None:
        private_dir(self.home)
        self.write_config()

    def uses_postgres(self) -> bool:
        return find_postgres_bin() is not None

    def sql_alchemy_conn(self) -> str:
        if self.uses_postgres():
            password = postgres_password(self.ctx)
            return (
                f"postgresql+psycopg2://{PG_DATABASE}:{password}@{LOCAL_HOST}:{postgres_port()}"
                f"/{PG_DATABASE}"
            )
        return f"sqlite:///{self.home / 'airflow.db'}"

    def _create_database(self) -> None:
        import psycopg2

        connection = psycopg2.connect(
            host=LOCAL_HOST,
            port=postgres_port(),
            user=PG_DATABASE,
            password=postgres_password(self.ctx),
            dbname="postgres",
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        finally:
            connection.close()

    def migrate(self) -> None:
        """``airflow db migrate`` once per Airflow version and database (idempotent)."""
        version = importlib.metadata.version("apache-airflow")
        conn = self.sql_alchemy_conn()
        stamp = f"{version} {conn}"
        marker = self.home / ".newsflow-migrated"
        sqlite_file = self.home / "airflow.db"
        if (
            marker.is_file()
            and marker.read_text().strip() == stamp
            and (self.uses_postgres() or sqlite_file.is_file())
        ):
            return
        if self.uses_postgres():
            self._create_database()
        log = self.ctx.logs_dir / "airflow-migrate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} airflow db migrate\n")
            fh.flush()
            done = subprocess.run(
                [*self.command(), "db", "migrate"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.home,
                check=False,
                timeout=900,
            )
        if done.returncode != 0:
            raise StackConfigError(f"airflow db migrate failed; see {log}")
        if not self.uses_postgres():
            _use_write_ahead_log(sqlite_file)
        marker.write_text(stamp + "\n")


def _use_write_ahead_log(database: Path) -> None:
    """Let the api-server read while the scheduler writes (the mode is stored in the file)."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


class AirflowApiServer(Member):
    name = "airflow-api"
    group = "airflow"
    start_timeout = 240.0
    stop_phase = 1

    waits_for = ("postgres",)
    requires = ("postgres",)

    def __init__(self, group: AirflowGroup) -> None:
        self.g = group

    def url(self, ctx: Ctx) -> str:
        return self.g.url

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [_host_port(self.g.url, 8080)]

    def prepare(self, ctx: Ctx) -> None:
        self.g.migrate()

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        host, port = _host_port(self.g.url, 8080)
        argv = [*self.g.command(), "api-server", "--host", host, "--port", str(port)]
        return LaunchSpec(argv=argv, env=self.g.env(), cwd=self.g.home, log=self.log_path(ctx))

    def check(self, ctx: Ctx) -> Health:
        import httpx

        resp = httpx.get(f"{self.g.url}/api/v2/version", timeout=3.0)
        if resp.status_code != 200:
            return Health(False, f"HTTP {resp.status_code}")
        return Health(True, f"Airflow {resp.json().get('version')}")


class AirflowDaemon(Member):
    """Scheduler, dag-processor, triggerer: no port, so health is the heartbeat the API reports."""

    group = "airflow"
    start_timeout = 240.0
    # A heartbeat older than this is a process that stopped (Airflow itself allows 30 s).
    fresh_seconds = 20.0

    def __init__(
        self,
        group: AirflowGroup,
        name: str,
        args: list[str],
        health_key: str,
        waits_for: tuple[str, ...] = (),
        stop_phase: int = 0,
    ) -> None:
        self.g = group
        self.name = name
        self.args = args
        self.health_key = health_key
        self.waits_for = ("postgres", *waits_for)
        self.requires = ("postgres",)
        self.stop_phase = stop_phase
        # The scheduler waits for running tasks on SIGTERM; a dev `down` should not.
        self.stop_grace = 12.0 if args[0] == "scheduler" else 30.0

    def url(self, ctx: Ctx) -> str:
        return f"{self.g.url} ({self.health_key})"

    def prepare(self, ctx: Ctx) -> None:
        self.g.migrate()

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        argv = [*self.g.command(), *self.args]
        return LaunchSpec(argv=argv, env=self.g.env(), cwd=self.g.home, log=self.log_path(ctx))

    def check(self, ctx: Ctx) -> Health:
        import httpx

        resp = httpx.get(f"{self.g.url}/api/v2/monitor/health", timeout=3.0)
        if resp.status_code != 200:
            return Health(False, f"monitor HTTP {resp.status_code}")
        part = resp.json().get(self.health_key) or {}
        beat = part.get(f"latest_{self.health_key}_heartbeat")
        age = _iso_age_seconds(beat)
        if part.get("status") != "healthy" or age is None:
            return Health(False, f"{part.get('status') or 'no heartbeat'}")
        if age > self.fresh_seconds:
            return Health(False, f"last heartbeat {age:.0f}s ago")
        return Health(True, f"heartbeat {age:.0f}s ago")


# --------------------------------------------------------------------------- sample outlets


class SamplesGroup(Group):
    name = "samples"

    def members(self) -> list[Member]:
        return [SamplesSite()]


class SamplesSite(Member):
    """The fake news outlets (``python -m devstack.samples.site``) the demo and e2e tests crawl."""

    name = "samples"
    group = "samples"
    start_timeout = 60.0

    @staticmethod
    def _port() -> int:
        return int(os.environ.get("NEWSFLOW_SAMPLES_PORT", "8765"))

    @staticmethod
    def _module() -> str:
        return os.environ.get("NEWSFLOW_SAMPLES_MODULE", "devstack.samples.site")

    def url(self, ctx: Ctx) -> str:
        return f"http://{LOCAL_HOST}:{self._port()}/"

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [(LOCAL_HOST, self._port())]

    def prepare(self, ctx: Ctx) -> None:
        module = self._module()
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise StackConfigError(f"cannot start samples: module {module} not found")

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        argv = [
            sys.executable,
            "-m",
            self._module(),
            "--host",
            LOCAL_HOST,
            "--port",
            str(self._port()),
        ]
        return LaunchSpec(argv=argv, env=base_env(ctx), cwd=ctx.repo, log=self.log_path(ctx))

    def check(self, ctx: Ctx) -> Health:
        import httpx

        resp = httpx.get(self.url(ctx), timeout=3.0)
        return Health(resp.status_code < 500, f"HTTP {resp.status_code}")


# --------------------------------------------------------------------------- workers


class WorkersGroup(Group):
    """The pipeline's stages, one process each (``newsflow worker <stage>``): a member per
    row of ``newsflow.topology.STAGES``."""

    name = "workers"

    def members(self) -> list[Member]:
        init = _InitOnce()
        return [PipelineWorker(row, init) for row in STAGES]


def newsflow_command() -> list[str]:
    """How to run the ``newsflow`` command line from this environment."""
    exe = Path(sys.executable).with_name("newsflow")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "pipeline"]


class _InitOnce:
    """``newsflow init`` once per stack operation, however many workers start."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, ctx: Ctx) -> None:
        if self.done:
            return
        result = subprocess.run(
            [*newsflow_command(), "init"],
            env=base_env(ctx),
            cwd=ctx.repo,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise StackConfigError(f"`newsflow init` failed: {result.stderr.strip()[-2000:]}")
        self.done = True


class PipelineWorker(Member):
    """``newsflow worker <stage>`` under its supervisor (``devstack.stack.supervise``), which
    restarts it with backoff whenever it exits. Health is the worker itself: its ``/health``
    says ok and it holds partitions of its input (or is a spare member of a group that has
    more members than partitions); not the consumer group's member list, which still names a
    killed member until its session times out."""

    group = "workers"
    start_timeout = 120.0
    # Starting a worker runs `newsflow init`, which also creates the crawl state database.
    waits_for = ("kafka", "elasticsearch", "postgres")
    requires = ("postgres",)
    stop_phase = 1  # after what produces work (Airflow), before Kafka and Elasticsearch
    stop_grace = 20.0

    def __init__(self, stage: StageDef, init: _InitOnce) -> None:
        self.stage = stage
        self.name = stage.service
        self._init = init

    def _metrics_addr(self, ctx: Ctx) -> tuple[str, int]:
        port = metrics_port(self.stage, ctx.settings)
        if not port:
            raise StackConfigError(
                "the stack checks its workers on /health: NEWSFLOW_WORKER_METRICS_BASE_PORT "
                "must not be 0"
            )
        host = ctx.settings.worker_metrics_host
        return (LOCAL_HOST if host in ("0.0.0.0", "") else host), port

    def url(self, ctx: Ctx) -> str:
        host, port = self._metrics_addr(ctx)
        return f"http://{host}:{port}/health"

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [self._metrics_addr(ctx)]

    def prepare(self, ctx: Ctx) -> None:
        # Topics must exist before a consumer subscribes, or it idles until a metadata refresh.
        self._init(ctx)

    def _state_path(self, ctx: Ctx) -> Path:
        return state_path(ctx.state_dir, self.name)

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        env = base_env(ctx)
        # Static membership: the restarted worker takes its partitions back at once.
        env["NEWSFLOW_KAFKA_GROUP_INSTANCE_PREFIX"] = stack_member_prefix(ctx)
        self._state_path(ctx).unlink(missing_ok=True)  # a new supervisor counts from zero
        return LaunchSpec(
            argv=[
                sys.executable,
                "-m",
                "devstack.stack.supervise",
                "--name",
                self.name,
                "--state",
                str(self._state_path(ctx)),
                "--",
                *newsflow_command(),
                "worker",
                self.stage.name,
            ],
            env=env,
            cwd=ctx.repo,
            log=self.log_path(ctx),
        )

    def supervision(self, ctx: Ctx) -> SupervisorState | None:
        return read_state(self._state_path(ctx))

    def revive(self, ctx: Ctx) -> bool:
        state = self.supervision(ctx)
        if state is None or not state.supervisor_alive() or state.child_alive():
            return False
        if state.phase == "backoff":
            os.kill(state.supervisor_pid, signal.SIGUSR1)
        return True

    def reclaim(self, ctx: Ctx) -> None:
        state = self.supervision(ctx)
        if state is None or state.supervisor_alive() or not state.child_alive():
            return
        assert state.child_pid is not None
        # Its supervisor died; the worker got SIGTERM then and may still be finishing a batch.
        sid = sid_of(state.child_pid)
        if sid is not None:
            log.info("%s: stopping pid %d left by a dead supervisor", self.name, state.child_pid)
            stop_groups([(state.child_pid, sid, self.stop_grace)])

    def forget(self, ctx: Ctx) -> None:
        self._state_path(ctx).unlink(missing_ok=True)

    def check(self, ctx: Ctx) -> Health:
        import httpx

        state = self.supervision(ctx)
        ours = state is not None and state.supervisor_alive()
        note = f"; {state.summary()}" if state is not None and state.summary() else ""
        orphaned = state is not None and not ours and state.phase != "stopped"
        if orphaned and state is not None and state.child_alive():
            why = f"its supervisor (pid {state.supervisor_pid}) died; worker {state.child_pid}"
            return Health(False, f"{why} is stopping{note}")
        if ours and state is not None and not state.child_alive():
            return Health(False, f"worker not running{note}")
        try:
            resp = httpx.get(self.url(ctx), timeout=3.0)
        except (httpx.ConnectError, httpx.TimeoutException):
            if orphaned and state is not None:
                return Health(False, f"its supervisor (pid {state.supervisor_pid}) died{note}")
            return Health(False, f"not answering on {self.url(ctx)}{note}")
        body = resp.json()
        if body.get("stage") != self.stage.name:
            return Health(False, f"{self.url(ctx)} is stage {body.get('stage')!r}'s")
        pid = f"pid {state.child_pid}, " if ours and state is not None else ""
        if not body.get("ok"):
            return Health(False, f"{pid}/health {resp.status_code}: {json_brief(body)}{note}")
        assigned = body.get("assigned") or []
        if assigned:
            return Health(True, f"{pid}{len(assigned)} partition(s)")
        spare = self._spare_member(ctx)
        if spare:
            return Health(True, f"{pid}standby: {spare}")
        return Health(False, f"{pid}no partitions assigned yet{note}")

    def _spare_member(self, ctx: Ctx) -> str | None:
        """Why a member without partitions is fine: its group has more members than its
        input has partitions (a standby); None when it should have some."""
        from newsflow.kafka_io import make_admin

        topic = topic_name(self.stage.input, ctx.settings)
        admin = make_admin(ctx.settings)
        try:
            described = admin.describe_groups([self.stage.group_id])
            topics = admin.describe_topics([topic])
        finally:
            admin.close()
        info = described.get(self.stage.group_id, {}) if isinstance(described, dict) else {}
        members = len(info.get("members") or [])
        partitions = sum(len(t.get("partitions") or []) for t in topics)
        if partitions and members > partitions:
            return f"{members} members for {partitions} partition(s)"
        return None


def json_brief(body: dict[str, Any]) -> str:
    """A /health body in one short line (what made it unhealthy is in there)."""
    brief = {k: v for k, v in body.items() if k not in ("ok", "stage", "assigned")}
    return json.dumps(brief, default=str)[:200]


def stack_member_prefix(ctx: Ctx) -> str:
    """The static-membership prefix of this stack's workers: this host and this run dir."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:60] or "host"
    digest = hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()[:8]
    return f"{host}-{digest}"


# --------------------------------------------------------------------------- search API


class ApiGroup(Group):
    """The search API and its web page (``newsflow api``)."""

    name = "api"

    def members(self) -> list[Member]:
        return [ApiServer()]


class ApiServer(Member):
    name = "api"
    group = "api"
    start_timeout = 60.0
    waits_for = ("elasticsearch",)
    stop_phase = 0  # it only reads: stop it with what produces work

    @staticmethod
    def _addr(ctx: Ctx) -> tuple[str, int]:
        return LOCAL_HOST, ctx.settings.api_port

    def url(self, ctx: Ctx) -> str:
        host, port = self._addr(ctx)
        return f"http://{host}:{port}/"

    def ports(self, ctx: Ctx) -> list[tuple[str, int]]:
        return [self._addr(ctx)]

    def launch_spec(self, ctx: Ctx) -> LaunchSpec:
        host, port = self._addr(ctx)
        command = newsflow_command()
        env = base_env(ctx)
        s = ctx.settings
        if "NEWSFLOW_API_AUTH" not in os.environ and not (s.api_read_keys or s.api_admin_keys):
            # The local stack serves on loopback only: without configured keys, auth is off
            # explicitly here (`newsflow api` refuses that on any other address).
            env["NEWSFLOW_API_AUTH"] = "off"
        return LaunchSpec(
            argv=[*command, "api", "--host", host, "--port", str(port)],
            env=env,
            cwd=ctx.repo,
            log=self.log_path(ctx),
        )

    def check(self, ctx: Ctx) -> Health:
        import httpx

        resp = httpx.get(f"{self.url(ctx)}healthz", timeout=3.0)
        if resp.status_code != 200:
            return Health(False, f"HTTP {resp.status_code}")
        return Health(True, f"Elasticsearch {resp.json().get('elasticsearch')}")


# --------------------------------------------------------------------------- registry

GROUP_ORDER: tuple[str, ...] = (
    "kafka",
    "elasticsearch",
    "postgres",
    "workers",
    "airflow",
    "samples",
    "api",
)
ALIASES = {"es": "elasticsearch", "af": "airflow", "sample": "samples", "pg": "postgres"}


def build_groups(ctx: Ctx) -> dict[str, Group]:
    """Fresh group objects for one operation (they cache per-call decisions such as the JDK)."""
    return {
        "kafka": KafkaGroup(ctx),
        "elasticsearch": ElasticsearchGroup(ctx),
        "postgres": PostgresGroup(ctx),
        "airflow": AirflowGroup(ctx),
        "samples": SamplesGroup(ctx),
        "workers": WorkersGroup(ctx),
        "api": ApiGroup(ctx),
    }


__all__ = [
    "ALIASES",
    "GROUP_ORDER",
    "Ctx",
    "Group",
    "Health",
    "JavaError",
    "Member",
    "StackConfigError",
    "build_groups",
    "make_ctx",
]
