"""Politeness, safety and state against a local server that misbehaves on purpose.

Traffic goes to 127.0.0.1 only; the address-guard case redirects to 127.0.0.2 (another
loopback address that is not the outlet's host) and checks nothing connected there.
State is a temporary SQLite file (the PostgreSQL path is exercised by the bench and DAGs).
"""

from __future__ import annotations

import gzip
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ingest.crawl import CrawlOutcome, crawl_outlet, summarize
from ingest.fetch import Fetcher, FetchPolicy
from ingest.health import assess
from ingest.state import StateStore
from newsflow.outlets import Outlet
from newsflow.settings import Settings

SETTINGS = Settings(revisit_after_hours=24)


class Hostile:
    """Mutable server behaviour, shared with the handler."""

    def __init__(self) -> None:
        self.article_body = "<html><head><title>A</title></head><body><p>One</p></body></html>"
        self.feed_version = 1
        self.crawl_delay = b""  # e.g. b"Crawl-delay: 1\n"
        self.hits: list[tuple[str, float]] = []
        self.lock = threading.Lock()


def _feed(base: str, version: int) -> bytes:
    items = "".join(
        f"<item><title>Story {i}</title><link>{base}/a/{i}</link></item>"
        for i in range(1, version + 1)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}'
        f"<item><title>Ad</title><link>http://ads.example/buy</link></item>"
        f"<item><title>Private</title><link>{base}/private/secret</link></item>"
        "</channel></rss>"
    ).encode()


def make_handler(state: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes, ctype: str = "text/html", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with state.lock:
                state.hits.append((self.path, time.time()))
            base = f"http://{self.headers['Host']}"
            path = self.path
            if path == "/robots.txt":
                self.send(
                    200,
                    b"User-agent: *\nDisallow: /private/\n" + state.crawl_delay + b""
                    b"Sitemap: " + base.encode() + b"/sitemap.xml\n",
                    "text/plain",
                )
            elif path == "/feed.xml":  # ETag never changes, content does
                self.send(
                    200, _feed(base, state.feed_version), "application/rss+xml", ETag='"stuck"'
                )
            elif path.startswith("/a/"):
                body = state.article_body.encode()
                if self.headers.get("If-None-Match") == '"a1"' and path == "/a/1":
                    self.send(304, b"", ETag='"a1"')
                else:
                    self.send(200, body, "text/html; charset=utf-8")
            elif path == "/429":
                self.send(429, b"slow down", Retry_After="120")
            elif path == "/never-ending":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    for _ in range(100):
                        self.wfile.write(b"<p>")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass
            elif path == "/bomb":
                self.send(
                    200, gzip.compress(b"<html>" + b"\0" * 20_000_000), Content_Encoding="gzip"
                )
            elif path == "/big":
                self.send(200, b"<html>" + b"x" * 3_000_000 + b"</html>")
            elif path.startswith("/loop"):
                self.send(302, b"", Location="/loop" + str(len(path)))
            elif path == "/guarded":
                self.send(302, b"", Location=self.server.canary_url)  # type: ignore[attr-defined]
            elif path == "/laughs.xml":
                self.send(
                    200,
                    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><rss><channel>&b;</channel></rss>',
                    "application/xml",
                )
            elif path == "/xxe.xml":
                self.send(
                    200,
                    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM '
                    b'"file:///etc/passwd">]><rss><channel><item><link>&x;</link></item>'
                    b"</channel></rss>",
                    "application/xml",
                )
            elif path == "/malformed.xml":
                self.send(200, b"<rss><channel><item><link>oops</channel>", "application/xml")
            elif path == "/doc.pdf":
                self.send(200, b"%PDF-1.4 binary", "application/pdf")
            elif path == "/bad-encoding":
                self.send(200, b"<html>\xff\xfe\x00\x00\x00binary\x00", "text/html; charset=utf-8")
            else:
                self.send(404, b"<html>404</html>")

    return Handler


@pytest.fixture
def hostile() -> Iterator[tuple[str, Hostile, socket.socket]]:
    canary = socket.socket()
    try:
        canary.bind(("127.0.0.2", 0))
    except OSError:
        canary.close()
        pytest.skip("127.0.0.2 is not bindable here")
    canary.listen(5)
    canary.settimeout(0.2)
    behaviour = Hostile()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(behaviour))
    server.daemon_threads = True
    server.canary_url = f"http://127.0.0.2:{canary.getsockname()[1]}/x"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour, canary
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        canary.close()


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    return StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")


def outlet_for(base: str, **extra: Any) -> Outlet:
    return Outlet(
        name="hostile",
        display_name="Hostile",
        homepage=f"{base}/",
        feeds=[f"{base}/feed.xml"],
        allow_private_network=True,
        **extra,
    )


def policy(outlet: Outlet, **overrides: Any) -> FetchPolicy:
    values: dict[str, Any] = {
        "politeness_delay": 0.0,
        "deadline": 2.0,
        "read_timeout": 1.0,
        "max_bytes": 1_000_000,
        **overrides,
    }
    return FetchPolicy.for_outlet(outlet, SETTINGS, **values)


def test_each_misbehaviour_gets_a_clear_reason(
    hostile: tuple[str, Hostile, socket.socket], state: StateStore
) -> None:
    base, _, canary = hostile
    outlet = outlet_for(base)
    p = policy(outlet, max_wait=5.0)
    with Fetcher(SETTINGS, state=state) as fetcher:
        got = {
            name: fetcher.fetch_page(f"{base}{path}", p)
            for name, path in [
                ("robots", "/private/secret"),
                ("never", "/never-ending"),
                ("bomb", "/bomb"),
                ("big", "/big"),
                ("loop", "/loop"),
                ("guarded", "/guarded"),
                ("pdf", "/doc.pdf"),
                ("encoding", "/bad-encoding"),
            ]
        }
        limited = fetcher.fetch_page(f"{base}/429", p)
        after = fetcher.fetch_page(f"{base}/a/1", p)  # the host is backing off for 120 s
    reasons = {name: r.reason for name, r in got.items()}
    assert reasons == {
        "robots": "robots_disallowed",
        "never": "timeout",
        "bomb": "too_large",
        "big": "too_large",
        "loop": "too_many_redirects",
        "guarded": "blocked_address",
        "pdf": "not_html",
        "encoding": "bad_encoding",
    }
    assert "127.0.0.2" in got["guarded"].detail
    with pytest.raises((TimeoutError, OSError)):
        canary.accept()  # nothing ever connected to the guarded address
    assert (limited.reason, limited.status) == ("rate_limited", 429)
    assert "120" in limited.detail
    assert after.reason == "rate_limited" and after.status is None  # not even sent


def test_robots_crawl_delay_spaces_requests(
    hostile: tuple[str, Hostile, socket.socket], state: StateStore
) -> None:
    base, behaviour, _ = hostile
    behaviour.crawl_delay = b"Crawl-delay: 1\n"
    outlet = outlet_for(base)
    with Fetcher(SETTINGS, state=state) as fetcher:
        for i in range(4):
            assert fetcher.fetch_page(f"{base}/a/{i}", policy(outlet)).ok
        assert fetcher.robots_sitemaps(f"{base}/", policy(outlet)) == [f"{base}/sitemap.xml"]
    times = [t for path, t in behaviour.hits if path.startswith("/a/")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Crawl-delay: 1. Slots are reserved 1 s apart; the server sees them with scheduling jitter
    # on a loaded machine, so allow some slack (a missing delay would give gaps near 0).
    assert min(gaps) >= 0.7, gaps
    assert [p for p, _ in behaviour.hits].count("/robots.txt") == 1  # cached


def test_hostile_xml_feeds_are_parse_errors_and_the_crawl_goes_on(
    hostile: tuple[str, Hostile, socket.socket], state: StateStore
) -> None:
    base, _, _ = hostile
    outlet = outlet_for(base).model_copy(
        update={
            "feeds": [
                f"{base}/laughs.xml",
                f"{base}/xxe.xml",
                f"{base}/malformed.xml",
                f"{base}/feed.xml",
            ]
        }
    )
    with Fetcher(SETTINGS, state=state) as fetcher:
        outcomes = list(
            crawl_outlet(
                outlet, fetcher=fetcher, settings=SETTINGS, state=state, policy=policy(outlet)
            )
        )
    feeds = [(o.url.rsplit("/", 1)[1], o.reason) for o in outcomes if o.kind == "feed"]
    assert feeds == [
        ("laughs.xml", "parse_error"),
        ("xxe.xml", "parse_error"),
        ("malformed.xml", "parse_error"),
        ("feed.xml", "fetched"),
    ]
    articles = {
        o.url.rsplit("/", 2)[-2] + "/" + o.url.rsplit("/", 1)[1]: o.reason
        for o in outcomes
        if o.kind == "article"
    }
    assert articles["a/1"] == "fetched"
    assert articles["private/secret"] == "robots_disallowed"
    assert "ads.example" in str([o.url for o in outcomes if o.reason == "offsite"])
    health = state.get_health(f"{base}/malformed.xml")
    assert health is not None and health.consecutive_errors == 1


def test_reruns_neither_refetch_nor_reproduce_and_changes_are_new_versions(
    hostile: tuple[str, Hostile, socket.socket], state: StateStore
) -> None:
    base, behaviour, _ = hostile
    outlet = outlet_for(base)

    def run(settings: Settings = SETTINGS) -> list[CrawlOutcome]:
        with Fetcher(settings, state=state) as fetcher:
            return list(
                crawl_outlet(
                    outlet, fetcher=fetcher, settings=settings, state=state, policy=policy(outlet)
                )
            )

    first = run()
    assert summarize(first)["fetched"] == 1
    behaviour.hits.clear()
    second = run()
    # The ETag is stuck ("stuck") but the body is the same: unchanged; the article is seen.
    assert [(o.kind, o.reason) for o in second if o.kind == "feed"] == [("feed", "unchanged")]
    assert summarize(second)["fetched"] == 0
    assert not [p for p, _ in behaviour.hits if p.startswith("/a/")]  # no re-fetch

    # The feed changes under the same ETag: the body hash notices; only the new item is fetched.
    behaviour.feed_version = 2
    third = run()
    assert [o.reason for o in third if o.kind == "feed"] == ["fetched"]
    assert [o.url.rsplit("/", 1)[1] for o in third if o.ok and o.kind == "article"] == ["2"]

    # Past the revisit interval, articles the (changed) feed lists are fetched again: a
    # changed body is produced as the next version, an identical one is "unchanged".
    behaviour.article_body = behaviour.article_body.replace("One", "Two")
    behaviour.feed_version = 3
    revisit = Settings(revisit_after_hours=0)
    fourth = run(revisit)
    by_url = {o.url.rsplit("/", 1)[1]: o for o in fourth if o.kind == "article"}
    assert (by_url["1"].reason, by_url["1"].version) == ("fetched", 2)
    assert (by_url["2"].reason, by_url["2"].version) == ("fetched", 2)
    assert (by_url["3"].reason, by_url["3"].version) == ("fetched", 1)
    behaviour.feed_version = 4
    fifth = run(revisit)
    by_url = {o.url.rsplit("/", 1)[1]: o for o in fifth if o.kind == "article"}
    assert [by_url[k].reason for k in "123"] == ["unchanged"] * 3
    assert all(by_url[k].page is None for k in "123")
    assert by_url["4"].reason == "fetched"


def test_feed_health_reports_failing_and_silent_feeds(state: StateStore) -> None:
    settings = Settings(feed_max_consecutive_errors=2, feed_min_silence_hours=1)
    url = "http://127.0.0.1:1/feed.xml"
    for _ in range(2):
        health = state.record_poll(url, outlet="o", kind="feed", ok=False, error="timeout: x")
    assert [p.code for p in assess(health, settings, now=health.first_polled_at)] == ["failing"]
    ok = state.record_poll(url, outlet="o", kind="feed", ok=True, new_items=1)
    assert assess(ok, settings, now=ok.last_attempt_at) == []
    later = (ok.last_new_item_at or 0) + 2 * 3600
    assert [p.code for p in assess(ok, settings, now=later)] == ["silent"]
