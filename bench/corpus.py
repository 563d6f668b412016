"""Readers for the shared evaluation corpus and its standard metrics (see its README).

The corpus sits beside the repository (``<repo>/../shared/corpus``) and is read in place, never
copied. Benchmarks and the quality-gate tests share these readers and metrics, so the numbers
in CI and in the benchmark's output are the same computation.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsflow.contracts import RawPage
from newsflow.decoding import decode_html
from newsflow.settings import PROJECT_ROOT
from newsflow.urls import url_id

CORPUS_DIR = PROJECT_ROOT.parent / "shared" / "corpus"
SETS = ("zyte", "wcxb", "fundus")


@dataclass(frozen=True, slots=True)
class Page:
    """One corpus page with whatever ground truth its set has (``None``: not annotated)."""

    set: str
    id: str
    path: Path
    url: str | None
    body: str | None = None
    title: str | None = None
    authors: tuple[str, ...] | None = None
    published: date | None = None
    page_type: str | None = None  # WCXB only: article, service, forum, listing, ...
    extra: dict[str, Any] = field(default_factory=dict)

    def html(self) -> bytes:
        return gzip.decompress(self.path.read_bytes())


def available(corpus: Path = CORPUS_DIR) -> bool:
    return (corpus / "README.md").is_file()


# --- readers --------------------------------------------------------------------------------


def zyte_pages(corpus: Path = CORPUS_DIR) -> list[Page]:
    root = corpus / "zyte"
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    return [
        Page(
            set="zyte",
            id=page_id,
            path=root / "html" / f"{page_id}.html.gz",
            url=entry.get("url"),
            body=entry.get("articleBody") or "",
        )
        for page_id, entry in sorted(truth.items())
    ]


def _date_of(value: Any) -> date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            return None


def wcxb_pages(corpus: Path = CORPUS_DIR) -> list[Page]:
    root = corpus / "wcxb-dev"
    files = json.loads((root / "metadata.json").read_text(encoding="utf-8"))["files"]
    pages = []
    for page_id in sorted(files):
        info = files[page_id]
        truth_file = root / "ground-truth" / f"{page_id}.json"
        if not truth_file.is_file():
            continue
        record = json.loads(truth_file.read_text(encoding="utf-8"))
        truth = record.get("ground_truth") or {}
        author = truth.get("author")
        pages.append(
            Page(
                set="wcxb",
                id=page_id,
                path=root / "html" / f"{page_id}.html.gz",
                url=record.get("url"),
                body=truth.get("main_content"),
                title=truth.get("title") or None,
                authors=tuple(_split_names(author)) if isinstance(author, str) and author else None,
                published=_date_of(truth.get("publish_date")),
                page_type=info.get("page_type"),
                extra={"domain": info.get("domain") or ""},
            )
        )
    return pages


def _split_names(raw: str) -> list[str]:
    return [part for part in re.split(r"\s*(?:,|;|\band\b|&)\s*", raw) if part.strip()]


def _literal(value: Any) -> Any:
    """Fundus fixtures store some fields as Python literals in strings."""
    if isinstance(value, str) and value[:1] in "[{(":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _fundus_body(body: Any) -> str | None:
    body = _literal(body)
    if not isinstance(body, dict):
        return None
    parts: list[str] = [str(s) for s in body.get("summary") or []]
    for section in body.get("sections") or []:
        parts.extend(str(h) for h in section.get("headline") or [])
        parts.extend(str(p) for p in section.get("paragraphs") or [])
    return "\n".join(parts)


def fundus_pages(corpus: Path = CORPUS_DIR) -> list[Page]:
    root = corpus / "fundus-fixtures" / "test_data"
    pages = []
    for country in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_file = country / "meta.info"
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        for expected_file in sorted(country.glob("*.json")):
            outlet = expected_file.stem
            expected = json.loads(expected_file.read_text(encoding="utf-8"))
            htmls = sorted(country.glob(f"{outlet}_*.html.gz"))
            htmls = [
                h
                for h in htmls
                if re.fullmatch(
                    rf"{re.escape(outlet)}_\d{{4}}_\d{{2}}_\d{{2}}", h.name[: -len(".html.gz")]
                )
            ]
            for html_file, key in zip(htmls, list(expected), strict=False):
                fields = expected[key]
                authors = _literal(fields.get("authors"))
                pages.append(
                    Page(
                        set="fundus",
                        id=f"{country.name}/{html_file.name[: -len('.html.gz')]}",
                        path=html_file,
                        url=(meta.get(html_file.name) or {}).get("url"),
                        body=_fundus_body(fields.get("body")),
                        title=fields.get("title") or None,
                        authors=tuple(str(a) for a in authors)
                        if isinstance(authors, list)
                        else None,
                        published=_date_of(fields.get("publishing_date")),
                        extra={"country": country.name},
                    )
                )
    return pages


def load(name: str, corpus: Path = CORPUS_DIR) -> list[Page]:
    readers = {"zyte": zyte_pages, "wcxb": wcxb_pages, "fundus": fundus_pages}
    return readers[name](corpus)


# Tuning looks at one half only; the other is reported, never tuned on.
TUNE, HELD_OUT = "tune", "held-out"
HALVES = (TUNE, HELD_OUT)


def site_of(page: Page) -> str:
    """The site a page comes from: its WCXB domain, its fundus outlet, else its URL's host."""
    if page.set == "fundus":
        return page.id.rsplit("_", 3)[0]
    domain = str(page.extra.get("domain") or "")
    host = urlsplit(page.url).hostname if page.url else None
    return (domain or host or page.id).removeprefix("www.")


def half(page: Page) -> str:
    """The page's half, by its site (a stable hash): a site's pages all fall in one half,
    so the held-out half has only sites that tuning never looked at."""
    return HALVES[zlib.crc32(f"{page.set}:{site_of(page)}".encode()) % 2]


def raw_page(page: Page, url: str, outlet: str) -> RawPage:
    """``page`` as ingest publishes it (decoded as ingest decodes it), fetched at ``url``."""
    return RawPage(
        id=url_id(url),
        url=url,
        fetched_url=url,
        outlet=outlet,
        http_status=200,
        content_type="text/html",
        html=decode_html(page.html()),
    )


def subset(pages: Sequence[Page], limit: int | None) -> list[Page]:
    """A fixed, evenly spread subset (every k-th page by id): deterministic, not cherry-picked."""
    if not limit or limit >= len(pages):
        return list(pages)
    step = len(pages) / limit
    return [pages[int(i * step)] for i in range(limit)]


# --- body metrics ---------------------------------------------------------------------------


def canonical(text: str) -> str:
    """The text in NFC: canonically equivalent spellings (a precomposed "ü" and "u" with a
    combining diaeresis) are one word, in the truth as in the extraction."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def shingles(text: str, size: int = 4) -> Counter[tuple[str, ...]]:
    words = canonical(text).lower().split()
    return Counter(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


@dataclass(slots=True)
class PRF:
    """Per-page precision and recall; ``f1`` is the harmonic mean of the averages (Zyte's way)."""

    precisions: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    f1s: list[float] = field(default_factory=list)

    def add(self, predicted: Counter[Any], expected: Counter[Any]) -> None:
        matched = sum((predicted & expected).values())
        n_pred, n_true = sum(predicted.values()), sum(expected.values())
        p = matched / n_pred if n_pred else float(not n_true)
        r = matched / n_true if n_true else 1.0
        self.precisions.append(p)
        self.recalls.append(r)
        self.f1s.append(2 * p * r / (p + r) if p + r else 0.0)

    @property
    def n(self) -> int:
        return len(self.precisions)

    @property
    def precision(self) -> float:
        return sum(self.precisions) / self.n if self.n else 0.0

    @property
    def recall(self) -> float:
        return sum(self.recalls) / self.n if self.n else 0.0

    @property
    def f1_of_means(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def mean_f1(self) -> float:
        return sum(self.f1s) / self.n if self.n else 0.0


_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    return Counter(w.lower() for w in _WORD.findall(canonical(text)))


# --- metadata metrics ----------------------------------------------------------------------

_TITLE_SEPARATOR = re.compile(r"\s+(?:[|•·»–—-]|::)\s+")


def _norm_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def title_matches(predicted: str | None, expected: str) -> bool:
    """Equal after normalization (case, punctuation, spacing), a trailing site name allowed
    away: ``"Bridge reopens | Herald"`` matches ``"Bridge reopens"``. The same rule scores
    every extractor."""
    if not predicted:
        return False
    truth = _norm_text(expected)
    if _norm_text(predicted) == truth:
        return True
    parts = _TITLE_SEPARATOR.split(predicted)
    return len(parts) > 1 and any(
        _norm_text(" ".join(parts[:i])) == truth or _norm_text(" ".join(parts[i:])) == truth
        for i in range(1, len(parts))
    )


def _norm_name(name: str) -> str:
    return _norm_text(re.sub(r"^\s*by\s+", "", name, flags=re.IGNORECASE))


def authors_match(predicted: Iterable[str], expected: Iterable[str]) -> bool:
    """Set equality of normalized names (case, punctuation, a leading "By" ignored)."""
    return {_norm_name(a) for a in predicted if _norm_name(a)} == {
        _norm_name(a) for a in expected if _norm_name(a)
    }


def iter_sets(names: Iterable[str], corpus: Path = CORPUS_DIR) -> Iterator[tuple[str, list[Page]]]:
    for name in names:
        yield name, load(name, corpus)
