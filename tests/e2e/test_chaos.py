"""The chaos suite's short variant (``python -m bench.chaos --short``) on the test stack.

Real pages flow while each worker is killed, Elasticsearch is frozen and stopped, Kafka is
restarted and poison arrives; then nothing may be lost or indexed twice, no article may name a
missing story, no partition may be wedged, and every worker must be back by itself. It runs
last in the session (tests/conftest.py), since it restarts the services the others use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def test_the_pipeline_holds_under_faults(full_stack: None, corpus_dir: Path) -> None:
    from bench.chaos import run

    report = run(pages=60, hold=5.0, settle=2.0)
    report.print()
    assert report.failures() == []
