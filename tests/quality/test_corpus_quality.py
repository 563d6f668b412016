"""Quality gate on real pages with ground truth (``../shared/corpus``): a regression fails CI.

Fixed, evenly spread subsets (``bench.corpus.subset``: every k-th page by id), so the run stays
well under a minute on the 2-core machine and the numbers are reproducible. The floors sit a
little under the scores measured on these subsets; the full figures, with trafilatura's beside
them, come from ``python -m bench.extraction --halves``. Scores are printed for the tuning and
the held-out half (``bench.corpus.half``, by site) apart. Skipped when the corpus is absent.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

from bench.corpus import (
    HALVES,
    PRF,
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
from bench.extraction import Outcome, ours
from enrich.dates import published_at
from enrich.extract import parse_html
from enrich.metadata import read_metadata
from enrich.pagemeta import read_signals
from newsflow.decoding import decode_html

pytestmark = pytest.mark.skipif(
    not available(), reason="the shared corpus (../shared/corpus beside the repo) is absent"
)

ZYTE_PAGES = 40
WCXB_ARTICLES = 60
WCXB_OTHERS = 40
FUNDUS_PAGES = 40

# Measured on these subsets (see the module docstring); floors a little under.
ZYTE_MIN_F1 = 0.955  # measured 0.960 (0.964 before standfirsts: Zyte's truth leaves them out)
WCXB_ARTICLE_MIN_F1 = 0.91  # measured 0.922
FUNDUS_MIN_F1 = 0.955  # measured 0.966
MIN_DATE = 0.93  # measured 0.944
MIN_TITLE = 0.89  # measured 0.910
MIN_AUTHORS = 0.82  # measured 0.839
MIN_ARTICLE_PRECISION = 0.75  # measured 0.776 (60 articles, 40 others)
MIN_ARTICLE_RECALL = 0.85  # measured 0.867


@cache
def _extracted(name: str) -> tuple[tuple[Page, Outcome], ...]:
    pages = load(name)
    if name == "zyte":
        chosen = subset(pages, ZYTE_PAGES)
    elif name == "fundus":
        chosen = subset(pages, FUNDUS_PAGES)
    else:
        articles = [p for p in pages if p.page_type == "article" and p.body]
        others = [p for p in pages if p.page_type != "article" and p.body]
        chosen = subset(articles, WCXB_ARTICLES) + subset(others, WCXB_OTHERS)
    return tuple((page, ours(page, page.html())) for page in chosen)


def _scores(pairs: list[tuple[Page, Outcome]], tokens: Callable[[str], Counter[Any]]) -> PRF:
    score = PRF()
    for page, got in pairs:
        score.add(tokens(got.text), tokens(page.body or ""))
    return score


def _halves(pairs: list[tuple[Page, Outcome]]) -> dict[str, list[tuple[Page, Outcome]]]:
    return {part: [(p, o) for p, o in pairs if half(p) == part] for part in HALVES}


def test_zyte_body_shingle_f1() -> None:
    pairs = list(_extracted("zyte"))
    score = _scores(pairs, shingles)
    print(f"zyte P={score.precision:.3f} R={score.recall:.3f} F1={score.f1_of_means:.3f}")
    for part, some in _halves(pairs).items():
        print(f"  [{part}] F1={_scores(some, shingles).f1_of_means:.3f} (n={len(some)})")
    assert score.f1_of_means >= ZYTE_MIN_F1


def test_wcxb_article_body_word_f1() -> None:
    pairs = [(p, o) for p, o in _extracted("wcxb") if p.page_type == "article"]
    score = _scores(pairs, words)
    print(f"wcxb articles word F1={score.mean_f1:.3f}")
    for part, some in _halves(pairs).items():
        print(f"  [{part}] F1={_scores(some, words).mean_f1:.3f} (n={len(some)})")
    assert score.mean_f1 >= WCXB_ARTICLE_MIN_F1


def test_fundus_body_word_f1() -> None:
    pairs = [(p, o) for p, o in _extracted("fundus") if p.body]
    score = _scores(pairs, words)
    print(f"fundus word F1={score.mean_f1:.3f}")
    for part, some in _halves(pairs).items():
        print(f"  [{part}] F1={_scores(some, words).mean_f1:.3f} (n={len(some)})")
    assert score.mean_f1 >= FUNDUS_MIN_F1


def _article_pairs() -> list[tuple[Page, Outcome]]:
    pairs = [*_extracted("fundus"), *_extracted("wcxb")]
    return [(p, o) for p, o in pairs if p.set == "fundus" or p.page_type == "article"]


def test_metadata_floors() -> None:
    pairs = _article_pairs()
    dated = [(p, o) for p, o in pairs if p.published]
    titled = [(p, o) for p, o in pairs if p.title]
    bylined = [(p, o) for p, o in pairs if p.authors]
    day = sum(o.published == p.published for p, o in dated) / len(dated)
    title = sum(title_matches(o.title, p.title or "") for p, o in titled) / len(titled)
    authors = sum(authors_match(o.authors, p.authors or ()) for p, o in bylined) / len(bylined)
    print(f"date {day:.3f} (n={len(dated)}), title {title:.3f}, authors {authors:.3f}")
    for part in HALVES:
        days = [o.published == p.published for p, o in dated if half(p) == part]
        titles = [title_matches(o.title, p.title or "") for p, o in titled if half(p) == part]
        names = [authors_match(o.authors, p.authors or ()) for p, o in bylined if half(p) == part]
        print(
            f"  [{part}] date {sum(days) / len(days):.3f}, title {sum(titles) / len(titles):.3f}"
            f", authors {sum(names) / len(names):.3f}"
        )
    assert day >= MIN_DATE
    assert title >= MIN_TITLE
    assert authors >= MIN_AUTHORS


def test_is_article_precision_and_recall() -> None:
    pairs = _extracted("wcxb")
    tp = sum(bool(o.is_article) and p.page_type == "article" for p, o in pairs)
    fp = sum(bool(o.is_article) and p.page_type != "article" for p, o in pairs)
    fn = sum(not o.is_article and p.page_type == "article" for p, o in pairs)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    print(f"is_article precision {precision:.3f} recall {recall:.3f}")
    assert precision >= MIN_ARTICLE_PRECISION
    assert recall >= MIN_ARTICLE_RECALL


def test_every_field_records_its_method() -> None:
    for _page, got in _extracted("zyte"):
        assert got.method, "body_method must name the backend"


MIN_FUNDUS_DAY = 0.97  # measured 0.991 tuning half, 0.984 held-out half


def _publication_day(page: Page) -> object:
    """The day the extractor's date path gives (metadata only: the body is not needed)."""
    tree = parse_html(decode_html(page.html()))
    signals = read_signals(tree, page.url)
    page_url = signals.canonical_url or page.url
    meta = read_metadata(tree, page_url, signals)
    _, day, _ = published_at(signals, meta.heuristic_date, meta.heuristic_date_source, None)
    return day


def test_publication_day_in_every_fundus_country() -> None:
    """Every fundus page (41 countries, local times and languages): the publication day."""
    right: dict[str, list[bool]] = defaultdict(list)
    countries: dict[str, list[bool]] = defaultdict(list)
    for page in load("fundus"):
        if page.published is None:
            continue
        correct = _publication_day(page) == page.published
        right[half(page)].append(correct)
        countries[str(page.extra.get("country"))].append(correct)
    for part in HALVES:
        share = sum(right[part]) / len(right[part])
        print(f"fundus day [{part}] {share:.3f} (n={len(right[part])})")
    missed = {c: f"{sum(v)}/{len(v)}" for c, v in sorted(countries.items()) if not all(v)}
    print(f"countries {len(countries)}, with misses: {missed}")
    assert len(countries) >= 40
    for part in HALVES:
        assert sum(right[part]) / len(right[part]) >= MIN_FUNDUS_DAY


def test_every_text_field_is_nfc() -> None:
    for name in ("zyte", "fundus", "wcxb"):
        for _page, got in _extracted(name):
            for text in (got.title or "", got.text, *got.authors):
                assert unicodedata.is_normalized("NFC", text)
