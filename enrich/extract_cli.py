"""``newsflow extract``: run the enrich worker's extraction on saved pages, print JSON Lines.

    newsflow extract PAGE.html[.gz] [--url URL]
    newsflow extract --manifest pages.jsonl     # lines of {"path": ..., "url": ...}

    newsflow extract PAGE.html --outlet daily-klaxon   # with the outlet's registry selectors

One JSON object per page, in input order, flushed as it is produced:
``{"path", "url", "title", "text", "authors", "published_at", "language", "is_article",
"extractor", "provenance"}`` (``provenance``: the method behind each field), or
``{"path", "url", "error"}`` for a page that could not be processed. ``error`` starts with a
stable code: ``file_not_found``, ``unreadable_file``, ``bad_gzip``, an extraction reason
(``unparseable_html``, ``empty_text``), or ``internal_error`` (a bug: please report it).
Exit status: 0 when every page was extracted, 1 when any failed, 2 for a usage error (nothing
is extracted then).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from enrich.extract import ExtractionError, extract_page
from newsflow.selectors import ExtractionOverrides

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class PageRef:
    path: str  # as given (echoed in the output)
    file: Path  # where to read it
    url: str | None


def extract_command(
    path: Annotated[
        Path | None,
        typer.Argument(help="An .html or .html.gz page.", show_default=False),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="The page's URL (resolves relative links, helps find the date)."
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help='JSON Lines of {"path": ..., "url": ...}; relative paths are read from the '
            "manifest's folder.",
            show_default=False,
        ),
    ] = None,
    outlet: Annotated[
        str | None,
        typer.Option(
            "--outlet",
            help="Apply this outlet's extraction selectors from the registry, as the worker "
            "does for its pages.",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            help="Outlets registry for --outlet (default: NEWSFLOW_OUTLETS_FILE).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Extract pages the way the enrich worker does; print one JSON line per page."""
    if (path is None) == (manifest is None):
        raise _usage("give either a PATH or --manifest FILE (exactly one of them)", "PATH")
    if manifest is not None and url is not None:
        raise _usage("--url applies to a single PATH; put urls in the manifest", "--url")
    overrides = _outlet_overrides(outlet, registry) if outlet else None

    if manifest is not None:
        _check_manifest(manifest)  # a bad line fails the run before any page is extracted
        pages: Iterator[PageRef] = _read_manifest(manifest)
    else:
        assert path is not None
        pages = iter([PageRef(path=str(path), file=path, url=url)])

    failed = 0
    for page in pages:
        record = process(page, overrides)
        failed += "error" in record
        typer.echo(json.dumps(record, ensure_ascii=False))  # echo flushes each line
    if failed:
        raise typer.Exit(1)


def _usage(message: str, hint: str = "--manifest") -> typer.BadParameter:
    """A usage error: typer prints it with the usage line and exits with status 2."""
    return typer.BadParameter(message, param_hint=hint)


def _outlet_overrides(name: str, registry_file: Path | None) -> ExtractionOverrides | None:
    from newsflow.outlets import RegistryError, UnknownOutletError, load_registry
    from newsflow.settings import get_settings

    path = registry_file or get_settings().outlets_file
    try:
        return load_registry(path).get(name).extraction
    except (RegistryError, UnknownOutletError) as exc:
        raise _usage(str(exc), "--outlet") from exc


def process(page: PageRef, overrides: ExtractionOverrides | None = None) -> dict[str, Any]:
    """One output record for one page; errors become an ``error`` field, never an exception."""
    head: dict[str, Any] = {"path": page.path, "url": page.url}
    try:
        html = read_page(page.file)
        extraction = extract_page(html, page.url, overrides=overrides)
    except _PageError as exc:
        return {**head, "error": str(exc)}
    except ExtractionError as exc:
        return {**head, "error": str(exc)}
    except Exception as exc:  # a bug on one page must not end the run for the others
        return {**head, "error": f"internal_error: {type(exc).__name__}: {exc}"}
    published = extraction.published_at
    return {
        **head,
        "title": extraction.title,
        "text": extraction.text,
        "authors": list(extraction.authors),
        "published_at": published.isoformat() if published else None,
        "language": extraction.language,
        "is_article": extraction.is_article,
        "extractor": extraction.extractor,
        "provenance": {
            "body": extraction.body_method,
            "title": extraction.title_source,
            "published_at": extraction.date_source,
            "authors": extraction.authors_source,
            "is_article": extraction.article_reason,
        },
    }


class _PageError(Exception):
    """A page file that cannot be read; the message starts with a stable code."""


def read_page(file: Path) -> bytes:
    """The page's bytes, gunzipped when it is gzip (by name or by content)."""
    try:
        data = file.read_bytes()
    except FileNotFoundError as exc:
        raise _PageError(f"file_not_found: {file}") from exc
    except OSError as exc:  # a directory, no permission, ...
        raise _PageError(f"unreadable_file: {file}: {exc.strerror or exc}") from exc
    if file.name.endswith(".gz") or data.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _PageError(f"bad_gzip: {file}: {exc}") from exc
    return data


# --- manifest -------------------------------------------------------------------------------


def _manifest_lines(manifest: Path) -> Iterator[tuple[int, str]]:
    try:
        with manifest.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except FileNotFoundError as exc:
        raise _usage(f"manifest not found: {manifest}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _usage(f"cannot read manifest {manifest}: {exc}") from exc


def _parse_entry(manifest: Path, number: int, line: str) -> PageRef:
    where = f"{manifest}, line {number}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _usage(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(entry, dict):
        raise _usage(f'{where}: expected an object like {{"path": ..., "url": ...}}')
    raw_path, url = entry.get("path"), entry.get("url")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise _usage(f'{where}: "path" must be a non-empty string')
    if url is not None and not isinstance(url, str):
        raise _usage(f'{where}: "url" must be a string or null')
    file = Path(raw_path).expanduser()
    if not file.is_absolute():
        file = manifest.parent / file
    return PageRef(path=raw_path, file=file, url=url or None)


def _check_manifest(manifest: Path) -> None:
    for number, line in _manifest_lines(manifest):
        _parse_entry(manifest, number, line)


def _read_manifest(manifest: Path) -> Iterator[PageRef]:
    for number, line in _manifest_lines(manifest):
        yield _parse_entry(manifest, number, line)
