"""Shared, persistent crawl state in SQL (SQLAlchemy Core): PostgreSQL in the stack, SQLite
for tests and single-machine use.

Why a database: every Airflow task is its own process, so what was seen and fetched, the
health of each feed, cached robots.txt files and the per-host request slots must outlive a
task and be shared by all of them.

Tables (times are Unix epoch seconds, wall clock, so that processes agree):

* ``ingest_urls``: one row per normalized URL (article, feed or sitemap), keyed by its
  article id (:func:`newsflow.urls.url_id`): validators (ETag, Last-Modified), body hash,
  ``version`` (bumped when an article's content changes) and ``last_fetched_at`` (NULL for a
  discovered article not fetched yet: the outlet's frontier);
* ``ingest_feed_health``: per feed/sitemap: last success, last new item, error counts and the
  usual interval between new items;
* ``ingest_hosts``: per ``host:port`` (the rate-limit key; the sample outlets share one), the
  next free request slot, a back-off deadline after 429/503, and the cached robots.txt.

The rate limiter hands out *reservations*: under a row lock (``SELECT ... FOR UPDATE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) a caller takes the next free slot and moves it on
by its interval, then sleeps until its slot. So concurrent tasks never send two requests to a
host closer together than the interval.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

from newsflow.settings import Settings, get_settings
from newsflow.urls import normalize_url, url_id

__all__ = [
    "CrawlState",
    "FeedHealth",
    "StateStore",
    "UrlRecord",
    "ensure_schema",
    "make_engine",
]

log = logging.getLogger(__name__)

metadata = MetaData()

urls_table = Table(
    "ingest_urls",
    metadata,
    Column("url_id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("outlet", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # article | feed | sitemap
    Column("first_seen_at", Float, nullable=False),
    Column("last_fetched_at", Float),  # NULL: discovered, not fetched yet
    Column("last_status", Integer),
    Column("last_reason", String(32)),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("content_hash", String(64)),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("children", Text),  # sitemap index: JSON list of child sitemap URLs
    Column("title", Text),  # discovery hints, kept for the frontier
    Column("published_at", Float),
    Index("ix_ingest_urls_frontier", "outlet", "kind", "last_fetched_at"),
)

health_table = Table(
    "ingest_feed_health",
    metadata,
    Column("url_id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("outlet", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("first_polled_at", Float, nullable=False),
    Column("last_attempt_at", Float),
    Column("last_success_at", Float),
    Column("last_new_item_at", Float),
    Column("new_item_interval", Float),  # moving average of seconds between new items
    Column("consecutive_errors", Integer, nullable=False, server_default="0"),
    Column("total_errors", Integer, nullable=False, server_default="0"),
    Column("total_polls", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_poll_at", Float),  # adaptive polling: not polled again before this
)

hosts_table = Table(
    "ingest_hosts",
    metadata,
    Column("host", String(300), primary_key=True),
    Column("next_allowed_at", Float, nullable=False, server_default="0"),
    Column("backoff_until", Float, nullable=False, server_default="0"),
    Column("strikes", Integer, nullable=False, server_default="0"),
    Column("robots_status", Integer),
    Column("robots_body", Text),
    Column("robots_fetched_at", Float),
)

# In-flight requests per host, across processes: a lease per request, expiring on its own if
# the process holding it dies.
leases_table = Table(
    "ingest_host_leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("host", String(300), nullable=False, index=True),
    Column("expires_at", Float, nullable=False),
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_schema_ready: set[str] = set()


# --------------------------------------------------------------------------- engine & schema


#: The local stack's libpq password file in its run dir (devstack/stack writes it, 0600).
STACK_PASSFILE = "postgres.pgpass"


def stack_password_args(url: str, run_dir: Path | None = None) -> dict[str, Any]:
    """libpq's ``passfile`` for a PostgreSQL URL without a password whose server is the local
    stack's: its database takes only the password it generated, and the default state URL
    names none. Empty when ``PGPASSFILE`` is set or the file has no line for that server."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.password or os.environ.get("PGPASSFILE"):
        return {}
    passfile = (run_dir or get_settings().run_dir) / STACK_PASSFILE
    try:
        lines = passfile.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}:"
    return {"passfile": str(passfile)} if any(x.startswith(server) for x in lines) else {}


def make_engine(url: str) -> Engine:
    """One engine per URL per process. SQLite gets ``BEGIN IMMEDIATE`` transactions (a write
    lock from the start, so read-modify-write is atomic across processes)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            memory = parsed.database in (None, "", ":memory:")
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                poolclass=StaticPool if memory else None,
            )

            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

            @event.listens_for(engine, "begin")
            def _begin(connection: Connection) -> None:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        else:
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=2,
                max_overflow=4,
                connect_args=stack_password_args(url),
            )
        _engines[url] = engine
        return engine


def _create_database(url: str) -> None:
    """Create a PostgreSQL database named in ``url`` if it is missing (idempotent)."""
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "postgresql" or not name:
        return
    admin = create_engine(
        parsed.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=None,
        connect_args=stack_password_args(url),
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                quoted = conn.dialect.identifier_preparer.quote(name)
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
                    log.info("created database %s", name)
                except (ProgrammingError, IntegrityError):  # created meanwhile by another process
                    pass
    finally:
        admin.dispose()


def ensure_schema(settings: Settings | str) -> Engine:
    """Create the database (PostgreSQL) and the tables if missing; safe to call any time."""
    url = settings if isinstance(settings, str) else settings.state_db_url.get_secret_value()
    engine = make_engine(url)
    if url in _schema_ready:
        return engine
    _create_database(url)
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except (ProgrammingError, IntegrityError, OperationalError):
            if attempt == 2:  # two processes racing on CREATE TABLE: the loser retries
                raise
            time.sleep(0.2)
    _schema_ready.add(url)
    return engine


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class UrlRecord:
    url_id: str
    url: str
    outlet: str
    kind: str
    first_seen_at: float
    last_fetched_at: float | None
    last_status: int | None
    last_reason: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    version: int
    children: list[str] | None
    title: str | None
    published_at: float | None

    def conditional_headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` from the stored validators."""
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True)
class FeedHealth:
    url: str
    outlet: str
    kind: str
    first_polled_at: float
    last_attempt_at: float | None
    last_success_at: float | None
    last_new_item_at: float | None
    new_item_interval: float | None
    consecutive_errors: int
    total_errors: int
    total_polls: int
    last_error: str | None
    next_poll_at: float | None


def _url_record(row: Any) -> UrlRecord:
    values = dict(row)
    children = values.get("children")
    values["children"] = json.loads(children) if children else None
    return UrlRecord(**values)


def _upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    key: str,
    update_columns: Sequence[str] = (),
) -> None:
    """INSERT, or on a key conflict UPDATE ``update_columns`` (or nothing)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values)
    else:  # pragma: no cover - other databases: insert, fall back to update
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(**values))
        except IntegrityError:
            if update_columns:
                conn.execute(
                    update(table)
                    .where(table.c[key] == values[key])
                    .values({c: values[c] for c in update_columns})
                )
        return
    if update_columns:
        stmt = stmt.on_conflict_do_update(
            index_elements=[key], set_={c: stmt.excluded[c] for c in update_columns}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[key])
    conn.execute(stmt)


# --------------------------------------------------------------------------- the store


def _ensure_url_row(
    conn: Connection,
    key: str,
    normalized: str,
    outlet: str,
    kind: str,
    now: float,
    **extra: Any,
) -> None:
    """The URL's row, created at version 0 (never fetched) if it is not there yet."""
    _upsert(
        conn,
        urls_table,
        {
            "url_id": key,
            "url": normalized,
            "outlet": outlet,
            "kind": kind,
            "first_seen_at": now,
            "version": 0,
            **extra,
        },
        "url_id",
    )


def _lock_host(conn: Connection, host: str, *columns: Any) -> RowMapping:
    """The host's row, created if missing and locked until the transaction ends: every
    process's slot, lease and back-off decisions for one host are serialized on it."""
    _upsert(conn, hosts_table, {"host": host, "next_allowed_at": 0.0}, "host")
    return (
        conn.execute(select(*columns).where(hosts_table.c.host == host).with_for_update())
        .mappings()
        .one()
    )


class CrawlState(Protocol):
    """The part of the crawl state a crawl reads and writes (:mod:`ingest.crawl`).

    Why a protocol: it names exactly what a crawl depends on, so a crawl can be followed and
    tested step by step against it; :class:`StateStore` is the real one (mypy checks that it
    conforms, below)."""

    #: Wall-clock seconds (the store's clock, so tests can move time).
    clock: Callable[[], float]

    def get(self, url: str) -> UrlRecord | None: ...

    def lookup(self, urls: Iterable[str]) -> dict[str, UrlRecord]: ...

    def discover(
        self,
        outlet: str,
        items: Iterable[tuple[str, str | None, float | None]],
        *,
        kind: str = "article",
    ) -> set[str]: ...

    def sources(self, outlet: str, kind: str) -> list[str]: ...

    def frontier(self, outlet: str, *, limit: int) -> list[UrlRecord]: ...

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
    ) -> int: ...

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
    ) -> FeedHealth: ...

    def get_health(self, url: str) -> FeedHealth | None: ...


class StateStore:
    """All shared crawl state behind one small API. Thread-safe (one engine per URL)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        return cls(ensure_schema(settings))

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> StateStore:
        return cls(ensure_schema(url), clock=clock)

    def _retrying(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` in a transaction, retrying serialization failures and lock timeouts."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except (OperationalError, DBAPIError) as exc:
                if attempt == 4 or not _transient(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ rate limiting

    def reserve(self, host: str, interval: float, *, max_wait: float) -> float | None:
        """Take the next request slot for ``host``; return seconds to wait before sending.

        ``None`` (nothing reserved) when the slot is more than ``max_wait`` away, e.g. while
        the host is backing off after a 429.
        """

        def work(conn: Connection) -> float | None:
            now = self.clock()
            row = _lock_host(conn, host, hosts_table.c.next_allowed_at, hosts_table.c.backoff_until)
            slot = max(now, float(row["next_allowed_at"]), float(row["backoff_until"]))
            if slot - now > max_wait:
                return None
            conn.execute(
                update(hosts_table)
                .where(hosts_table.c.host == host)
                .values(next_allowed_at=slot + interval)
            )
            return slot - now

        result: float | None = self._retrying(work)
        return result

    def acquire_lease(self, host: str, *, cap: int, ttl: float) -> str | None:
        """One of the host's ``cap`` in-flight slots, shared by every process; ``None`` if all
        are taken. The host row's lock serializes the count-and-insert."""

        def work(conn: Connection) -> str | None:
            now = self.clock()
            _lock_host(conn, host, hosts_table.c.host)
            conn.execute(
                delete(leases_table).where(
                    leases_table.c.host == host, leases_table.c.expires_at < now
                )
            )
            active = conn.execute(
                select(func.count()).select_from(leases_table).where(leases_table.c.host == host)
            ).scalar_one()
            if int(active) >= cap:
                return None
            lease_id = uuid.uuid4().hex
            conn.execute(
                insert(leases_table).values(lease_id=lease_id, host=host, expires_at=now + ttl)
            )
            return lease_id

        result: str | None = self._retrying(work)
        return result

    def release_lease(self, lease_id: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(leases_table).where(leases_table.c.lease_id == lease_id))

        self._retrying(work)

    def back_off(self, host: str, retry_after: float | None, *, cap: float) -> float:
        """Push the host's next slot out after a 429/503: ``retry_after`` seconds if the server
        said so, else exponentially (30 s, 60 s, 120 s, ...). Returns the back-off in seconds."""

        def work(conn: Connection) -> float:
            now = self.clock()
            row = _lock_host(conn, host, hosts_table.c.strikes, hosts_table.c.backoff_until)
            strikes = int(row["strikes"]) + 1
            delay = retry_after if retry_after is not None else 30.0 * 2 ** (strikes - 1)
            delay = max(0.0, min(delay, cap))
            until = max(float(row["backoff_until"]), now + delay)
            conn.execute(
                update(hosts_table)
                .where(hosts_table.c.host == host)
                .values(backoff_until=until, strikes=strikes)
            )
            return delay

        result: float = self._retrying(work)
        return result

    def clear_strikes(self, host: str) -> None:
        """A successful answer resets the exponential back-off."""
        with self.engine.begin() as conn:
            conn.execute(
                update(hosts_table)
                .where(hosts_table.c.host == host, hosts_table.c.strikes > 0)
                .values(strikes=0)
            )

    # ------------------------------------------------------------------ robots.txt

    def robots(self, host: str) -> tuple[int | None, str, float] | None:
        """The cached robots.txt of ``host``: (status, body, fetched_at), or ``None``."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(
                        hosts_table.c.robots_status,
                        hosts_table.c.robots_body,
                        hosts_table.c.robots_fetched_at,
                    ).where(hosts_table.c.host == host)
                )
                .mappings()
                .first()
            )
        if row is None or row["robots_fetched_at"] is None:
            return None
        return row["robots_status"], row["robots_body"] or "", float(row["robots_fetched_at"])

    def save_robots(self, host: str, status: int | None, body: str) -> None:
        def work(conn: Connection) -> None:
            _upsert(
                conn,
                hosts_table,
                {
                    "host": host,
                    "next_allowed_at": 0.0,
                    "robots_status": status,
                    "robots_body": body,
                    "robots_fetched_at": self.clock(),
                },
                "host",
                ("robots_status", "robots_body", "robots_fetched_at"),
            )

        self._retrying(work)

    # ------------------------------------------------------------------ URLs

    def lookup(self, urls: Iterable[str]) -> dict[str, UrlRecord]:
        """Records of ``urls`` (any spelling), keyed by normalized URL."""
        ids: dict[str, str] = {}
        for url in urls:
            normalized = normalize_url(url)
            ids[url_id(normalized)] = normalized
        found: dict[str, UrlRecord] = {}
        keys = list(ids)
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                rows = conn.execute(
                    select(urls_table).where(urls_table.c.url_id.in_(keys[start : start + 500]))
                ).mappings()
                for row in rows:
                    found[ids[row["url_id"]]] = _url_record(row)
        return found

    def get(self, url: str) -> UrlRecord | None:
        return self.lookup([url]).get(normalize_url(url))

    def discover(
        self,
        outlet: str,
        items: Iterable[tuple[str, str | None, float | None]],
        *,
        kind: str = "article",
    ) -> set[str]:
        """Remember discovered ``(url, title, published_at)``; returns the URLs new to us."""
        rows = {}
        for url, title, published in items:
            normalized = normalize_url(url)
            rows[url_id(normalized)] = (normalized, title, published)
        if not rows:
            return set()
        known: set[str] = set()
        with self.engine.connect() as conn:
            keys = list(rows)
            for start in range(0, len(keys), 500):
                known.update(
                    conn.execute(
                        select(urls_table.c.url_id).where(
                            urls_table.c.url_id.in_(keys[start : start + 500])
                        )
                    ).scalars()
                )
        new = {key: value for key, value in rows.items() if key not in known}
        if not new:
            return set()
        now = self.clock()

        def work(conn: Connection) -> None:
            for key, (normalized, title, published) in new.items():
                _ensure_url_row(
                    conn, key, normalized, outlet, kind, now, title=title, published_at=published
                )

        self._retrying(work)
        return {normalized for normalized, _, _ in new.values()}

    def sources(self, outlet: str, kind: str) -> list[str]:
        """URLs of ``kind`` (``feed``/``sitemap``) remembered for ``outlet``: those found by
        homepage discovery (:func:`discover` with that kind) and those already polled."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(urls_table.c.url)
                .where(urls_table.c.outlet == outlet, urls_table.c.kind == kind)
                .order_by(urls_table.c.first_seen_at, urls_table.c.url)
            ).scalars()
            return list(rows)

    def frontier(self, outlet: str, *, limit: int) -> list[UrlRecord]:
        """Articles discovered earlier but never fetched (e.g. over the per-run limit)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(urls_table)
                .where(
                    urls_table.c.outlet == outlet,
                    urls_table.c.kind == "article",
                    urls_table.c.last_fetched_at.is_(None),
                )
                .order_by(urls_table.c.published_at.desc().nulls_last())
                .limit(limit)
            ).mappings()
            return [_url_record(row) for row in rows]

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
        """Record a fetch attempt; returns the URL's content version.

        The version starts at 1 and goes up by one whenever ``content_hash`` differs from the
        stored one. Validators and hash are only replaced by a successful fetch.
        """
        normalized = normalize_url(url)
        key = url_id(normalized)

        def work(conn: Connection) -> int:
            now = self.clock()
            _ensure_url_row(conn, key, normalized, outlet, kind, now)
            row = (
                conn.execute(
                    select(urls_table.c.content_hash, urls_table.c.version)
                    .where(urls_table.c.url_id == key)
                    .with_for_update()
                )
                .mappings()
                .one()
            )
            version = int(row["version"])
            values: dict[str, Any] = {
                "last_fetched_at": now,
                "last_status": status,
                "last_reason": reason,
            }
            if content_hash is not None:
                if content_hash != row["content_hash"]:
                    version += 1
                values.update(
                    content_hash=content_hash,
                    version=version,
                    etag=etag,
                    last_modified=last_modified,
                )
                if children is not None:
                    values["children"] = json.dumps(list(children))
            elif reason == "not_modified" and (etag or last_modified):
                values.update(etag=etag or None, last_modified=last_modified or None)
            conn.execute(update(urls_table).where(urls_table.c.url_id == key).values(values))
            return version

        result: int = self._retrying(work)
        return result

    # ------------------------------------------------------------------ feed health

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
        """Record one poll of a feed or sitemap and return its updated health.

        With ``poll_bounds`` (min, max seconds) it also sets ``next_poll_at``: half the usual
        interval between new items, clamped to the bounds (adaptive polling)."""
        normalized = normalize_url(url)
        key = url_id(normalized)

        def work(conn: Connection) -> FeedHealth:
            now = self.clock()
            _upsert(
                conn,
                health_table,
                {
                    "url_id": key,
                    "url": normalized,
                    "outlet": outlet,
                    "kind": kind,
                    "first_polled_at": now,
                    "consecutive_errors": 0,
                    "total_errors": 0,
                    "total_polls": 0,
                },
                "url_id",
            )
            row = dict(
                conn.execute(
                    select(health_table).where(health_table.c.url_id == key).with_for_update()
                )
                .mappings()
                .one()
            )
            row["last_attempt_at"] = now
            row["total_polls"] += 1
            if ok:
                row["last_success_at"] = now
                row["consecutive_errors"] = 0
                if new_items > 0:
                    previous = row["last_new_item_at"]
                    if previous is not None:
                        gap = now - float(previous)
                        average = row["new_item_interval"]
                        row["new_item_interval"] = (
                            gap if average is None else 0.7 * float(average) + 0.3 * gap
                        )
                    row["last_new_item_at"] = now
            else:
                row["consecutive_errors"] += 1
                row["total_errors"] += 1
                row["last_error"] = (error or "")[:500]
            if poll_bounds is not None:
                low, high = poll_bounds
                usual = row["new_item_interval"]
                base = float(usual) / 2 if usual is not None else high
                row["next_poll_at"] = now + min(max(base, low), high)
            conn.execute(update(health_table).where(health_table.c.url_id == key).values(row))
            row.pop("url_id")
            return FeedHealth(**row)

        result: FeedHealth = self._retrying(work)
        return result

    def feed_health(self, outlet: str | None = None) -> list[FeedHealth]:
        query = select(health_table).order_by(health_table.c.outlet, health_table.c.url)
        if outlet is not None:
            query = query.where(health_table.c.outlet == outlet)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings()
            result = []
            for row in rows:
                values = dict(row)
                values.pop("url_id")
                result.append(FeedHealth(**values))
            return result

    def url_counts(self) -> list[tuple[str, str, str, int]]:
        """``(outlet, kind, last_reason, count)`` over every URL known: what the crawl holds,
        for the exporter (``never_fetched`` where a URL was discovered but not fetched)."""
        reason = func.coalesce(urls_table.c.last_reason, "never_fetched")
        query = (
            select(urls_table.c.outlet, urls_table.c.kind, reason, func.count())
            .group_by(urls_table.c.outlet, urls_table.c.kind, reason)
            .order_by(urls_table.c.outlet, urls_table.c.kind, reason)
        )
        with self.engine.connect() as conn:
            return [(str(o), str(k), str(r), int(n)) for o, k, r, n in conn.execute(query)]

    def get_health(self, url: str) -> FeedHealth | None:
        key = url_id(normalize_url(url))
        with self.engine.connect() as conn:
            row = conn.execute(select(health_table).where(health_table.c.url_id == key)).mappings()
            found = row.first()
        if found is None:
            return None
        values = dict(found)
        values.pop("url_id")
        return FeedHealth(**values)


def _transient(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(
        word in message
        for word in ("database is locked", "deadlock", "could not serialize", "busy")
    )


if TYPE_CHECKING:

    def _conforms(store: StateStore) -> CrawlState:
        return store
