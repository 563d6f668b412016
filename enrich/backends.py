"""Body-text extractors, tried in order (the cascade) until one finds text.

Each backend takes the parsed page and returns its main text, or ``None``. The cascade is the
seam where further extractors plug in: a backend only needs a ``name`` and an ``extract``
method. The heavy libraries are imported on first use, not when this module is imported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from enrich.body_vote import capturing_readability, drop_trailing_links, trim_edges

log = logging.getLogger(__name__)


class BodyExtractor(Protocol):
    """Finds the main text of a page. ``name`` goes into ``Extraction.extractor``."""

    @property
    def name(self) -> str: ...

    def extract(self, tree: Any, url: str | None) -> str | Body | None:
        """The page's main text (paragraphs separated by newlines), or ``None``.

        A :class:`Body` instead of a string names the method that produced this page's text,
        for a backend that chooses between methods per page (else ``name`` is recorded).
        Must not modify ``tree``: the next backend in the cascade gets the same one.
        """
        ...


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    backend: str


@cache
def trafilatura_version() -> str:
    from importlib.metadata import version

    return version("trafilatura")


class TrafilaturaBody:
    """trafilatura's main extractor, without comments; short edge lines checked by readability.

    ``check_edges``: drop the runs of short lines at the start and end of the text that
    readability (run by trafilatura anyway, see :mod:`enrich.body_vote`) did not find, when
    readability vouches for the rest, then a trailing run of lines that are whole link texts.
    ``favor_recall``: trafilatura's recall mode, the cascade's second try on the pages where
    the default mode finds no article at all.
    """

    def __init__(
        self,
        *,
        favor_precision: bool = False,
        favor_recall: bool = False,
        check_edges: bool = True,
    ) -> None:
        self.favor_precision = favor_precision
        self.favor_recall = favor_recall
        self.check_edges = check_edges

    @property
    def name(self) -> str:
        mode = "-recall" if self.favor_recall else "-precision" if self.favor_precision else ""
        return f"trafilatura{mode}/{trafilatura_version()}"

    def extract(self, tree: Any, url: str | None) -> str | Body | None:
        from trafilatura import bare_extraction

        with capturing_readability() as readability:
            document = bare_extraction(
                tree,  # trafilatura works on its own copy of the tree
                url=url,
                favor_precision=self.favor_precision,
                favor_recall=self.favor_recall,
                include_comments=False,
                include_tables=True,
                with_metadata=False,
            )
        text = getattr(document, "text", None)  # a Document, or None when nothing was found
        if not text:
            return None
        if not self.check_edges or not readability:
            return str(text)
        cleaned = clean_text(str(text))
        # the first run is the main pass's; later ones belong to trafilatura's recall retry
        trimmed = trim_edges(cleaned, readability[0], tree)
        trimmed = drop_trailing_links(trimmed, tree)
        if trimmed == cleaned:
            return cleaned
        return Body(text=trimmed, backend=f"trafilatura+readability-edges/{trafilatura_version()}")


class TrafilaturaBaseline:
    """trafilatura's baseline: article/paragraph text, else the whole visible body text.

    The fallback for pages the main extractor rejects as having no article body (section
    fronts, link lists): their text is still worth keeping, flagged ``is_article=False``.
    """

    @property
    def name(self) -> str:
        return f"trafilatura-baseline/{trafilatura_version()}"

    def extract(self, tree: Any, url: str | None) -> str | None:
        from trafilatura import baseline

        _body, text, length = baseline(tree)  # copies the tree before cleaning it
        return str(text) if length else None


# Balanced mode: favor_precision measured +0.002 F1 on zyte but -0.024 on the WCXB articles
# (recall -3.4 points, precision unchanged), and is a quarter slower. Recall mode only where
# balanced mode finds nothing (under 1% of the corpus pages, so its cost is theirs alone): it
# finds an article there on some pages that the baseline's paragraph dump misses.
DEFAULT_CASCADE: tuple[BodyExtractor, ...] = (
    TrafilaturaBody(),
    TrafilaturaBody(favor_recall=True, check_edges=False),
    TrafilaturaBaseline(),
)


def run_cascade(
    tree: Any, url: str | None, cascade: Sequence[BodyExtractor] = DEFAULT_CASCADE
) -> Body | None:
    """The first non-blank text any backend finds, cleaned; ``None`` when none finds any.

    A backend that raises is logged and skipped: one library's bug on one page should not
    stop the others from trying.
    """
    for backend in cascade:
        try:
            raw = backend.extract(tree, url)
        except Exception:
            log.warning("extractor %s failed on %s", backend.name, url, exc_info=True)
            continue
        method = backend.name
        if isinstance(raw, Body):
            raw_text: str | None = raw.text
            method = raw.backend
        else:
            raw_text = raw
        text = clean_text(raw_text) if raw_text else ""
        if text:
            return Body(text=text, backend=method)
    return None


def clean_text(text: str) -> str:
    """Plain text, one paragraph (or list item, heading, table row) per line.

    trafilatura renders lists and tables as Markdown (``- item``, ``| a | b |``); the body is
    plain text, so the markers go: they are not the publisher's words, and they split the
    sentences around them for every consumer that counts words or word sequences.
    """
    lines = (_plain_line(" ".join(line.split())) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


_LIST_BULLET = re.compile(r"^(?:[-*•]\s+)+")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_RULE_CELL = re.compile(r":?-{3,}:?")


def _plain_line(line: str) -> str:
    """One Markdown-rendered line as plain text: a row's cells joined by spaces, no bullet."""
    if len(line) > 1 and line.startswith("|") and line.endswith("|"):
        cells = [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(line[1:-1])]
        if all(_RULE_CELL.fullmatch(cell) for cell in cells if cell):
            return ""  # the rule under a header row
        return " ".join(cell for cell in cells if cell)
    if line in ("-", "*", "•"):
        return ""  # an empty list item
    return _LIST_BULLET.sub("", line)
