"""``newsflow dedup``: the pipeline's dedup and clustering over JSON Lines, no services.

Reads ``{"id", "url", "outlet", "title", "text", "published_at"}`` per line on stdin in
arrival order and writes, per input line and in order, ``{"id", "duplicate_of",
"story_id"}`` (``--verbose`` adds version, reason, similarity and the story). State is in
memory, so a run is a fresh window. A line that is not a valid input gets
``{"id", "error"}`` and the exit status is 1; the other lines are still decided.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError


def dedup_command(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the whole decision per line.")
    ] = False,
    window_days: Annotated[
        float, typer.Option("--window-days", help="Dedup window (articles remembered).")
    ] = 30.0,
) -> None:
    """Deduplicate and cluster articles read as JSON Lines on stdin; one line out per line in."""
    # imported here: ``newsflow`` registers this command on every start, ``newsflow extract`` too
    from enrich.dedup.engine import DedupConfig, DedupEngine, DedupInput

    engine = DedupEngine(DedupConfig(window_seconds=int(window_days * 86400)))
    failed = False
    out = sys.stdout
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        record: dict[str, Any]
        try:
            item = DedupInput.model_validate_json(line)
        except ValidationError as exc:
            failed = True
            record = {"id": _guess_id(line), "error": f"invalid_input: line {number}: {_why(exc)}"}
        else:
            decision = engine.observe(item)
            if verbose:
                record = decision.model_dump(mode="json")
            else:
                record = {
                    "id": decision.id,
                    "duplicate_of": decision.duplicate_of,
                    "story_id": decision.story_id,
                }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    if failed:
        raise typer.Exit(1)


def _why(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "line"
    return f"{where}: {first['msg']}"


def _guess_id(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None
