"""Extraction within a budget: what the child processes cost, and what they save.

    .venv/bin/python -m bench.extract_budget [--pages 60] [--processes 2] [--timeout 20]

On the same corpus pages, in one run: documents per second extracted in this process
(``extract_page``), in one child and in N children (the enrich worker's pool, with its budget),
the overhead a child adds per page, and whether every page gave the same extraction as in this
process. Then a page of markup without text (9 MB of nested ``<div><span></span></div>``, made
at run time) goes through the pool: the time until it is failed (``extract_timeout`` when it
runs over the budget) and until the pool is ready for the next page. ``--hostile-in-process``
also times that page without a budget, as the worker used to run it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from bench.corpus import SETS, available, load, subset
from enrich.extract import Extraction, ExtractionError, extract_page
from enrich.sandbox import (
    ExtractionBudget,
    ExtractionPool,
    NotStarted,
    Outcome,
    PageJob,
    warm_up_extraction,
)

BATCH_SIZE = 100  # the worker's default batch
WARM_UP_PAGES = 3
HOSTILE_UNIT = "<div><span></span></div>"


def hostile_page(size_bytes: int) -> str:
    """A page of ``size_bytes`` that is all markup and no text: slow and greedy to extract."""
    return "<html><body>" + HOSTILE_UNIT * (size_bytes // len(HOSTILE_UNIT)) + "</body></html>"


def no_extraction(html: str | bytes, url: str | None, **_: object) -> Extraction:
    """Stands in for the extractor to time the round trip alone (imported by the children)."""
    return Extraction(text="text", is_article=False, article_reason="-", extractor="-")


def in_process(jobs: Sequence[PageJob]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for job in jobs:
        try:
            outcomes.append(extract_page(job.html, job.url))
        except ExtractionError as exc:
            outcomes.append(exc)
    return outcomes


def in_children(pool: ExtractionPool, jobs: Sequence[PageJob]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for start in range(0, len(jobs), BATCH_SIZE):
        outcomes += pool.extract(jobs[start : start + BATCH_SIZE])
    return outcomes


def comparable(outcome: Outcome) -> object:
    if isinstance(outcome, Extraction):
        return outcome
    if isinstance(outcome, ExtractionError):
        return ("extraction_error", outcome.reason, outcome.detail)
    if isinstance(outcome, NotStarted):  # never here: the bench sets no batch time
        return "not_started"
    return ("stage_error", outcome.reason)


def timed(run: Callable[[], list[Outcome]]) -> tuple[list[Outcome], float]:
    started = time.perf_counter()
    outcomes = run()
    return outcomes, time.perf_counter() - started


def corpus_jobs(pages: int) -> list[PageJob]:
    per_set = max(1, pages // len(SETS))
    return [PageJob(page.html(), page.url) for name in SETS for page in subset(load(name), per_set)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=60, help="corpus pages, spread over sets")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per page")
    parser.add_argument("--memory-mb", type=int, default=1024, help="per extraction process")
    parser.add_argument("--hostile-mb", type=float, default=9.0, help="size of the no-text page")
    parser.add_argument("--hostile-in-process", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not available():
        print("the shared corpus is absent (expected beside the repository)", file=sys.stderr)
        return 2
    jobs = corpus_jobs(args.pages)
    n = len(jobs)
    one = ExtractionBudget(args.timeout, args.memory_mb, processes=1)
    many = ExtractionBudget(args.timeout, args.memory_mb, processes=args.processes)

    warm_up_extraction()
    in_process(jobs[:WARM_UP_PAGES])
    with ExtractionPool(one) as single, ExtractionPool(many) as pool:
        for warm in (single, pool):
            warm.extract(jobs[:WARM_UP_PAGES])
        here, t_here = timed(lambda: in_process(jobs))
        child, t_child = timed(lambda: in_children(single, jobs))
        children, t_children = timed(lambda: in_children(pool, jobs))

        print(f"{n} corpus pages ({', '.join(SETS)}), batches of {BATCH_SIZE}")
        print(f"{'extraction':<28} {'docs/s':>8} {'ms/page':>8}")
        for label, seconds in (
            ("in this process", t_here),
            ("1 child process", t_child),
            (f"{args.processes} child processes", t_children),
        ):
            print(f"{label:<28} {n / seconds:>8.1f} {1000 * seconds / n:>8.1f}")
        print(f"overhead of a child: {1000 * (t_child - t_here) / n:+.1f} ms/page")
        with ExtractionPool(one, function=no_extraction, warm_up=None) as echo:
            _, t_echo = timed(lambda: in_children(echo, jobs))
        size = sum(len(job.html) for job in jobs) / n / 1024
        print(f"round trip alone (a {size:.0f} KB page there, fields back): ", end="")
        print(f"{1000 * t_echo / n:.2f} ms/page")
        expected = [comparable(o) for o in here]
        same = sum(
            a == b == c
            for a, b, c in zip(
                expected,
                [comparable(o) for o in child],
                [comparable(o) for o in children],
                strict=True,
            )
        )
        print(f"same outcome in children as in this process: {same}/{n}")

        size = int(args.hostile_mb * 1024 * 1024)
        hostile = PageJob(hostile_page(size), "https://hostile.example/")
        print(f"\nno-text page of {size / 1024 / 1024:.1f} MB, budget {args.timeout:g} s")
        [outcome], seconds = timed(lambda: single.extract([hostile]))
        print(f"  through the pool: {_describe(outcome)} after {seconds:.1f} s")
        _, ready = timed(lambda: single.extract(jobs[:1]))
        print(f"  next page through the pool: {1000 * ready:.0f} ms")
    if args.hostile_in_process:
        [outcome], seconds = timed(lambda: in_process([hostile]))
        print(f"  in this process, no budget: {_describe(outcome)} after {seconds:.1f} s")
    return 0 if same == n else 1


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, Extraction):
        return f"extracted ({len(outcome.text)} characters)"
    if isinstance(outcome, NotStarted):
        return "not started"
    return outcome.reason


if __name__ == "__main__":
    raise SystemExit(main())
