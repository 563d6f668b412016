"""The in-process counters behind the ingest metrics."""

from __future__ import annotations

import threading

from ingest.metrics import Counters


def test_inc_get_set_and_labels_order() -> None:
    counters = Counters()
    counters.inc("n_total", outlet="a", reason="fetched")
    counters.inc("n_total", 2, reason="fetched", outlet="a")  # label order does not matter
    counters.set("gauge", 5, outlet="a")
    counters.set("gauge", 3, outlet="a")
    assert counters.get("n_total", outlet="a", reason="fetched") == 3
    assert counters.get("n_total", outlet="b", reason="fetched") == 0
    assert counters.get("gauge", outlet="a") == 3


def test_snapshot_and_prometheus_render_escape_labels() -> None:
    counters = Counters()
    counters.inc("x_total", outlet='we"ird\\n\nme')
    counters.inc("a_total")
    assert counters.snapshot() == [
        {"name": "a_total", "labels": {}, "value": 1.0},
        {"name": "x_total", "labels": {"outlet": 'we"ird\\n\nme'}, "value": 1.0},
    ]
    assert counters.render() == 'a_total{} 1.0\nx_total{outlet="we\\"ird\\\\n\\nme"} 1.0\n'
    counters.reset()
    assert counters.render() == ""
    assert counters.snapshot() == []


def test_concurrent_increments_are_not_lost() -> None:
    counters = Counters()

    def work() -> None:
        for _ in range(1000):
            counters.inc("c_total", outlet="o")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.get("c_total", outlet="o") == 8000
