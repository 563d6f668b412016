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

import itertools
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
# A leading line this long is the article's standfirst when the page's description repeats it
# and its markup names it one (STANDFIRST_NAMES). The description alone also vouches for
# sub-headlines that Zyte's truth leaves out; asking for both, on bench.extraction's tune
# halves: zyte shingle F1 0.9609 -> 0.9612 (as without the rule), fundus 0.9718 (its gain
# kept), WCXB articles 0.9469 -> 0.9468.
MIN_STANDFIRST_WORDS = 6
# Words for the text between a headline and the article in templates' class, id and itemprop
# values: "c-article__dek", "articleSubtitle", "story-intro", schema.org's "description".
STANDFIRST_NAMES = frozenset(
    {
        "abstract",
        "chapo",
        "deck",
        "dek",
        "description",
        "excerpt",
        "intro",
        "introduction",
        "lead",
        "lede",
        "standfirst",
        "strap",
        "strapline",
        "subhead",
        "subheader",
        "subheading",
        "subheadline",
        "subtitle",
        "summary",
        "synopsis",
        "teaser",
    }
)

_WORD = re.compile(r"\w+")
_NAME_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")  # "descriptionColor": description, Color
# the visible elements whose text holds a line (scripts and styles repeat it in JSON)
_HOLDERS = (
    "//body//*[not(self::script or self::style or self::noscript or self::template)]"
    "[contains(normalize-space(.), $line)]"
)
LINE_PROBE_CHARS = 80  # enough of a line to find it in the page, short of inline markup quirks

_readability_texts: ContextVar[list[str] | None] = ContextVar("_readability_texts", default=None)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class Grams:
    """The runs of 1 to ``size`` words of a text, for membership tests.

    Each length's set is built on the first test that needs it: most tests ask for whole
    trigrams, and a one-word line asks for a word, which needs no tuples at all.
    """

    __slots__ = ("_by_length", "_size", "_tokens")

    def __init__(self, tokens: Sequence[str], size: int = GRAM) -> None:
        self._tokens = tokens
        self._size = size
        self._by_length: dict[int, set[Any]] = {}

    def of_length(self, length: int) -> set[Any]:
        """The text's runs of ``length`` words (1: its words, as strings)."""
        found = self._by_length.get(length)
        if found is None:
            tokens = self._tokens
            found = self._by_length[length] = (
                set(tokens)
                if length == 1
                else set(zip(*(tokens[i:] for i in range(length)), strict=False))
            )
        return found

    def __contains__(self, gram: object) -> bool:
        if not isinstance(gram, tuple) or not 1 <= len(gram) <= self._size:
            return False
        return (gram[0] if len(gram) == 1 else gram) in self.of_length(len(gram))


def ngrams(tokens: Sequence[str], size: int = GRAM) -> Grams:
    """Every run of 1 to ``size`` words, so that short lines can be looked up whole."""
    return Grams(tokens, size)


def support(tokens: Sequence[str], found: Grams, size: int = GRAM) -> float:
    """Share of the line's ``size``-grams in ``found`` (a shorter line: found whole or not)."""
    if not tokens:
        return 1.0
    if len(tokens) < size:
        return 1.0 if tuple(tokens) in found else 0.0
    grams = list(zip(*(tokens[i:] for i in range(size)), strict=False))
    return sum(map(found.of_length(size).__contains__, grams)) / len(grams)


def trim_edges(text: str, confirming: str, page: Any | None = None) -> str:
    """``text`` without the runs of short lines at its start and end ``confirming`` lacks.

    ``text`` is returned unchanged when ``confirming`` is empty, when trimming would drop more
    than ``MAX_DROP_SHARE`` of the words, or when ``confirming`` does not confirm at least
    ``MIN_KEPT_SUPPORT`` of what would be kept (then it describes another part of the page).
    A leading line of the parsed ``page`` that is its standfirst (:func:`standfirst_lines`)
    stays, though readability left it in the header.
    """
    lines = text.splitlines()
    if len(lines) < 2 or not confirming.strip():
        return text
    # the lines' words, read as needed: most texts keep both edges, and only their lines count
    tokens: list[list[str] | None] = [None] * len(lines)

    def line_words(i: int) -> list[str]:
        found_words = tokens[i]
        if found_words is None:
            found_words = tokens[i] = words(lines[i])
        return found_words

    if len(line_words(0)) > MAX_EDGE_WORDS and len(line_words(-1)) > MAX_EDGE_WORDS:
        return text  # nothing to drop: skip building readability's n-grams
    found = ngrams(words(confirming))
    supports: dict[int, float] = {}

    def confirmed(i: int) -> bool:
        if i not in supports:
            supports[i] = support(line_words(i), found)
        return supports[i] >= MIN_SUPPORT

    def droppable(i: int) -> bool:
        return len(line_words(i)) <= MAX_EDGE_WORDS and not confirmed(i)

    start, end = 0, len(lines)
    while start < end - 1 and droppable(start):
        start += 1
    while end - 1 > start and droppable(end - 1):
        end -= 1
    if start == 0 and end == len(lines):
        return text
    sizes = [len(line_words(i)) for i in range(len(lines))]
    total = sum(sizes)
    kept = sum(sizes[start:end])
    if kept < (1 - MAX_DROP_SHARE) * total:
        return text
    vouched = sum(sizes[i] for i in range(start, end) if confirmed(i))
    if vouched < MIN_KEPT_SUPPORT * kept:
        return text
    standfirst = standfirst_lines(lines[:start], page) if page is not None and start else []
    return "\n".join([lines[i] for i in standfirst] + lines[start:end])


def standfirst_lines(leading: Sequence[str], page: Any) -> list[int]:
    """The indexes of the ``leading`` lines that are the article's standfirst on ``page``.

    Two pieces of evidence, each of which alone also vouches for what is not the article's: the
    page's declared description repeats the line (it does for a standfirst, and also for a
    sub-headline or a teaser's blurb), and the markup holding the line names it a standfirst
    (:data:`STANDFIRST_NAMES`; such names also label other articles' teasers). The line must
    be long enough to be a sentence: a headline's kicker or a label is not a standfirst.
    """
    tokens = [words(line) for line in leading]
    candidates = [i for i, line in enumerate(tokens) if len(line) >= MIN_STANDFIRST_WORDS]
    if not candidates:
        return []
    summary = page_summary(page)
    if not summary.strip():
        return []
    found = ngrams(words(summary))
    return [
        i
        for i in candidates
        if support(tokens[i], found) >= MIN_SUPPORT
        and any(_names_standfirst(element) for element in line_markup(page, leading[i]))
    ]


def line_markup(page: Any, line: str) -> list[Any]:
    """The elements of ``page`` around ``line``: the smallest ones holding its text (an
    element and the wrappers that hold nothing else) and the parent of the outermost."""
    probe = " ".join(line.split())[:LINE_PROBE_CHARS]
    if not probe:
        return []
    holders = page.xpath(_HOLDERS, line=probe)
    if not holders:
        return []
    sizes = [len(" ".join(holder.text_content().split())) for holder in holders]
    smallest = min(sizes)
    markup = [holder for holder, size in zip(holders, sizes, strict=True) if size == smallest]
    parent = markup[0].getparent()
    return markup if parent is None else [*markup, parent]


def _names_standfirst(element: Any) -> bool:
    """Whether the element's class, id or itemprop holds a standfirst's name, whole or split
    ("sub-title", "stand_first")."""
    for attribute in ("class", "id", "itemprop"):
        value = element.get(attribute)
        if not value:
            continue
        parts = [part.casefold() for part in _NAME_PART.findall(value)]
        joined = {first + second for first, second in itertools.pairwise(parts)}
        if not STANDFIRST_NAMES.isdisjoint(parts) or not STANDFIRST_NAMES.isdisjoint(joined):
            return True
    return False


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
