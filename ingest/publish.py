"""Crawl one outlet and publish its pages to Kafka: the body of every ingestion DAG run.

The crawl uses the shared state (``settings.state_db_url``): the per-host rate limit and
robots.txt cache are shared with every other task, and an article is recorded as fetched
only after the broker acknowledged it, so a failed run is fetched again on retry while a
re-run of a successful one neither re-fetches nor re-produces unchanged pages.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from ingest.crawl import CrawlOutcome, crawl_outlet, record_article, summarize
from ingest.fetch import Fetcher
from ingest.metrics import METRICS
from ingest.state import StateStore
from newsflow.contracts import encode
from newsflow.kafka_io import make_producer
from newsflow.outlets import load_registry
from newsflow.settings import Settings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Pages were fetched but Kafka did not acknowledge them; the task should be retried."""


def publish_outlet(
    outlet_name: str, settings: Settings, *, registry_file: Path | None = None
) -> dict[str, Any]:
    """Fetch the outlet's new pages and produce each as a raw page keyed by its article id.

    Returns the crawl summary, plus ``published``: pages the broker acknowledged. Raises
    ``PublishError`` if any page was not acknowledged, so that Airflow retries the run.
    """
    registry = load_registry(registry_file or settings.outlets_file)
    outlet = registry.get(outlet_name)
    state = StateStore.from_settings(settings)
    outcomes: list[CrawlOutcome] = []
    producer = make_producer(settings, client_id=f"ingest-{outlet.name}")
    futures = []
    try:
        with Fetcher(settings, state=state) as fetcher:
            crawl = crawl_outlet(
                outlet,
                fetcher=fetcher,
                settings=settings,
                state=state,
                defer_article_records=True,
            )
            for outcome in crawl:
                outcomes.append(outcome)
                _log_outcome(outlet.name, outcome)
                if outcome.page is not None:
                    futures.append(
                        (
                            outcome,
                            producer.send(
                                settings.topic_raw_pages,
                                key=outcome.page.id.encode(),
                                value=encode(outcome.page),
                            ),
                        )
                    )
        producer.flush(timeout=60)
        unacknowledged = []
        for outcome, future in futures:
            try:
                future.get(timeout=60)
            except KafkaError as exc:
                log.error("outlet %s: %s not published: %s", outlet.name, outcome.url, exc)
                unacknowledged.append(outcome.url)
            else:
                record_article(state, outlet, outcome)
    finally:
        producer.close()
    summary = summarize(outcomes)
    summary["outlet"] = outlet.name
    summary["published"] = len(futures) - len(unacknowledged)
    summary["new_versions"] = sum(1 for o, _ in futures if (o.version or 1) > 1)
    summary["metrics"] = METRICS.url_counts(outlet.name)
    log.info("outlet %s: %s", outlet.name, summary)
    if unacknowledged:
        raise PublishError(f"{len(unacknowledged)} page(s) of {outlet.name} not acknowledged")
    return summary


def _log_outcome(outlet: str, outcome: CrawlOutcome) -> None:
    level = logging.INFO if outcome.reason.routine else logging.WARNING
    log.log(
        level,
        "outlet %s: %s %s status=%s reason=%s bytes=%d elapsed_ms=%.0f %s",
        outlet,
        outcome.kind,
        outcome.url,
        outcome.status,
        outcome.reason,
        outcome.bytes,
        outcome.elapsed_ms,
        outcome.detail,
    )
