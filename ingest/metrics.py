"""A small in-process counter registry for ingest metrics.

Why not a Prometheus client now: issue 6 adds ``/metrics``; until then these counters are
logged and returned in the task summary. :meth:`Counters.render` already writes the
Prometheus text format, so exporting later is one HTTP handler.

Names in use: ``newsflow_ingest_urls_total{outlet,kind,reason}`` (one per URL outcome;
``reason`` is a stable code, see :mod:`ingest.crawl`), ``newsflow_ingest_unhealthy_feeds``
(gauge-like, set by :mod:`ingest.health`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["METRICS", "Counters"]

_Key = tuple[str, tuple[tuple[str, str], ...]]


class Counters:
    """Thread-safe counters (and settable values) keyed by name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[_Key, float] = {}

    @staticmethod
    def _key(name: str, labels: Mapping[str, str]) -> _Key:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(name, labels)] = value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(name, labels), 0.0)

    def snapshot(self) -> list[dict[str, object]]:
        """Every series as ``{"name", "labels", "value"}`` (JSON-serializable)."""
        with self._lock:
            items = sorted(self._values.items())
        return [{"name": n, "labels": dict(labels), "value": v} for (n, labels), v in items]

    def render(self) -> str:
        """The Prometheus text exposition format (without HELP/TYPE lines)."""
        lines = []
        for series in self.snapshot():
            labels = series["labels"]
            assert isinstance(labels, dict)
            inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            lines.append(f"{series['name']}{{{inner}}} {series['value']}")
        return "\n".join(lines) + ("\n" if lines else "")

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


#: The process-wide registry.
METRICS = Counters()
