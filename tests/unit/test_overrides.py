"""Per-outlet extraction overrides: validated with the registry, applied by extract_page."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from enrich.extract import extract_page
from enrich.worker import EnrichStage, enrich_page
from newsflow.contracts import Article, RawPage
from newsflow.outlets import RegistryError, load_registry
from newsflow.runtime import Done, Inbound
from newsflow.selectors import ExtractionOverrides
from pipeline.cli import app

URL = "https://klaxon.example/news/gull-steals-chips-20261118/"
BODY = " ".join(["The gull returned to the same chip shop every day for a week."] * 3)
PAGE = f"""<!DOCTYPE html><html lang="en"><head><title>GULL! | The Klaxon</title></head>
<body>
<div class="nav"><a href="/">Home</a> <a href="/news">News</a></div>
<div class="main">
  <h1 class="headline">GULL OF SHAME! Bird raids chippy</h1>
  <div class="byline">By <strong>JAMIE COLQUHOUN</strong> and <strong>PRITI SANDHU</strong></div>
  <div class="times">Published: 09:12 GMT, 18 November 2026<br>Updated: 10:00 GMT</div>
  <div class="story">
    <p>{BODY}</p>
    <div class="ad">ADVERTISEMENT</div>
    <p>Staff said the bird had <b>learned</b> the queue.</p>
    <ul><li>First point</li><li>Second point</li></ul>
  </div>
  <div class="related"><h3>MOST READ</h3><p>Other story one</p></div>
</div>
</body></html>"""

OVERRIDES: dict[str, object] = {
    "body": [".story"],
    "drop": [".ad"],
    "title": "h1.headline",
    "authors": ".byline strong",
    "published": "//div[@class='times']/text()[1]",
    "article_pages": "/news/[^/]+-[0-9]{8}/$",
}


def _overrides(**changes: object) -> ExtractionOverrides:
    return ExtractionOverrides.model_validate({**OVERRIDES, **changes})


def test_selectors_win_and_record_their_source() -> None:
    got = extract_page(PAGE, URL, overrides=_overrides())
    assert got.title == "GULL OF SHAME! Bird raids chippy"
    assert got.title_source == "outlet:title"
    assert [a.casefold() for a in got.authors] == ["jamie colquhoun", "priti sandhu"]
    assert got.authors_source == "outlet:authors"
    assert got.published_at is not None
    assert got.published_at.isoformat() == "2026-11-18T09:12:00+00:00"
    assert got.date_source == "outlet:published"
    assert got.body_method == "outlet-selectors"
    assert got.text.splitlines() == [
        BODY,
        "Staff said the bird had learned the queue.",
        "First point",
        "Second point",
    ]
    assert got.is_article is True
    assert got.article_reason == "outlet's article_pages pattern"


def test_without_overrides_the_generic_extractor_runs() -> None:
    got = extract_page(PAGE, URL)
    assert got.body_method.startswith("trafilatura")
    assert got.title_source != "outlet:title"


def test_selectors_that_find_nothing_leave_the_generic_result() -> None:
    redesigned = _overrides(
        body=[".article-body"], title="h1.new-title", authors=".writer", published=".when"
    )
    got = extract_page(PAGE, URL, overrides=redesigned)
    assert got.body_method.startswith("trafilatura")
    assert BODY[:40] in got.text
    assert got.title_source != "outlet:title"
    assert got.date_source != "outlet:published"


def test_article_pages_only_for_matching_urls() -> None:
    got = extract_page(PAGE, "https://klaxon.example/news/", overrides=_overrides())
    assert got.article_reason != "outlet's article_pages pattern"


def test_xpath_attribute_and_iso_date() -> None:
    page = PAGE.replace(
        '<div class="times">', '<div class="times"><time datetime="2026-11-18T08:00:00Z">x</time>'
    )
    got = extract_page(page, URL, overrides=_overrides(published="//div[@class='times']/time"))
    assert got.published_at is not None
    assert got.published_at.isoformat() == "2026-11-18T08:00:00+00:00"


def test_outlet_date_keeps_the_zone_its_text_states() -> None:
    page = PAGE.replace(
        "Published: 09:12 GMT, 18 November 2026", "Published: 00:30 CET, 18 November 2026"
    )
    got = extract_page(page, URL, overrides=_overrides())
    assert got.published_at is not None
    assert got.published_at.isoformat() == "2026-11-18T00:30:00+01:00"
    assert got.published_date is not None and got.published_date.isoformat() == "2026-11-18"


def test_the_tree_is_not_modified_for_the_next_page() -> None:
    overrides = _overrides()
    first = extract_page(PAGE, URL, overrides=overrides)
    second = extract_page(PAGE, URL, overrides=overrides)
    assert first == second


def _registry_file(tmp_path: Path, extraction: dict[str, object]) -> Path:
    entry = {
        "name": "daily-klaxon",
        "display_name": "The Klaxon",
        "homepage": "https://klaxon.example/",
        "feeds": ["https://klaxon.example/feed/"],
        "extraction": extraction,
    }
    path = tmp_path / "outlets.yaml"
    path.write_text(yaml.safe_dump({"outlets": [entry]}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("extraction", "field", "words"),
    [
        ({"title": "h1[class="}, "extraction.title", "not a valid CSS selector"),
        ({"published": "//div[@"}, "extraction.published", "not a valid XPath"),
        ({"body": ["p", ""]}, "extraction.body.1", "empty selector"),
        ({"article_pages": "(unclosed"}, "extraction.article_pages", "regular expression"),
        ({"headline": "h1"}, "extraction.headline", "unknown field"),
    ],
)
def test_bad_selectors_name_the_file_outlet_and_field(
    tmp_path: Path, extraction: dict[str, object], field: str, words: str
) -> None:
    path = _registry_file(tmp_path, extraction)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    [problem] = caught.value.problems
    assert str(path) in problem or path.name in problem
    assert "'daily-klaxon'" in problem
    assert f"'{field}'" in problem
    assert words in problem


def test_worker_applies_the_outlets_selectors_and_records_provenance() -> None:
    from datetime import UTC, datetime

    page = RawPage(
        id="a" * 40,
        url=URL,
        fetched_url=URL,
        outlet="daily-klaxon",
        html=PAGE,
        http_status=200,
        fetched_at=datetime(2026, 11, 18, 10, tzinfo=UTC),
    )
    article = enrich_page(page, _overrides())
    assert article.provenance is not None
    assert article.provenance.body == "outlet-selectors"
    assert article.provenance.title == "outlet:title"
    stage = EnrichStage(output_topic="articles", overrides={"daily-klaxon": _overrides()})
    [result] = stage.process([Inbound("raw", 0, 0, page.id, None, page)])
    assert isinstance(result, Done)
    produced = result.outputs[0].message
    assert isinstance(produced, Article)
    assert produced.provenance == article.provenance
    other = EnrichStage(output_topic="articles", overrides={"someone-else": _overrides()})
    [plain] = other.process([Inbound("raw", 0, 0, page.id, None, page)])
    assert isinstance(plain, Done)
    generic = plain.outputs[0].message
    assert isinstance(generic, Article)
    assert generic.provenance is not None
    assert generic.provenance.body.startswith("trafilatura")


def test_extract_cli_with_outlet(tmp_path: Path) -> None:
    registry = _registry_file(tmp_path, OVERRIDES)
    page = tmp_path / "page.html"
    page.write_text(PAGE, encoding="utf-8")
    args = ["extract", str(page), "--url", URL, "--outlet", "daily-klaxon"]
    result = CliRunner().invoke(app, [*args, "--registry", str(registry)])
    assert result.exit_code == 0, result.output
    assert '"body": "outlet-selectors"' in result.stdout
    unknown = CliRunner().invoke(app, [*args[:-1], "nobody", "--registry", str(registry)])
    assert unknown.exit_code == 2
    assert "unknown outlet" in unknown.output
