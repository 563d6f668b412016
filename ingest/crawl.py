"""Crawl one outlet: read its feeds and sitemaps, then fetch the articles they announce.

:func:`crawl_outlet` yields one :class:`CrawlOutcome` per feed/sitemap document and per
article URL, in order, so a caller (the Airflow task) can produce pages to Kafka as they
arrive and log a :func:`summarize` at the end. A failing feed yields an outcome and the crawl
goes on. Nothing here talks to Kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from ingest.discovery import (
    DiscoveredItem,
    DiscoveryError,
    dedupe,
    parse_feed,
    split_onsite,
    walk_sitemaps,
)
from ingest.fetch import Fetcher, FetchPolicy, FetchResult
from ingest.registry import Outlet
from newsflow.contracts import RawPage
from newsflow.settings import Settings
from newsflow.urls import InvalidURLError, normalize_url, url_id

__all__ = [
    "FAILED",
    "SKIPPED",
    "CrawlOutcome",
    "OutcomeKind",
    "crawl_outlet",
    "summarize",
]

OutcomeKind = Literal["feed", "sitemap", "article"]

#: Reasons that mean "deliberately not ingested" rather than "something went wrong".
#: ``seen``: crawled in an earlier run; ``over_limit``: beyond ``max_articles_per_run``.
SKIPPED = frozenset(
    {"seen", "over_limit", "not_modified", "not_html", "offsite", "too_large", "blocked_address"}
)
FAILED = frozenset({"timeout", "too_many_redirects", "bad_encoding", "http_error", "parse_error"})

#: Bounds for sitemap indexes.
SITEMAP_MAX_DEPTH = 3
SITEMAP_MAX_DOCUMENTS = 50


@dataclass(frozen=True)
class CrawlOutcome:
    """What happened to one URL. ``page`` is set exactly when ``reason == "fetched"`` for an
    article."""

    url: str
    status: int | None
    reason: str  # a fetch reason (ingest.fetch.REASONS) or "seen" / "over_limit"
    bytes: int
    elapsed_ms: float
    page: RawPage | None = None
    kind: OutcomeKind = "article"
    detail: str = ""
    source: str | None = None  # the feed/sitemap an article came from

    @property
    def ok(self) -> bool:
        return self.reason == "fetched"


def _from_fetch(
    result: FetchResult,
    kind: OutcomeKind,
    *,
    reason: str | None = None,
    detail: str | None = None,
    page: RawPage | None = None,
    source: str | None = None,
) -> CrawlOutcome:
    return CrawlOutcome(
        url=result.url,
        status=result.status,
        reason=reason or result.reason,
        bytes=result.bytes,
        elapsed_ms=result.elapsed_ms,
        page=page,
        kind=kind,
        detail=result.detail if detail is None else detail,
        source=source,
    )


def _skipped(url: str, reason: str, detail: str = "", source: str | None = None) -> CrawlOutcome:
    return CrawlOutcome(url, None, reason, 0, 0.0, kind="article", detail=detail, source=source)


def _newest_first(items: list[DiscoveredItem]) -> list[DiscoveredItem]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(items, key=lambda item: item.published_at or oldest, reverse=True)


def crawl_outlet(
    outlet: Outlet,
    *,
    fetcher: Fetcher,
    settings: Settings,
    seen: set[str] | None = None,
    policy: FetchPolicy | None = None,
) -> Iterator[CrawlOutcome]:
    """Discover and fetch one outlet's articles, yielding an outcome per URL as it goes.

    ``seen`` holds normalized URLs handled in earlier runs: they are skipped (reason
    ``seen``), and every article fetched now is added to it. ``policy`` overrides the one
    built from ``outlet`` and ``settings`` (tests use it to drop the politeness delay).
    Articles are fetched newest first, at most ``outlet.max_articles_per_run``; the rest are
    reported as ``over_limit`` (still new, so the next run picks them up).
    """
    policy = policy or FetchPolicy.for_outlet(outlet, settings)
    discovered: list[DiscoveredItem] = []
    origin: dict[str, str] = {}  # article URL -> the feed/sitemap that announced it

    for feed_url in outlet.feeds:
        result = fetcher.fetch_document(feed_url, policy)
        if not result.ok or result.body is None:
            yield _from_fetch(result, "feed")
            continue
        try:
            items = parse_feed(result.body, base_url=result.final_url)
        except DiscoveryError as exc:
            yield _from_fetch(result, "feed", reason="parse_error", detail=str(exc))
            continue
        yield _from_fetch(result, "feed", detail=f"{len(items)} items")
        for item in items:
            origin.setdefault(item.url, feed_url)
        discovered.extend(items)

    max_urls = max(outlet.max_articles_per_run * 10, 1000)
    for sitemap_url in outlet.sitemaps:
        fetched: dict[str, FetchResult] = {}
        doc_outcomes: list[CrawlOutcome] = []

        def load(url: str, fetched: dict[str, FetchResult] = fetched) -> bytes | None:
            result = fetcher.fetch_document(url, policy)
            fetched[url] = result
            return result.body if result.ok else None

        walk = walk_sitemaps(
            sitemap_url,
            load,
            max_depth=SITEMAP_MAX_DEPTH,
            max_urls=max_urls,
            max_sitemaps=SITEMAP_MAX_DOCUMENTS,
            follow=outlet.is_onsite,
        )
        failures = {f.url: f for f in walk.failures}
        for url in walk.visited:
            result = fetched[url]
            failure = failures.pop(url, None)
            if failure is not None:
                doc_outcomes.append(
                    _from_fetch(result, "sitemap", reason=failure.reason, detail=failure.detail)
                )
            else:
                doc_outcomes.append(_from_fetch(result, "sitemap"))
        for failure in failures.values():  # children never loaded (too deep / offsite)
            reason = "offsite" if failure.reason == "offsite" else "over_limit"
            doc_outcomes.append(
                CrawlOutcome(
                    failure.url, None, reason, 0, 0.0, kind="sitemap", detail=failure.detail
                )
            )
        yield from doc_outcomes
        for item in walk.items:
            origin.setdefault(item.url, sitemap_url)
        discovered.extend(walk.items)

    items, offsite = split_onsite(dedupe(discovered), outlet.is_onsite)
    for item in offsite:
        yield _skipped(
            item.url, "offsite", "link outside the outlet's domains", origin.get(item.url)
        )

    budget = outlet.max_articles_per_run
    for item in _newest_first(items):
        source = origin.get(item.url)
        if seen is not None and item.url in seen:
            yield _skipped(item.url, "seen", source=source)
            continue
        if budget <= 0:
            limit = f"max_articles_per_run={outlet.max_articles_per_run}"
            yield _skipped(item.url, "over_limit", limit, source)
            continue
        budget -= 1
        result = fetcher.fetch_page(item.url, policy)
        if not result.ok or result.text is None:
            yield _from_fetch(result, "article", source=source)
            continue
        try:
            page = _raw_page(outlet, item, result)
        except (ValidationError, InvalidURLError) as exc:
            yield _from_fetch(
                result, "article", reason="parse_error", detail=str(exc), source=source
            )
            continue
        if seen is not None:
            seen.add(item.url)
        yield _from_fetch(result, "article", page=page, source=source)


def _raw_page(outlet: Outlet, item: DiscoveredItem, result: FetchResult) -> RawPage:
    url = normalize_url(item.url)
    return RawPage(
        id=url_id(url),
        url=url,
        fetched_url=result.final_url,
        outlet=outlet.name,
        http_status=result.status if result.status is not None else 200,
        content_type=result.content_type,
        html=result.text or "",
        feed_title=item.title,
        feed_published_at=item.published_at,
    )


def summarize(outcomes: Iterable[CrawlOutcome]) -> dict[str, Any]:
    """Counts for logs and the task's return value (JSON-serializable).

    ``discovered``: distinct article URLs; ``fetched``: pages produced; ``skipped`` and
    ``failed``: article counts by reason; ``sources``: feed/sitemap documents ok/failed.
    """
    discovered: set[str] = set()
    skipped: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    sources_ok = 0
    sources_failed: Counter[str] = Counter()
    fetched = 0
    total_bytes = 0
    elapsed = 0.0
    for outcome in outcomes:
        total_bytes += outcome.bytes
        elapsed += outcome.elapsed_ms
        if outcome.kind != "article":
            if outcome.ok:
                sources_ok += 1
            else:
                sources_failed[outcome.reason] += 1
            continue
        discovered.add(outcome.url)
        if outcome.ok:
            fetched += 1
        elif outcome.reason in SKIPPED:
            skipped[outcome.reason] += 1
        else:
            failed[outcome.reason] += 1
    return {
        "discovered": len(discovered),
        "fetched": fetched,
        "skipped": dict(sorted(skipped.items())),
        "failed": dict(sorted(failed.items())),
        "sources": {"ok": sources_ok, "failed": dict(sorted(sources_failed.items()))},
        "bytes": total_bytes,
        "elapsed_ms": round(elapsed, 3),
    }
