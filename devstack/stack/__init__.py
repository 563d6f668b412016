"""The local stack without Docker: Kafka, Elasticsearch, Airflow and the sample outlets.

Everything binds to 127.0.0.1 and keeps its logs and data under ``settings.run_dir``. Kafka and
Elasticsearch are fetched from Maven Central with the poms in ``deploy/`` and run on an
installed JDK; Airflow runs from the project's virtualenv.

    from devstack import stack
    report = stack.up(["kafka", "elasticsearch"])   # idempotent; report.started -> ["kafka", ...]
    stack.status()                                  # list[ComponentStatus]
    stack.down(report.started)                      # only what we started

The typer sub-app ``stack_app`` (``newsflow stack up|down|status|install``) is imported lazily so
that importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.stack._core import (
    ComponentResult,
    ComponentStatus,
    StackError,
    StackReport,
    down,
    install,
    status,
    up,
)
from devstack.stack.components import GROUP_ORDER as COMPONENTS
from devstack.stack.components import newsflow_command

if TYPE_CHECKING:
    from devstack.stack.cli import stack_app

__all__ = [
    "COMPONENTS",
    "ComponentResult",
    "ComponentStatus",
    "StackError",
    "StackReport",
    "down",
    "install",
    "newsflow_command",
    "stack_app",
    "status",
    "up",
]


def __getattr__(name: str) -> Any:
    if name == "stack_app":
        from devstack.stack.cli import stack_app

        return stack_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
