"""Session fixtures: the real services are started once, and only stopped if we started them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsflow.settings import PROJECT_ROOT, Settings

CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"

_started: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos suite restarts the services every other test uses: it runs last."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)


def _bring_up(components: list[str]) -> None:
    from devstack import stack

    report = stack.up(components=components)
    _started.extend(name for name in report.started if name not in _started)


@pytest.fixture(scope="session", autouse=True)
def _stop_what_we_started() -> Iterator[None]:
    yield
    if _started and not os.environ.get("NEWSFLOW_KEEP_STACK"):
        from devstack import stack

        stack.down(components=list(_started))


@pytest.fixture(scope="session")
def infra() -> None:
    """Kafka and Elasticsearch, running."""
    _bring_up(["kafka", "elasticsearch"])


@pytest.fixture(scope="session")
def full_stack(infra: None) -> None:
    """Everything `make demo` runs: Kafka, Elasticsearch, Airflow, sample outlets, workers."""
    _bring_up(["kafka", "elasticsearch", "airflow", "samples", "workers"])


@pytest.fixture
def infra_settings(infra: None, tmp_path: Path) -> Iterator[Settings]:
    """Settings with topics and an index prefix of their own, created fresh for one test."""
    from newsflow.es import make_client
    from newsflow.kafka_io import make_admin
    from pipeline.stages import initialize

    tag = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(
        topic_raw_pages=f"{tag}.raw-pages.v1",
        topic_articles=f"{tag}.articles.v1",
        topic_dead_letters=f"{tag}.dead-letters.v1",
        topic_deduped_articles=f"{tag}.deduped-articles.v1",
        topic_alerts=f"{tag}.alerts.v1",
        index_prefix=tag,
        dedup_state_dir=tmp_path / "dedup",
        dedup_snapshot_every_seconds=0,
        worker_retry_backoff_seconds=0.05,
    )
    initialize(settings)
    yield settings
    es = make_client(settings)
    created = list(es.indices.get(index=f"{tag}-*", allow_no_indices=True))
    if created:  # wildcard deletes are refused by default (action.destructive_requires_name)
        es.indices.delete(index=",".join(created))
    es.indices.delete_index_template(name=f"{tag}-articles")
    es.indices.delete_index_template(name=f"{tag}-stories")
    es.close()
    admin = make_admin(settings)
    admin.delete_topics(
        [
            settings.topic_raw_pages,
            settings.topic_articles,
            settings.topic_deduped_articles,
            settings.topic_dead_letters,
            settings.topic_alerts,
        ]
    )
    admin.close()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS
