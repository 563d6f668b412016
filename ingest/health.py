"""Feed health: which feeds and sitemaps keep failing or have gone silent.

Why: a feed that silently stops announcing articles (a CMS migration, a broken template)
is the most common way a news crawler loses an outlet without anyone noticing. Each poll is
recorded in the shared state (:meth:`ingest.state.StateStore.record_poll`); this module
judges those records and is what the ``feed_health`` DAG and ``newsflow`` run.

A source is unhealthy when

* it failed ``feed_max_consecutive_errors`` times in a row (``failing``), or
* it has not announced a new item for longer than ``feed_silence_factor`` times its usual
  interval between new items, and at least ``feed_min_silence_hours`` (``silent``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ingest.metrics import METRICS
from ingest.state import FeedHealth, StateStore
from newsflow.settings import Settings

__all__ = ["Problem", "assess", "report_unhealthy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    url: str
    outlet: str
    kind: str
    code: str  # "failing" | "silent"
    detail: str

    def __str__(self) -> str:
        return f"{self.outlet}: {self.kind} {self.url}: {self.code}: {self.detail}"


def assess(health: FeedHealth, settings: Settings, now: float | None = None) -> list[Problem]:
    """The problems of one source (empty when healthy)."""
    now = time.time() if now is None else now
    problems: list[Problem] = []

    def problem(code: str, detail: str) -> None:
        problems.append(Problem(health.url, health.outlet, health.kind, code, detail))

    if health.consecutive_errors >= settings.feed_max_consecutive_errors:
        problem(
            "failing",
            f"{health.consecutive_errors} failed polls in a row (last: {health.last_error})",
        )
    reference = health.last_new_item_at or health.first_polled_at
    usual = health.new_item_interval
    limit = settings.feed_min_silence_hours * 3600
    if usual is not None:
        limit = max(limit, settings.feed_silence_factor * usual)
    silence = now - reference
    if silence > limit:
        usual_text = f"usual interval {usual / 3600:.1f} h" if usual else "no usual interval yet"
        problem("silent", f"no new item for {silence / 3600:.1f} h ({usual_text})")
    return problems


def report_unhealthy(settings: Settings, *, state: StateStore | None = None) -> list[Problem]:
    """Log a warning per unhealthy source, set the metric, and return the problems."""
    state = state or StateStore.from_settings(settings)
    now = state.clock()
    problems = [p for health in state.feed_health() for p in assess(health, settings, now)]
    METRICS.unhealthy_feeds.set(len(problems))
    for item in problems:
        METRICS.feed_problems.labels(item.outlet, item.code).inc()
        log.warning("unhealthy feed: %s", item)
    return problems
