"""`make demo`: the whole pipeline on the local stack, from DAG trigger to search result."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import typer

from devstack.airflow_client import AirflowClient
from index.search import StorySearch, count_articles
from newsflow.es import IndexNames, make_client
from newsflow.kafka_io import consumer_lag
from newsflow.outlets import load_registry
from newsflow.settings import Settings
from newsflow.topology import path_to, topic_name

# The event of the demo's main story, carried by several sample outlets.
SEED_QUERY = "Jess Phillips Gaza vote"
STACK = ["kafka", "elasticsearch", "airflow", "samples", "workers", "api"]


def search_page_url(settings: Settings) -> str:
    """Where the local stack serves the search page (the API binds to loopback)."""
    return f"http://127.0.0.1:{settings.api_port}/"


def _say(text: str) -> None:
    typer.echo(text)


def wait_until_drained(settings: Settings, deadline: float) -> None:
    """Every stage on the path to the search index has committed everything on its input.

    The demo ends with a search, so it waits for the index stage and the stages upstream of
    it (enrich, dedup, index); the alert and webhook stages run beside it and are not waited
    for.
    """
    groups = {row.group_id: topic_name(row.input, settings) for row in path_to("index")}
    while True:
        lag = {
            g: sum(consumer_lag(settings, group_id=g, topic=t).values()) for g, t in groups.items()
        }
        if not any(lag.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers still behind: {lag}")
        time.sleep(1)


def run_demo(settings: Settings, *, timeout: float = 600) -> int:
    from devstack import stack

    started = time.monotonic()
    deadline = started + timeout
    _say("Starting the local stack (the first run downloads Kafka and Elasticsearch)…")
    report = stack.up(STACK)
    _say(
        f"Stack ready in {report.seconds:.0f}s; started now: {', '.join(report.started) or 'none'}"
    )
    # Idempotent: topics, indices and the crawl state exist however the stack was started.
    init = subprocess.run(
        [*stack.newsflow_command(), "init"], capture_output=True, text=True, check=True
    )
    _say(f"init: {init.stdout.strip()}")

    outlets = load_registry(settings.outlets_file).enabled()
    triggered_at = time.monotonic()
    summaries: dict[str, Any] = {}
    with AirflowClient(settings=settings) as airflow:
        runs = airflow.trigger_all([f"ingest_{outlet.name}" for outlet in outlets])
        _say(f"Triggered {len(runs)} ingestion DAGs through Airflow's API")
        failed = []
        for run in runs:
            done = airflow.wait_for_run(run.dag_id, run.run_id, timeout=deadline - time.monotonic())
            summaries[run.dag_id] = done.state
            if done.state != "success":
                failed.append(run.dag_id)
        _say("DAG runs: " + ", ".join(f"{dag}={state}" for dag, state in summaries.items()))
        if failed:
            _say(f"Failed DAG runs: {failed}; see the task logs in the Airflow UI.")
            return 1

    wait_until_drained(settings, deadline)
    es = make_client(settings)
    names = IndexNames(settings.index_prefix)
    try:
        total = count_articles(es, names)
        hits = StorySearch(es, names).top_stories(SEED_QUERY, size=3)
    finally:
        es.close()
    searchable_after = time.monotonic() - triggered_at
    _say(f"\n{total} articles indexed; {searchable_after:.1f}s from DAG trigger to searchable.\n")
    _say(f"newsflow search {SEED_QUERY!r}:")
    if not hits:
        _say("  no story found — check `newsflow dlq list` and the logs under .run/logs")
        return 1
    for rank, hit in enumerate(hits, 1):
        story = hit.story_or_article()
        when = hit.published_at.strftime("%Y-%m-%d %H:%M") if hit.published_at else "undated"
        _say(f"{rank}. {hit.title}\n   {hit.outlet} · {when} · {hit.url}")
        if story.articles > 1:
            _say(f"   one story, {story.articles} articles from: {', '.join(story.outlets)}")
    _say(
        f"\nSearch page:    {search_page_url(settings)}\n"
        f"Airflow UI:     {settings.airflow_url}\n"
        f"Elasticsearch:  {settings.es_url}\n"
        f"Search more:    .venv/bin/newsflow search 'your words'\n"
        f"Stop the stack: .venv/bin/newsflow stack down   (or: make stack-down)\n"
        f"Total demo time: {time.monotonic() - started:.0f}s"
    )
    return 0
