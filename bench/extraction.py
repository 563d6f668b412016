"""Extraction benchmark: ours (``enrich.extract.extract_page``) against plain trafilatura.

    .venv/bin/python -m bench.extraction [--sets zyte,wcxb,fundus] [--limit N] [--halves]

For each corpus set and metric it prints the project's score, trafilatura's score in the same
run, and documents per second for both. Baseline: ``trafilatura.extract(html)`` with default
settings for body text (and throughput); ``trafilatura.metadata.extract_metadata`` for title,
author and date. ``--halves`` scores the tuning half and the held-out half of each set apart
(``bench.corpus.half``: by site), so that a gain found on one can be checked on the other.
Both run in this one process, page by page, interleaved, timed in CPU seconds of this process
(``time.process_time``), so that other work on the shared machine does not count: compare the
ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bench.corpus import (
    HALVES,
    PRF,
    SETS,
    Page,
    authors_match,
    available,
    half,
    load,
    shingles,
    subset,
    title_matches,
    words,
)
from bench.progress import progress
from enrich.extract import Extraction, ExtractionError, extract_page

# Issue 4's targets, shown next to the scores.
TARGETS = {
    ("zyte", "body shingle F1"): 0.965,
    ("wcxb", "body word F1 [article]"): 0.950,
    ("wcxb+fundus", "date (day)"): 0.95,
    ("wcxb+fundus", "title"): 0.95,
    ("wcxb+fundus", "authors"): 0.85,
}
MIN_SPEED_RATIO = 0.8
WARM_UP_PAGES = 3


@dataclass(slots=True)
class Outcome:
    """What one extractor produced for one page."""

    text: str = ""
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    published: date | None = None
    is_article: bool | None = None
    method: str = ""


@dataclass(slots=True)
class Run:
    pages: list[Page]
    ours: list[Outcome]
    theirs: list[Outcome]
    ours_seconds: float
    theirs_seconds: float


def ours(page: Page, html: bytes) -> Outcome:
    try:
        got: Extraction = extract_page(html, page.url)
    except ExtractionError as exc:
        return Outcome(method=f"error:{exc.reason}", is_article=False)
    return Outcome(
        text=got.text,
        title=got.title,
        authors=list(got.authors),
        published=got.published_date,
        is_article=got.is_article,
        method=got.body_method,
    )


def trafilatura_body(html: bytes) -> str:
    import trafilatura

    return trafilatura.extract(html) or ""


def trafilatura_metadata(page: Page, html: bytes) -> Outcome:
    from trafilatura.metadata import extract_metadata

    try:
        meta = extract_metadata(html, default_url=page.url)
    except Exception:
        return Outcome()
    published = None
    if meta.date:
        try:
            published = date.fromisoformat(str(meta.date)[:10])
        except ValueError:
            published = None
    author = str(meta.author) if meta.author else ""
    return Outcome(
        title=meta.title,
        authors=[a.strip() for a in author.split(";") if a.strip()],
        published=published,
    )


def run(pages: Sequence[Page], *, baseline: bool = True, metadata: bool = True) -> Run:
    """Extract every page with both extractors, interleaved, timing each one's calls only."""
    mine: list[Outcome] = []
    theirs: list[Outcome] = []
    t_ours = t_theirs = 0.0
    # Warm-up, not timed: imports, the language model, and the caches a long-running worker
    # fills once (htmldate's month names, jusText's stop lists), for both extractors.
    from htmldate.extractors import month_words
    from trafilatura.external import jt_stoplist_init

    jt_stoplist_init()
    month_words()
    for page in pages[:WARM_UP_PAGES]:
        html = page.html()
        ours(page, html)
        if baseline:
            trafilatura_body(html)
    for page in progress(pages, f"{pages[0].set if pages else ''} pages"):
        html = page.html()
        if baseline:
            started = time.process_time()
            text = trafilatura_body(html)
            t_theirs += time.process_time() - started
            outcome = trafilatura_metadata(page, html) if metadata else Outcome()
            outcome.text = text
            theirs.append(outcome)
        started = time.process_time()
        mine.append(ours(page, html))
        t_ours += time.process_time() - started
    return Run(list(pages), mine, theirs, t_ours, t_theirs)


def halves(result: Run) -> dict[str, Run]:
    """The run's pages split into the tuning and the held-out half (scores only, no times)."""
    parts: dict[str, Run] = {}
    for name in HALVES:
        indexes = [i for i, page in enumerate(result.pages) if half(page) == name]
        parts[name] = Run(
            pages=[result.pages[i] for i in indexes],
            ours=[result.ours[i] for i in indexes],
            theirs=[result.theirs[i] for i in indexes] if result.theirs else [],
            ours_seconds=0.0,
            theirs_seconds=0.0,
        )
    return parts


def dump(result: Run, path: str) -> None:
    """Each page's outcome, one JSON object a line, for comparing two runs page by page."""
    import json
    from pathlib import Path

    with Path(path).open("a", encoding="utf-8") as out:
        for page, outcome in zip(result.pages, result.ours, strict=True):
            record = {
                "set": page.set,
                "id": page.id,
                "half": half(page),
                "title": outcome.title,
                "authors": outcome.authors,
                "published": outcome.published.isoformat() if outcome.published else None,
                "method": outcome.method,
                "text": outcome.text,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


# --- scoring --------------------------------------------------------------------------------

Row = tuple[str, str, int, float, float | None]  # set, metric, n, ours, theirs


def _body_scores(
    name: str, metric: str, result: Run, tokenize: Callable[[str], Counter[Any]], mean_f1: bool
) -> list[Row]:
    rows = []
    groups: dict[str, list[int]] = {}
    for i, page in enumerate(result.pages):
        if page.body is None or not page.body.strip():
            continue
        if page.set == "wcxb":
            groups.setdefault(page.page_type or "?", []).append(i)
        else:
            groups.setdefault("", []).append(i)
    for group, indexes in sorted(groups.items(), key=lambda kv: (kv[0] != "article", kv[0])):
        a, b = PRF(), PRF()
        for i in indexes:
            truth = tokenize(result.pages[i].body or "")
            a.add(tokenize(result.ours[i].text), truth)
            if result.theirs:
                b.add(tokenize(result.theirs[i].text), truth)
        label = f"{metric} [{group}]" if group else metric
        score: Callable[[PRF], float] = (
            (lambda s: s.mean_f1) if mean_f1 else (lambda s: s.f1_of_means)
        )
        rows.append((name, label, a.n, score(a), score(b) if result.theirs else None))
        if not mean_f1:
            rows.append((name, "  precision", a.n, a.precision, b.precision if b.n else None))
            rows.append((name, "  recall", a.n, a.recall, b.recall if b.n else None))
    return rows


def body_rows(name: str, result: Run) -> list[Row]:
    if name == "zyte":
        return _body_scores(name, "body shingle F1", result, shingles, mean_f1=False)
    return _body_scores(name, "body word F1", result, words, mean_f1=True)


def metadata_rows(name: str, result: Run) -> list[Row]:
    """Title, date (day) and authors, on the pages whose ground truth states them."""
    rows = []
    articles = [
        i
        for i, p in enumerate(result.pages)
        if p.set != "wcxb" or p.page_type == "article"  # metadata is an article's
    ]
    checks: list[tuple[str, Callable[[Page], bool], Callable[[Outcome, Page], bool]]] = [
        ("date (day)", lambda p: p.published is not None, lambda o, p: o.published == p.published),
        ("title", lambda p: bool(p.title), lambda o, p: title_matches(o.title, p.title or "")),
        (
            "authors",
            lambda p: bool(p.authors),
            lambda o, p: authors_match(o.authors, p.authors or ()),
        ),
    ]
    for metric, has, right in checks:
        indexes = [i for i in articles if has(result.pages[i])]
        if not indexes:
            continue
        mine = sum(right(result.ours[i], result.pages[i]) for i in indexes) / len(indexes)
        theirs = (
            sum(right(result.theirs[i], result.pages[i]) for i in indexes) / len(indexes)
            if result.theirs
            else None
        )
        rows.append((name, metric, len(indexes), mine, theirs))
    return rows


def article_rows(name: str, result: Run) -> list[Row]:
    """Is-article precision and recall against WCXB's page types (article vs the rest)."""
    tp = fp = fn = 0
    for page, outcome in zip(result.pages, result.ours, strict=True):
        truth = page.page_type == "article"
        tp += bool(outcome.is_article and truth)
        fp += bool(outcome.is_article and not truth)
        fn += bool(not outcome.is_article and truth)
    n = len(result.pages)
    return [
        (name, "is_article precision", n, tp / (tp + fp) if tp + fp else 0.0, None),
        (name, "is_article recall", n, tp / (tp + fn) if tp + fn else 0.0, None),
    ]


def speed_rows(name: str, result: Run) -> list[Row]:
    n = len(result.pages)
    mine = n / result.ours_seconds if result.ours_seconds else 0.0
    theirs = n / result.theirs_seconds if result.theirs_seconds else None
    rows: list[Row] = [(name, "docs per CPU second", n, mine, theirs)]
    if theirs:
        rows.append((name, "speed ratio ours/trafilatura", n, mine / theirs, None))
    return rows


def merged_metadata(results: dict[str, Run]) -> list[Row]:
    """The metadata targets are on WCXB articles and fundus together: pool them."""
    pooled = [r for name, r in results.items() if name in ("wcxb", "fundus")]
    if len(pooled) < 2:
        return []
    joined = Run(
        pages=[p for r in pooled for p in r.pages],
        ours=[o for r in pooled for o in r.ours],
        theirs=[o for r in pooled for o in r.theirs] if all(r.theirs for r in pooled) else [],
        ours_seconds=0.0,
        theirs_seconds=0.0,
    )
    return metadata_rows("wcxb+fundus", joined)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(rows: list[Row]) -> None:
    print(f"{'set':<20} {'metric':<34} {'n':>5} {'ours':>8} {'trafil.':>8} {'target':>7}")
    for set_name, metric, n, mine, theirs in rows:
        target = TARGETS.get((set_name.split("/")[0], metric))
        if metric == "speed ratio ours/trafilatura":
            target = MIN_SPEED_RATIO
        mark = "" if target is None else ("  ok" if mine >= target else "  MISS")
        print(
            f"{set_name:<20} {metric:<34} {n:>5} {_fmt(mine):>8} {_fmt(theirs):>8} "
            f"{_fmt(target):>7}{mark}"
        )


def _label(name: str, part: str) -> str:
    return f"{name}/{part}" if part else name


def set_rows(name: str, result: Run, part: str = "") -> list[Row]:
    rows = body_rows(name, result)
    if name != "zyte":
        rows += metadata_rows(name, result)
    if name == "wcxb":
        rows += article_rows(name, result)
    if not part:  # speed is the whole set's: a half's share of the time is not measured
        rows += speed_rows(name, result)
    return [(_label(name, part), *row[1:]) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: zyte,wcxb,fundus")
    parser.add_argument("--limit", type=int, default=None, help="evenly spread subset per set")
    parser.add_argument("--methods", action="store_true", help="print body methods used")
    parser.add_argument("--halves", action="store_true", help="score tune and held-out apart")
    parser.add_argument("--dump", default=None, help="append each page's outcome (JSON lines)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not available():
        print("the shared corpus is absent (expected beside the repository)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = set(names) - set(SETS)
    if unknown:
        parser.error(f"unknown sets: {', '.join(sorted(unknown))}")
    rows: list[Row] = []
    results: dict[str, Run] = {}
    for name in names:
        pages = subset(load(name), args.limit)
        result = run(pages, metadata=name != "zyte")
        results[name] = result
        if args.dump:
            dump(result, args.dump)
        if args.methods:
            print(name, Counter(o.method.split("/")[0] for o in result.ours).most_common())
    scored = {"": results}
    if args.halves:
        scored = {part: {} for part in HALVES}
        for name, result in results.items():
            for part, piece in halves(result).items():
                scored[part][name] = piece
            rows += speed_rows(name, result)
    for part, part_results in scored.items():
        for name, result in part_results.items():
            rows += set_rows(name, result, part)
        rows += [(_label("wcxb+fundus", part), *row[1:]) for row in merged_metadata(part_results)]
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
