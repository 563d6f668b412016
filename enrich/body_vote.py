"""A second opinion on trafilatura's body text: readability's, which trafilatura computes anyway.

trafilatura finds the article well but often keeps short lines before or after it: a
standfirst repeated from a teaser, "Read more", newsletter and social prompts, related
headlines, a sign-off, a caption. readability errs differently, so the runs of short lines at
either edge of trafilatura's text that readability did not find either are dropped. Only the
edges: readability misses lists, tables and headings inside an article, and a line there that
it misses is still the article's.

No second extraction is paid for: trafilatura's default mode already runs readability on every
page (to compare with its own result). :func:`capturing_readability` keeps that result for the
caller; when it is not there (another trafilatura version), the text is kept as it is.

Agreement is measured on word trigrams, so that two renderings of one paragraph (other line
breaks, a caption glued on) still agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

GRAM = 3  # words per n-gram when comparing a line with readability's text
MIN_SUPPORT = 0.5  # share of a line's trigrams readability must have found to confirm it
# Only short lines are dropped at the edges: a long one is a paragraph readability cut, not
# furniture (measured: dropping longer lines gained on one set and lost on the other).
MAX_EDGE_WORDS = 30
# Trimming is refused when it would drop more than this share of the text's words: readability
# then found another part of the page.
MAX_DROP_SHARE = 0.4
# ... and when readability confirms less than this share of the words that would be kept. On
# listing, service and product pages the short lines are the content and readability keeps
# only the longest block: it does not vouch for the rest, so its opinion of the edges is not
# used either. This check replaced a cap of two dropped lines (measured with the corpus in
# bench.extraction, even and odd page ids alike: zyte shingle F1 +0.0025, WCXB articles
# +0.001, fundus +0.0015, WCXB listings and collections up, services -0.001).
MIN_KEPT_SUPPORT = 0.9
# A leading line this long that the page's description vouches for is a standfirst.
MIN_STANDFIRST_WORDS = 6

_WORD = re.compile(r"\w+")

_readability_texts: ContextVar[list[str] | None] = ContextVar("_readability_texts", default=None)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def ngrams(tokens: Sequence[str], size: int = GRAM) -> set[tuple[str, ...]]:
    """Every run of 1 to ``size`` words, so that short lines can be looked up whole."""
    found: set[tuple[str, ...]] = set()
    for n in range(1, size + 1):
        found.update(zip(*(tokens[i:] for i in range(n)), strict=False))
    return found


def support(tokens: Sequence[str], found: set[tuple[str, ...]], size: int = GRAM) -> float:
    """Share of the line's ``size``-grams in ``found`` (a shorter line: found whole or not)."""
    if not tokens:
        return 1.0
    if len(tokens) < size:
        return 1.0 if tuple(tokens) in found else 0.0
    grams = list(zip(*(tokens[i:] for i in range(size)), strict=False))
    return sum(gram in found for gram in grams) / len(grams)


def trim_edges(text: str, confirming: str, summary: Callable[[], str] | None = None) -> str:
    """``text`` without the runs of short lines at its start and end ``confirming`` lacks.

    ``text`` is returned unchanged when ``confirming`` is empty, when trimming would drop more
    than ``MAX_DROP_SHARE`` of the words, or when ``confirming`` does not confirm at least
    ``MIN_KEPT_SUPPORT`` of what would be kept (then it describes another part of the page).
    A leading line that the page's ``summary`` (its declared description) vouches for is
    the article's standfirst and stays, though readability left it in the header.
    """
    lines = text.splitlines()
    if len(lines) < 2 or not confirming.strip():
        return text
    tokens = [words(line) for line in lines]
    if len(tokens[0]) > MAX_EDGE_WORDS and len(tokens[-1]) > MAX_EDGE_WORDS:
        return text  # nothing to drop: skip building readability's n-grams
    found = ngrams(words(confirming))
    supports: dict[int, float] = {}

    def confirmed(i: int) -> bool:
        if i not in supports:
            supports[i] = support(tokens[i], found)
        return supports[i] >= MIN_SUPPORT

    def droppable(i: int) -> bool:
        return len(tokens[i]) <= MAX_EDGE_WORDS and not confirmed(i)

    start, end = 0, len(lines)
    while start < end - 1 and droppable(start):
        start += 1
    while end - 1 > start and droppable(end - 1):
        end -= 1
    if start == 0 and end == len(lines):
        return text
    total = sum(len(t) for t in tokens)
    kept = sum(len(t) for t in tokens[start:end])
    if kept < (1 - MAX_DROP_SHARE) * total:
        return text
    vouched = sum(len(tokens[i]) for i in range(start, end) if confirmed(i))
    if vouched < MIN_KEPT_SUPPORT * kept:
        return text
    standfirst = _standfirst(tokens[:start], summary() if summary and start else "")
    return "\n".join([lines[i] for i in standfirst] + lines[start:end])


def _standfirst(leading: Sequence[Sequence[str]], summary: str) -> list[int]:
    """The leading lines the page's summary vouches for (long enough to be a sentence)."""
    if not leading or not summary.strip():
        return []
    found = ngrams(words(summary))
    return [
        i
        for i, tokens in enumerate(leading)
        if len(tokens) >= MIN_STANDFIRST_WORDS and support(tokens, found) >= MIN_SUPPORT
    ]


_SUMMARY = (
    "//meta[@name='description' or @property='og:description' or @name='twitter:description'"
    " or @property='twitter:description']/@content"
)


def page_summary(tree: Any) -> str:
    """What the page declares as its description: a standfirst, often word for word."""
    return "\n".join(str(value) for value in tree.xpath(_SUMMARY))


def drop_trailing_links(text: str, tree: Any) -> str:
    """``text`` without the run of short lines at its end that are each a link's whole text.

    Related headlines, tag and category lists after an article are links; a sentence of the
    article is not one whole link. readability often keeps such a list with the article, so
    the page's own links are the evidence here. Refused, like :func:`trim_edges`, when it would
    drop more than ``MAX_DROP_SHARE`` of the words. Measured on the corpus: zyte shingle F1
    +0.0006, WCXB articles +0.0003, fundus +0.0002, other WCXB page types within 0.0006; the
    gains are on the even page ids (where it was tried first), the odd ones are unchanged.
    """
    lines = text.splitlines()
    if len(lines) < 2 or len(lines[-1].split()) > MAX_EDGE_WORDS:
        return text  # the common case: no need to collect the page's links
    links = {" ".join(anchor.text_content().split()).casefold() for anchor in tree.iter("a")}
    links.discard("")
    end = len(lines)
    while end > 1 and len(lines[end - 1].split()) <= MAX_EDGE_WORDS:
        if " ".join(lines[end - 1].split()).casefold() not in links:
            break
        end -= 1
    if end == len(lines):
        return text
    total = sum(len(line.split()) for line in lines)
    kept = sum(len(line.split()) for line in lines[:end])
    if kept < (1 - MAX_DROP_SHARE) * total:
        return text
    return "\n".join(lines[:end])


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
