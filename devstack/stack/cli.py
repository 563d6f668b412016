"""``newsflow stack up|down|status|install``: the local stack from a shell or a Makefile.

The stack's machinery (:mod:`devstack.stack._core`) is imported by the command that runs:
``newsflow`` registers these commands on every start, ``newsflow extract`` too.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from typing import Annotated

import typer

stack_app = typer.Typer(
    help="Run the local stack (Kafka, Elasticsearch, Airflow, sample outlets) without Docker.",
    no_args_is_help=True,
    add_completion=False,
)

OnlyOpt = Annotated[
    str | None,
    typer.Option(
        "--only",
        help="Comma-separated components: kafka, elasticsearch (es), airflow, samples, "
        "workers, api, or one Airflow process (airflow-api, airflow-scheduler, ...). Default: all.",
    ),
]


def _logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)


@stack_app.command("up")
def up_cmd(
    only: OnlyOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for each component's health.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    nodes: Annotated[
        int | None,
        typer.Option(
            help="Kafka and Elasticsearch nodes: 1, or 3 for a cluster (replication factor 3, "
            "min ISR 2, one index replica). Remembered by later up/status/down. Default: as "
            "last time, else 1."
        ),
    ] = None,
) -> None:
    """Start what is not running yet (downloading Kafka/ES the first time) and wait for health."""
    from devstack.stack._core import StackError, cluster_exports, up

    _logging(quiet)
    try:
        report = up(only, timeout=timeout, nodes=nodes)
    except StackError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    for r in report.results:
        pid = str(r.pid) if r.pid else "-"
        typer.echo(f"{r.name:<22} {r.action:<16} {r.seconds:>6.1f}s  pid {pid:<8} {r.url}")
        if r.action == "started" and r.log:
            typer.echo(f"{'':<22} log {r.log}")
    installs = ", ".join(f"{k} {v:.1f}s" for k, v in report.install_seconds.items())
    suffix = f" (install: {installs})" if installs else ""
    typer.echo(f"stack up in {report.seconds:.1f}s{suffix}")
    exports = cluster_exports()
    if exports:
        typer.echo(f"cluster profile: to use it from this shell,\n  export {exports}")


@stack_app.command("down")
def down_cmd(
    only: OnlyOpt = None,
    all_processes: Annotated[
        bool,
        typer.Option(
            "--all", help="Also stop unrecorded processes that carry this run dir's marker."
        ),
    ] = False,
    purge: Annotated[
        bool, typer.Option(help="Then delete the run dir's data (Kafka, ES, Airflow DB, logs).")
    ] = False,
    grace: Annotated[float, typer.Option(help="Max seconds between SIGTERM and SIGKILL.")] = 30.0,
) -> None:
    """Stop what `up` started (process groups: SIGTERM, then SIGKILL after the grace period)."""
    from devstack.stack._core import down

    _logging(False)
    try:
        stopped = down(only, only_started_by_us=not all_processes, grace_seconds=grace, purge=purge)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing (none was ours)"))


@stack_app.command("status")
def status_cmd(
    only: OnlyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 unless every component is healthy.")
    ] = False,
) -> None:
    """Each process: state, pid (if we started it), restarts and last exit (workers), URL and
    health."""
    from devstack.stack._core import status

    try:
        rows = status(only)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], default=str, indent=2))
    else:
        width = max([len("URL"), *(len(r.url) for r in rows)])
        exits = max([len("LAST EXIT"), *(len(r.last_exit or "-") for r in rows)])
        typer.echo(
            f"{'COMPONENT':<22} {'STATE':<10} {'PID':<8} {'RESTARTS':<8} "
            f"{'LAST EXIT':<{exits}} {'URL':<{width}} HEALTH"
        )
        for r in rows:
            pid = str(r.pid) if r.pid else ("ext" if r.healthy else "-")
            restarts = "-" if r.restarts is None else str(r.restarts)
            typer.echo(
                f"{r.name:<22} {r.state:<10} {pid:<8} {restarts:<8} "
                f"{r.last_exit or '-':<{exits}} {r.url:<{width}} {r.detail}"
            )
    if check and not all(r.healthy for r in rows):
        raise typer.Exit(1)


@stack_app.command("install")
def install_cmd(only: OnlyOpt = None) -> None:
    """Download and prepare without starting (Kafka jars, ES zip, Airflow DB migration)."""
    from devstack.stack._core import install

    _logging(False)
    try:
        took = install(only)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(", ".join(f"{k} {v:.1f}s" for k, v in took.items()) or "nothing to install")
