"""Where the corpus's ground truth, not the extractor, decides the score.

    .venv/bin/python -m bench.truth_conventions

Some choices a page leaves open are settled differently from page to page by the people who
annotated the corpus: the visible ``<h1>`` or the declared (SEO) title, the "Updated" date in
the header or the declared publication date, code blocks in the body or not. This counts, on
the pages where the page offers both readings, how often the truth takes each one, and how
many date failures have a truth day that the page never states. A rule can only follow the
majority of such a split; the minority is the ceiling's share. Metadata is read the way the
extractor reads it (``read_metadata``), without the body, so the run takes about 15 seconds.
"""

from __future__ import annotations

import argparse
import calendar
import copy
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bench.corpus import Page, available, load, title_matches
from enrich.dates import published_at
from enrich.extract import page_title, parse_html
from enrich.metadata import declared_titles, read_metadata
from enrich.pagemeta import PageSignals, read_signals
from newsflow.decoding import decode_html

_MONTHS = [calendar.month_name[m] for m in range(1, 13)]
_INVISIBLE = "//script|//style|//noscript|//head|//template"
MIN_CODE_WORDS = 5


def day_spellings(day: date) -> list[str]:
    """The common ways a page writes a day, lower-cased: ISO, US and European numbers, month
    names long and short."""
    month = _MONTHS[day.month - 1]
    d, m, y = day.day, day.month, day.year
    spellings = [
        day.isoformat(),
        f"{y}/{m:02d}/{d:02d}",
        f"{m}/{d}/{y}",
        f"{m:02d}/{d:02d}/{y}",
        f"{d}/{m}/{y}",
        f"{d:02d}/{m:02d}/{y}",
        f"{d}.{m}.{y}",
        f"{d:02d}.{m:02d}.{y}",
    ]
    for name in (month, month[:3], f"{month[:3]}."):
        spellings += [f"{name} {d}, {y}", f"{name} {d:02d}, {y}", f"{name} {d} {y}"]
        spellings += [f"{d} {name} {y}", f"{d}. {name} {y}"]
    return [s.lower() for s in spellings]


def visible_text(tree: Any) -> str:
    """The page's text as a reader sees it (no scripts, styles or head), on one line."""
    tree = copy.deepcopy(tree)
    for element in tree.xpath(_INVISIBLE):
        element.getparent().remove(element)
    return " ".join(tree.text_content().split()).lower()


@dataclass(slots=True)
class Reading:
    """What the extractor's metadata path makes of one page, with the signals behind it."""

    page: Page
    raw: str
    tree: Any
    signals: PageSignals
    title: str | None
    title_source: str | None
    day: date | None
    visible_day: date | None
    visible_source: str


def read(page: Page) -> Reading:
    raw = decode_html(page.html())
    tree = parse_html(raw)
    signals = read_signals(tree, page.url)
    page_url = signals.canonical_url or page.url
    meta = read_metadata(tree, page_url, signals)
    title = page_title(meta, signals, page_url)
    _, day, _ = published_at(signals, meta.heuristic_date, meta.heuristic_date_source, None)
    source = meta.heuristic_date_source or ""
    visible = meta.heuristic_date if source.startswith("visible") else None
    return Reading(page, raw.lower(), tree, signals, title, meta.title_source, day, visible, source)


# --- titles ---------------------------------------------------------------------------------


def _same_title(a: str, b: str) -> bool:
    return title_matches(a, b) or title_matches(b, a)


def page_titles(signals: PageSignals, tree: Any) -> list[str]:
    """Every title the page offers: its headings and every declared title."""
    headings = [" ".join(" ".join(h.itertext()).split()) for h in tree.iter("h1", "h2")]
    return [t for t in [*headings, *(t for t, _ in declared_titles(signals))] if t]


def title_split(readings: Iterable[Reading]) -> Counter[str]:
    """On pages whose ``<h1>`` headline differs from a title that two or more declarations
    agree on: which one the truth is."""
    counts: Counter[str] = Counter()
    for r in readings:
        truth = r.page.title
        if not truth:
            continue
        counts["pages"] += 1
        counts["ours"] += title_matches(r.title, truth)
        counts["offered"] += any(title_matches(t, truth) for t in page_titles(r.signals, r.tree))
        if r.title_source != "h1" or not r.title:
            continue
        declared = [t for t, _ in declared_titles(r.signals) if not _same_title(t, r.title)]
        agreed = max(
            ([o for o in declared if _same_title(o, t)] for t in declared), key=len, default=[]
        )
        if len(agreed) < 2:
            continue
        counts["split"] += 1
        if title_matches(r.title, truth):
            counts["split: h1"] += 1
        elif title_matches(agreed[0], truth):
            counts["split: declared"] += 1
        else:
            counts["split: neither"] += 1
    return counts


# --- dates ----------------------------------------------------------------------------------


def _near(a: date, b: date) -> bool:
    return abs(a - b) <= timedelta(days=1)


def date_split(readings: Iterable[Reading]) -> Counter[str]:
    """Where a failed truth day is stated (nowhere, only in markup, in the visible text), and
    which date the truth takes where the header shows one day and the page declares another."""
    counts: Counter[str] = Counter()
    for r in readings:
        truth = r.page.published
        if truth is None:
            continue
        counts["pages"] += 1
        counts["ours"] += r.day == truth
        if r.day != truth:
            spellings = day_spellings(truth)
            if any(s in visible_text(r.tree) for s in spellings):
                counts["missed: in the visible text"] += 1
            elif any(s in r.raw for s in spellings):
                counts["missed: only in markup"] += 1
            else:
                counts["missed: nowhere in the page"] += 1
        declared = r.signals.published.value.date() if r.signals.published else None
        if r.visible_day is None or declared is None or _near(declared, r.visible_day):
            continue
        kind = "updated" if r.visible_source.endswith(":updated") else "header"
        counts[f"{kind}: pages"] += 1
        if truth == r.visible_day:
            counts[f"{kind}: truth is the header's"] += 1
        elif truth == declared:
            counts[f"{kind}: truth is the declared"] += 1
        else:
            counts[f"{kind}: neither"] += 1
    return counts


# --- body -----------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def code_split(readings: Iterable[Reading]) -> Counter[str]:
    """WCXB article pages with code blocks (``<pre>``): does the truth keep them?"""
    counts: Counter[str] = Counter()
    for r in readings:
        if r.page.set != "wcxb" or not r.page.body:
            continue
        blocks = [_words(" ".join(e.itertext())) for e in r.tree.iter("pre")]
        blocks = [b for b in blocks if len(b.split()) >= MIN_CODE_WORDS]
        if not blocks:
            continue
        truth = _words(r.page.body)
        kept = sum(b[:60] in truth for b in blocks)
        counts["pages"] += 1
        counts["all kept"] += kept == len(blocks)
        counts["none kept"] += kept == 0
        counts["some kept"] += 0 < kept < len(blocks)
    return counts


# --- report ---------------------------------------------------------------------------------


def article_pages() -> list[Page]:
    pages = [p for p in load("wcxb") if p.page_type == "article"]
    return pages + load("fundus")


def _print(title: str, counts: Counter[str], total: str, keys: Sequence[str]) -> None:
    print(title)
    whole = counts[total]
    for key in keys:
        share = f"{counts[key] / whole:.3f}" if whole else "-"
        print(f"  {key:42} {counts[key]:5}  {share}")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    if not available():
        print("../shared/corpus is absent: nothing to measure", file=sys.stderr)
        return 2
    readings = [read(page) for page in article_pages()]
    titles = title_split(readings)
    _print(
        "title (WCXB articles + fundus)",
        titles,
        "pages",
        ["pages", "ours", "offered", "split", "split: h1", "split: declared", "split: neither"],
    )
    dates = date_split(readings)
    _print(
        "date, day (WCXB articles + fundus)",
        dates,
        "pages",
        [
            "pages",
            "ours",
            "missed: nowhere in the page",
            "missed: only in markup",
            "missed: in the visible text",
            "updated: pages",
            "updated: truth is the header's",
            "updated: truth is the declared",
            "updated: neither",
            "header: pages",
            "header: truth is the header's",
            "header: truth is the declared",
            "header: neither",
        ],
    )
    _print(
        "code blocks (WCXB articles with <pre>)",
        code_split(readings),
        "pages",
        ["pages", "all kept", "none kept", "some kept"],
    )
    print(
        "offered: the truth is one of the page's own <h1>, <h2> or declared titles; split: the "
        "<h1> headline and 2+ agreeing declared titles differ; updated/header: the header "
        "shows an 'Updated' / an unlabelled date more than a day from the declared one"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
