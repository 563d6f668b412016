"""The ingest series: Prometheus counters, summed per outlet for a task's result."""

from __future__ import annotations

import threading

from prometheus_client.exposition import generate_latest

from newsflow.observability import IngestMetrics


def test_url_counts_sum_one_outlet_by_reason() -> None:
    metrics = IngestMetrics()
    metrics.urls.labels("a", "article", "fetched").inc()
    metrics.urls.labels("a", "feed", "fetched").inc(2)
    metrics.urls.labels("a", "article", "timeout").inc()
    metrics.urls.labels("b", "article", "fetched").inc()
    assert metrics.url_counts("a") == {"fetched": 3.0, "timeout": 1.0}
    assert metrics.url_counts("nobody") == {}


def test_exposition_escapes_labels() -> None:
    metrics = IngestMetrics()
    metrics.feed_problems.labels('we"ird\nme', "silent").inc()
    metrics.unhealthy_feeds.set(1)
    text = generate_latest(metrics.registry).decode()
    assert 'newsflow_ingest_feed_problems_total{code="silent",outlet="we\\"ird\\nme"} 1.0' in text
    assert "newsflow_ingest_unhealthy_feeds 1.0" in text


def test_concurrent_increments_are_not_lost() -> None:
    metrics = IngestMetrics()

    def work() -> None:
        for _ in range(1000):
            metrics.urls.labels("o", "article", "fetched").inc()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.url_counts("o") == {"fetched": 8000.0}
