"""A progress bar on stderr for long benchmark loops (stdout keeps only the figures)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

import typer

T = TypeVar("T")


def progress(items: Sequence[T], label: str) -> Iterator[T]:
    """Iterate ``items`` with a bar on stderr (click shows only the label when not a tty)."""
    with typer.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar
