"""Whole-process extraction cost: ``newsflow extract --manifest`` against a plain trafilatura
process over the same pages, start-up included.

    .venv/bin/python -m bench.extract_cli [--pages 600] [--sets zyte,wcxb,fundus] [--repeat 3]

Issue 16 measures extraction speed the way a user of the CLI pays for it: one process over a
manifest of saved pages, interpreter start-up, imports and model loading included. The
baseline is a process of the same shape that reads the same ``.html.gz`` files and calls
``trafilatura.extract`` (default settings, text only) on each, printing one JSON line per page.
Both run as children of this process, one after the other, ``--repeat`` times; the CPU of each
run is the children's ``utime + stime`` (``resource.getrusage(RUSAGE_CHILDREN)``) before and
after, so other work on a shared machine does not count. Printed: per run CPU seconds, ms per
page and the ratio (trafilatura's CPU ÷ ours: ≥ 0.8 is issue 16's target), the median over the
repeats, and the start-up alone (each command on an empty manifest).

The manifest lists the corpus files in place (``../shared/corpus``: never copied), an even share
of each set in ``--sets`` (WCXB: every page type; a set with fewer pages leaves the rest to the
sets after it, so list the smallest first).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import SETS, available, load, subset

TARGET_RATIO = 0.8  # issue 16: at least 0.8× plain trafilatura's speed

# The baseline's process: what a user of trafilatura's Python API runs over a manifest.
TRAFILATURA_SCRIPT = """
import gzip, json, sys
import trafilatura
for line in open(sys.argv[1], encoding="utf-8"):
    entry = json.loads(line)
    with open(entry["path"], "rb") as handle:
        html = gzip.decompress(handle.read())
    text = trafilatura.extract(html, url=entry.get("url"))
    print(json.dumps({"path": entry["path"], "text": text}, ensure_ascii=False), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    cpu_seconds: float
    lines: int


def shares(sizes: Sequence[int], count: int) -> list[int]:
    """An even share of ``count`` per set; a set with fewer pages leaves the rest to the sets
    after it."""
    taken: list[int] = []
    for position, size in enumerate(sizes):
        share = (count - sum(taken)) // (len(sizes) - position)
        taken.append(max(0, min(share, size)))
    return taken


def write_manifest(target: Path, sets: Sequence[str], count: int) -> int:
    """The manifest of ``count`` corpus pages (:func:`shares`); returns how many."""
    found = [load(name) for name in sets]
    pages = [
        page
        for pages_of_set, share in zip(found, shares([len(f) for f in found], count), strict=True)
        for page in subset(pages_of_set, share)
    ]
    with target.open("w", encoding="utf-8") as out:
        for page in pages:
            out.write(json.dumps({"path": str(page.path), "url": page.url}) + "\n")
    return len(pages)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(name: str, command: Sequence[str]) -> Run:
    """One whole process; its CPU (start-up, imports, every page) and its output lines."""
    before = children_cpu()
    done = subprocess.run(command, capture_output=True, check=False)
    cpu = children_cpu() - before
    if done.returncode not in (0, 1):  # 1: some page failed, which is an outcome, not a crash
        sys.stderr.write(done.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{name} exited with {done.returncode}")
    return Run(name, cpu, done.stdout.count(b"\n"))


def commands(manifest: Path) -> dict[str, list[str]]:
    newsflow = Path(sys.executable).with_name("newsflow")
    return {
        "newsflow extract --manifest": [str(newsflow), "extract", "--manifest", str(manifest)],
        "trafilatura.extract process": [sys.executable, "-c", TRAFILATURA_SCRIPT, str(manifest)],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--sets", default=",".join(SETS))  # zyte, the smallest, first
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not available():
        print("the corpus (../shared/corpus) is not here: nothing to measure")
        return 0
    sets = [name.strip() for name in args.sets.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="extract-cli-") as folder:
        manifest = Path(folder) / "pages.jsonl"
        pages = write_manifest(manifest, sets, args.pages)
        empty = Path(folder) / "empty.jsonl"
        empty.write_text("", encoding="utf-8")
        print(f"pages: {pages} ({', '.join(sets)}), {args.repeat} runs of each process")
        start_up = {name: run(name, command) for name, command in commands(empty).items()}
        runs: dict[str, list[Run]] = {name: [] for name in start_up}
        for _ in range(args.repeat):
            for name, command in commands(manifest).items():
                runs[name].append(run(name, command))
    ours_name, theirs_name = list(runs)
    print(f"{'process':34} {'start-up s':>10} {'CPU s (runs)':>24} {'median':>7} {'ms/page':>8}")
    medians: dict[str, float] = {}
    for name, measured in runs.items():
        medians[name] = statistics.median(r.cpu_seconds for r in measured)
        each = " ".join(f"{r.cpu_seconds:.1f}" for r in measured)
        print(
            f"{name:34} {start_up[name].cpu_seconds:10.2f} {each:>24} {medians[name]:7.1f} "
            f"{1000 * medians[name] / pages:8.1f}"
        )
        if any(r.lines != pages for r in measured):
            print(f"  {name}: {[r.lines for r in measured]} lines, not {pages} each")
    ratio = medians[theirs_name] / medians[ours_name]
    verdict = "ok" if ratio >= TARGET_RATIO else "MISS"
    print(
        f"speed ratio, whole processes (trafilatura CPU ÷ ours): {ratio:.3f}  "
        f"target {TARGET_RATIO:.3f} {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
