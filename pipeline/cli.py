"""The ``newsflow`` command line: one entry point for operators, workers and the demo."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from enrich.dedup.cli import dedup_command
from enrich.extract_cli import extract_command
from newsflow import topology
from newsflow.settings import Settings, get_settings

if TYPE_CHECKING:
    from alert.store import WatchStore

app = typer.Typer(
    name="newsflow",
    help="Event-driven news ingestion: outlets → Airflow → Kafka → enrichment → Elasticsearch.",
    no_args_is_help=True,
    add_completion=False,
)
worker_app = typer.Typer(help="Run a pipeline stage as a Kafka consumer group member.")
outlets_app = typer.Typer(help="The outlets registry.")
dlq_app = typer.Typer(help="Inspect and replay the dead-letter topic.")
watch_app = typer.Typer(help="Saved searches that alert on new stories.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
app.add_typer(outlets_app, name="outlets")
app.add_typer(dlq_app, name="dlq")
app.add_typer(watch_app, name="watch")
app.command("extract", help="Extract article fields from saved pages, one JSON line each.")(
    extract_command
)
app.command("dedup", help="Deduplicate and cluster JSON Lines articles read on stdin.")(
    dedup_command
)

IdleTimeout = Annotated[
    float | None,
    typer.Option(help="Stop after this many seconds without messages (default: run forever)."),
]
_DEFAULT_PORTS = ", ".join(
    f"{row.name} {topology.metrics_port(row, Settings.model_construct())}"
    for row in topology.STAGES
)
MetricsPort = Annotated[
    int | None,
    typer.Option(
        help="Port for /metrics and /health (default: NEWSFLOW_WORKER_METRICS_BASE_PORT + the "
        f"stage's place: {_DEFAULT_PORTS}; 0: a free port)."
    ),
]


def _configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def init() -> None:
    """Create the Kafka topics and the Elasticsearch templates and aliases (idempotent)."""
    from pipeline.stages import initialize

    _configure_logging()
    result = initialize(get_settings())
    typer.echo(json.dumps(result))


def _add_worker_command(row: topology.StageDef) -> None:
    def worker(idle_timeout: IdleTimeout = None, metrics_port: MetricsPort = None) -> None:
        from pipeline.stages import StageStartError, run_stage

        _configure_logging()
        try:
            run_stage(
                row.name, get_settings(), idle_timeout=idle_timeout, metrics_port=metrics_port
            )
        except StageStartError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None

    worker_app.command(row.name, help=row.description)(worker)


for _row in topology.STAGES:
    _add_worker_command(_row)


@contextmanager
def _watch_store(settings: Settings) -> Iterator[WatchStore]:
    """The watches' store on a client of its own, closed after the command's one call."""
    from alert.store import WatchStore
    from newsflow.es import make_client

    es = make_client(settings)
    try:
        yield WatchStore(es, settings.index_prefix)
    finally:
        es.close()


@watch_app.command("add")
def watch_add(
    name: Annotated[str, typer.Argument(help="A name for people (shown in alerts).")],
    query: Annotated[str, typer.Argument(help="Search-box syntax, as `newsflow search`.")],
    webhook: Annotated[
        str | None, typer.Option(help="POST each alert here (signed; see the README).")
    ] = None,
) -> None:
    """Register a watch: new stories matching QUERY raise alerts. Prints the watch as JSON."""
    from alert.watches import InvalidWatchError, build_watch

    settings = get_settings()
    try:
        watch, understood = build_watch(
            name, query, settings, webhook_url=webhook, created_by="cli"
        )
    except InvalidWatchError as exc:
        typer.echo(f"{exc.field}: {exc}", err=True)
        raise typer.Exit(2) from None
    with _watch_store(settings) as store:
        store.add(watch)
    shown = {**watch.model_dump(mode="json"), "understood": understood}
    if watch.webhook_secret is not None:
        shown["webhook_secret"] = watch.webhook_secret  # shown this once: give it the receiver
    typer.echo(json.dumps(shown))


@watch_app.command("rotate-secret")
def watch_rotate_secret(
    watch_id: Annotated[str, typer.Argument(help="The watch's id (w-...).")],
) -> None:
    """A new webhook secret for the watch, printed once; the old one stops verifying."""
    with _watch_store(get_settings()) as store:
        rotated = store.rotate_webhook_secret(watch_id)
    if rotated is None:
        typer.echo(f"no watch {watch_id} with a webhook", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"id": watch_id, "webhook_secret": rotated[1]}))


@watch_app.command("list")
def watch_list() -> None:
    """One JSON line per watch, oldest first."""
    with _watch_store(get_settings()) as store:
        watches = store.list()
    for watch in watches:
        typer.echo(watch.model_dump_json())


@watch_app.command("rm")
def watch_rm(watch_id: Annotated[str, typer.Argument(help="The watch's id (w-...).")]) -> None:
    """Delete a watch: it raises no more alerts (alerts already sent stay on the topic)."""
    with _watch_store(get_settings()) as store:
        found = store.delete(watch_id)
    if not found:
        typer.echo(f"no watch {watch_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted {watch_id}")


@app.command()
def search(
    query: Annotated[
        str,
        typer.Argument(
            help='Words, "quoted phrases", AND/OR/NOT, -word, (groups), title:/outlet:/author:/'
            "lang: prefixes: the syntax of the API's GET /v1/search."
        ),
    ],
    size: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per story.")] = False,
) -> None:
    """Print the top stories matching QUERY: title, outlet, date, URL (the API's first page)."""
    from elasticsearch import NotFoundError

    from index.search import StorySearch
    from newsflow.es import IndexNames, make_client
    from newsflow.query import QueryTooComplexError

    settings = get_settings()
    es = make_client(settings)
    try:
        hits = StorySearch(es, IndexNames(settings.index_prefix)).top_stories(query, size=size)
    except QueryTooComplexError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except NotFoundError:
        typer.echo("the articles index does not exist: run `newsflow init`", err=True)
        raise typer.Exit(2) from None
    finally:
        es.close()
    if as_json:
        for hit in hits:
            story = hit.story_or_article()
            typer.echo(
                json.dumps(
                    {
                        "story_id": hit.story_id,
                        "title": hit.title,
                        "outlet": hit.outlet,
                        "published_at": hit.published_at.isoformat() if hit.published_at else None,
                        "url": hit.url,
                        "articles": story.articles,
                        "outlets": story.outlets,
                    }
                )
            )
        return
    if not hits:
        typer.echo(f"No stories match {query!r}.")
        raise typer.Exit(1)
    for rank, hit in enumerate(hits, 1):
        story = hit.story_or_article()
        when = hit.published_at.strftime("%Y-%m-%d %H:%M") if hit.published_at else "undated"
        typer.echo(f"{rank}. {hit.title or '(untitled)'}")
        typer.echo(f"   {hit.outlet} · {when} · {hit.url}")
        if story.articles > 1:
            typer.echo(
                f"   {story.articles} articles in one story, from: {', '.join(story.outlets)}"
            )


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default NEWSFLOW_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default NEWSFLOW_API_PORT).")] = None,
) -> None:
    """Serve the search API and its web page (OpenAPI schema at /openapi.json)."""
    import ipaddress

    import uvicorn

    from newsflow.api_auth import AuthConfigError
    from pipeline.api import create_app

    _configure_logging()
    settings = get_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if settings.api_auth == "off" and not loopback:
        typer.echo(
            f"refusing to serve on {host} with NEWSFLOW_API_AUTH=off: auth may be off only on "
            "a loopback address",
            err=True,
        )
        raise typer.Exit(2)
    try:
        application = create_app(settings)
    except AuthConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(application, host=host, port=port, log_level="info", server_header=False)


@app.command()
def backfill(
    stage: Annotated[str, typer.Argument(help="enrich (re-extract raw pages) or index.")],
    since: Annotated[
        datetime | None,
        typer.Option(help="Only messages from this time on (ISO 8601, UTC when naive)."),
    ] = None,
) -> None:
    """Run a stage again over its input topic, beside the live workers, with progress."""
    from pipeline.backfill import BACKFILL_STAGES
    from pipeline.backfill import backfill as run_backfill

    if stage not in BACKFILL_STAGES:
        raise typer.BadParameter(
            f"one of {', '.join(BACKFILL_STAGES)} (dedup keeps one owner of its state)",
            param_hint="STAGE",
        )
    when = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    with ExitStack() as stack:
        bar: list[Any] = []

        def start(planned: int) -> None:
            typer.echo(f"backfill {stage}: {planned} message(s) to process", err=True)
            bar.append(
                stack.enter_context(typer.progressbar(length=planned, label=stage, file=sys.stderr))
            )

        result = run_backfill(
            stage,
            get_settings(),
            since=when,
            on_start=start,
            progress=lambda count: bar[0].update(count) if bar else None,
        )
    typer.echo(
        json.dumps(
            {
                "stage": stage,
                "group_id": result.group_id,
                "planned": result.planned,
                "consumed": result.consumed,
                "outcomes": result.outcomes,
            }
        )
    )


@app.command()
def exporter(
    port: Annotated[int | None, typer.Option(help="Port (default NEWSFLOW_EXPORTER_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
) -> None:
    """Serve ingest metrics (URL outcomes per outlet, feed health) from the crawl state."""
    from prometheus_client import CollectorRegistry

    from ingest.exporter import IngestCollector
    from newsflow.observability import MetricsServer

    _configure_logging()
    settings = get_settings()
    collector = IngestCollector(settings)
    registry = CollectorRegistry()
    registry.register(collector)
    listen = host or settings.worker_metrics_host
    server = MetricsServer(
        registry,
        lambda: (collector.last_ok is not False, {"process": "exporter"}),
        host=listen,
        port=settings.exporter_port if port is None else port,
    )
    typer.echo(f"ingest metrics on http://{listen}:{server.port}/metrics")
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()


@outlets_app.command("validate")
def outlets_validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Check a registry file and report every problem at once."""
    from newsflow.outlets import RegistryError, load_registry

    try:
        registry = load_registry(file)
    except RegistryError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{file}: {len(registry.outlets)} outlets, all valid")


@app.command()
def ingest(
    outlet: Annotated[str, typer.Argument(help="Outlet name from the registry.")],
    registry: Annotated[Path | None, typer.Option(help="Registry file.")] = None,
) -> None:
    """Discover, fetch and publish one outlet's articles once (what its DAG runs)."""
    from ingest.publish import publish_outlet

    _configure_logging()
    summary = publish_outlet(outlet, get_settings(), registry_file=registry)
    typer.echo(json.dumps(summary))


@app.command()
def crawl(
    outlet: Annotated[str | None, typer.Argument(help="Outlet name from the registry.")] = None,
    registry: Annotated[Path | None, typer.Option(help="Registry file.")] = None,
    feed: Annotated[list[str] | None, typer.Option(help="A feed not in the registry.")] = None,
    sitemap: Annotated[
        list[str] | None, typer.Option(help="A sitemap not in the registry.")
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="One JSON line per URL (always on; no Kafka).")
    ] = True,
    allow_private: Annotated[
        bool, typer.Option(help="--feed/--sitemap: allow the source's own private host.")
    ] = False,
    record: Annotated[
        bool, typer.Option(help="Remember what was fetched in the shared state, like a DAG.")
    ] = False,
) -> None:
    """Discover and fetch one outlet (or a --feed/--sitemap) once, without Kafka: prints one
    JSON line per URL fetched or skipped (url, status, reason, bytes, elapsed_ms)."""
    from ingest.operator import run_crawl

    _configure_logging()
    if (outlet is None) == (not feed and not sitemap):
        typer.echo("give either OUTLET or --feed/--sitemap URLs", err=True)
        raise typer.Exit(2)
    summary = run_crawl(
        get_settings(),
        lambda line: typer.echo(json.dumps(line)),
        outlet_name=outlet,
        registry_file=registry,
        feeds=feed or [],
        sitemaps=sitemap or [],
        allow_private=allow_private,
        record=record,
    )
    typer.echo(json.dumps(summary), err=True)


@dlq_app.command("list")
def dlq_list(
    summary: Annotated[
        bool, typer.Option("--summary", help="Counts by stage, kind and reason instead.")
    ] = False,
) -> None:
    """One JSON line per dead letter: where it came from, why, and its URL."""
    from collections import Counter

    from newsflow.dlq import read_letters

    if summary:
        counts = Counter(
            (s.letter.stage, s.letter.error_kind, s.letter.reason)
            for s in read_letters(get_settings())
        )
        for (stage, kind, reason), count in sorted(counts.items()):
            typer.echo(f"{count:>8}  {stage:<8} {kind:<18} {reason}")
        typer.echo(f"{sum(counts.values()):>8}  dead letters in all")
        return
    for stored in read_letters(get_settings()):
        letter = stored.letter
        typer.echo(
            json.dumps(
                {
                    "partition": stored.partition,
                    "offset": stored.offset,
                    "stage": letter.stage,
                    "source": f"{letter.source_topic}[{letter.partition}]@{letter.offset}",
                    "reason": letter.reason,
                    "error_kind": letter.error_kind,
                    "url": letter.url,
                    "detail": letter.detail,
                    "failed_at": letter.failed_at.isoformat(),
                    **(
                        {"value_truncated": True, "value_bytes": letter.value_bytes}
                        if letter.value_truncated
                        else {}
                    ),
                }
            )
        )


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str | None, typer.Option(help="Only letters with this reason.")] = None,
    stage: Annotated[str | None, typer.Option(help="Only letters from this stage.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed.")] = False,
) -> None:
    """Send dead letters back to the topic they came from, e.g. after a fix.

    A letter cut to fit the dead-letter topic is replayed from its original, re-read from
    the source topic; one whose original is gone is named and skipped (exit code 1).
    """
    from newsflow.dlq import select_letters, send_back

    settings = get_settings()
    selected = select_letters(settings, reason=reason, stage=stage)
    if dry_run:
        truncated = sum(1 for stored in selected if stored.letter.value_truncated)
        typer.echo(
            f"would replay {len(selected)} message(s)"
            + (f", {truncated} re-read from their source topic" if truncated else "")
        )
        return
    with typer.progressbar(length=len(selected), label="replaying", file=sys.stderr) as bar:
        result = send_back(settings, selected, progress=bar.update)
    for skipped in result.skipped:
        letter = skipped.stored.letter
        typer.echo(
            f"skipped dead letter {skipped.stored.partition}@{skipped.stored.offset} "
            f"({letter.source_topic}[{letter.partition}]@{letter.offset}, {letter.reason}, "
            f"url {letter.url}): {skipped.why}"
        )
    typer.echo(f"replayed {len(result.sent)} message(s)")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} message(s) that could not be replayed")
        raise typer.Exit(1)


def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the pipeline.")] = 600,
) -> None:
    """Start the stack, run every outlet's DAG through Airflow, and search for the seed story."""
    from devstack.demo import run_demo

    _configure_logging()
    raise typer.Exit(run_demo(get_settings(), timeout=timeout))


def _add_dev_tooling() -> None:
    """``newsflow stack`` and ``newsflow demo`` exist where the dev tooling does (a checkout);
    the runtime wheel and image ship without it."""
    if importlib.util.find_spec("devstack") is None:
        return
    from devstack.stack import stack_app

    app.add_typer(stack_app, name="stack", help="The local stack: Kafka, Elasticsearch, Airflow.")
    app.command()(demo)


_add_dev_tooling()


def main() -> None:
    app()
