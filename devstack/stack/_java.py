"""Installed JDKs and Maven: what the Java services of the stack run on and are fetched with.

Dev and CI machines have several JDKs (e.g. Debian's 17 and a Temurin 25) and no Docker, so we
look for JDKs in the usual places instead of trusting one path, and fetch Kafka and Elasticsearch
from Maven Central with the poms under ``deploy/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_JVM_ROOTS = (
    "/usr/lib/jvm",
    "/usr/local/lib/jvm",
    "/usr/java",
    "/opt/java",
    "/opt/jdk",
    "/opt",
    "~/.sdkman/candidates/java",
    "~/.jdks",
)

# Two mvn processes resolving into the same ~/.m2 at once can corrupt downloads (Maven 3.8 has
# no cross-process locking), so the stack never runs two at the same time.
_MVN_LOCK = threading.Lock()


class JavaError(RuntimeError):
    """No suitable JDK, or Maven failed."""


@dataclass(frozen=True, order=True)
class Jdk:
    major: int
    home: Path

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"


def _major_of(home: Path) -> int | None:
    """Java feature version from the JDK's ``release`` file ("17.0.15" -> 17, "1.8.0" -> 8)."""
    try:
        text = (home / "release").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("JAVA_VERSION="):
            version = line.split("=", 1)[1].strip().strip('"')
            parts = version.split(".")
            try:
                return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])
            except ValueError:
                return None
    return None


def find_jdks() -> list[Jdk]:
    """Every JDK found on this machine, newest first (symlinked duplicates removed)."""
    candidates: list[Path] = []
    for var in ("JAVA_HOME",):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
    for root in _JVM_ROOTS:
        base = Path(root).expanduser()
        if base.is_dir():
            candidates.extend(sorted(p for p in base.iterdir() if p.is_dir()))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve().parent.parent)
    seen: set[Path] = set()
    found: list[Jdk] = []
    for cand in candidates:
        home = cand.resolve()
        if home in seen or not (home / "bin" / "java").is_file():
            continue
        seen.add(home)
        major = _major_of(home)
        if major is not None:
            found.append(Jdk(major, home))
    return sorted(found, reverse=True)


def jdk_from_env(var: str) -> Jdk | None:
    """The JDK named by an environment variable (e.g. NEWSFLOW_ES_JAVA_HOME), if set."""
    value = os.environ.get(var)
    if not value:
        return None
    home = Path(value).expanduser()
    major = _major_of(home)
    if major is None or not (home / "bin" / "java").is_file():
        raise JavaError(f"{var}={value} is not a JDK (no bin/java or release file)")
    return Jdk(major, home)


def pick_jdk(minimum: int, prefer_at_most: int | None = None) -> Jdk | None:
    """Newest JDK >= minimum, preferring ones <= prefer_at_most when there are any."""
    usable = [j for j in find_jdks() if j.major >= minimum]
    if prefer_at_most is not None:
        preferred = [j for j in usable if j.major <= prefer_at_most]
        if preferred:
            return preferred[0]
    return usable[0] if usable else None


def mvn_executable() -> str:
    exe = os.environ.get("NEWSFLOW_MVN") or shutil.which("mvn")
    if not exe:
        raise JavaError("Maven (`mvn`) is not installed: apt-get install maven")
    return exe


def run_maven(pom: Path, goals: Sequence[str], log: Path, java: Jdk | None = None) -> None:
    """Run Maven in batch mode, output to ``log``; raise with the log's tail on failure."""
    env = dict(os.environ)
    if java is not None and not env.get("JAVA_HOME"):
        env["JAVA_HOME"] = str(java.home)
    argv = [mvn_executable(), "-B", "-q", "-Dstyle.color=never", "-f", str(pom), *goals]
    log.parent.mkdir(parents=True, exist_ok=True)
    with _MVN_LOCK, log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n===== {' '.join(argv)}\n")
        fh.flush()
        done = subprocess.run(
            argv, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False, timeout=1800
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise JavaError(f"mvn failed ({done.returncode}) for {pom}; see {log}:\n{tail}")
