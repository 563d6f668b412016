"""The pipeline benchmark's pure parts: /proc reading, its figures and its table (the benchmark
itself runs against the local stack: ``python -m bench.pipeline``)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from bench.corpus import available as corpus_available
from bench.pipeline import (
    CLOCK_TICKS,
    Baseline,
    Bucket,
    ProcessTree,
    RoundResult,
    Sample,
    StageFigures,
    WarmUp,
    allocate,
    behind,
    busy_seconds,
    cost_per_bucket,
    dedup_points,
    descendants,
    format_table,
    metric_total,
    parse_stat,
    parse_status_kb,
    rate,
    ratio,
    read_processes,
    round_url,
    select_pages,
    select_warm_up_pages,
    settings_for,
    stage_env,
    stage_figures,
    warmed_up,
    worker_counts,
)
from newsflow.settings import Settings


def stat_line(pid: int, ppid: int, utime: int, stime: int, start: int, comm: str = "python") -> str:
    """A /proc/<pid>/stat line: fields 14, 15 are utime and stime, 22 the start time."""
    fields = ["S", str(ppid), *["0"] * 9, str(utime), str(stime), "7", "8", *["0"] * 4, str(start)]
    return f"{pid} ({comm}) {' '.join(fields)} 0 0\n"


def fake_process(proc: Path, pid: int, ppid: int, cpu: int, start: int, hwm_kb: int) -> None:
    directory = proc / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stat").write_text(stat_line(pid, ppid, cpu, 0, start))
    (directory / "status").write_text(f"Name:\tpython\nVmHWM:\t  {hwm_kb} kB\nVmRSS:\t 10 kB\n")


# --- /proc ----------------------------------------------------------------------------------


def test_stat_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    stat = parse_stat(stat_line(4321, 17, utime=250, stime=40, start=99, comm="a (b) c"))
    assert (stat.pid, stat.ppid, stat.cpu_ticks, stat.start_ticks) == (4321, 17, 290, 99)


def test_status_gives_the_peak_resident_size_or_none() -> None:
    assert parse_status_kb("Name:\tx\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n") == 204800
    assert parse_status_kb("Name:\tx\nVmRSS:\t 1 kB\n", "VmRSS") == 1
    assert parse_status_kb("Name:\tzombie\nState:\tZ\n") is None


def test_a_tree_counts_its_processes_cpu_from_the_mark_and_their_peak_memory(
    tmp_path: Path,
) -> None:
    fake_process(tmp_path, 100, 1, cpu=500, start=10, hwm_kb=80_000)  # the worker
    fake_process(tmp_path, 101, 100, cpu=300, start=11, hwm_kb=150_000)  # its extraction child
    fake_process(tmp_path, 200, 1, cpu=9999, start=12, hwm_kb=1)  # someone else's
    (tmp_path / "self").mkdir()  # not a pid
    tree = ProcessTree("enrich 1", 100, proc=tmp_path)
    tree.update(read_processes(tmp_path))
    tree.mark()

    fake_process(tmp_path, 100, 1, cpu=600, start=10, hwm_kb=90_000)
    fake_process(tmp_path, 101, 100, cpu=450, start=11, hwm_kb=150_000)
    fake_process(tmp_path, 102, 101, cpu=20, start=30, hwm_kb=5_000)  # born after the mark
    table = read_processes(tmp_path)
    assert descendants(100, table) == [101, 102]
    tree.update(table)

    assert tree.cpu_seconds(root=True) == pytest.approx(100 / CLOCK_TICKS)
    assert tree.cpu_seconds(root=False) == pytest.approx((150 + 20) / CLOCK_TICKS)
    assert tree.cpu_seconds() == pytest.approx(270 / CLOCK_TICKS)
    assert tree.peak_kb(root=True) == 90_000
    assert tree.peak_kb(root=False) == 150_000


def test_a_reused_pid_is_another_process(tmp_path: Path) -> None:
    fake_process(tmp_path, 100, 1, cpu=0, start=10, hwm_kb=1)
    fake_process(tmp_path, 101, 100, cpu=700, start=11, hwm_kb=1)
    tree = ProcessTree("enrich 1", 100, proc=tmp_path)
    tree.update(read_processes(tmp_path))
    tree.mark()
    fake_process(tmp_path, 101, 100, cpu=30, start=50, hwm_kb=1)  # died; its pid reused
    tree.update(read_processes(tmp_path))
    assert tree.cpu_seconds(root=False) == pytest.approx(30 / CLOCK_TICKS)


def fake_thread(proc: Path, pid: int, tid: int, cpu: int, comm: str) -> None:
    directory = proc / str(pid) / "task" / str(tid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stat").write_text(stat_line(tid, 1, cpu, 0, 10, comm))


def test_a_jvms_jit_compiler_threads_are_counted_apart_from_the_mark(tmp_path: Path) -> None:
    fake_process(tmp_path, 299, 1, cpu=0, start=9, hwm_kb=1)  # the launcher of the JVM
    fake_process(tmp_path, 300, 299, cpu=1000, start=10, hwm_kb=1)
    fake_thread(tmp_path, 300, 301, 400, "C2 CompilerThre")
    fake_thread(tmp_path, 300, 302, 50, "C1 CompilerThre")
    fake_thread(tmp_path, 300, 303, 500, "elasticsearch[n")
    tree = ProcessTree("elasticsearch", 299, proc=tmp_path, jvm=True)
    tree.update(read_processes(tmp_path))
    tree.mark()
    fake_process(tmp_path, 300, 299, cpu=1300, start=10, hwm_kb=1)
    fake_thread(tmp_path, 300, 301, 600, "C2 CompilerThre")
    fake_thread(tmp_path, 300, 304, 30, "C2 CompilerThre")  # started after the mark
    fake_thread(tmp_path, 300, 303, 570, "elasticsearch[n")
    tree.update(read_processes(tmp_path))
    assert tree.cpu_seconds() == pytest.approx(300 / CLOCK_TICKS)
    assert tree.jit_seconds() == pytest.approx(230 / CLOCK_TICKS)
    assert ProcessTree("enrich", 300, proc=tmp_path).jit_seconds() == 0


# --- figures --------------------------------------------------------------------------------


def test_rates_and_ratios_are_none_without_a_denominator() -> None:
    assert rate(600, 50.0) == 12.0
    assert rate(600, 0.0) is None
    assert rate(600, None) is None
    assert ratio(12.0, 24.0) == 0.5
    assert ratio(None, 24.0) is None
    assert ratio(12.0, None) is None


def test_pages_are_shared_evenly_and_what_a_set_lacks_goes_to_the_others() -> None:
    assert allocate({"zyte": 181, "wcxb": 711}, 600) == {"zyte": 181, "wcxb": 419}
    assert allocate({"zyte": 181, "wcxb": 711}, 20) == {"zyte": 10, "wcxb": 10}
    assert allocate({"zyte": 181, "wcxb": 711}, 21) == {"zyte": 11, "wcxb": 10}
    assert allocate({"zyte": 181, "wcxb": 711}, 5000) == {"zyte": 181, "wcxb": 711}
    assert allocate({"zyte": 0, "wcxb": 3}, 2) == {"zyte": 0, "wcxb": 2}


def test_dedup_cost_is_cpu_at_each_commit_spread_evenly_over_its_articles() -> None:
    points = [(0, 0.0), (0, 0.1), (50, 0.5), (100, 1.2), (100, 1.25), (150, 1.3), (230, 2.0)]
    buckets = cost_per_bucket(points, 100)
    assert [(b.first, b.last) for b in buckets] == [(1, 100), (101, 200), (201, 230)]
    # 200 lies 50 of the 80 articles into the step from (150, 1.3) to (230, 2.0)
    at_200 = 1.3 + 0.7 * 50 / 80
    assert [b.ms_per_article for b in buckets] == pytest.approx(
        [12.0, 1000 * (at_200 - 1.2) / 100, 1000 * (2.0 - at_200) / 30]
    )
    assert cost_per_bucket([(0, 0.0), (0, 0.5)], 100) == []
    assert cost_per_bucket([], 100) == []


EXPOSITION = """\
# HELP newsflow_batch_seconds Time to process and commit one batch.
# TYPE newsflow_batch_seconds histogram
newsflow_batch_seconds_bucket{le="1.0",stage="enrich"} 2.0
newsflow_batch_seconds_bucket{le="+Inf",stage="enrich"} 3.0
newsflow_batch_seconds_count{stage="enrich"} 3.0
newsflow_batch_seconds_sum{stage="enrich"} 7.5
# HELP newsflow_messages_in_total Messages consumed.
# TYPE newsflow_messages_in_total counter
newsflow_messages_in_total{stage="enrich",topic="a"} 100.0
newsflow_messages_in_total{stage="enrich",topic="b"} 20.0
newsflow_messages_in_total{stage="other",topic="a"} 5.0
"""


def test_metrics_are_summed_over_the_samples_with_the_labels_asked() -> None:
    assert metric_total(EXPOSITION, "newsflow_batch_seconds_sum", stage="enrich") == 7.5
    assert metric_total(EXPOSITION, "newsflow_messages_in_total", stage="enrich") == 120.0
    assert metric_total(EXPOSITION, "newsflow_messages_in_total") == 125.0
    later = EXPOSITION.replace("} 7.5", "} 10.0")
    assert busy_seconds("enrich", [(EXPOSITION, later), (EXPOSITION, EXPOSITION)]) == 2.5
    assert busy_seconds("enrich", [(EXPOSITION, None)]) is None


def test_a_round_url_keeps_the_pages_own_path_and_query() -> None:
    fallback = "https://zyte.pipebench.example/p1"
    assert round_url("https://a.example/news/x.html", fallback, "r1") == (
        "https://a.example/news/x.html?pipebench=r1"
    )
    assert round_url("https://a.example/x?id=3#top", fallback, "r1") == (
        "https://a.example/x?id=3&pipebench=r1"
    )
    assert round_url("https://a.example", fallback, "r1") == "https://a.example/?pipebench=r1"
    assert round_url(None, fallback, "r1") == f"{fallback}?pipebench=r1"
    assert round_url("not a url", fallback, "r1") == f"{fallback}?pipebench=r1"


def sample(at: float, committed: dict[str, int], ends: dict[str, int], cpu: float = 0.0) -> Sample:
    return Sample(at - 0.1, at, committed, ends, searchable=0, lettered=0, dedup_cpu=cpu)


SAMPLES = [
    sample(0.0, {"enrich": 3, "dedup": 3}, {"enrich": 3, "dedup": 3}, cpu=5.0),
    sample(1.0, {"enrich": 3, "dedup": 3}, {"enrich": 103, "dedup": 3}, cpu=5.1),
    sample(2.0, {"enrich": 3, "dedup": 3}, {"enrich": 103, "dedup": 53}, cpu=5.1),
    sample(3.0, {"enrich": 53, "dedup": 53}, {"enrich": 103, "dedup": 103}, cpu=5.6),
    sample(4.0, {"enrich": 103, "dedup": 103}, {"enrich": 103, "dedup": 103}, cpu=6.2),
    sample(5.0, {"enrich": 103, "dedup": 103}, {"enrich": 103, "dedup": 103}, cpu=6.2),
]


def test_drain_runs_from_the_first_message_on_the_input_to_the_last_commit() -> None:
    dedup = stage_figures("dedup", SAMPLES, workers=1, busy_seconds=1.0)
    assert (dedup.messages, dedup.window) == (100, 2.0)  # input at 2.0, last commit at 4.0
    assert dedup.drain_rate == 50.0
    assert dedup.service_rate == 100.0
    assert dedup.busy_share == 0.5
    enrich = stage_figures("enrich", SAMPLES, workers=2, busy_seconds=3.0, first_input=0.5)
    assert (enrich.messages, enrich.window, enrich.busy_share) == (100, 3.5, 3.0 / 7.0)
    idle = stage_figures("dedup", SAMPLES[:2], workers=1, busy_seconds=None)
    assert (idle.messages, idle.window, idle.drain_rate, idle.busy_share) == (0, None, None, None)


def test_dedup_points_start_when_enrichs_first_output_arrives() -> None:
    assert dedup_points(SAMPLES) == [
        (0, 0.0),
        (0, 0.0),
        (50, pytest.approx(0.5)),
        (100, pytest.approx(1.1)),
        (100, pytest.approx(1.1)),
    ]


def test_behind_names_the_first_stage_with_uncommitted_input() -> None:
    message = behind(("enrich", "dedup"), SAMPLES[0], SAMPLES[2], pages=100, silent=181)
    assert message.startswith("enrich is behind (nothing progressed for 181 s)")
    assert "enrich: committed 0 of the 100 messages on its input" in message
    assert "dedup: committed 0 of the 50 messages on its input" in message
    done = behind(("enrich", "dedup"), SAMPLES[0], SAMPLES[-1], pages=100, silent=200)
    assert done.startswith("every stage committed all of its input, yet 100 page(s)")


def test_a_round_gets_topics_index_and_state_of_its_own() -> None:
    env = stage_env("pipebench-abc-e2", Path("/tmp/state"), extract_processes=2)
    settings = settings_for(Settings(), env)
    assert settings.topic_raw_pages == "pipebench-abc-e2.raw-pages.v1"
    assert settings.topic_articles == "pipebench-abc-e2.articles.v1"
    assert settings.topic_deduped_articles == "pipebench-abc-e2.deduped-articles.v1"
    assert settings.topic_dead_letters == "pipebench-abc-e2.dead-letters.v1"
    assert settings.index_prefix == "pipebench-abc-e2"
    assert settings.dedup_state_dir == Path("/tmp/state")
    assert settings.enrich_extract_processes == 2
    assert "NEWSFLOW_ENRICH_EXTRACT_PROCESSES" not in stage_env("t", Path("s"), None)


def test_worker_counts_are_a_list_of_positive_numbers() -> None:
    assert worker_counts("1,2") == [1, 2]
    assert worker_counts("2") == [2]
    for bad in ("", "0,1", "one"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_counts(bad)


def test_the_table_sets_each_round_beside_plain_trafilatura() -> None:
    baselines = [
        Baseline("trafilatura.extract (default settings)", 600, 25.0, 24.0, 3),
        Baseline("extract_page (the enrich stage's own)", 600, 30.0, 29.0, 0),
    ]
    result = RoundResult(
        enrich_workers=2,
        pages=600,
        seconds=50.0,
        searchable=598,
        letters=Counter({"empty_text": 2}),
        produce_seconds=4.0,
        stages={"enrich": StageFigures(600, 40.0, 2, 50.0)},
        cpu={"enrich workers": 12.0, "extraction processes": 30.0},
        other_cpu={"kafka": 6.0},
        peak_mb={"enrich worker": 210.4},
        idle_cpu_ms_per_s={"enrich": 3.0},
        dedup_buckets=[Bucket(1, 100, 12.04)],
        enrich_split=[400.0, 200.0],
        warm_up=WarmUp(400, 0.84),
    )
    table = format_table(baselines, [result])
    assert "24.0" in table  # trafilatura's docs/s
    lines = {line.strip().split("  ")[0]: line for line in table.splitlines()}
    assert lines["end to end docs/s"].endswith("12.0")
    assert lines["× plain trafilatura"].endswith("0.50×")
    assert lines["searchable / dead-lettered"].endswith("598 / 2")
    assert lines["enrich: service msg/s per busy worker (busy)"].endswith("15.0 (40%)")
    assert lines["enrich: messages per worker"].endswith("400 / 200")
    assert lines["all the workers"].endswith("42.0 (70)")
    assert lines["articles 1–100"].endswith("12.0")
    assert lines["warm-up pages (JVMs' JIT ms/page, last batch)"].endswith("400 (0.8)")
    assert "dead letters with 2 enrich worker(s): empty_text 2" in table

    # plain trafilatura measured again just before the round: the ratio is to that one
    again = Baseline("trafilatura.extract (default settings)", 600, 30.0, 29.0, 3)
    table = format_table(baselines, [result], [again])
    lines = {line.strip().split("  ")[0]: line for line in table.splitlines()}
    assert lines["× plain trafilatura"].endswith("0.60×")
    assert lines["plain trafilatura docs/s, just before"].endswith("20.0")
    # a failed round has its reference measured but no column
    assert format_table(baselines, [result], [again, baselines[0]]) == table


def test_warm_up_goes_on_while_the_jvms_compile_more_than_the_limit() -> None:
    assert not warmed_up(2.6, 200, 1.0)  # 13 ms a page: a JVM just started
    assert warmed_up(0.2, 200, 1.0)
    assert warmed_up(0.1, 100, 1.0)  # exactly the limit
    assert not warmed_up(0.0, 0, 1.0)  # an empty batch says nothing


def test_extract_cli_bench_shares_pages_evenly_and_passes_on_what_a_set_lacks() -> None:
    from bench.extract_cli import shares

    assert shares([181, 1358, 500], 600) == [181, 209, 210]
    assert shares([1000, 1000], 601) == [300, 301]
    assert shares([10, 5], 100) == [10, 5]


@pytest.mark.skipif(not corpus_available(), reason="the shared corpus (../shared/corpus) is absent")
def test_warm_up_pages_are_real_pages_no_round_measures() -> None:
    measured = {(p.set, p.id) for p in select_pages(["zyte", "wcxb"], 600)}
    warm_up = select_warm_up_pages(50)
    assert len(warm_up) == 50
    assert {p.set for p in warm_up} == {"wcxb"}
    assert not measured & {(p.set, p.id) for p in warm_up}
    assert all(p.html for p in warm_up)
