"""The runtime wheel (what the image installs) is whole, and holds no dev tooling.

The wheel is built from this checkout and installed into a bare environment that sees the
project's dependencies but not the checkout: every module in it must import, and the CLI must
start. A package the wheel forgets (as the image once forgot ``alert/``) fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
RUNTIME_PACKAGES = {"newsflow", "ingest", "enrich", "index", "alert", "pipeline"}
CHECKOUT_ONLY = {"devstack", "tests", "bench", "dags", "samples"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (make install provides it)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("newsflow-*.whl")
    return built


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            name.split("/", 1)[0]
            for name in archive.namelist()
            if "/" in name and not name.split("/", 1)[0].endswith((".dist-info", ".data"))
        }


def test_wheel_holds_the_runtime_packages_and_no_dev_tooling(wheel: Path) -> None:
    assert _top_level(wheel) == RUNTIME_PACKAGES


def test_every_module_of_the_wheel_imports_without_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        modules = sorted(
            name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            for name in archive.namelist()
            if name.endswith(".py") and not name.endswith("__main__.py")
        )
    # The dependencies come from this environment's site-packages, added as a plain path so
    # that its .pth files (the editable install that points at the checkout) are not read.
    deps = sysconfig.get_paths()["purelib"]
    script = (
        "import importlib, sys\n"
        f"sys.path[:0] = [{str(site)!r}, {deps!r}]\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from pipeline.cli import app\n"
        "from typer.testing import CliRunner\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "groups = {c.name for c in app.registered_groups}\n"
        "assert 'stack' not in groups, 'dev tooling in the wheel'\n"
        "from index.indices import TEMPLATES_DIR\n"
        "from index.api import STATIC_DIR\n"
        "assert (TEMPLATES_DIR / 'articles.json').is_file()\n"
        "assert (STATIC_DIR / 'index.html').is_file()\n"
        "import pipeline\n"
        f"assert pipeline.__file__.startswith({str(site)!r}), pipeline.__file__\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "NEWSFLOW_RUN_DIR": str(tmp_path / "run")},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_image_installs_the_built_wheel() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "uv build --wheel" in text
    assert re.search(r"uv pip install --no-deps /tmp/dist/newsflow-\*\.whl", text)
    # Source folders copied into the runtime image would hide a package the wheel misses.
    runtime_stage = text.rsplit("\nFROM ", 1)[1]
    copied = re.findall(r"^COPY\s+(?!--from)(\S+)", runtime_stage, flags=re.MULTILINE)
    assert not copied, f"the runtime stage copies sources instead of the wheel: {copied}"


def test_python_paths_in_the_stack_templates_resolve() -> None:
    # Airflow imports what its config names; a module moved without its template breaks the
    # stack only on machines without PostgreSQL (the SQLite fallback), so check it here.
    import importlib

    template = (REPO / "deploy" / "airflow" / "airflow.cfg.tmpl").read_text(encoding="utf-8")
    paths = re.findall(r"=\s*((?:[a-z_]+\.)+[A-Za-z_]+)\s*$", template, flags=re.MULTILINE)
    assert paths, "expected a Python path in airflow.cfg.tmpl"
    for path in paths:
        module, _, attribute = path.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), path
