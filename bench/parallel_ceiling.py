"""How far this machine's cores scale plain trafilatura: the ceiling under any pipeline figure.

    .venv/bin/python -m bench.parallel_ceiling [--pages 600] [--processes 1,2]

The pipeline benchmark compares the whole pipeline, on every core, with plain
``trafilatura.extract`` in one process. What N cores can give is bounded by what N processes
of trafilatura alone give on the same pages: this measures it. For each N, the pages are dealt
round-robin to N processes (``spawn``: fresh interpreters, warmed on one page first), started
together once all are warm; docs/s is pages ÷ wall seconds until the last one is done, and
CPU ms per page the children's own ``process_time``. The ratio to N=1 is the machine's
scaling: a pipeline on N cores with extraction as costly as trafilatura's and nothing else
running cannot beat it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection


def _extract_all(pages: list[bytes], start: Connection, done: Connection) -> None:
    import trafilatura

    trafilatura.extract(pages[0])  # imports and caches, before the clock starts
    done.send("ready")
    start.recv()
    cpu = time.process_time()
    for html in pages:
        trafilatura.extract(html)
    done.send(time.process_time() - cpu)


def run(pages: Sequence[bytes], processes: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (summed over the processes) for ``pages`` on N processes."""
    context = multiprocessing.get_context("spawn")
    shares = [list(pages[i::processes]) for i in range(processes)]
    starts, dones, children = [], [], []
    for share in shares:
        start_parent, start_child = context.Pipe()
        done_parent, done_child = context.Pipe()
        child = context.Process(target=_extract_all, args=(share, start_child, done_child))
        child.start()
        starts.append(start_parent)
        dones.append(done_parent)
        children.append(child)
    for pipe in dones:  # every child imported trafilatura and warmed up
        pipe.recv()
    began = time.perf_counter()
    for pipe in starts:
        pipe.send(True)
    cpu = sum(pipe.recv() for pipe in dones)
    wall = time.perf_counter() - began
    for child in children:
        child.join()
    return wall, cpu


def main(argv: Sequence[str] | None = None) -> int:
    from bench.corpus import available
    from bench.pipeline import select_pages

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args(argv)
    if not available():
        print("the corpus (../shared/corpus) is not here: nothing to measure")
        return 0
    # the pipeline benchmark's pages: 181 Zyte and 419 WCXB article pages at 600
    pages = [page.html.encode() for page in select_pages(["zyte", "wcxb"], args.pages)]
    print(f"pages: {len(pages)}, as bench.pipeline picks them; {multiprocessing.cpu_count()} CPUs")
    print(f"{'processes':>9} {'docs/s':>8} {'× one':>6} {'CPU ms/page':>12}")
    first: float | None = None
    for count in (int(n) for n in args.processes.split(",")):
        wall, cpu = run(pages, count)
        rate = len(pages) / wall
        first = first or rate
        print(f"{count:9d} {rate:8.1f} {rate / first:6.2f} {1000 * cpu / len(pages):12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
