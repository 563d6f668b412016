"""Golden files: what extraction yields for every sample outlet's article pages.

The sample outlets (``samples/``) are the project's own pages, rendered in-process here and
extracted with their registry entry's selectors (``samples/outlets.yaml``), as the worker
does; their expected fields live in ``tests/golden/expected/<outlet>.json``. A change in extraction
that alters any field fails here; if the change is intended, regenerate the files with
``NEWSFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devstack.samples.content import Article, Outlet, load_outlets, render_article
from enrich.extract import extract_page
from newsflow.outlets import load_registry
from newsflow.settings import PROJECT_ROOT

EXPECTED = Path(__file__).parent / "expected"
BASE_URL = "http://127.0.0.1:8765"
OUTLETS = load_outlets(include_upcoming=True)  # held-back articles are pages too
REGISTRY = load_registry(PROJECT_ROOT / "samples" / "outlets.yaml")


def _record(outlet: Outlet, article: Article) -> dict[str, Any]:
    url = outlet.url(BASE_URL, article.path)
    html = render_article(outlet, article, BASE_URL).encode(outlet.charset)
    got = extract_page(html, url, overrides=REGISTRY.get(outlet.slug).extraction)
    return {
        "url": url,
        "title": got.title,
        "authors": got.authors,
        "published_at": got.published_at.isoformat() if got.published_at else None,
        "published_date": got.published_date.isoformat() if got.published_date else None,
        "language": got.language,
        "is_article": got.is_article,
        "canonical_url": got.canonical_url,
        "title_source": got.title_source,
        "date_source": got.date_source,
        "authors_source": got.authors_source,
        "body_method": got.body_method.split("/")[0],  # without the library's version
        "text": got.text.splitlines(),
    }


@pytest.mark.parametrize("slug", sorted(OUTLETS))
def test_golden(slug: str) -> None:
    outlet = OUTLETS[slug]
    actual = {a.slug: _record(outlet, a) for a in sorted(outlet.articles, key=lambda a: a.slug)}
    path = EXPECTED / f"{slug}.json"
    if os.environ.get("NEWSFLOW_UPDATE_GOLDEN"):
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n", "utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    # Articles added to the samples since the files were written are covered by the test
    # below until the files are regenerated; a removed one fails here.
    assert set(expected) <= set(actual), f"{slug}: golden articles missing from the samples"
    for article_slug, record in expected.items():
        assert actual[article_slug] == record, f"{slug}/{article_slug} changed"


@pytest.mark.parametrize("slug", sorted(OUTLETS))
def test_sample_articles_extract_what_was_published(slug: str) -> None:
    """Independent of the golden files: the headline, byline, day and every paragraph."""
    outlet = OUTLETS[slug]
    for article in outlet.articles:
        record = _record(outlet, article)
        assert record["title"] == article.headline
        if outlet.jsonld or outlet.opengraph:  # undeclared short pages: see the golden files
            assert record["is_article"] is True
        assert record["language"] == outlet.language[:2]
        assert record["published_date"] == article.published.date().isoformat()
        text = "\n".join(record["text"])
        missing = [p for p in article.paragraphs if " ".join(p.split()) not in text]
        assert not missing, f"{slug}/{article.slug}: paragraphs lost: {missing[:1]}"
        if article.authors:
            assert {a.casefold() for a in record["authors"]} == {
                a.casefold() for a in article.authors
            }
