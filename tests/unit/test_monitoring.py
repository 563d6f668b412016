"""Monitoring as shipped: the Grafana dashboard and Prometheus config match the code's metrics.

The dashboard is only useful if every series it queries exists; a renamed metric would leave
a panel silently empty, so the names in its queries are checked against what the workers,
the ingest exporter and the API actually expose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from ingest.exporter import ingest_registry
from ingest.state import StateStore, ensure_schema
from newsflow import topology
from newsflow.observability import StageMetrics
from newsflow.settings import Settings
from pipeline.api import create_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "newsflow-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
_METRIC = re.compile(r"\bnewsflow_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _exposed_names(tmp_path: Path) -> set[str]:
    names: set[str] = set()
    for family in StageMetrics("enrich").registry.collect():
        names.add(family.name)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ensure_schema(url)
    state = StateStore.from_url(url)
    for family in ingest_registry(Settings(), state).collect():
        names.add(family.name)
    app = create_app(Settings(api_auth="off"), es=_NoElasticsearch())  # type: ignore[arg-type]
    with TestClient(app, base_url="http://localhost") as client:  # auth off: loopback names
        client.get("/nothing-here")
        text = client.get("/metrics").text
    names |= {_base(n) for n in _METRIC.findall(text)}
    return names


class _NoElasticsearch:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Elasticsearch not expected here ({name})")


def test_dashboard_queries_only_metrics_the_code_exposes(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["panels"]
    queried = {
        _base(name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in _METRIC.findall(target["expr"])
    }
    missing = queried - _exposed_names(tmp_path)
    assert not missing, f"dashboard panels query metrics nothing exposes: {sorted(missing)}"


def test_prometheus_scrapes_each_worker_on_its_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    ports = {
        entry["names"][0]: entry["port"]
        for job in config["scrape_configs"]
        for entry in job.get("dns_sd_configs", [])
    }
    settings = Settings.model_construct()  # the defaults the compose file relies on, not env
    assert ports == {row.service: topology.metrics_port(row, settings) for row in topology.STAGES}
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert f"exporter:{settings.exporter_port}" in targets
    assert "api:8000" in targets
