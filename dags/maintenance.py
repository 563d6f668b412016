"""Daily upkeep: index checks, retention, and replay of dead letters that failed for a passing
reason. The work lives in ``index.maintenance`` and ``newsflow.dlq``; this file wires it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from newsflow.settings import get_settings

DOC = """
### Newsflow maintenance

1. **check_indices**: documents and size of every index behind the articles and stories
   names, and that the articles alias has exactly one write index (fails otherwise: the index
   workers could not write).
2. **expire_old_documents**: deletes articles fetched, and stories last seen, more than
   `NEWSFLOW_INDEX_RETENTION_DAYS` ago (bulk deletes found by a point-in-time scan).
3. **replay_dead_letters**: sends dead letters of kind `retries_exhausted` that arrived since
   the last run back to their source topic. `permanent` ones wait for a fix and
   `newsflow dlq replay --reason …`.

Each task returns what it did (XCom). Safe to re-run: every step is idempotent.
"""


@dag(
    dag_id="maintenance",
    description="Index checks, retention and dead-letter replay",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    tags=["newsflow", "maintenance"],
    doc_md=DOC,
    default_args={
        "owner": "newsflow",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=45),
    },
)
def maintenance() -> None:
    @task(task_id="check_indices")
    def check_indices() -> dict[str, Any]:
        from index.maintenance import index_report
        from newsflow.es import IndexNames, make_client

        settings = get_settings()
        es = make_client(settings)
        try:
            return index_report(es, IndexNames(settings.index_prefix))
        finally:
            es.close()

    @task(task_id="expire_old_documents")
    def expire_old_documents() -> dict[str, Any]:
        from index.maintenance import expire
        from newsflow.es import IndexNames, make_client

        settings = get_settings()
        es = make_client(settings)
        try:
            done = expire(
                es,
                IndexNames(settings.index_prefix),
                older_than=timedelta(days=settings.index_retention_days),
                now=datetime.now(UTC),
            )
        finally:
            es.close()
        return {"articles": done.articles, "stories": done.stories, "cutoff": str(done.cutoff)}

    @task(task_id="replay_dead_letters")
    def replay_dead_letters() -> dict[str, Any]:
        from newsflow.dlq import replay_new_letters

        run = replay_new_letters(get_settings())
        # skipped: truncated letters whose original has left its topic (see `newsflow dlq`).
        return {"read": run.read, "replayed": run.replayed, "skipped": run.skipped}

    check_indices() >> expire_old_documents()
    replay_dead_letters()


maintenance()
