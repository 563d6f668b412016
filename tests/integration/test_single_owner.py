"""A single-owner stage refuses an input topic with more than one partition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsflow.kafka_io import make_admin
from newsflow.settings import Settings, get_settings
from pipeline.cli import app
from pipeline.stages import StageStartError, build_runner

pytestmark = pytest.mark.integration


@pytest.fixture
def two_partition_articles(infra: None) -> Iterator[str]:
    """An articles topic of two partitions, as a deployment made before `newsflow init`
    created it with one might have."""
    name = f"t{uuid.uuid4().hex[:8]}.articles.v1"
    settings = Settings()
    admin = make_admin(settings)
    try:
        admin.create_topics(
            {name: {"num_partitions": 2, "replication_factor": settings.topic_replication}},
            wait_for_metadata=True,
        )
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def test_building_the_dedup_runner_on_two_partitions_raises(
    two_partition_articles: str, tmp_path: Path
) -> None:
    settings = Settings(topic_articles=two_partition_articles, dedup_state_dir=tmp_path)
    with pytest.raises(StageStartError) as refused:
        build_runner("dedup", settings, group_id=f"{two_partition_articles}-dedup")
    message = str(refused.value)
    assert f"stage dedup refuses to start: its input topic {two_partition_articles}" in message
    assert "has 2 partitions" in message
    assert "Delete the topic and recreate it with `newsflow init`" in message


def test_the_dedup_worker_exits_with_the_reason_not_a_traceback(
    two_partition_articles: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSFLOW_TOPIC_ARTICLES", two_partition_articles)
    monkeypatch.setenv("NEWSFLOW_DEDUP_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSFLOW_WORKER_METRICS_BASE_PORT", "0")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker", "dedup", "--idle-timeout", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert f"its input topic {two_partition_articles} has 2 partitions" in result.stderr
    assert "Traceback" not in result.output
