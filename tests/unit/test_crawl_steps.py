"""The crawl's steps one at a time, against an in-memory CrawlState that logs every write."""

from __future__ import annotations

import socket
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

import httpx

from ingest.crawl import CrawlOutcome, OutletCrawl
from ingest.fetch import Fetcher, FetchPolicy
from ingest.reasons import Reason
from ingest.state import CrawlState, FeedHealth, UrlRecord
from newsflow.outlets import Outlet
from newsflow.settings import Settings
from newsflow.urls import normalize_url, url_id

FEED = "https://news.example/feed.xml"
HTML = {"content-type": "text/html; charset=utf-8"}
T = TypeVar("T")


class MemoryState:
    """Just enough of the crawl state, in memory; ``writes`` lists (method, url, detail)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.clock: Callable[[], float] = lambda: self.now
        self.records: dict[str, UrlRecord] = {}
        self.health: dict[str, FeedHealth] = {}
        self.writes: list[tuple[str, str, str]] = []

    def get(self, url: str) -> UrlRecord | None:
        return self.records.get(normalize_url(url))

    def lookup(self, urls: Iterable[str]) -> dict[str, UrlRecord]:
        found = (self.records.get(normalize_url(url)) for url in urls)
        return {record.url: record for record in found if record is not None}

    def discover(
        self,
        outlet: str,
        items: Iterable[tuple[str, str | None, float | None]],
        *,
        kind: str = "article",
    ) -> set[str]:
        new: set[str] = set()
        for url, title, published in items:
            key = normalize_url(url)
            if key not in self.records:
                self.records[key] = self._record(key, outlet, kind, title, published)
                self.writes.append(("discover", key, kind))
                new.add(key)
        return new

    def sources(self, outlet: str, kind: str) -> list[str]:
        return [r.url for r in self.records.values() if r.outlet == outlet and r.kind == kind]

    def frontier(self, outlet: str, *, limit: int) -> list[UrlRecord]:
        waiting = [
            r
            for r in self.records.values()
            if r.outlet == outlet and r.kind == "article" and r.last_fetched_at is None
        ]
        return waiting[:limit]

    def record_fetch(
        self,
        url: str,
        *,
        outlet: str,
        kind: str,
        status: int | None,
        reason: str,
        etag: str | None = None,
        last_modified: str | None = None,
        content_hash: str | None = None,
        children: Sequence[str] | None = None,
    ) -> int:
        key = normalize_url(url)
        record = self.records.get(key) or self._record(key, outlet, kind, None, None)
        record = replace(record, last_fetched_at=self.now, last_status=status, last_reason=reason)
        if content_hash is not None:
            version = record.version + (content_hash != record.content_hash)
            record = replace(
                record,
                content_hash=content_hash,
                version=version,
                etag=etag,
                last_modified=last_modified,
            )
        elif reason == "not_modified" and etag:
            record = replace(record, etag=etag)
        self.records[key] = record
        self.writes.append(("record_fetch", key, reason))
        return record.version

    def record_poll(
        self,
        url: str,
        *,
        outlet: str,
        kind: str,
        ok: bool,
        new_items: int = 0,
        error: str | None = None,
        poll_bounds: tuple[float, float] | None = None,
    ) -> FeedHealth:
        self.writes.append(("record_poll", normalize_url(url), "ok" if ok else str(error)))
        health = FeedHealth(
            url, outlet, kind, self.now, self.now, None, None, None, 0, 0, 1, error, None
        )
        self.health[normalize_url(url)] = health
        return health

    def get_health(self, url: str) -> FeedHealth | None:
        return self.health.get(normalize_url(url))

    def _record(
        self, url: str, outlet: str, kind: str, title: str | None, published: float | None
    ) -> UrlRecord:
        return UrlRecord(
            url_id=url_id(url),
            url=url,
            outlet=outlet,
            kind=kind,
            first_seen_at=self.now,
            last_fetched_at=None,
            last_status=None,
            last_reason=None,
            etag=None,
            last_modified=None,
            content_hash=None,
            version=0,
            children=None,
            title=title,
            published_at=published,
        )


def rss(*paths: str) -> bytes:
    items = "".join(
        f"<item><title>{p}</title><link>https://news.example{p}</link>"
        f"<pubDate>Mon, 0{n + 1} Jan 2024 10:00:00 GMT</pubDate></item>"
        for n, p in enumerate(paths)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{items}</channel></rss>'.encode()


def site(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/feed.xml":
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"etag": '"v1"'})
        return httpx.Response(200, content=rss("/a/1", "/a/2"), headers={"etag": '"v1"'})
    if path == "/a/busy":
        return httpx.Response(503)
    if path == "/a/gone":
        return httpx.Response(404)
    if path == "/a/slow":
        raise httpx.ReadTimeout("slow", request=request)
    return httpx.Response(200, content=f"<html><p>{path}</p></html>".encode(), headers=HTML)


def resolve(host: str, port: int) -> list[str]:
    if host != "news.example":
        raise socket.gaierror(-2, "Name or service not known")
    return ["93.184.216.34"]  # never contacted: a MockTransport answers


def start(state: CrawlState, *, max_articles: int = 10) -> tuple[OutletCrawl, Fetcher]:
    outlet = Outlet(
        name="news",
        display_name="News",
        homepage="https://news.example/",
        feeds=[FEED],
        max_articles_per_run=max_articles,
    )
    fetcher = Fetcher(
        Settings(),
        transport=httpx.MockTransport(site),
        resolver=resolve,
        sleep=lambda _: None,
    )
    policy = FetchPolicy(user_agent="TestBot/1", politeness_delay=0.0)
    return OutletCrawl(outlet, fetcher, Settings(), policy, state), fetcher


def article(url: str) -> tuple[str, str | None, float | None]:
    return (url, None, None)


def test_reading_a_feed_records_the_document_its_articles_and_the_poll() -> None:
    state = MemoryState()
    crawl, _ = start(state)
    [outcome] = crawl.read_feed(FEED)
    assert (outcome.reason, outcome.detail) == (Reason.FETCHED, "2 items, 2 new")
    assert [item.url for item in crawl.announced.items] == [
        "https://news.example/a/1",
        "https://news.example/a/2",
    ]
    assert state.writes == [
        ("record_fetch", FEED, "fetched"),
        ("discover", "https://news.example/a/1", "article"),
        ("discover", "https://news.example/a/2", "article"),
        ("record_poll", FEED, "ok"),
    ]

    state.writes.clear()
    again, _ = start(state)
    [outcome] = again.read_feed(FEED)
    assert outcome.reason is Reason.NOT_MODIFIED
    assert again.announced.items == []
    assert state.writes == [("record_fetch", FEED, "not_modified"), ("record_poll", FEED, "ok")]


def test_article_failures_worth_retrying_are_left_for_the_next_run() -> None:
    state = MemoryState()
    crawl, _ = start(state)
    urls = [f"https://news.example/a/{name}" for name in ("busy", "gone", "slow")]
    state.discover("news", [article(url) for url in urls])
    state.writes.clear()
    offsite, (items, records) = finish(crawl.choose_candidates())  # the frontier
    assert offsite == [] and [item.url for item in items] == urls
    outcomes = [o for item in items for o in crawl.crawl_article(item, records.get(item.url))]
    assert [(o.url, o.reason, o.status) for o in outcomes] == [
        (urls[0], Reason.HTTP_ERROR, 503),
        (urls[1], Reason.HTTP_ERROR, 404),
        (urls[2], Reason.TIMEOUT, None),
    ]
    assert state.writes == [("record_fetch", urls[1], "http_error")]  # 404: not worth a retry
    assert crawl.budget == 10 - 3


def test_an_article_over_the_budget_is_not_requested() -> None:
    state = MemoryState()
    crawl, fetcher = start(state, max_articles=1)
    crawl.budget = 0
    state.discover("news", [article("https://news.example/a/9")])
    state.writes.clear()
    _, (items, records) = finish(crawl.choose_candidates())
    [outcome] = crawl.crawl_article(items[0], records.get(items[0].url))
    assert (outcome.reason, outcome.detail) == (Reason.OVER_LIMIT, "max_articles_per_run=1")
    assert fetcher.request_log == [] and state.writes == []


def test_a_whole_run_is_its_steps_in_order() -> None:
    state = MemoryState()
    crawl, _ = start(state, max_articles=1)
    outcomes = list(crawl.run())
    assert [(o.kind, o.url, o.reason) for o in outcomes] == [
        ("feed", FEED, Reason.FETCHED),
        ("article", "https://news.example/a/2", Reason.FETCHED),  # newest first
        ("article", "https://news.example/a/1", Reason.OVER_LIMIT),  # left in the frontier
    ]
    assert outcomes[1].page is not None and outcomes[1].version == 1
    assert state.writes[-1] == ("record_fetch", "https://news.example/a/2", "fetched")
    assert state.get("https://news.example/a/1") in state.frontier("news", limit=10)


def finish(step: Generator[CrawlOutcome, None, T]) -> tuple[list[CrawlOutcome], T]:
    """Run a step to its end: the outcomes it yields and what it returns."""
    outcomes: list[CrawlOutcome] = []
    while True:
        try:
            outcomes.append(next(step))
        except StopIteration as done:
            value: T = done.value
            return outcomes, value
