"""Feedless outlets against real local HTTP servers on 127.0.0.1: homepage discovery
(``<link rel="alternate">``, robots.txt ``Sitemap:``, common paths, article links),
``rel=canonical`` duplicates, and the shared limiter across two processes.

State is a temporary SQLite file. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ingest.crawl import CrawlOutcome, crawl_outlet
from ingest.fetch import Fetcher, FetchPolicy
from ingest.state import StateStore
from newsflow.outlets import Outlet
from newsflow.settings import Settings

SETTINGS = Settings(revisit_after_hours=24)
Routes = dict[str, tuple[int, str, bytes]]


def _article(title: str, canonical: str | None = None) -> bytes:
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (
        f"<html><head><title>{title}</title>{link}</head>"
        f"<body><h1>{title}</h1><p>Some text.</p></body></html>"
    ).encode()


class Site:
    def __init__(self) -> None:
        self.routes: Routes = {}
        self.hits: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.hits]


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            with state.lock:
                state.hits.append((self.path, time.time()))
            status, ctype, body = state.routes.get(self.path, (404, "text/html", b"missing"))
            etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
            if status == 200 and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if status == 200:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _outlet(base: str, **fields: Any) -> Outlet:
    return Outlet.model_validate(
        {
            "name": "feedless",
            "display_name": "Feedless",
            "homepage": base + "/",
            "discover": True,
            "allow_private_network": True,
            **fields,
        }
    )


def _run(outlet: Outlet, state: StateStore) -> list[CrawlOutcome]:
    policy = FetchPolicy.for_outlet(outlet, SETTINGS, politeness_delay=0.0)
    with Fetcher(SETTINGS, state=state) as fetcher:
        return list(
            crawl_outlet(outlet, fetcher=fetcher, settings=SETTINGS, policy=policy, state=state)
        )


def _by_url(outcomes: list[CrawlOutcome]) -> dict[str, CrawlOutcome]:
    return {o.url: o for o in outcomes}


def test_feedless_outlet_discovers_feed_link_and_robots_sitemap(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    home = (
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/the-feed">'
        b"</head><body>hi</body></html>"
    )
    rss = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<item><title>One</title><link>{base}/a/one</link></item></channel></rss>"
    ).encode()
    sitemap = (
        f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{base}/a/two</loc></url></urlset>"
    ).encode()
    server.routes.update(
        {
            "/": (200, "text/html", home),
            "/robots.txt": (200, "text/plain", f"User-agent: *\nSitemap: {base}/sm.xml\n".encode()),
            "/the-feed": (200, "application/rss+xml", rss),
            "/sm.xml": (200, "application/xml", sitemap),
            "/a/one": (200, "text/html", _article("One")),
            "/a/two": (200, "text/html", _article("Two")),
        }
    )
    state = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    outlet = _outlet(base)
    first = _by_url(_run(outlet, state))
    assert first[base + "/"].kind == "homepage" and first[base + "/"].reason == "fetched"
    assert first[base + "/"].detail == "1 feeds, 1 sitemaps"
    assert first[f"{base}/the-feed"].kind == "feed"
    assert first[f"{base}/sm.xml"].kind == "sitemap"
    assert {u for u, o in first.items() if o.ok and o.kind == "article"} == {
        f"{base}/a/one",
        f"{base}/a/two",
    }
    assert "/feed" not in server.paths()  # nothing probed: the homepage told us
    assert state.sources("feedless", "found_feed") == [f"{base}/the-feed"]
    assert state.sources("feedless", "found_sitemap") == [f"{base}/sm.xml"]

    # Second run: the homepage answers 304, the remembered sources are used.
    before = len(server.paths())
    second = _by_url(_run(outlet, state))
    assert second[base + "/"].reason == "not_modified"
    assert second[f"{base}/the-feed"].reason in ("not_modified", "unchanged")
    assert second[f"{base}/sm.xml"].reason in ("not_modified", "unchanged")
    assert not any(o.ok and o.kind == "article" for o in second.values())
    assert sorted(server.paths()[before:]) == ["/", "/sm.xml", "/the-feed"]


def test_common_paths_are_probed_when_the_homepage_says_nothing(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    rss = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<item><title>One</title><link>{base}/a/one</link></item></channel></rss>"
    ).encode()
    server.routes.update(
        {
            "/": (200, "text/html", b"<html><body>nothing here</body></html>"),
            "/rss.xml": (200, "application/rss+xml", rss),
            "/a/one": (200, "text/html", _article("One")),
        }
    )
    state = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    outcomes = _by_url(_run(_outlet(base), state))
    assert outcomes[f"{base}/rss.xml"].kind == "feed"
    assert outcomes[f"{base}/a/one"].ok
    assert state.sources("feedless", "found_feed") == [f"{base}/rss.xml"]


def test_article_links_are_followed_as_a_last_resort_with_canonical_dedup(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    home = (
        b"<html><body>"
        b'<a href="/2024/harbour-reopens-after-storm">A</a>'
        b'<a href="/2024/harbour-reopens-after-storm-amp">A (AMP)</a>'
        b'<a href="/2024/live/ticker-of-the-day">live</a>'
        b'<a href="/world/">World</a><a href="/about">About</a>'
        b'<a href="https://elsewhere.example/2024/x">off</a>'
        b"</body></html>"
    )
    world = b'<html><body><a href="/2024/bridge-closed-for-repairs">B</a></body></html>'
    canonical = f"{base}/2024/harbour-reopens-after-storm"
    server.routes.update(
        {
            "/": (200, "text/html", home),
            "/world/": (200, "text/html", world),
            "/2024/harbour-reopens-after-storm": (200, "text/html", _article("A", canonical)),
            "/2024/harbour-reopens-after-storm-amp": (200, "text/html", _article("A", canonical)),
            "/2024/bridge-closed-for-repairs": (200, "text/html", _article("B")),
        }
    )
    outlet = _outlet(
        base,
        section_pages=[base + "/world/"],
        article_url_pattern=r"/20\d\d/",
        exclude_url_patterns=["/live/"],
    )
    state = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    outcomes = _run(outlet, state)
    by_url = _by_url(outcomes)
    produced = sorted(o.url for o in outcomes if o.ok and o.kind == "article")
    duplicates = [o for o in outcomes if o.reason == "duplicate"]
    # The two spellings of story A yield one page; B comes from the section page.
    assert len(produced) == 2
    assert f"{base}/2024/bridge-closed-for-repairs" in produced
    assert len(duplicates) == 1
    assert by_url[f"{base}/2024/bridge-closed-for-repairs"].source == base + "/world/"
    assert f"{base}/2024/live/ticker-of-the-day" not in by_url
    assert by_url[base + "/world/"].kind == "homepage"
    # The canonical's id is in the state: a later page pointing at it is a duplicate too.
    record = state.get(canonical)
    assert record is not None and record.last_reason == "fetched"


def test_shared_limiter_spaces_requests_across_processes(
    site: tuple[Site, str], tmp_path: Path
) -> None:
    server, base = site
    server.routes["/doc"] = (200, "text/plain", b"ok")
    interval = 0.4
    script = textwrap.dedent(
        f"""
        from ingest.fetch import Fetcher, FetchPolicy
        from ingest.state import StateStore
        from newsflow.settings import Settings

        settings = Settings(respect_robots_txt=False)
        state = StateStore.from_url({f"sqlite:///{tmp_path / 'shared.db'}"!r})
        policy = FetchPolicy.from_settings(
            settings, politeness_delay={interval}, allow_private_network=True,
            private_hosts=frozenset({{"127.0.0.1"}}),
        )
        with Fetcher(settings, state=state) as fetcher:
            for _ in range(3):
                assert fetcher.fetch_document({base + "/doc"!r}, policy).ok
        """
    )
    StateStore.from_url(f"sqlite:///{tmp_path / 'shared.db'}").engine.dispose()  # schema
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    times = sorted(t for path, t in server.hits if path == "/doc")
    assert len(times) == 6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Starts are reserved `interval` apart; the server sees them with scheduling jitter, so
    # allow slack. Without the shared limiter the two processes would overlap (gaps near 0).
    assert min(gaps) >= interval * 0.7, gaps


def test_in_process_concurrency_cap(site: tuple[Site, str]) -> None:
    server, base = site
    server.routes["/doc"] = (200, "text/plain", b"ok")
    settings = Settings(respect_robots_txt=False)
    policy = FetchPolicy.from_settings(
        settings,
        politeness_delay=0.0,
        max_concurrency=1,
        allow_private_network=True,
        private_hosts=frozenset({"127.0.0.1"}),
    )
    with Fetcher(settings) as fetcher:
        assert not fetcher._slots
        assert fetcher.fetch_document(base + "/doc", policy).ok
        (slot,) = fetcher._slots.values()
        slot.acquire()  # someone else holds the only slot...
        try:
            result = fetcher.fetch_document(base + "/doc", replace(policy, deadline=0.3))
        finally:
            slot.release()
    assert result.reason == "rate_limited"
    assert "in flight" in result.detail
