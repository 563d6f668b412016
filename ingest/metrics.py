"""The ingest process's metrics (the kernel's :class:`~newsflow.observability.IngestMetrics`).

Ingest runs in short Airflow tasks whose memory no Prometheus scrapes: each task sums these
into its result (:func:`ingest.publish.publish_outlet`) and logs them, while
``newsflow exporter`` serves the lasting view from the crawl state.
"""

from __future__ import annotations

from newsflow.observability import IngestMetrics

__all__ = ["METRICS"]

#: The process-wide ingest series.
METRICS = IngestMetrics()
