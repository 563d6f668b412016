"""Crawl the bundled sample outlets, served in-process on a free loopback port.

Needs no Kafka, Elasticsearch or Airflow, and sends traffic to 127.0.0.0/8 only.
"""

from __future__ import annotations

import html
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.samples.content import load_outlets
from devstack.samples.site import OUTLETS_FILE, RunningSite, start_server
from ingest.crawl import CrawlOutcome, crawl_outlet, summarize
from ingest.fetch import Fetcher, FetchPolicy
from newsflow.contracts import RawPage, encode
from newsflow.outlets import Outlet, Registry, load_registry
from newsflow.settings import PROJECT_ROOT, Settings
from newsflow.urls import normalize_url, url_id

SETTINGS = Settings()
SEED_CARRIERS = {"kestrel-wire", "northern-ledger", "harbour-gazette"}  # the wire's text
SEED_OWN_COVERAGE = {  # the same event in their own words (story clustering joins them)
    "daily-klaxon/jess-phillips-thousands-of-emails-gaza-vote",
    "backbench-notes/what-the-gaza-ceasefire-rebellion-tells-us-about-the-whip",
    "backbench-notes/a-morning-at-a-yardley-constituency-surgery-after-the-gaza-vote",
}
WIRE_SEED = "kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion"


@pytest.fixture(scope="module")
def site() -> Iterator[RunningSite]:
    with start_server("127.0.0.1", 0) as running:
        yield running


@pytest.fixture(scope="module")
def registry(site: RunningSite) -> Registry:
    return load_registry(OUTLETS_FILE, base_url=site.base_url)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(SETTINGS) as f:
        yield f


def fast(outlet: Outlet, **overrides: object) -> FetchPolicy:
    """No delay; robots.txt off, since these tests use the server's disallowed ``/_test/``."""
    values: dict[str, object] = {"politeness_delay": 0.0, "obey_robots": False, **overrides}
    return FetchPolicy.for_outlet(outlet, SETTINGS, **values)


def crawl(outlet: Outlet, fetcher: Fetcher, seen: set[str] | None = None) -> list[CrawlOutcome]:
    return list(
        crawl_outlet(outlet, fetcher=fetcher, settings=SETTINGS, seen=seen, policy=fast(outlet))
    )


@pytest.fixture(scope="module")
def crawled(registry: Registry) -> dict[str, list[CrawlOutcome]]:
    with Fetcher(SETTINGS) as fetcher:
        return {outlet.name: crawl(outlet, fetcher) for outlet in registry}


def pages(outcomes: list[CrawlOutcome]) -> list[RawPage]:
    return [o.page for o in outcomes if o.page is not None]


# --------------------------------------------------------------------------- the crawl


def test_every_outlet_is_crawled(crawled: dict[str, list[CrawlOutcome]]) -> None:
    assert set(crawled) == {
        "northern-ledger",
        "harbour-gazette",
        "kestrel-wire",
        "daily-klaxon",
        "backbench-notes",
    }
    for name, outcomes in crawled.items():
        summary = summarize(outcomes)
        json.dumps(summary)  # the Airflow task returns it
        assert summary["fetched"] >= 3, (name, summary)
        assert summary["sources"]["failed"] == {}, (name, summary)
        for outcome in outcomes:
            assert (outcome.page is not None) == (outcome.ok and outcome.kind == "article")


def test_pages_are_valid_raw_pages(crawled: dict[str, list[CrawlOutcome]]) -> None:
    for name, outcomes in crawled.items():
        for page in pages(outcomes):
            encode(page)  # validates against the raw-pages contract
            assert page.outlet == name
            assert page.url == normalize_url(page.url)
            assert page.id == url_id(page.url)
            assert page.http_status == 200
            assert page.content_type in ("text/html", "application/xhtml+xml")
            if "/stories/20261021/" not in page.url:  # plain (archive) sitemaps have no titles
                assert page.feed_title
            assert page.feed_published_at is not None
            assert page.feed_published_at.year == 2026
            assert "<html" in page.html.lower()


def test_discovery_details(crawled: dict[str, list[CrawlOutcome]]) -> None:
    # The ledger lists each article in its RSS feed and its news sitemap: fetched once.
    ledger = [o for o in crawled["northern-ledger"] if o.kind == "article"]
    assert len(ledger) == len({o.url for o in ledger}) == 5
    # Kestrel Wire: a sitemap index over a news sitemap and an archive sitemap.
    docs = [o.url.rsplit("/", 2)[-2:] for o in crawled["kestrel-wire"] if o.kind == "sitemap"]
    assert docs == [
        ["kestrel-wire", "sitemap.xml"],
        ["sitemaps", "news.xml"],
        ["sitemaps", "archive.xml"],
    ]
    # The tabloid's feed links carry utm_ parameters; the ids do not.
    for page in pages(crawled["daily-klaxon"]):
        assert "utm_" not in page.url
        assert page.fetched_url.endswith("/")  # redirected to the slash spelling
        assert not page.url.endswith("/")
    # The regional paper serves windows-1252; the pound sign survives decoding.
    wall = [p for p in pages(crawled["harbour-gazette"]) if "harbour-wall" in p.url]
    assert "£4.2m" in wall[0].html


def test_seed_story_text_is_carried_by_three_outlets(
    crawled: dict[str, list[CrawlOutcome]],
) -> None:
    wire = next(
        a for a in load_outlets()["kestrel-wire"].articles if f"kestrel-wire/{a.slug}" == WIRE_SEED
    )
    opening = html.escape(wire.paragraphs[0], quote=True)
    carriers = {
        page.outlet: page
        for outcomes in crawled.values()
        for page in pages(outcomes)
        if opening in page.html
    }
    assert set(carriers) == SEED_CARRIERS
    # Elsewhere the story only appears as a headline in related-links boxes (boilerplate).
    mentions = [p for o in crawled.values() for p in pages(o) if "Jess Phillips" in p.html]
    assert len(mentions) > 3
    for page in carriers.values():
        for paragraph in wire.paragraphs:
            assert html.escape(paragraph, quote=True) in page.html
        for term in ("Jess Phillips", "Gaza", "vote", "Birmingham Yardley", "56 Labour MPs"):
            assert term in page.html
    # Same body, three different pages (templates and headlines).
    assert len({page.url for page in carriers.values()}) == 3
    assert len({page.feed_title for page in carriers.values()}) == 3


def test_seed_story_content_is_shared_only_by_the_syndicated_copies() -> None:
    outlets = load_outlets()
    copies = [
        a
        for o in outlets.values()
        for a in o.articles
        if a.syndicated_from == WIRE_SEED or f"{a.outlet}/{a.slug}" == WIRE_SEED
    ]
    assert {a.outlet for a in copies} == SEED_CARRIERS
    assert len({tuple(a.paragraphs) for a in copies}) == 1
    wire_text = set(copies[0].paragraphs)
    others = [a for o in outlets.values() for a in o.articles if a not in copies]
    own = [a for a in others if f"{a.outlet}/{a.slug}" in SEED_OWN_COVERAGE]
    assert len(own) == len(SEED_OWN_COVERAGE)
    for article in own:  # about the event, in other words: no paragraph of the wire's
        text = " ".join([article.headline, *article.paragraphs])
        assert "Phillips" in text and "Gaza" in text, article.slug
        assert not wire_text & set(article.paragraphs), article.slug
    for article in others:
        if article in own:
            continue
        text = " ".join([article.headline, article.standfirst, *article.paragraphs])
        assert "Phillips" not in text and "Gaza" not in text, article.slug
    for outlet in outlets.values():
        assert 3 <= len(outlet.articles) <= 5


def test_broken_feed_item_is_an_http_error(crawled: dict[str, list[CrawlOutcome]]) -> None:
    [broken] = [o for o in crawled["harbour-gazette"] if not o.ok]
    assert broken.kind == "article"
    assert (broken.reason, broken.status) == ("http_error", 404)
    assert broken.url.endswith("/harbour-gazette/news/ferry-timetable-changes-for-winter.html")
    assert broken.source is not None and broken.source.endswith("atom.xml")
    assert summarize(crawled["harbour-gazette"]) | {"bytes": 0, "elapsed_ms": 0} == {
        "discovered": 5,
        "fetched": 4,
        "skipped": {},
        "failed": {"http_error": 1},
        "sources": {"ok": 1, "failed": {}},
        "bytes": 0,
        "elapsed_ms": 0,
    }


def test_seen_urls_are_skipped_next_run(registry: Registry, fetcher: Fetcher) -> None:
    outlet = registry.get("backbench-notes")
    seen: set[str] = set()
    first = crawl(outlet, fetcher, seen)
    assert len(seen) == 5 and summarize(first)["fetched"] == 5
    second = crawl(outlet, fetcher, seen)
    assert summarize(second)["skipped"] == {"seen": 5}
    assert summarize(second)["fetched"] == 0


def test_failing_sources_do_not_stop_the_crawl(site: RunningSite, fetcher: Fetcher) -> None:
    base = site.base_url
    outlet = Outlet(
        name="troubled",
        display_name="Troubled",
        homepage=f"{base}/northern-ledger/",
        feeds=[
            f"{base}/_test/status/500",
            f"{base}/northern-ledger/",  # HTML, not a feed
            f"{base}/northern-ledger/rss.xml",
        ],
        sitemaps=[f"{base}/northern-ledger/no-such-sitemap.xml"],
        max_articles_per_run=2,
        allow_private_network=True,
    )
    outcomes = crawl(outlet, fetcher)
    sources = [(o.kind, o.reason, o.status) for o in outcomes if o.kind != "article"]
    assert sources == [
        ("feed", "http_error", 500),
        ("feed", "parse_error", 200),
        ("feed", "fetched", 200),
        ("sitemap", "http_error", 404),
    ]
    summary = summarize(outcomes)
    assert summary["fetched"] == 2
    assert summary["skipped"] == {"over_limit": 3}
    assert summary["sources"] == {"ok": 1, "failed": {"http_error": 2, "parse_error": 1}}
    # Newest first: the two most recent ledger stories were fetched.
    fetched = [p.feed_published_at for p in pages(outcomes) if p.feed_published_at is not None]
    assert len(fetched) == 2
    assert fetched == sorted(fetched, reverse=True)


def test_links_off_the_outlets_domains_are_not_fetched(site: RunningSite, fetcher: Fetcher) -> None:
    port = site.port
    outlet = Outlet(
        name="elsewhere",
        display_name="Elsewhere",
        homepage=f"http://localhost:{port}/daily-klaxon/",  # its domain is "localhost"
        feeds=[f"http://127.0.0.1:{port}/daily-klaxon/feed/"],  # links point at 127.0.0.1
        allow_private_network=True,
    )
    outcomes = crawl(outlet, fetcher)
    assert summarize(outcomes)["skipped"] == {"offsite": 5}
    assert summarize(outcomes)["fetched"] == 0


# --------------------------------------------------------------------------- fetch guards


@pytest.fixture
def canary() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.2: any connection attempt would queue up on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError:
        sock.close()
        pytest.skip("127.0.0.2 is not bindable here")
    with sock:
        sock.listen(5)
        sock.settimeout(0.2)
        yield sock


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except (TimeoutError, OSError):
            return count
        conn.close()
        count += 1


def test_redirect_to_another_loopback_address_is_refused(
    site: RunningSite, registry: Registry, fetcher: Fetcher, canary: socket.socket
) -> None:
    outlet = registry.get("kestrel-wire")
    canary_port = canary.getsockname()[1]
    target = f"http://127.0.0.2:{canary_port}/kestrel-wire/"
    url = f"{site.base_url}/_test/redirect?to={target}"
    page = fetcher.fetch_page(url, fast(outlet))
    document = fetcher.fetch_document(url, fast(outlet))
    for result in (page, document):
        assert result.reason == "blocked_address"
        assert result.status == 302
        assert result.final_url == target
        assert "127.0.0.2" in result.detail
    assert connections(canary) == 0  # refused before connecting
    # A redirect within the outlet's own host is fine.
    home = f"{site.base_url}/_test/redirect?to={site.base_url}/kestrel-wire/"
    assert fetcher.fetch_page(home, fast(outlet)).reason == "fetched"
    # The same outlet without allow_private_network may not even reach its own server.
    public = outlet.model_copy(update={"allow_private_network": False})
    assert fetcher.fetch_page(f"{site.base_url}/kestrel-wire/", fast(public)).reason == (
        "blocked_address"
    )


def test_fetch_failures_against_the_real_server(
    site: RunningSite, registry: Registry, fetcher: Fetcher
) -> None:
    outlet = registry.get("harbour-gazette")
    base = f"{site.base_url}/harbour-gazette"
    broken = fetcher.fetch_page(f"{base}/broken.html", fast(outlet))
    assert (broken.reason, broken.status) == ("http_error", 500)
    assert fetcher.fetch_page(f"{base}/media/fact-sheet.pdf", fast(outlet)).reason == "not_html"
    big = fetcher.fetch_page(
        f"{site.base_url}/_test/big?bytes=300000", fast(outlet, max_bytes=100_000)
    )
    assert big.reason == "too_large"
    started = time.monotonic()
    slow = fetcher.fetch_page(
        f"{site.base_url}/_test/slow?seconds=3", fast(outlet, deadline=0.5, read_timeout=0.5)
    )
    assert slow.reason == "timeout"
    assert time.monotonic() - started < 2.5


def test_conditional_get_and_compression(
    site: RunningSite, registry: Registry, fetcher: Fetcher
) -> None:
    outlet = registry.get("northern-ledger")
    url = f"{site.base_url}/northern-ledger/rss.xml"
    first = fetcher.fetch_document(url, fast(outlet))
    assert first.ok and first.body is not None and first.body.startswith(b"<?xml")
    etag = first.headers["etag"]
    again = fetcher.fetch_document(url, fast(outlet, extra_headers={"If-None-Match": etag}))
    assert (again.reason, again.status) == ("not_modified", 304)
    with httpx.Client() as client:  # the server gzips when asked
        raw = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"


# --------------------------------------------------------------------------- the site itself


def test_index_lists_the_outlets(site: RunningSite) -> None:
    with httpx.Client(base_url=site.base_url) as client:
        index = client.get("/")
        assert index.status_code == 200
        for name in (
            "The Northern Ledger",
            "Harbour Gazette",
            "Kestrel Wire",
            "The Daily Klaxon",
            "Backbench Notes",
        ):
            assert name in index.text
        assert client.get("/robots.txt").status_code == 200
        assert client.get("/no-such-outlet/").status_code == 404
        assert client.get("/kestrel-wire").status_code == 301


def test_templates_differ_per_outlet(crawled: dict[str, list[CrawlOutcome]]) -> None:
    markers = {
        "northern-ledger": ("application/ld+json", "og:title"),
        "harbour-gazette": ("og:title", "cookie-notice"),
        "kestrel-wire": ("application/ld+json", "KESTREL WIRE"),
        "daily-klaxon": ("klx-cookie-wall", "ADVERTISEMENT"),
        "backbench-notes": ('"BlogPosting"', "comment-list"),
    }
    for name, (present, also) in markers.items():
        for page in pages(crawled[name]):
            assert present in page.html and also in page.html, (name, page.url)
    for page in pages(crawled["daily-klaxon"]) + pages(crawled["harbour-gazette"]):
        assert "application/ld+json" not in page.html
    for page in pages(crawled["kestrel-wire"]) + pages(crawled["backbench-notes"]):
        assert "og:title" not in page.html


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.samples.site", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        with httpx.Client() as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        output = process.stdout.read().decode()
        process.stdout.close()
    assert f"http://127.0.0.1:{port}" in output
