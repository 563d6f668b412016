"""A small client for Airflow 3's REST API v2, for the demo, e2e tests and the CLI.

Auth follows Airflow 3's SimpleAuthManager: a JWT from ``/auth/token``. With a password
(``NEWSFLOW_AIRFLOW_PASSWORD``) it is ``POST /auth/token`` with username and password; without
one it is ``GET /auth/token``, which the local stack allows because it runs with
``simple_auth_manager_all_admins = True``. A token the API rejects (401, or 403 "Invalid JWT
token") is replaced once before the error is raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from newsflow.settings import Settings, get_settings

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowError(RuntimeError):
    """The API refused a request or a wait ran out; the message says which and why."""


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str
    logical_date: str | None
    start_date: str | None
    end_date: str | None
    conf: dict[str, Any]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DagRun:
        return cls(
            dag_id=data["dag_id"],
            run_id=data["dag_run_id"],
            state=data.get("state") or "",
            logical_date=data.get("logical_date"),
            start_date=data.get("start_date"),
            end_date=data.get("end_date"),
            conf=data.get("conf") or {},
        )


@dataclass(frozen=True)
class TaskInstance:
    task_id: str
    state: str | None
    try_number: int
    map_index: int
    start_date: str | None
    end_date: str | None
    duration: float | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TaskInstance:
        return cls(
            task_id=data["task_id"],
            state=data.get("state"),
            try_number=int(data.get("try_number") or 0),
            map_index=int(data.get("map_index", -1)),
            start_date=data.get("start_date"),
            end_date=data.get("end_date"),
            duration=data.get("duration"),
        )


def _seg(value: str) -> str:
    """One URL path segment: run ids contain ':' and '+'."""
    return quote(value, safe="")


class AirflowClient:
    """Synchronous REST API v2 client; use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 15.0,
        settings: Settings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        s = settings or get_settings()
        self.base_url = (base_url or s.airflow_url).rstrip("/")
        self.username = username or s.airflow_username
        if password is None and s.airflow_password is not None:
            password = s.airflow_password.get_secret_value()
        self._password = password
        self._token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ auth and plumbing

    def token(self, refresh: bool = False) -> str:
        """A JWT for the API (cached until a 401 says it expired)."""
        if self._token and not refresh:
            return self._token
        if self._password:
            resp = self._http.post(
                "/auth/token", json={"username": self.username, "password": self._password}
            )
        else:
            resp = self._http.get("/auth/token")
        if resp.status_code not in (200, 201):
            hint = "" if self._password else " (no password set: needs all-admins mode)"
            raise AirflowError(f"token request failed: HTTP {resp.status_code}{hint}: {resp.text}")
        token: str = resp.json()["access_token"]
        self._token = token
        return token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call to ``/api/v2/...``; raises AirflowError for 4xx/5xx."""
        url = f"/api/v2/{path.lstrip('/')}"
        resp = self._http.request(method, url, headers=self._auth(), **kwargs)
        if resp.status_code in (401, 403):  # expired/invalid JWT: Airflow answers 403 for some
            resp = self._http.request(method, url, headers=self._auth(refresh=True), **kwargs)
        if resp.status_code >= 400:
            raise AirflowError(f"{method} {url}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp

    def _auth(self, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(refresh=refresh)}"}

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.request(method, path, **kwargs).json()
        return data

    # ------------------------------------------------------------------ API

    def version(self) -> str:
        return str(self._json("GET", "version")["version"])

    def health(self) -> dict[str, Any]:
        """Metadatabase, scheduler, triggerer and dag-processor status with heartbeats."""
        return self._json("GET", "monitor/health")

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API knows it, or None if it has not been parsed (yet)."""
        try:
            return self._json("GET", f"dags/{_seg(dag_id)}")
        except AirflowError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to import (what the UI shows as broken DAGs)."""
        return list(self._json("GET", "importErrors", params={"limit": 100})["import_errors"])

    def wait_for_dag(
        self, dag_id: str, timeout: float = 180.0, poll: float = 2.0
    ) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; the error lists import errors."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None and not dag.get("is_stale"):
                return dag
            if time.monotonic() > deadline:
                errors = "; ".join(
                    f"{e.get('filename')}: {str(e.get('stack_trace', '')).strip()[-300:]}"
                    for e in self.import_errors()
                )
                raise AirflowError(
                    f"DAG {dag_id} not parsed after {timeout:.0f}s"
                    + (f"; import errors: {errors}" if errors else "")
                )
            time.sleep(poll)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"dags/{_seg(dag_id)}", json={"is_paused": paused})

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> DagRun:
        """Create a manual run. Airflow 3 requires ``logical_date`` in the body; None is allowed
        (and lets several manual runs coexist)."""
        body: dict[str, Any] = {
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": conf or {},
        }
        if run_id:
            body["dag_run_id"] = run_id
        return DagRun.from_api(self._json("POST", f"dags/{_seg(dag_id)}/dagRuns", json=body))

    def get_run(self, dag_id: str, run_id: str) -> DagRun:
        return DagRun.from_api(self._json("GET", f"dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}"))

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 2.0
    ) -> DagRun:
        """Poll until the run is success/failed and return it; AirflowError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run.state in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                states = ", ".join(
                    f"{ti.task_id}={ti.state}" for ti in self.task_instances(dag_id, run_id)
                )
                raise AirflowError(
                    f"run {dag_id}/{run_id} still {run.state} after {timeout:.0f}s ({states})"
                )
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """All task instances of a run (mapped ones included), in API order."""
        out: list[TaskInstance] = []
        offset = 0
        path = f"dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances"
        while True:
            page = self._json("GET", path, params={"limit": 100, "offset": offset})
            items = page.get("task_instances") or []
            out.extend(TaskInstance.from_api(item) for item in items)
            offset += len(items)
            if not items or offset >= int(page.get("total_entries", 0)):
                return out

    def trigger_all(self, dag_ids: list[str], *, parse_timeout: float = 180.0) -> list[DagRun]:
        """Wait for each DAG to be parsed, unpause it and start a manual run."""
        runs = []
        for dag_id in dag_ids:
            self.wait_for_dag(dag_id, timeout=parse_timeout)
            self.unpause(dag_id)
            runs.append(self.trigger(dag_id))
        return runs

    def run_and_wait(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        *,
        timeout: float = 600.0,
        parse_timeout: float = 180.0,
    ) -> tuple[DagRun, list[TaskInstance]]:
        """Wait for the DAG, unpause it, trigger it, wait for the end: the demo in one call."""
        self.wait_for_dag(dag_id, timeout=parse_timeout)
        self.unpause(dag_id)
        run = self.trigger(dag_id, conf)
        done = self.wait_for_run(dag_id, run.run_id, timeout=timeout)
        return done, self.task_instances(dag_id, run.run_id)
