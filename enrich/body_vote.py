"""A second opinion on trafilatura's body text: readability's, which trafilatura computes anyway.

trafilatura finds the article well but often keeps short lines before or after it: a
standfirst repeated from a teaser, "Read more", newsletter and social prompts, a sign-off,
a caption. readability errs differently, so a line at either edge of trafilatura's text that
readability did not find either is dropped. Only the edges: readability misses lists, tables
and headings inside an article, and a line there that it misses is still the article's.

No second extraction is paid for: trafilatura's default mode already runs readability on every
page (to compare with its own result). :func:`capturing_readability` keeps that result for the
caller; when it is not there (another trafilatura version), the text is kept as it is.

Agreement is measured on word trigrams, so that two renderings of one paragraph (other line
breaks, a caption glued on) still agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

GRAM = 3  # words per n-gram when comparing a line with readability's text
MIN_SUPPORT = 0.5  # share of a line's trigrams readability must have found to confirm it
# Only short lines are dropped at the edges: a long one is a paragraph readability cut, not
# furniture (measured: dropping longer lines gained on one set and lost on the other).
MAX_EDGE_WORDS = 30
# readability that confirms less than half the text has found another part of the page:
# its opinion is not used then.
MAX_DROP_SHARE = 0.5
# Nor when it would drop more than this many lines: on listings, service and product pages
# the short lines are the content, and readability keeps only the longest block (measured:
# no cap cost up to 0.03 word F1 on those WCXB page types, this cap about 0.002).
MAX_DROP_LINES = 2

_WORD = re.compile(r"\w+")

_readability_texts: ContextVar[list[str] | None] = ContextVar("_readability_texts", default=None)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def ngrams(tokens: Sequence[str], size: int = GRAM) -> set[tuple[str, ...]]:
    """Every run of 1 to ``size`` words, so that short lines can be looked up whole."""
    found: set[tuple[str, ...]] = set()
    for n in range(1, size + 1):
        found.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return found


def support(tokens: Sequence[str], found: set[tuple[str, ...]], size: int = GRAM) -> float:
    """Share of the line's ``size``-grams in ``found`` (a shorter line: found whole or not)."""
    if not tokens:
        return 1.0
    if len(tokens) < size:
        return 1.0 if tuple(tokens) in found else 0.0
    total = len(tokens) - size + 1
    return sum(tuple(tokens[i : i + size]) in found for i in range(total)) / total


def trim_edges(text: str, confirming: str) -> str:
    """``text`` without the runs of short lines at its start and end ``confirming`` lacks.

    ``text`` is returned unchanged when ``confirming`` is empty, would confirm less than half
    of it (then it describes another part of the page), or would drop more than
    ``MAX_DROP_LINES`` lines.
    """
    lines = text.splitlines()
    if not confirming.strip() or len(lines) < 2:
        return text
    found = ngrams(words(confirming))
    tokens = [words(line) for line in lines]

    def droppable(i: int) -> bool:
        return len(tokens[i]) <= MAX_EDGE_WORDS and support(tokens[i], found) < MIN_SUPPORT

    start, end = 0, len(lines)
    while start < end - 1 and droppable(start):
        start += 1
    while end - 1 > start and droppable(end - 1):
        end -= 1
    if start == 0 and end == len(lines):
        return text
    if start + len(lines) - end > MAX_DROP_LINES:
        return text
    total = sum(len(t) for t in tokens)
    kept = sum(len(t) for t in tokens[start:end])
    if kept < (1 - MAX_DROP_SHARE) * total:
        return text
    return "\n".join(lines[start:end])


@cache
def _install_capture() -> bool:
    """Wrap ``trafilatura.external.try_readability`` once so its results can be collected.

    The wrapper returns what the original returns; it only records the text when the current
    context asked for it (:func:`capturing_readability`). ``False`` if the hook is missing.
    """
    from trafilatura import external

    original = getattr(external, "try_readability", None)
    if original is None or not callable(original):
        return False

    def try_readability(htmlinput: Any) -> Any:
        result = original(htmlinput)
        sink = _readability_texts.get()
        if sink is not None and result is not None:
            sink.append(" ".join(result.itertext()))
        return result

    external.try_readability = try_readability
    return True


@contextmanager
def capturing_readability() -> Iterator[list[str]]:
    """Collect the text of every readability run trafilatura makes inside the block.

    Per context (thread, task): concurrent extractions do not see each other's.
    """
    sink: list[str] = []
    if not _install_capture():
        yield sink
        return
    token = _readability_texts.set(sink)
    try:
        yield sink
    finally:
        _readability_texts.reset(token)
