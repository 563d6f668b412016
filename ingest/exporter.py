"""Prometheus metrics for ingest, read from the crawl state at scrape time.

Why from the state database: ingest runs inside short Airflow tasks, so counters in a task's
memory die with it before anything scrapes them. The crawl state already records every URL's
last outcome and every feed's polls; ``newsflow exporter`` serves them:

- ``newsflow_ingest_urls{outlet,kind,reason}``: URLs by their last fetch outcome (``reason``
  is a stable code from :class:`ingest.reasons.Reason`, or ``never_fetched``)
- ``newsflow_feed_last_success_age_seconds{outlet,url}``, ``…_last_new_item_age_seconds``
- ``newsflow_feed_consecutive_errors{outlet,url}``, ``newsflow_feed_polls_total{outlet,url}``
- ``newsflow_feed_unhealthy{outlet,url,problem}``: 1 per problem the ``feed_health`` DAG
  would report (``failing``, ``silent``; see :mod:`ingest.health`)
- ``newsflow_exporter_up``: 0 when the state database could not be read
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.health import assess
from ingest.state import StateStore
from newsflow.settings import Settings

log = logging.getLogger(__name__)


class IngestCollector(Collector):
    def __init__(self, settings: Settings, state: StateStore | None = None) -> None:
        self.settings = settings
        self._state = state
        self.last_ok: bool | None = None

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore.from_settings(self.settings)
        return self._state

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("newsflow_exporter_up", "1 when the crawl state could be read.")
        try:
            families = list(self._families())
        except Exception as exc:  # a scrape must answer, even when the database is down
            log.warning("exporter: cannot read the crawl state: %s", exc)
            self.last_ok = False
            up.add_metric([], 0)
            yield up
            return
        self.last_ok = True
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Any]:
        urls = GaugeMetricFamily(
            "newsflow_ingest_urls",
            "URLs in the crawl state by outlet, kind and last fetch outcome.",
            labels=["outlet", "kind", "reason"],
        )
        for outlet, kind, reason, count in self.state.url_counts():
            urls.add_metric([outlet, kind, reason], count)
        yield urls

        now = self.state.clock()
        success_age = GaugeMetricFamily(
            "newsflow_feed_last_success_age_seconds",
            "Seconds since the feed or sitemap was last fetched successfully.",
            labels=["outlet", "url"],
        )
        new_item_age = GaugeMetricFamily(
            "newsflow_feed_last_new_item_age_seconds",
            "Seconds since the feed or sitemap last announced a new item.",
            labels=["outlet", "url"],
        )
        errors = GaugeMetricFamily(
            "newsflow_feed_consecutive_errors",
            "Failed polls in a row.",
            labels=["outlet", "url"],
        )
        polls = CounterMetricFamily(
            "newsflow_feed_polls", "Polls of the feed or sitemap.", labels=["outlet", "url"]
        )
        unhealthy = GaugeMetricFamily(
            "newsflow_feed_unhealthy",
            "1 for each problem the feed_health DAG reports (failing, silent).",
            labels=["outlet", "url", "problem"],
        )
        for health in self.state.feed_health():
            labels = [health.outlet, health.url]
            if health.last_success_at is not None:
                success_age.add_metric(labels, max(now - health.last_success_at, 0.0))
            if health.last_new_item_at is not None:
                new_item_age.add_metric(labels, max(now - health.last_new_item_at, 0.0))
            errors.add_metric(labels, health.consecutive_errors)
            polls.add_metric(labels, health.total_polls)
            for problem in assess(health, self.settings, now):
                unhealthy.add_metric([*labels, problem.code], 1)
        yield from (success_age, new_item_age, errors, polls, unhealthy)


def ingest_registry(settings: Settings, state: StateStore | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(IngestCollector(settings, state))
    return registry
