"""``newsflow crawl``: one crawl of one source, for operators, with the DAGs' code.

Why a separate entry point: an operator wants to see what a source yields (and why URLs are
skipped) before adding it to the registry, without Kafka. The crawl is the same
:func:`ingest.crawl.crawl_outlet` the DAG task runs, with the shared rate limit and robots
cache, so trying a source is exactly as polite as crawling it. By default nothing is
recorded as seen (a throw-away state), so the DAG still ingests those pages later;
``record=True`` uses the shared state like a DAG run.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from ingest.crawl import CrawlOutcome, crawl_outlet, summarize
from ingest.fetch import Fetcher
from ingest.state import StateStore
from newsflow.outlets import Outlet, load_registry
from newsflow.settings import Settings

__all__ = ["adhoc_outlet", "run_crawl"]

log = logging.getLogger(__name__)


def adhoc_outlet(
    feeds: Sequence[str], sitemaps: Sequence[str], *, allow_private: bool = False
) -> Outlet:
    """An outlet for a source not in the registry: the default policy, its own domain."""
    first = (list(feeds) + list(sitemaps))[0]
    parts = urlsplit(first)
    return Outlet(
        name="adhoc",
        display_name=f"Ad hoc: {parts.netloc}",
        homepage=f"{parts.scheme}://{parts.netloc}/",
        feeds=list(feeds),
        sitemaps=list(sitemaps),
        allow_private_network=allow_private,
    )


def run_crawl(
    settings: Settings,
    emit: Callable[[dict[str, Any]], None],
    *,
    outlet_name: str | None = None,
    registry_file: Path | None = None,
    feeds: Sequence[str] = (),
    sitemaps: Sequence[str] = (),
    allow_private: bool = False,
    record: bool = False,
) -> dict[str, Any]:
    """Crawl once, calling ``emit`` with one JSON-able dict per URL; returns the summary."""
    if outlet_name is not None:
        outlet = load_registry(registry_file or settings.outlets_file).get(outlet_name)
    elif feeds or sitemaps:
        outlet = adhoc_outlet(feeds, sitemaps, allow_private=allow_private)
    else:
        raise ValueError("give an OUTLET, or --feed / --sitemap URLs")
    try:
        shared: StateStore | None = StateStore.from_settings(settings)
    except SQLAlchemyError as exc:  # no database: still polite within this process
        log.warning("shared state unavailable (%s); rate limit is per process", exc)
        shared = None
    outcomes: list[CrawlOutcome] = []
    with tempfile.TemporaryDirectory(prefix="newsflow-crawl-") as scratch:
        if record and shared is not None:
            state = shared
        else:
            state = StateStore.from_url(f"sqlite:///{Path(scratch) / 'state.db'}")
        with Fetcher(settings, state=shared) as fetcher:
            for outcome in crawl_outlet(outlet, fetcher=fetcher, settings=settings, state=state):
                outcomes.append(outcome)
                emit(outcome.json_line())
        state.engine.dispose()
    summary = summarize(outcomes)
    summary["outlet"] = outlet.name
    return summary
