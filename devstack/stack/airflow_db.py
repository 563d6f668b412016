"""Connection arguments for Airflow's SQLite metadata database (named in airflow.cfg)."""

from __future__ import annotations

from typing import Any

SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60, "check_same_thread": False}
