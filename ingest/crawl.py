"""Crawl one outlet: read its feeds and sitemaps, then fetch the articles they announce.

:func:`crawl_outlet` yields one :class:`CrawlOutcome` per feed/sitemap document and per
article URL, in order, so a caller (the Airflow task, ``newsflow crawl``) can produce pages to
Kafka as they arrive and log a :func:`summarize` at the end. A failing feed yields an outcome
and the crawl goes on. Nothing here talks to Kafka.

With a :class:`~ingest.state.StateStore` the crawl is stateful, so re-runs are cheap and
polite: feeds and sitemaps are fetched with conditional GET and their body hash compared;
every discovered article is remembered (those over the per-run limit stay in the outlet's
frontier for the next run); an article fetched less than ``revisit_after_hours`` ago is not
fetched again; a revisited article whose body hash changed is produced again with the next
``version``. Per-feed health is recorded on every poll.

Every outcome's ``reason`` is an :class:`ingest.reasons.Reason` (stable; they label the
metrics too), which says what each code means: the fetcher's (``fetched``, ``not_modified``,
``timeout``…) and the crawl's own decisions (``unchanged``, ``seen``, ``over_limit``,
``not_due``, ``duplicate``).

The crawl runs in named steps (:class:`OutletCrawl`): find the sources, read each feed and
sitemap, choose the candidate articles, then fetch, check and record each one. It uses the
state only through :class:`~ingest.state.CrawlState`.

Outlets with ``discover: true`` and no feeds/sitemaps (:func:`discover_sources`): the homepage
is fetched (conditional GET) and yields a ``homepage`` outcome; feeds come from its
``<link rel="alternate" type="application/rss+xml|atom+xml|feed+json">``, sitemaps from the
robots.txt ``Sitemap:`` lines; if neither gives anything, the common locations
(:data:`~ingest.discovery.COMMON_FEED_PATHS`, ``COMMON_SITEMAP_PATHS``) are probed. What was
found is remembered in the state (kinds ``found_feed`` / ``found_sitemap``), so an unchanged
homepage (304 or same body hash) costs one request. With no feed or sitemap at all, the
article-like links of the homepage and the outlet's ``section_pages`` are followed (same
site, ``article_url_pattern`` / ``exclude_url_patterns``, else
:func:`~ingest.discovery.looks_like_article`).

``rel=canonical``: an article whose canonical URL differs from the URL fetched is produced
only if that canonical was not produced already (in this run or, with a state, within the
revisit interval); the canonical's URL id is recorded in the state (kind ``canonical``).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from ingest.discovery import (
    COMMON_FEED_PATHS,
    COMMON_SITEMAP_PATHS,
    DiscoveredItem,
    DiscoveryError,
    SitemapDocument,
    SitemapWalk,
    dedupe,
    looks_like_article,
    parse_feed,
    parse_homepage,
    parse_sitemap,
    split_onsite,
    walk_sitemaps,
)
from ingest.fetch import Fetcher, FetchPolicy, FetchResult
from ingest.metrics import METRICS
from ingest.reasons import Disposition, Reason
from ingest.state import CrawlState, UrlRecord
from newsflow.contracts import RawPage
from newsflow.outlets import Outlet
from newsflow.settings import Settings
from newsflow.urls import InvalidURLError, normalize_url, url_id

__all__ = [
    "CrawlOutcome",
    "DiscoveredSources",
    "OutcomeKind",
    "OutletCrawl",
    "crawl_outlet",
    "discover_sources",
    "record_article",
    "summarize",
]

OutcomeKind = Literal["homepage", "feed", "sitemap", "article"]

#: Bounds for sitemap indexes.
SITEMAP_MAX_DEPTH = 3
SITEMAP_MAX_DOCUMENTS = 50
#: A feed is polled when its next_poll_at is at most this many seconds away (schedule jitter).
_POLL_SLACK = 60.0


@dataclass(frozen=True)
class CrawlOutcome:
    """What happened to one URL. ``page`` is set exactly when an article is to be produced
    (reason ``fetched``); ``version`` counts its content versions (1 = first)."""

    url: str
    status: int | None
    reason: Reason
    bytes: int
    elapsed_ms: float
    page: RawPage | None = None
    kind: OutcomeKind = "article"
    detail: str = ""
    source: str | None = None  # the feed/sitemap an article came from
    version: int | None = None
    content_hash: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.FETCHED

    def json_line(self) -> dict[str, Any]:
        """The operator's view (``newsflow crawl --stdout``)."""
        return {
            "url": self.url,
            "kind": self.kind,
            "status": self.status,
            "reason": str(self.reason),
            "bytes": self.bytes,
            "elapsed_ms": self.elapsed_ms,
            "detail": self.detail,
            "source": self.source,
            "version": self.version,
        }


def _from_fetch(
    result: FetchResult,
    kind: OutcomeKind,
    *,
    reason: Reason | None = None,
    detail: str | None = None,
    page: RawPage | None = None,
    source: str | None = None,
    version: int | None = None,
    content_hash: str | None = None,
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
        version=version,
        content_hash=content_hash,
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
    )


def _skipped(
    url: str,
    reason: Reason,
    detail: str = "",
    source: str | None = None,
    kind: OutcomeKind = "article",
) -> CrawlOutcome:
    return CrawlOutcome(url, None, reason, 0, 0.0, kind=kind, detail=detail, source=source)


def _newest_first(items: list[DiscoveredItem]) -> list[DiscoveredItem]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(items, key=lambda item: item.published_at or oldest, reverse=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _poll_bounds(outlet: Outlet) -> tuple[float, float] | None:
    low, high = outlet.min_poll_minutes, outlet.max_poll_minutes
    if low is None and high is None:
        return None
    low_s = 60.0 * (low if low is not None else 1)
    high_s = 60.0 * (high if high is not None else 24 * 60)
    return low_s, max(low_s, high_s)


def crawl_outlet(
    outlet: Outlet,
    *,
    fetcher: Fetcher,
    settings: Settings,
    seen: set[str] | None = None,
    policy: FetchPolicy | None = None,
    state: CrawlState | None = None,
    defer_article_records: bool = False,
) -> Iterator[CrawlOutcome]:
    """Discover and fetch one outlet's articles, yielding an outcome per URL as it goes.

    ``seen`` holds normalized URLs handled in earlier runs of this process: they are skipped
    (reason ``seen``), and every article fetched now is added to it. ``state`` makes the
    crawl persistent and shared (see the module docstring); with ``defer_article_records``
    the caller records produced articles itself with :func:`record_article` once Kafka has
    acknowledged them, so a failed publish is fetched again on retry. ``policy`` overrides
    the one built from ``outlet`` and ``settings`` (tests use it to drop the delays).
    Articles are fetched newest first, at most ``outlet.max_articles_per_run``; the rest are
    reported as ``over_limit`` (still new, so the next run picks them up).
    """
    policy = policy or FetchPolicy.for_outlet(outlet, settings)
    crawl = OutletCrawl(
        outlet,
        fetcher,
        settings,
        policy,
        state,
        seen=seen,
        defer_article_records=defer_article_records,
    )
    for outcome in crawl.run():
        METRICS.urls.labels(outlet.name, outcome.kind, outcome.reason).inc()
        yield outcome


class OutletCrawl:
    """One crawl of one outlet, in the steps :meth:`run` takes in order: find the sources,
    read each feed and sitemap, choose the candidate articles, then fetch, check and record
    each article.

    Why a class: the steps share the run's context (outlet, fetcher, policy, state, the time
    the run started) and what earlier steps found (the articles announced so far), and the
    article step keeps the run's budget and the canonical URLs produced; as attributes, each
    step can be read, and called from a test, on its own.
    """

    def __init__(
        self,
        outlet: Outlet,
        fetcher: Fetcher,
        settings: Settings,
        policy: FetchPolicy,
        state: CrawlState | None,
        *,
        seen: set[str] | None = None,
        defer_article_records: bool = False,
    ) -> None:
        self.outlet = outlet
        self.fetcher = fetcher
        self.policy = policy
        self.state = state
        self.seen = seen
        self.defer_article_records = defer_article_records
        self.poll_bounds = _poll_bounds(outlet)
        self.now = state.clock() if state is not None else time.time()
        self.revisit_seconds = settings.revisit_after_hours * 3600
        self.announced = _Announced()
        self.budget = outlet.max_articles_per_run
        self.canonicals: set[str] = set()  # canonical URLs produced in this run

    def run(self) -> Iterator[CrawlOutcome]:
        """Every outcome of the crawl, in order."""
        feeds, sitemaps = yield from self.find_sources()
        for feed_url in feeds:
            yield from self.read_feed(feed_url)
        for sitemap_url in sitemaps:
            yield from self.read_sitemap(sitemap_url)
        candidates, records = yield from self.choose_candidates()
        for item in _newest_first(candidates):
            yield from self.crawl_article(item, records.get(item.url))

    # ------------------------------------------------------------------ sources

    def find_sources(self) -> Generator[CrawlOutcome, None, tuple[list[str], list[str]]]:
        """The feeds and sitemaps to read: the registry's, or for a ``discover: true`` outlet
        those found from its homepage; when none is found, the article links of the homepage
        and section pages are announced instead (the last resort)."""
        outlet = self.outlet
        if not outlet.needs_discovery:
            return list(outlet.feeds), list(outlet.sitemaps)
        found = DiscoveredSources()
        yield from discover_sources(outlet, self.fetcher, self.policy, self.state, found)
        if not found.feeds and not found.sitemaps:
            self._remember(found.links)
            for link in found.links:
                self.announced.add(link, found.link_sources.get(link.url, outlet.homepage))
        return found.feeds, found.sitemaps

    def read_feed(self, feed_url: str) -> Iterator[CrawlOutcome]:
        """Poll one feed with a conditional GET and compare its body hash with last time's, so
        that an unchanged feed costs one request and announces nothing; its health is recorded
        on every poll."""
        skip = self._not_due(feed_url, "feed")
        if skip is not None:
            yield skip
            return
        record = self.state.get(feed_url) if self.state is not None else None
        headers = record.conditional_headers() if record and record.content_hash else None
        result = self.fetcher.fetch_document(feed_url, self.policy, headers)
        outcome, items, new = self._check_feed(feed_url, record, result)
        self._record_poll(feed_url, "feed", outcome, new)
        yield outcome
        for item in items:
            self.announced.add(item, feed_url)

    def _check_feed(
        self, feed_url: str, record: UrlRecord | None, result: FetchResult
    ) -> tuple[CrawlOutcome, list[DiscoveredItem], int]:
        """The outcome of one feed fetch, the articles it announces and how many of them are
        new; records the document (validators, hash) and its articles in the state."""
        state = self.state
        if result.reason is Reason.NOT_MODIFIED:
            if state is not None:
                _record_not_modified(state, feed_url, self.outlet, "feed", result)
            return _from_fetch(result, "feed"), [], 0
        if not result.ok or result.body is None:
            return _from_fetch(result, "feed"), [], 0
        digest = _sha256(result.body)
        if record is not None and record.content_hash == digest:
            # Stale validators (ETag unchanged or missing) but the same bytes: nothing new.
            if state is not None:
                _record_document(state, self.outlet, "feed", result, digest)
            unchanged = _from_fetch(
                result, "feed", reason=Reason.UNCHANGED, detail="same body hash as last time"
            )
            return unchanged, [], 0
        try:
            items = parse_feed(result.body, base_url=result.final_url)
        except DiscoveryError as exc:
            return _from_fetch(result, "feed", reason=Reason.PARSE_ERROR, detail=str(exc)), [], 0
        if state is not None:
            _record_document(state, self.outlet, "feed", result, digest)
        new = self._remember(items)
        detail = f"{len(items)} items, {new} new"
        return _from_fetch(result, "feed", detail=detail, content_hash=digest), items, new

    def read_sitemap(self, sitemap_url: str) -> Iterator[CrawlOutcome]:
        """Walk one sitemap or sitemap index within bounds, each document with a conditional
        GET; yields an outcome per document, records the root's poll and announces the
        articles found."""
        skip = self._not_due(sitemap_url, "sitemap")
        if skip is not None:
            yield skip
            return
        reader = _SitemapReader(self.outlet, self.fetcher, self.policy, self.state)
        walk = walk_sitemaps(
            sitemap_url,
            reader.load,
            max_depth=SITEMAP_MAX_DEPTH,
            max_urls=max(self.outlet.max_articles_per_run * 10, 1000),
            max_sitemaps=SITEMAP_MAX_DOCUMENTS,
            follow=self.outlet.is_onsite,
            on_parsed=reader.parsed,
        )
        outcomes = reader.outcomes(walk)
        new = self._remember(walk.items)
        if outcomes:
            self._record_poll(sitemap_url, "sitemap", outcomes[0], new)
        yield from outcomes
        for item in walk.items:
            self.announced.add(item, sitemap_url)

    def _not_due(self, url: str, kind: OutcomeKind) -> CrawlOutcome | None:
        """A ``not_due`` outcome for a source that adaptive polling says to leave alone for
        now (only with a state and an outlet with poll bounds), else ``None``."""
        if self.state is None or self.poll_bounds is None:
            return None
        health = self.state.get_health(url)
        if health is None or health.next_poll_at is None:
            return None
        if self.now + _POLL_SLACK >= health.next_poll_at:
            return None
        minutes = (health.next_poll_at - self.now) / 60
        return _skipped(url, Reason.NOT_DUE, f"next poll in {minutes:.0f} min", kind=kind)

    def _remember(self, items: list[DiscoveredItem]) -> int:
        """Store announced articles on the outlet's domains (the frontier, so those this run
        does not fetch are fetched next run); returns how many are new to us."""
        if self.state is None:
            return len(items)
        onsite = [i for i in items if self.outlet.is_onsite(i.url)]
        new = self.state.discover(
            self.outlet.name,
            [
                (i.url, i.title, i.published_at.timestamp() if i.published_at else None)
                for i in onsite
            ],
        )
        return len(new)

    def _record_poll(
        self, url: str, kind: OutcomeKind, outcome: CrawlOutcome, new_items: int = 0
    ) -> None:
        """Feed health: one poll of a feed or sitemap, ok or failed by its reason, and when it
        is due again under adaptive polling."""
        if self.state is None:
            return
        ok = outcome.reason.poll_ok
        error = None if ok else f"{outcome.reason}: {outcome.detail}"
        self.state.record_poll(
            url,
            outlet=self.outlet.name,
            kind=kind,
            ok=ok,
            new_items=new_items,
            error=error,
            poll_bounds=self.poll_bounds,
        )

    # ------------------------------------------------------------------ articles

    def choose_candidates(
        self,
    ) -> Generator[CrawlOutcome, None, tuple[list[DiscoveredItem], dict[str, UrlRecord]]]:
        """The articles this run may fetch: those announced on the outlet's domains (the
        others are reported ``offsite``) plus the frontier earlier runs left, each with its
        record in the state (keyed by URL)."""
        items, offsite = split_onsite(dedupe(self.announced.items), self.outlet.is_onsite)
        for item in offsite:
            source = self.announced.origin.get(item.url)
            yield _skipped(item.url, Reason.OFFSITE, "link outside the outlet's domains", source)
        if self.state is None:
            return items, {}
        known = {item.url for item in items}
        for pending in self.state.frontier(
            self.outlet.name, limit=self.outlet.max_articles_per_run * 2
        ):
            if pending.url not in known:
                published = (
                    datetime.fromtimestamp(pending.published_at, UTC)
                    if pending.published_at is not None
                    else None
                )
                items.append(DiscoveredItem(pending.url, pending.title, published))
                known.add(pending.url)
        return items, self.state.lookup(item.url for item in items)

    def crawl_article(
        self, item: DiscoveredItem, record: UrlRecord | None
    ) -> Iterator[CrawlOutcome]:
        """One candidate article: skipped without a request when it needs none, otherwise
        fetched (conditionally when revisiting) within the run's budget, then checked."""
        source = self.announced.origin.get(item.url)
        skip = self._skip_unfetched(item, record, source)
        if skip is not None:
            yield skip
            return
        self.budget -= 1
        revisiting = record is not None and record.content_hash is not None
        headers = record.conditional_headers() if record is not None and revisiting else None
        result = self.fetcher.fetch_page(item.url, self.policy, headers)
        yield from self._check_article(item, record, source, result)

    def _skip_unfetched(
        self, item: DiscoveredItem, record: UrlRecord | None, source: str | None
    ) -> CrawlOutcome | None:
        """Why an article is not fetched this run (seen in this process, fetched within the
        revisit interval, the canonical of a page produced already, over the budget), or
        ``None`` to fetch it."""
        if self.seen is not None and item.url in self.seen:
            return _skipped(item.url, Reason.SEEN, source=source)
        if record is not None and record.last_fetched_at is not None:
            age = self.now - record.last_fetched_at
            if age < self.revisit_seconds:
                detail = f"fetched {age / 3600:.1f} h ago ({record.last_reason})"
                return _skipped(item.url, Reason.SEEN, detail, source)
        if item.url in self.canonicals:
            detail = "the canonical of a page produced already"
            return _skipped(item.url, Reason.DUPLICATE, detail, source)
        if self.budget <= 0:
            limit = f"max_articles_per_run={self.outlet.max_articles_per_run}"
            return _skipped(item.url, Reason.OVER_LIMIT, limit, source)
        return None

    def _check_article(
        self,
        item: DiscoveredItem,
        record: UrlRecord | None,
        source: str | None,
        result: FetchResult,
    ) -> Iterator[CrawlOutcome]:
        """Judge a fetched article: failed, unchanged, a duplicate of a canonical produced
        already, unparseable, or a page to produce (a new version when revisited); each is
        recorded in the state as it is decided, except failures worth retrying next run."""
        if not result.ok or result.text is None:
            outcome = _from_fetch(result, "article", source=source)
            if not result.reason.retried_next_run(result.status):
                self._record_article(outcome)
            yield outcome
            return
        digest = _sha256(result.text.encode("utf-8"))
        if record is not None and record.content_hash == digest:
            outcome = _from_fetch(
                result,
                "article",
                reason=Reason.UNCHANGED,
                detail="same body hash as last time",
                source=source,
                version=record.version,
                content_hash=digest,
            )
            self._record_article(outcome)
            yield outcome
            return
        canonical = _canonical(result.text, result.final_url, self.outlet)
        if (
            canonical is not None
            and canonical != item.url
            and (
                canonical in self.canonicals
                or _recently_fetched(self.state, canonical, self.now, self.revisit_seconds)
            )
        ):
            yield _from_fetch(
                result,
                "article",
                reason=Reason.DUPLICATE,
                detail=f"canonical {canonical} already produced",
                source=source,
                content_hash=digest,
            )
            self._record_article(_skipped(item.url, Reason.DUPLICATE))
            return
        version = (record.version if record is not None else 0) + 1
        try:
            page = _raw_page(self.outlet, item, result, version)
        except (ValidationError, InvalidURLError) as exc:
            yield _from_fetch(
                result, "article", reason=Reason.PARSE_ERROR, detail=str(exc), source=source
            )
            return
        yield self._produce(item, result, page, digest, canonical, source)

    def _produce(
        self,
        item: DiscoveredItem,
        result: FetchResult,
        page: RawPage,
        digest: str,
        canonical: str | None,
        source: str | None,
    ) -> CrawlOutcome:
        """A page to produce: remembered as seen, recorded (unless the caller records it once
        Kafka has acknowledged it), and its canonical kept so that another URL of the same
        page is a duplicate."""
        if self.seen is not None:
            self.seen.add(item.url)
        version = page.version
        outcome = _from_fetch(
            result,
            "article",
            page=page,
            source=source,
            version=version,
            content_hash=digest,
            detail=f"version {version}" if version > 1 else result.detail,
        )
        if not self.defer_article_records:
            self._record_article(outcome)
        if canonical is not None:
            self.canonicals.add(canonical)
            if self.state is not None and canonical != item.url:
                self.state.record_fetch(
                    canonical,
                    outlet=self.outlet.name,
                    kind="canonical",
                    status=None,
                    reason=Reason.FETCHED,
                )
        return outcome

    def _record_article(self, outcome: CrawlOutcome) -> None:
        """Remember an article's outcome in the state (when there is one)."""
        if self.state is not None:
            record_article(self.state, self.outlet, outcome)


@dataclass
class _Announced:
    """The articles the sources announced, in order, and the feed, sitemap or page that
    first announced each (an article outcome's ``source``)."""

    items: list[DiscoveredItem] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)

    def add(self, item: DiscoveredItem, source: str) -> None:
        self.origin.setdefault(item.url, source)
        self.items.append(item)


class _SitemapReader:
    """Loads the documents of one sitemap walk (:func:`walk_sitemaps` calls :meth:`load` and
    :meth:`parsed`), keeping each fetch result, the documents unchanged since last time and
    the hashes of new bodies, so that every document gets its outcome and its record."""

    def __init__(
        self, outlet: Outlet, fetcher: Fetcher, policy: FetchPolicy, state: CrawlState | None
    ) -> None:
        self.outlet = outlet
        self.fetcher = fetcher
        self.policy = policy
        self.state = state
        self.fetched: dict[str, FetchResult] = {}
        self.unchanged: set[str] = set()
        self.digests: dict[str, str] = {}

    def load(self, url: str) -> bytes | SitemapDocument | None:
        """The document's bytes to parse; for one unchanged since last time (304 or the same
        hash) its remembered children instead, since its articles are in the frontier
        already; ``None`` when the fetch failed."""
        state = self.state
        record = state.get(url) if state is not None else None
        headers = record.conditional_headers() if record and record.content_hash else None
        result = self.fetcher.fetch_document(url, self.policy, headers)
        self.fetched[url] = result
        if record is not None and state is not None:
            same = result.reason is Reason.NOT_MODIFIED or (
                result.ok
                and result.body is not None
                and _sha256(result.body) == record.content_hash
            )
            if same:
                self.unchanged.add(url)
                if result.reason is Reason.NOT_MODIFIED:
                    _record_not_modified(state, url, self.outlet, "sitemap", result)
                else:
                    _record_document(
                        state, self.outlet, "sitemap", result, record.content_hash or ""
                    )
                # An index's children may have changed, so walk them.
                if record.children:
                    return SitemapDocument(sitemaps=list(record.children), is_index=True)
                return SitemapDocument()
        if result.ok and result.body is not None:
            self.digests[url] = _sha256(result.body)
            return result.body
        return None

    def parsed(self, url: str, doc: SitemapDocument) -> None:
        """Record a document parsed from new bytes: validators, hash, an index's children."""
        if self.state is not None and url in self.digests:
            children = doc.sitemaps if doc.is_index else None
            _record_document(
                self.state,
                self.outlet,
                "sitemap",
                self.fetched[url],
                self.digests[url],
                children=children,
            )

    def outcomes(self, walk: SitemapWalk) -> list[CrawlOutcome]:
        """One outcome per document loaded, in walk order, then one per child sitemap never
        loaded (``offsite``, or ``over_limit`` past the walk's bounds)."""
        outcomes: list[CrawlOutcome] = []
        failures = {f.url: f for f in walk.failures}
        for url in walk.visited:
            result = self.fetched[url]
            failure = failures.pop(url, None)
            if failure is not None:
                outcomes.append(
                    _from_fetch(result, "sitemap", reason=failure.reason, detail=failure.detail)
                )
            elif url in self.unchanged and result.reason is not Reason.NOT_MODIFIED:
                outcomes.append(
                    _from_fetch(
                        result,
                        "sitemap",
                        reason=Reason.UNCHANGED,
                        detail="same body hash as last time",
                    )
                )
            else:
                outcomes.append(_from_fetch(result, "sitemap"))
        for failure in failures.values():
            reason = Reason.OFFSITE if failure.reason is Reason.OFFSITE else Reason.OVER_LIMIT
            outcomes.append(
                CrawlOutcome(
                    failure.url, None, reason, 0, 0.0, kind="sitemap", detail=failure.detail
                )
            )
        return outcomes


def _canonical(text: str, base_url: str, outlet: Outlet) -> str | None:
    """The page's onsite ``rel=canonical`` URL, normalized (``None`` if absent/offsite)."""
    if "canonical" not in text.lower():
        return None
    try:
        url = parse_homepage(text, base_url=base_url).canonical
    except DiscoveryError:
        return None
    if url is None or not outlet.is_onsite(url):
        return None
    return url


def _recently_fetched(state: CrawlState | None, url: str, now: float, revisit: float) -> bool:
    if state is None:
        return False
    record = state.get(url)
    return (
        record is not None
        and record.last_fetched_at is not None
        and record.last_reason == Reason.FETCHED
        and now - record.last_fetched_at < revisit
    )


@dataclass
class DiscoveredSources:
    """What :func:`discover_sources` found for a feedless outlet."""

    feeds: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    links: list[DiscoveredItem] = field(default_factory=list)  # article-like links
    link_sources: dict[str, str] = field(default_factory=dict)  # link -> page it was on


def discover_sources(
    outlet: Outlet,
    fetcher: Fetcher,
    policy: FetchPolicy,
    state: CrawlState | None,
    found: DiscoveredSources,
) -> Iterator[CrawlOutcome]:
    """Find a feedless outlet's feeds and sitemaps (see the module docstring), filling
    ``found``; yields one ``homepage`` outcome per page fetched (homepage, section pages)."""
    known_feeds = state.sources(outlet.name, "found_feed") if state is not None else []
    known_sitemaps = state.sources(outlet.name, "found_sitemap") if state is not None else []
    home = outlet.homepage
    record = state.get(home) if state is not None else None
    headers = record.conditional_headers() if record and record.content_hash else None
    result = fetcher.fetch_page(home, policy, headers)
    page_links: list[DiscoveredItem] = []
    changed = False
    detail = ""
    if result.reason is Reason.NOT_MODIFIED or (
        result.ok
        and result.text is not None
        and record is not None
        and record.content_hash == _sha256(result.text.encode("utf-8"))
    ):
        reason = Reason.NOT_MODIFIED if result.reason is Reason.NOT_MODIFIED else Reason.UNCHANGED
        if state is not None:
            state.record_fetch(
                home,
                outlet=outlet.name,
                kind="homepage",
                status=result.status,
                reason=reason,
                etag=result.headers.get("etag"),
                last_modified=result.headers.get("last-modified"),
            )
        outcome = _from_fetch(result, "homepage", reason=reason)
    elif result.ok and result.text is not None:
        changed = True
        try:
            links = parse_homepage(result.text, base_url=result.final_url)
        except DiscoveryError as exc:
            outcome = _from_fetch(result, "homepage", reason=Reason.PARSE_ERROR, detail=str(exc))
            links = None
        else:
            outcome = _from_fetch(result, "homepage")
            if state is not None:
                _record_document(
                    state, outlet, "homepage", result, _sha256(result.text.encode("utf-8"))
                )
        if links is not None:
            known_feeds = _merge(known_feeds, links.feeds)
            page_links = links.links
    else:
        outcome = _from_fetch(result, "homepage")
    if changed or (not known_feeds and not known_sitemaps and record is None):
        known_sitemaps = _merge(known_sitemaps, fetcher.robots_sitemaps(home, policy))
        if not known_feeds and not known_sitemaps:
            known_feeds, known_sitemaps = _probe(outlet, fetcher, policy)
        detail = f"{len(known_feeds)} feeds, {len(known_sitemaps)} sitemaps"
        if state is not None:
            state.discover(outlet.name, [(u, None, None) for u in known_feeds], kind="found_feed")
            state.discover(
                outlet.name, [(u, None, None) for u in known_sitemaps], kind="found_sitemap"
            )
    if detail and outcome.reason is Reason.FETCHED:
        outcome = replace(outcome, detail=detail)
    yield outcome
    found.feeds, found.sitemaps = known_feeds, known_sitemaps
    if known_feeds or known_sitemaps:
        return
    # Last resort: article-like links of the homepage and the section pages.
    pages = [(home, page_links)]
    for section in outlet.section_pages:
        section_result = fetcher.fetch_page(section, policy)
        section_links: list[DiscoveredItem] = []
        if section_result.ok and section_result.text is not None:
            try:
                section_links = parse_homepage(
                    section_result.text, base_url=section_result.final_url
                ).links
            except DiscoveryError as exc:
                yield _from_fetch(
                    section_result, "homepage", reason=Reason.PARSE_ERROR, detail=str(exc)
                )
                continue
        yield _from_fetch(
            section_result, "homepage", detail=f"section page, {len(section_links)} links"
        )
        pages.append((section, section_links))
    not_these = [home, *outlet.section_pages]
    for page_url, items in pages:
        for item in items:
            if not outlet.is_article_link(item.url):
                continue
            if outlet.article_url_pattern is None and not looks_like_article(
                item.url, not_these=not_these
            ):
                continue
            found.link_sources.setdefault(item.url, page_url)
            found.links.append(item)
    found.links = dedupe(found.links)


def _merge(first: list[str], more: Iterable[str]) -> list[str]:
    merged = list(first)
    seen = {normalize_url(u) for u in merged}
    for url in more:
        try:
            key = normalize_url(url)
        except InvalidURLError:
            continue
        if key not in seen:
            seen.add(key)
            merged.append(url)
    return merged


def _probe(outlet: Outlet, fetcher: Fetcher, policy: FetchPolicy) -> tuple[list[str], list[str]]:
    """Try the common feed and sitemap locations on the homepage's origin; keep the first
    that parses as a feed and the first that parses as a sitemap."""
    parts = urlsplit(outlet.homepage)
    origin = f"{parts.scheme}://{parts.netloc}"
    feeds: list[str] = []
    sitemaps: list[str] = []
    for path in COMMON_FEED_PATHS:
        result = fetcher.fetch_document(origin + path, policy)
        if result.ok and result.body is not None:
            try:
                parse_feed(result.body, base_url=result.final_url)
            except DiscoveryError:
                continue
            feeds.append(origin + path)
            break
    for path in COMMON_SITEMAP_PATHS:
        result = fetcher.fetch_document(origin + path, policy)
        if result.ok and result.body is not None:
            try:
                document = parse_sitemap(result.body, base_url=result.final_url)
            except DiscoveryError:
                continue
            if document.items or document.sitemaps:
                sitemaps.append(origin + path)
                break
    return feeds, sitemaps


def _record_document(
    state: CrawlState,
    outlet: Outlet,
    kind: str,
    result: FetchResult,
    digest: str,
    *,
    children: list[str] | None = None,
) -> None:
    state.record_fetch(
        result.url,
        outlet=outlet.name,
        kind=kind,
        status=result.status,
        reason=Reason.FETCHED,
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
        content_hash=digest,
        children=children,
    )


def record_article(state: CrawlState, outlet: Outlet, outcome: CrawlOutcome) -> int:
    """Remember an article's fetch (validators, hash, version); returns its version."""
    return state.record_fetch(
        outcome.url,
        outlet=outlet.name,
        kind="article",
        status=outcome.status,
        reason=outcome.reason,
        etag=outcome.etag,
        last_modified=outcome.last_modified,
        content_hash=outcome.content_hash,
    )


def _raw_page(
    outlet: Outlet, item: DiscoveredItem, result: FetchResult, version: int = 1
) -> RawPage:
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
        version=version,
    )


def _record_not_modified(
    state: CrawlState, url: str, outlet: Outlet, kind: str, result: FetchResult
) -> None:
    """A 304: the stored content stands; keep whatever validators the server sent again."""
    state.record_fetch(
        url,
        outlet=outlet.name,
        kind=kind,
        status=result.status,
        reason=Reason.NOT_MODIFIED,
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
    )


def summarize(outcomes: Iterable[CrawlOutcome]) -> dict[str, Any]:
    """Counts for logs and the task's return value (JSON-serializable).

    ``discovered``: distinct article URLs; ``fetched``: pages produced; ``skipped`` and
    ``failed``: article counts by reason; ``sources``: feed/sitemap documents ok (including
    ``not_modified``, ``unchanged``, ``not_due``) or failed by reason.
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
        reason = outcome.reason
        if outcome.kind != "article":
            # A source not due was not polled this run: not a failure.
            if reason.poll_ok or reason is Reason.NOT_DUE:
                sources_ok += 1
            else:
                sources_failed[str(reason)] += 1
            continue
        discovered.add(outcome.url)
        if outcome.ok:
            fetched += 1
        elif reason.disposition is Disposition.SKIPPED:
            skipped[str(reason)] += 1
        else:
            failed[str(reason)] += 1
    return {
        "discovered": len(discovered),
        "fetched": fetched,
        "skipped": dict(sorted(skipped.items())),
        "failed": dict(sorted(failed.items())),
        "sources": {"ok": sources_ok, "failed": dict(sorted(sources_failed.items()))},
        "bytes": total_bytes,
        "elapsed_ms": round(elapsed, 3),
    }
