"""One ingestion DAG per outlet in the registry: discover, fetch, publish raw pages to Kafka.

This file only wires tasks. The work is ``ingest.publish.publish_outlet``, which the
``newsflow ingest OUTLET`` command runs too. A registry error surfaces here as an import
error in Airflow's UI, naming the file, the outlet and the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from newsflow.outlets import Outlet, load_registry
from newsflow.settings import get_settings

DOC = """
### Ingest `{name}` ({display_name})

Discovers article URLs from the outlet's feeds and sitemaps, fetches new pages and publishes
them to the Kafka raw-pages topic, keyed by the article id. The task's return value (XCom)
counts URLs discovered, fetched and skipped by reason.

Registry entry: `{registry}`.
"""


def build_ingest_dag(outlet: Outlet, registry_file: str) -> Any:
    @dag(
        dag_id=f"ingest_{outlet.name}",
        description=f"Ingest {outlet.display_name}",
        schedule=outlet.schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=1),
        tags=["newsflow", "ingest"],
        doc_md=DOC.format(
            name=outlet.name, display_name=outlet.display_name, registry=registry_file
        ),
        default_args={
            "owner": "newsflow",
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "execution_timeout": timedelta(minutes=30),
        },
    )
    def ingest_outlet() -> None:
        @task(task_id="crawl_and_publish")
        def crawl_and_publish(outlet_name: str) -> dict[str, Any]:
            from ingest.publish import publish_outlet

            return publish_outlet(outlet_name, get_settings())

        crawl_and_publish(outlet.name)

    return ingest_outlet()


_settings = get_settings()
for _outlet in load_registry(_settings.outlets_file).outlets:
    if _outlet.enabled:
        globals()[f"ingest_{_outlet.name}"] = build_ingest_dag(_outlet, str(_settings.outlets_file))
