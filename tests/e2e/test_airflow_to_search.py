"""End to end: DAG runs scheduled by the running Airflow, through Kafka, to search."""

from __future__ import annotations

import time

import pytest

from devstack.airflow_client import AirflowClient
from devstack.demo import SEED_QUERY, wait_until_drained
from index.search import StorySearch
from newsflow.es import IndexNames, make_client
from newsflow.settings import get_settings
from pipeline.stages import initialize

pytestmark = pytest.mark.e2e

# The sample outlets that report the seed story (samples/outlets/*/articles): the wire's
# text at three of them (copies), its own coverage at the other two (story clustering).
SEED_OUTLETS = [
    "kestrel-wire",
    "northern-ledger",
    "harbour-gazette",
    "daily-klaxon",
    "backbench-notes",
]


def test_outlet_dags_run_by_the_scheduler_make_one_searchable_story(full_stack: None) -> None:
    settings = get_settings()  # the settings the stack's Airflow tasks and workers use
    initialize(settings)
    deadline = time.monotonic() + 600
    with AirflowClient(settings=settings) as airflow:
        runs = airflow.trigger_all([f"ingest_{outlet}" for outlet in SEED_OUTLETS])
        for run in runs:
            done = airflow.wait_for_run(run.dag_id, run.run_id, timeout=deadline - time.monotonic())
            tasks = airflow.task_instances(run.dag_id, run.run_id)
            assert done.state == "success", (done, tasks)
            assert [(t.task_id, t.state) for t in tasks] == [("crawl_and_publish", "success")]

    wait_until_drained(settings, deadline)
    es = make_client(settings)
    try:
        hits = StorySearch(es, IndexNames(settings.index_prefix)).top_stories(SEED_QUERY)
    finally:
        es.close()
    assert hits, "the seed story is searchable"
    story = hits[0]
    assert set(SEED_OUTLETS) <= set(story.story_or_article().outlets), story
    assert "Phillips" in (story.title or "")
    assert all(hit.story_id != story.story_id for hit in hits[1:]), "shown once as a story"
