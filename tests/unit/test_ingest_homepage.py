"""Homepage discovery parsing, article-link heuristics and the registry's discovery fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ingest.discovery import DiscoveryError, looks_like_article, parse_homepage
from newsflow.outlets import Outlet, RegistryError, load_registry

BASE = "https://www.gazette.example/news/"

PAGE = b"""<!doctype html><html><head>
<link rel="alternate" type="application/rss+xml" href="/rss.xml">
<link rel="Alternate" type="application/atom+xml; charset=utf-8" href="atom.xml">
<link rel="alternate" type="application/feed+json" href="https://www.gazette.example/feed.json">
<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
<link rel="alternate" type="application/rss+xml" href="/rss.xml">
<link rel="canonical" href="/news/">
</head><body>
<a href="/2024/05/01/harbour-reopens-after-storm">Harbour <b>reopens</b></a>
<a href="#top">top</a><a href="javascript:void(0)">js</a><a href="mailto:x@y.example">mail</a>
<a href="https://other.example/story-about-things-here">offsite</a>
<a href="/tag/weather">tag</a>
</body></html>"""


def test_parse_homepage_finds_feeds_canonical_and_links() -> None:
    found = parse_homepage(PAGE, base_url=BASE)
    assert found.feeds == [
        "https://www.gazette.example/rss.xml",
        "https://www.gazette.example/news/atom.xml",
        "https://www.gazette.example/feed.json",
    ]
    assert found.canonical == "https://www.gazette.example/news"  # normalized
    urls = [link.url for link in found.links]
    assert urls == [
        "https://www.gazette.example/2024/05/01/harbour-reopens-after-storm",
        "https://other.example/story-about-things-here",
        "https://www.gazette.example/tag/weather",
    ]
    assert found.links[0].title == "Harbour reopens"


def test_parse_homepage_honours_base_href_and_rejects_empty() -> None:
    page = b'<html><head><base href="https://cdn.gazette.example/x/"></head>'
    page += b'<body><a href="a-b-c">t</a></body></html>'
    assert parse_homepage(page, base_url=BASE).links[0].url == (
        "https://cdn.gazette.example/x/a-b-c"
    )
    with pytest.raises(DiscoveryError):
        parse_homepage(b"  ", base_url=BASE)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://g.example/2024/05/01/harbour-reopens", True),
        ("https://g.example/world/harbour-reopens-after-storm", True),
        ("https://g.example/story.html", True),
        ("https://g.example/a/123456", True),
        ("https://g.example/", False),
        ("https://g.example/world/", False),
        ("https://g.example/tag/harbour-reopens-after-storm", False),
        ("https://g.example/about", False),
        ("https://g.example/img/big-harbour-photo.jpg", False),
    ],
)
def test_looks_like_article(url: str, expected: bool) -> None:
    assert looks_like_article(url) is expected


def test_looks_like_article_never_counts_the_given_pages() -> None:
    url = "https://g.example/sections/harbour-and-coast-news"
    assert looks_like_article(url)
    assert not looks_like_article(url, not_these=[url + "?"])


def _outlet(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "gazette",
        "display_name": "Gazette",
        "homepage": "https://www.gazette.example/",
    }
    entry.update(fields)
    return entry


def test_homepage_only_outlet_is_valid_with_discover() -> None:
    outlet = Outlet.model_validate(
        _outlet(
            discover=True,
            section_pages=["https://www.gazette.example/world/"],
            article_url_pattern=r"/20\d{2}/",
            exclude_url_patterns=["/live/"],
        )
    )
    assert outlet.needs_discovery
    assert outlet.is_article_link("https://gazette.example/2024/harbour")
    assert not outlet.is_article_link("https://gazette.example/2024/live/harbour")
    assert not outlet.is_article_link("https://gazette.example/world/harbour")
    assert not outlet.is_article_link("https://elsewhere.example/2024/harbour")
    assert not Outlet.model_validate(
        _outlet(feeds=["https://www.gazette.example/rss"])
    ).needs_discovery


def test_rebased_moves_section_pages() -> None:
    outlet = Outlet.model_validate(
        _outlet(discover=True, section_pages=["https://www.gazette.example/world/"])
    )
    moved = outlet.rebased("http://127.0.0.1:9999/")
    assert moved.section_pages == ["http://127.0.0.1:9999/world/"]


def test_registry_errors_name_file_outlet_and_field(tmp_path: Path) -> None:
    path = tmp_path / "outlets.yaml"
    entries = [
        _outlet(name="no-sources"),
        _outlet(name="bad-regex", discover=True, article_url_pattern="(unclosed"),
        _outlet(name="bad-exclude", discover=True, exclude_url_patterns=["ok", "[z-a]"]),
        _outlet(name="offsite-section", discover=True, section_pages=["https://x.example/a"]),
        _outlet(name="bad-section", discover=True, section_pages=["not a url"]),
        _outlet(name="fine", discover=True),
    ]
    path.write_text(yaml.safe_dump({"outlets": entries}), encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    text = "\n".join(caught.value.problems)
    prefix = f"{path}: outlet "
    assert (
        f"{prefix}'no-sources': needs at least one of 'feeds' or 'sitemaps' "
        "(or 'discover: true' to find them from the homepage)"
    ) in text
    assert (
        f"{prefix}'bad-regex': field 'article_url_pattern': not a valid regular expression" in text
    )
    assert f"{prefix}'bad-exclude': field 'exclude_url_patterns.1': not a valid regular" in text
    assert (
        f"{prefix}'offsite-section': section page https://x.example/a is not on the outlet's"
    ) in text
    assert f"{prefix}'bad-section': field 'section_pages.0': not a valid URL" in text
    assert "'fine'" not in text
    assert len(caught.value.problems) == 5
