"""The local stack without Docker: Kafka, Elasticsearch, Airflow and the sample outlets.

Everything binds to 127.0.0.1 and keeps its logs and data under ``settings.run_dir``. Kafka and
Elasticsearch are fetched from Maven Central with the poms in ``deploy/`` and run on an
installed JDK; Airflow runs from the project's virtualenv.

    from devstack import stack
    report = stack.up(["kafka", "elasticsearch"])   # idempotent; report.started -> ["kafka", ...]
    stack.status()                                  # list[ComponentStatus]
    stack.down(report.started)                      # only what we started

Every name is imported on first use: the workers' supervisors (``devstack.stack.supervise``),
one per worker for the stack's lifetime, import this package and must stay small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from devstack.stack.cli import stack_app
    from devstack.stack.components import GROUP_ORDER as COMPONENTS
    from devstack.stack.components import newsflow_command

_LAZY = {
    "COMPONENTS": ("devstack.stack.components", "GROUP_ORDER"),
    "ComponentResult": ("devstack.stack._core", "ComponentResult"),
    "ComponentStatus": ("devstack.stack._core", "ComponentStatus"),
    "StackError": ("devstack.stack._core", "StackError"),
    "StackReport": ("devstack.stack._core", "StackReport"),
    "down": ("devstack.stack._core", "down"),
    "install": ("devstack.stack._core", "install"),
    "newsflow_command": ("devstack.stack.components", "newsflow_command"),
    "stack_app": ("devstack.stack.cli", "stack_app"),
    "status": ("devstack.stack._core", "status"),
    "up": ("devstack.stack._core", "up"),
}

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
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
