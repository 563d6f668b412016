"""The DAG files parse, and wire one thin DAG per outlet of the registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsflow.outlets import load_registry
from newsflow.settings import PROJECT_ROOT, get_settings

DAGS = PROJECT_ROOT / "dags"


def _load(monkeypatch: pytest.MonkeyPatch, tmp: Path, registry: Path | None = None) -> Any:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp / "airflow"))
    if registry is not None:
        monkeypatch.setenv("NEWSFLOW_OUTLETS_FILE", str(registry))
    get_settings.cache_clear()
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    yield
    get_settings.cache_clear()


def test_one_dag_per_enabled_outlet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    bag = _load(monkeypatch, tmp_path)
    assert bag.import_errors == {}
    outlets = [o for o in load_registry(get_settings().outlets_file).outlets if o.enabled]
    ingest_ids = [d for d in bag.dag_ids if d.startswith("ingest_")]
    assert sorted(ingest_ids) == sorted(f"ingest_{o.name}" for o in outlets)
    assert "feed_health" in bag.dag_ids
    for outlet in outlets:
        dag = bag.dags[f"ingest_{outlet.name}"]
        assert [t.task_id for t in dag.tasks] == ["crawl_and_publish"]
        task = dag.tasks[0]
        assert task.retries >= 2 and task.owner == "newsflow"
        assert "ingest" in dag.tags and dag.doc_md and not dag.catchup
        assert dag.max_active_runs == 1


def test_every_dag_has_docs_owner_tags_retries_and_timeouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    bag = _load(monkeypatch, tmp_path)
    assert bag.import_errors == {}
    assert {"feed_health", "maintenance"} <= set(bag.dag_ids)
    for dag_id, dag in bag.dags.items():
        assert dag.doc_md and "newsflow" in dag.tags, dag_id
        assert dag.dagrun_timeout is not None and not dag.catchup, dag_id
        for task in dag.tasks:
            assert task.owner == "newsflow" and task.retries >= 1, (dag_id, task.task_id)
            assert task.execution_timeout is not None, (dag_id, task.task_id)
    maintenance = bag.dags["maintenance"]
    assert sorted(t.task_id for t in maintenance.tasks) == [
        "check_indices",
        "expire_old_documents",
        "replay_dead_letters",
    ]
    assert maintenance.get_task("expire_old_documents").upstream_task_ids == {"check_indices"}


def test_a_bad_registry_is_an_import_error_naming_outlet_and_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    bad = tmp_path / "outlets.yaml"
    bad.write_text(
        "outlets:\n  - name: broken-outlet\n    display_name: Broken\n"
        "    homepage: http://127.0.0.1:8765/broken/\n    feeds: [not-a-url]\n",
        encoding="utf-8",
    )
    bag = _load(monkeypatch, tmp_path, bad)
    (error,) = bag.import_errors.values()
    assert str(bad) in error and "broken-outlet" in error and "feeds" in error
