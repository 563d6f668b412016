"""Report unhealthy feeds hourly: failing ones and ones gone silent (``ingest.health``).

The task fails (and Airflow's UI shows it red, with the list in its log) when any feed or
sitemap is unhealthy, so an operator sees a silent outlet the same day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from newsflow.settings import get_settings


@dag(
    dag_id="feed_health",
    description="Report feeds and sitemaps that keep failing or have gone silent",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["newsflow", "ingest", "health"],
    doc_md=__doc__,
    dagrun_timeout=timedelta(minutes=30),
    default_args={
        "owner": "newsflow",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=10),
    },
)
def feed_health() -> None:
    @task(task_id="report_unhealthy")
    def report() -> list[str]:
        from ingest.health import report_unhealthy

        problems = [str(p) for p in report_unhealthy(get_settings())]
        if problems:
            raise RuntimeError(f"{len(problems)} unhealthy feed(s):\n" + "\n".join(problems))
        return problems

    report()


feed_health()
