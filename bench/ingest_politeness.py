"""Crawl every sample outlet twice, concurrently, with the shared state; report politeness.

Why: the issue asks for observed requests per host per second against the configured limit,
and for the number of re-fetches on a second run (expected: none for unchanged pages).

    .venv/bin/python -m bench.ingest_politeness [--interval 0.5] [--state-url URL]

Starts the sample site in-process on a free loopback port (all outlets share that one
host:port, hence one rate-limit budget), runs one thread per outlet per round (each its own
Fetcher, like separate Airflow tasks, sharing only the database), and prints JSON.
The default state URL is a scratch PostgreSQL database on the stack's server, recreated.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from devstack.samples.site import OUTLETS_FILE, start_server
from ingest.crawl import CrawlOutcome, crawl_outlet, summarize
from ingest.fetch import Fetcher, FetchPolicy
from ingest.state import StateStore, stack_password_args
from newsflow.outlets import load_registry
from newsflow.settings import Settings

DEFAULT_STATE = "postgresql+psycopg2://airflow@127.0.0.1:5433/newsflow_bench"


def _recreate(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = create_engine(
        parsed.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args=stack_password_args(url),
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}"')
    admin.dispose()


def _round(
    settings: Settings, state: StateStore, base_url: str, interval: float
) -> tuple[dict[str, list[CrawlOutcome]], list[tuple[str, float]]]:
    registry = load_registry(OUTLETS_FILE, base_url=base_url)
    outcomes: dict[str, list[CrawlOutcome]] = {}
    log: list[tuple[str, float]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        outlet = registry.get(name)
        policy = FetchPolicy.for_outlet(outlet, settings, politeness_delay=interval)
        with Fetcher(settings, state=state) as fetcher:
            got = list(
                crawl_outlet(outlet, fetcher=fetcher, settings=settings, state=state, policy=policy)
            )
        with lock:
            outcomes[name] = got
            log.extend(fetcher.request_log)

    threads = [threading.Thread(target=work, args=(n,)) for n in registry.names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, sorted(log, key=lambda entry: entry[1])


def _rates(log: list[tuple[str, float]], interval: float) -> dict[str, Any]:
    per_host: dict[str, Any] = {}
    for host in sorted({h for h, _ in log}):
        times = [t for h, t in log if h == host]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        gaps = [b - a for a, b in itertools.pairwise(times)]
        per_host[host] = {
            "requests": len(times),
            "seconds": round(span, 3),
            "observed_rps": round((len(times) - 1) / span, 3) if span else None,
            "limit_rps": round(1 / interval, 3) if interval else None,
            "min_gap_s": round(min(gaps), 3) if gaps else None,
        }
    return per_host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.5, help="seconds per request/host")
    parser.add_argument("--state-url", default=DEFAULT_STATE)
    args = parser.parse_args(argv)
    _recreate(args.state_url)
    settings = Settings(state_db_url=args.state_url, host_min_interval_seconds=args.interval)
    state = StateStore.from_settings(settings)
    report: dict[str, Any] = {"interval_s": args.interval, "state": args.state_url, "runs": []}
    with start_server("127.0.0.1", 0) as site:
        for run in (1, 2):
            outcomes, log = _round(settings, state, site.base_url, args.interval)
            articles = [o for got in outcomes.values() for o in got if o.kind == "article"]
            report["runs"].append(
                {
                    "run": run,
                    "requests": len(log),
                    "article_requests": sum(1 for o in articles if o.status is not None),
                    "pages_produced": sum(1 for o in articles if o.page is not None),
                    "per_host": _rates(log, args.interval),
                    "summary": {name: summarize(got) for name, got in sorted(outcomes.items())},
                }
            )
    state.engine.dispose()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
