"""Fetching pages and feeds over HTTP, defensively.

:class:`Fetcher` wraps one ``httpx.Client`` (injectable: pass a ``transport`` such as
``httpx.MockTransport`` in tests) and applies a :class:`FetchPolicy` per request:

* only ``http``/``https``; the host is resolved and **every** address is checked before a
  connection is made, and the connection then goes to the checked address (no DNS
  rebinding window), while TLS checks the certificate against the URL's host name (see
  :mod:`newsflow.pinning`). Loopback/private addresses are refused unless the policy allows the
  private network *for that host* (an outlet's own hosts); link-local, cloud metadata,
  multicast, unspecified and reserved addresses are always refused;
* redirects are followed by hand, at most ``max_redirects``, each target re-checked (scheme,
  address, and for pages the outlet's domains);
* connect/read timeouts plus a total deadline; a body cap enforced while streaming and again
  after decompression (we only ask for gzip/deflate and inflate them ourselves, bounded);
* pages must be HTML (checked before the body is read) and are decoded with the declared
  charset, then ``<meta charset>``, then UTF-8, then windows-1252;
* a small politeness delay between requests to the same host.

* robots.txt honoured (``obey_robots``): fetched once per origin, cached in process and in
  the shared state, its ``Crawl-delay`` raising the host's interval (capped); RFC 9309
  semantics: 4xx means allow all, 5xx or unreachable means disallow all for a short while;
* a per-``host:port`` rate limit: one request per ``politeness_delay`` seconds, shared by all
  processes when the fetcher has a :class:`~ingest.state.StateStore` (in-process otherwise);
  429/503 push the host's next slot out by ``Retry-After`` (or exponentially), and a request
  that would wait longer than ``max_wait`` is not sent (``rate_limited``).

It never raises for network or content problems: every call returns a :class:`FetchResult`
whose ``reason`` is an :class:`ingest.reasons.Reason`. Conditional GET: pass validators as
``headers``.
"""

from __future__ import annotations

import builtins
import ipaddress
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import httpx

from ingest.reasons import Reason
from newsflow.decoding import encoding_candidates
from newsflow.netguard import Resolver, check_address, resolve_addresses, system_resolver
from newsflow.pinning import ADDRESS_EXTENSION, PinnedTransport
from newsflow.settings import Settings, get_settings

if TYPE_CHECKING:
    from ingest.state import StateStore
    from newsflow.outlets import Outlet

__all__ = [
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "decode_html",
]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT_PAGE = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_ACCEPT_DOCUMENT = (
    "application/rss+xml,application/atom+xml,application/xml,text/xml;q=0.9,*/*;q=0.5"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# --------------------------------------------------------------------------- policy & result


@dataclass(frozen=True)
class FetchPolicy:
    """How to fetch for one outlet. Built once per crawl by :meth:`for_outlet`."""

    user_agent: str
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    deadline: float = 20.0  # total seconds for one fetch, redirects included
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    allow_private_network: bool = False
    private_hosts: frozenset[str] = frozenset()  # hosts allowed private addresses
    onsite: Callable[[str], bool] | None = None  # page URLs (and redirects) must pass this
    politeness_delay: float = 0.2  # seconds between requests to the same host:port
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    obey_robots: bool = False  # from_settings() turns it on (settings.respect_robots_txt)
    robots_ttl: float = 3600.0
    max_crawl_delay: float = 60.0  # cap on a robots.txt Crawl-delay
    max_wait: float = 120.0  # longer than this for a host's slot: rate_limited, not sent
    max_retry_after: float = 3600.0
    # In-flight requests per host:port, per Fetcher (process); see Fetcher._slot.
    max_concurrency: int = 2

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: object) -> FetchPolicy:
        settings = settings or get_settings()
        total = settings.fetch_timeout_seconds
        values: dict[str, object] = {
            "user_agent": settings.http_user_agent,
            "connect_timeout": min(5.0, total),
            "read_timeout": min(15.0, total),
            "deadline": total,
            "max_bytes": settings.max_page_bytes,
            "politeness_delay": settings.host_min_interval_seconds,
            "obey_robots": settings.respect_robots_txt,
            "robots_ttl": settings.robots_cache_seconds,
            "max_crawl_delay": settings.max_crawl_delay_seconds,
            "max_wait": settings.host_max_wait_seconds,
            "max_retry_after": settings.max_retry_after_seconds,
            "max_concurrency": settings.host_max_concurrency,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def for_outlet(
        cls, outlet: Outlet, settings: Settings | None = None, **overrides: object
    ) -> FetchPolicy:
        values: dict[str, object] = {
            "allow_private_network": outlet.allow_private_network,
            "private_hosts": outlet.own_hosts if outlet.allow_private_network else frozenset(),
            "onsite": outlet.is_onsite,
        }
        if outlet.min_request_interval_seconds is not None:
            values["politeness_delay"] = outlet.min_request_interval_seconds
        values.update(overrides)
        return cls.from_settings(settings, **values)

    def private_ok(self, host: str) -> bool:
        return self.allow_private_network and host.lower().rstrip(".") in self.private_hosts


@dataclass(frozen=True)
class FetchResult:
    url: str  # as requested
    final_url: str  # after redirects
    status: int | None
    reason: Reason
    bytes: int  # body bytes received (after decompression)
    elapsed_ms: float
    content_type: str | None = None  # media type, lower-case, without parameters
    text: str | None = None  # decoded HTML (pages only)
    body: builtins.bytes | None = None  # raw body (documents: feeds/sitemaps)
    detail: str = ""  # human explanation for logs
    redirects: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)  # ETag/Last-Modified etc.

    @property
    def ok(self) -> bool:
        return self.reason is Reason.FETCHED


class _AbortError(Exception):
    """Ends a fetch early with a reason (internal control flow)."""

    def __init__(self, reason: Reason, detail: str = "", status: int | None = None) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail
        self.status = status


# --------------------------------------------------------------------------- decoding


class _Inflater:
    """Bounded gzip/deflate decoding: never produces more than ``limit`` bytes in total."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.total = 0
        self._raw_deflate = False
        self._obj = self._new()
        self._started = False

    def _new(self) -> zlib._Decompress:
        if self.encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if not self._started and self.encoding == "deflate":
            self._started = True
            try:  # "deflate" is meant to be zlib-wrapped; some servers send raw deflate
                return self._feed(data)
            except zlib.error:
                self._raw_deflate = True
                self._obj = self._new()
        self._started = True
        return self._feed(data)

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            room = self.limit - self.total
            chunk = self._obj.decompress(data, room + 1)
            self.total += len(chunk)
            if self.total > self.limit:
                raise _AbortError(Reason.TOO_LARGE, f"body inflates past {self.limit} bytes")
            out.append(chunk)
            if self._obj.unconsumed_tail:
                data = self._obj.unconsumed_tail
            elif self._obj.eof and self._obj.unused_data:  # concatenated gzip members
                data = self._obj.unused_data
                self._obj = self._new()
            else:
                data = b""
        return b"".join(out)


def decode_html(body: bytes, declared: str | None = None) -> str:
    """Decode an HTML body in the order enrich reads pages
    (:func:`newsflow.decoding.encoding_candidates`), but strictly: an encoding the bytes do not
    fit gives way to the next, then to windows-1252.

    Raises ``UnicodeError`` when nothing yields plausible text (binary data).
    """
    skip, candidates = encoding_candidates(body, declared)
    if "cp1252" not in candidates:
        candidates.append("cp1252")
    for name in candidates:
        try:
            text = body[skip:].decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        if "\x00" in text:
            raise UnicodeError("body contains NUL characters (binary data?)")
        return text
    raise UnicodeError(f"body does not decode as any of {', '.join(candidates)}")


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _media_type(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    media, *params = value.split(";")
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return media.strip().lower() or None, charset


# --------------------------------------------------------------------------- politeness


class Limiter(Protocol):
    """Per-host request slots; :class:`ingest.state.StateStore` is the shared one."""

    def reserve(self, host: str, interval: float, *, max_wait: float) -> float | None: ...

    def acquire_lease(self, host: str, *, cap: int, ttl: float) -> str | None: ...

    def release_lease(self, lease_id: str) -> None: ...

    def back_off(self, host: str, retry_after: float | None, *, cap: float) -> float: ...

    def clear_strikes(self, host: str) -> None: ...


class LocalLimiter:
    """The in-process limiter (one process, e.g. tests or a fetcher without shared state)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._strikes: dict[str, int] = {}

    def reserve(self, host: str, interval: float, *, max_wait: float) -> float | None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now), self._backoff.get(host, now))
            if slot - now > max_wait:
                return None
            self._next[host] = slot + interval
            return slot - now

    def back_off(self, host: str, retry_after: float | None, *, cap: float) -> float:
        with self._lock:
            strikes = self._strikes.get(host, 0) + 1
            self._strikes[host] = strikes
            delay = retry_after if retry_after is not None else 30.0 * 2 ** (strikes - 1)
            delay = max(0.0, min(delay, cap))
            self._backoff[host] = max(self._backoff.get(host, 0.0), self._clock() + delay)
            return delay

    def clear_strikes(self, host: str) -> None:
        with self._lock:
            self._strikes.pop(host, None)

    def acquire_lease(self, host: str, *, cap: int, ttl: float) -> str | None:
        return "local"  # one process: the Fetcher's own semaphore is the cap

    def release_lease(self, lease_id: str) -> None:
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else ``None``."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class _Robots:
    parser: RobotFileParser | None  # None: allow everything
    disallow_all: bool
    fetched_at: float
    detail: str = ""


_ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB
_ROBOTS_RETRY_SECONDS = 300.0  # an unreachable robots.txt is retried this soon


# --------------------------------------------------------------------------- the fetcher


class Fetcher:
    """Fetches pages and documents under a :class:`FetchPolicy`. Thread-safe enough for
    one crawl; close it (or use ``with``) when done."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        resolver: Resolver = system_resolver,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        pin_addresses: bool = True,
        state: StateStore | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.state = state
        self._own_client = client is None
        if client is None and transport is None:
            transport = PinnedTransport(trust_env=False, require_pin=pin_addresses)
        self._client = client or httpx.Client(
            transport=transport, follow_redirects=False, trust_env=False
        )
        self._resolve = resolver
        self._sleep = sleep
        self._clock = clock
        self._pin = pin_addresses
        self._limiter: Limiter = state if state is not None else LocalLimiter(clock)
        self._robots: dict[str, _Robots] = {}
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        #: Requests sent per host:port and their wall-clock times (for the politeness report).
        self.request_log: list[tuple[str, float]] = []

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    # ------------------------------------------------------------------ public API

    def fetch_page(
        self, url: str, policy: FetchPolicy, headers: Mapping[str, str] | None = None
    ) -> FetchResult:
        """Fetch an article page: must be HTML on the outlet's domains; returns ``text``.

        ``headers`` are added to the request (conditional GET validators)."""
        return self._fetch(url, policy, page=True, headers=headers)

    def fetch_document(
        self, url: str, policy: FetchPolicy, headers: Mapping[str, str] | None = None
    ) -> FetchResult:
        """Fetch a feed or sitemap: any content type, any domain; returns ``body`` bytes."""
        return self._fetch(url, policy, page=False, headers=headers)

    def robots_sitemaps(self, url: str, policy: FetchPolicy) -> list[str]:
        """``Sitemap:`` lines of the robots.txt for ``url``'s origin (fetched if needed)."""
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            return []
        robots = self._robots_for(target, replace(policy, obey_robots=True))
        if robots.parser is None:
            return []
        return list(robots.parser.site_maps() or [])

    # ------------------------------------------------------------------ internals

    def _fetch(
        self,
        url: str,
        policy: FetchPolicy,
        *,
        page: bool,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        if headers:
            policy = replace(policy, extra_headers={**policy.extra_headers, **headers})
        started = self._clock()
        current = url
        redirects = 0
        status: int | None = None
        content_type: str | None = None
        received = 0

        def result(
            reason: Reason,
            detail: str = "",
            *,
            text: str | None = None,
            body: bytes | None = None,
            headers: Mapping[str, str] | None = None,
        ) -> FetchResult:
            return FetchResult(
                url=url,
                final_url=current,
                status=status,
                reason=reason,
                bytes=received,
                elapsed_ms=round((self._clock() - started) * 1000, 3),
                content_type=content_type,
                text=text,
                body=body,
                detail=detail,
                redirects=redirects,
                headers=dict(headers or {}),
            )

        try:
            while True:
                target = self._check_url(current, policy, page=page)
                addresses = self._check_host(target, policy)  # the address guard comes first
                self._check_onsite(target, policy, page=page)
                waited = self._before_request(target, policy)
                started += waited  # politeness is not part of the fetch's own time budget
                remaining = policy.deadline - (self._clock() - started)
                if remaining <= 0:
                    raise _AbortError(Reason.TIMEOUT, f"deadline of {policy.deadline}s exceeded")
                request = self._build_request(target, addresses[0], policy, remaining, page=page)
                with self._lock:
                    self.request_log.append((_host_key(target), time.time()))
                slot, lease = self._slot(target, policy, remaining)
                try:
                    response = self._client.send(request, stream=True, follow_redirects=False)
                    try:
                        status = response.status_code
                        content_type, charset = _media_type(response.headers.get("content-type"))
                        if status in (429, 503):
                            retry_after = parse_retry_after(response.headers.get("retry-after"))
                            delay = self._limiter.back_off(
                                _host_key(target), retry_after, cap=policy.max_retry_after
                            )
                            detail = f"HTTP {status}; backing off {delay:.0f}s"
                            return result(
                                Reason.RATE_LIMITED if status == 429 else Reason.HTTP_ERROR, detail
                            )
                        self._limiter.clear_strikes(_host_key(target))
                        if status in _REDIRECTS and "location" in response.headers:
                            if redirects >= policy.max_redirects:
                                raise _AbortError(
                                    Reason.TOO_MANY_REDIRECTS,
                                    f"more than {policy.max_redirects} redirects",
                                )
                            current = urljoin(current, response.headers["location"].strip())
                            redirects += 1
                            continue
                        if status == 304:
                            return result(Reason.NOT_MODIFIED, headers=_validators(response))
                        if not 200 <= status < 300:
                            return result(Reason.HTTP_ERROR, f"HTTP {status}")
                        if page and content_type is not None and content_type not in HTML_TYPES:
                            return result(Reason.NOT_HTML, f"content type {content_type}")
                        length = response.headers.get("content-length", "")
                        if length.isdigit() and int(length) > policy.max_bytes:
                            raise _AbortError(
                                Reason.TOO_LARGE, f"Content-Length {length} > {policy.max_bytes}"
                            )
                        buffer = bytearray()
                        for chunk in self._read(response, policy, started):
                            buffer += chunk
                            received = len(buffer)
                        body = bytes(buffer)
                    finally:
                        response.close()
                finally:
                    slot.release()
                    self._limiter.release_lease(lease)
                break
            if not page:
                return result(Reason.FETCHED, body=body, headers=_validators(response))
            if content_type is None and not _looks_like_html(body):
                return result(Reason.NOT_HTML, "no content type and the body is not HTML")
            try:
                text = decode_html(body, charset)
            except UnicodeError as exc:
                return result(Reason.BAD_ENCODING, str(exc))
            return result(Reason.FETCHED, text=text, headers=_validators(response))
        except _AbortError as stop:
            if stop.status is not None:
                status = stop.status
            return result(stop.reason, stop.detail)
        except httpx.TimeoutException as exc:
            return result(Reason.TIMEOUT, f"{type(exc).__name__}: {exc}")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.DecodingError) as exc:
            return result(Reason.PARSE_ERROR, f"{type(exc).__name__}: {exc}")
        except (ValueError, UnicodeError) as exc:  # e.g. a malformed Location header
            return result(Reason.PARSE_ERROR, f"{type(exc).__name__}: {exc}")
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return result(Reason.HTTP_ERROR, detail)

    def _check_url(self, url: str, policy: FetchPolicy, *, page: bool) -> httpx.URL:
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise _AbortError(Reason.PARSE_ERROR, f"invalid URL {url!r}: {exc}") from None
        if target.scheme not in ("http", "https"):
            raise _AbortError(Reason.BLOCKED_ADDRESS, f"scheme {target.scheme!r} is not allowed")
        if not target.host:
            raise _AbortError(Reason.PARSE_ERROR, f"URL has no host: {url!r}")
        if not _valid_host(target.raw_host.decode("ascii", "replace")):
            raise _AbortError(Reason.PARSE_ERROR, f"invalid host in URL {url!r}")
        if target.port is not None and not 0 < target.port < 65536:
            raise _AbortError(Reason.PARSE_ERROR, f"invalid port in URL {url!r}")
        if target.userinfo:
            raise _AbortError(Reason.BLOCKED_ADDRESS, "credentials in URL are not allowed")
        return target

    def _check_onsite(self, target: httpx.URL, policy: FetchPolicy, *, page: bool) -> None:
        if page and policy.onsite is not None and not policy.onsite(str(target)):
            raise _AbortError(Reason.OFFSITE, f"{target.host} is not one of the outlet's domains")

    def _check_host(self, target: httpx.URL, policy: FetchPolicy) -> list[str]:
        try:
            host, addresses = resolve_addresses(target, self._resolve)
        except LookupError as exc:
            raise _AbortError(Reason.HTTP_ERROR, str(exc)) from None
        private_ok = policy.private_ok(target.host) or policy.private_ok(host)
        for address in addresses:
            problem = check_address(address, private_ok=private_ok)
            if problem is not None:
                raise _AbortError(Reason.BLOCKED_ADDRESS, f"{host}: {problem}")
        return addresses

    def _before_request(self, target: httpx.URL, policy: FetchPolicy) -> float:
        """robots.txt, then the host's rate-limit slot; returns the seconds waited.

        Raises ``robots_disallowed`` or ``rate_limited`` (nothing sent)."""
        interval = policy.politeness_delay
        waited = 0.0
        if policy.obey_robots and target.path != "/robots.txt":
            before = self._clock()
            robots = self._robots_for(target, policy)
            waited += self._clock() - before
            if robots.disallow_all:
                raise _AbortError(
                    Reason.ROBOTS_DISALLOWED, robots.detail or "robots.txt: disallowed"
                )
            if robots.parser is not None:
                if not robots.parser.can_fetch(policy.user_agent, str(target)):
                    raise _AbortError(Reason.ROBOTS_DISALLOWED, "disallowed by robots.txt")
                delay = robots.parser.crawl_delay(policy.user_agent)
                if delay is not None:
                    interval = max(interval, min(float(delay), policy.max_crawl_delay))
        key = _host_key(target)
        wait = self._limiter.reserve(key, interval, max_wait=policy.max_wait)
        if wait is None:
            raise _AbortError(
                Reason.RATE_LIMITED,
                f"{key}: next request slot is more than {policy.max_wait:.0f}s away",
            )
        if wait > 0:
            self._sleep(wait)
        return waited + wait

    def _slot(
        self, target: httpx.URL, policy: FetchPolicy, timeout: float
    ) -> tuple[threading.BoundedSemaphore, str]:
        """Take one of the host's ``policy.max_concurrency`` in-flight slots, in this process
        (a semaphore) and across processes (a lease in the shared state, expiring after the
        request's deadline if its holder dies); the caller releases both once the response is
        read. ``rate_limited`` if none frees up in time."""
        key = _host_key(target)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = threading.BoundedSemaphore(max(1, policy.max_concurrency))
                self._slots[key] = slot
        deadline = self._clock() + max(0.0, timeout)
        if not slot.acquire(timeout=max(0.0, timeout)):
            raise _AbortError(
                Reason.RATE_LIMITED, f"{key}: {policy.max_concurrency} requests already in flight"
            )
        cap = max(1, policy.max_concurrency)
        while True:
            lease = self._limiter.acquire_lease(key, cap=cap, ttl=policy.deadline + 5.0)
            if lease is not None:
                return slot, lease
            if self._clock() >= deadline:
                slot.release()
                raise _AbortError(
                    Reason.RATE_LIMITED, f"{key}: {cap} requests already in flight across processes"
                )
            self._sleep(0.05)

    def _robots_for(self, target: httpx.URL, policy: FetchPolicy) -> _Robots:
        """The robots.txt rules for ``target``'s origin: in-process cache, shared cache, fetch."""
        origin = f"{target.scheme}://{target.netloc.decode('ascii')}"
        key = _host_key(target)
        now = time.time()
        with self._lock:
            cached = self._robots.get(origin)
        if cached is not None and now - cached.fetched_at < _robots_ttl(cached, policy):
            return cached
        if self.state is not None:
            stored = self.state.robots(origin)
            if stored is not None:
                status, body, fetched_at = stored
                robots = _robots_from(status, body, fetched_at)
                if now - fetched_at < _robots_ttl(robots, policy):
                    with self._lock:
                        self._robots[origin] = robots
                    return robots
        robots_policy = replace(
            policy, obey_robots=False, max_bytes=_ROBOTS_MAX_BYTES, extra_headers={}
        )
        fetched = self._fetch(f"{origin}/robots.txt", robots_policy, page=False)
        if fetched.ok and fetched.body is not None:
            status, body = fetched.status, fetched.body.decode("utf-8", "replace")
        elif fetched.status is not None and 400 <= fetched.status < 500 and fetched.status != 429:
            status, body = fetched.status, ""  # no robots.txt: everything allowed
        elif fetched.reason in (
            Reason.BLOCKED_ADDRESS,
            Reason.OFFSITE,
            Reason.TOO_LARGE,
            Reason.TOO_MANY_REDIRECTS,
        ):
            status, body = 404, ""  # the fetch itself is guarded; treat as no robots.txt
        else:
            status, body = None, fetched.reason  # unreachable: disallow all for a while
            log_detail = f"robots.txt for {key} unreachable ({fetched.reason})"
            robots = _Robots(None, True, now, log_detail)
            with self._lock:
                self._robots[origin] = robots
            return robots
        robots = _robots_from(status, body, now)
        with self._lock:
            self._robots[origin] = robots
        if self.state is not None:
            self.state.save_robots(origin, status, body)
        return robots

    def _build_request(
        self,
        target: httpx.URL,
        address: str,
        policy: FetchPolicy,
        remaining: float,
        *,
        page: bool,
    ) -> httpx.Request:
        headers = {
            "User-Agent": policy.user_agent,
            "Accept": _ACCEPT_PAGE if page else _ACCEPT_DOCUMENT,
            "Accept-Encoding": "gzip, deflate",
            **policy.extra_headers,
        }
        extensions: dict[str, object] = {}
        if self._pin:
            # Connect to the address we checked, not to whatever DNS says a moment later.
            extensions[ADDRESS_EXTENSION] = address
        timeout = httpx.Timeout(
            connect=min(policy.connect_timeout, remaining),
            read=min(policy.read_timeout, remaining),
            write=min(policy.read_timeout, remaining),
            pool=min(policy.connect_timeout, remaining),
        )
        return self._client.build_request(
            "GET", target, headers=headers, timeout=timeout, extensions=extensions
        )

    def _read(
        self, response: httpx.Response, policy: FetchPolicy, started: float
    ) -> Iterator[bytes]:
        codings = [
            c.strip().lower()
            for c in response.headers.get("content-encoding", "").split(",")
            if c.strip() and c.strip().lower() != "identity"
        ]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise _AbortError(
                Reason.PARSE_ERROR, f"unsupported Content-Encoding {', '.join(codings)}"
            )
        inflater = _Inflater(codings[0], policy.max_bytes) if codings else None
        raw_total = 0
        total = 0
        stream = response.stream
        if not isinstance(stream, httpx.SyncByteStream):  # pragma: no cover (async client)
            raise _AbortError(Reason.PARSE_ERROR, "unexpected async response stream")
        # Iterate the raw stream (still content-encoded) ourselves: iter_raw() refuses bodies a
        # mock transport has pre-read, and iter_bytes() would inflate without a bound.
        for raw in stream:
            raw_total += len(raw)
            if raw_total > policy.max_bytes:
                raise _AbortError(Reason.TOO_LARGE, f"body exceeds {policy.max_bytes} bytes")
            try:
                chunk = inflater.feed(raw) if inflater is not None else raw
            except zlib.error as exc:
                raise _AbortError(Reason.PARSE_ERROR, f"corrupt {codings[0]} body: {exc}") from None
            total += len(chunk)
            if total > policy.max_bytes:
                raise _AbortError(Reason.TOO_LARGE, f"body exceeds {policy.max_bytes} bytes")
            if self._clock() - started > policy.deadline:
                raise _AbortError(
                    Reason.TIMEOUT, f"deadline of {policy.deadline}s exceeded while reading"
                )
            yield chunk


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


def _host_key(target: httpx.URL) -> str:
    """The rate-limit key: ``host:port`` (so two servers on one machine are two budgets)."""
    port = target.port or (443 if target.scheme == "https" else 80)
    return f"{target.host.lower()}:{port}"


def _robots_from(status: int | None, body: str, fetched_at: float) -> _Robots:
    if status is None:
        return _Robots(None, True, fetched_at, f"robots.txt unreachable ({body})")
    if not 200 <= status < 300:
        return _Robots(None, False, fetched_at)
    parser = RobotFileParser()
    parser.parse(body.splitlines())
    return _Robots(parser, False, fetched_at)


def _robots_ttl(robots: _Robots, policy: FetchPolicy) -> float:
    return _ROBOTS_RETRY_SECONDS if robots.disallow_all else policy.robots_ttl


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host))
    return True


def _validators(response: httpx.Response) -> dict[str, str]:
    keep = ("etag", "last-modified", "cache-control", "expires")
    return {k: response.headers[k] for k in keep if k in response.headers}
