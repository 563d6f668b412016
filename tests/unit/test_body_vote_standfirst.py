"""Which leading lines the edge trimming keeps as the article's standfirst, per kind of page.

The pages are written for these tests: a headline, the line under test between it and the
article, and the article's paragraphs. trafilatura's text starts with the header's lines,
readability's has the paragraphs only, so the edge trimming would drop the line under test
unless it is a standfirst.
"""

from __future__ import annotations

from typing import Any

import pytest

from enrich.body_vote import line_markup, trim_edges
from enrich.extract import parse_html

PARAGRAPHS = [
    "The harbour bridge reopened on Monday after two years of repairs to its steel deck.",
    "Engineers replaced more than four hundred rivets and repainted the whole span twice.",
    "Traffic is expected to return to its old level within a month, the council said.",
    "Cyclists get a separate lane on the north side for the first time since it opened.",
]
STANDFIRST = "Two years of repairs end as the harbour bridge opens to traffic again"
HEADLINE = "Harbour bridge reopens"


def _page(between: str, *, description: str | None = STANDFIRST, headline: str = HEADLINE) -> Any:
    """A news page: ``between`` sits between the headline and the article's paragraphs."""
    meta = f'<meta name="description" content="{description}">' if description else ""
    paragraphs = "".join(f"<p>{paragraph}</p>" for paragraph in PARAGRAPHS)
    return parse_html(
        f"<html><head><title>{headline}</title>{meta}</head><body>"
        "<nav><a href='/'>Home</a></nav>"
        f"<article><header><h1 class='entry-title'>{headline}</h1>{between}<p>By Ann Lee</p>"
        "</header>"
        f"<div class='article-body'>{paragraphs}</div></article></body></html>"
    )


def _trimmed(page: Any | None, line: str = STANDFIRST) -> str:
    text = "\n".join(["Share this article", HEADLINE, line, "By Ann Lee", *PARAGRAPHS])
    return trim_edges(text, " ".join(PARAGRAPHS), page)


KEPT = "\n".join([STANDFIRST, *PARAGRAPHS])
DROPPED = "\n".join(PARAGRAPHS)


@pytest.mark.parametrize(
    "markup",
    [
        f'<p class="standfirst">{STANDFIRST}</p>',
        f'<p class="c-article__dek">{STANDFIRST}</p>',  # BEM
        f'<h2 class="articleSubtitle">{STANDFIRST}</h2>',  # camelCase
        f'<div class="sub-title">{STANDFIRST}</div>',  # one word split in two
        f'<div id="story-intro"><p><strong>{STANDFIRST}</strong></p></div>',  # named wrapper
        f'<p itemprop="description">{STANDFIRST}</p>',  # schema.org microdata
        f'<span class="text-lg text-descriptionColor">{STANDFIRST}</span>',  # utility classes
    ],
    ids=[
        "standfirst",
        "bem-dek",
        "camel-subtitle",
        "split-name",
        "wrapper-id",
        "itemprop",
        "utility",
    ],
)
def test_a_named_standfirst_the_description_repeats_is_kept(markup: str) -> None:
    assert _trimmed(_page(markup)) == KEPT


def test_a_standfirst_the_description_shortens_is_kept() -> None:
    description = "Two years of repairs end as the harbour bridge opens."
    assert _trimmed(_page(f'<p class="lede">{STANDFIRST}</p>', description=description)) == KEPT


@pytest.mark.parametrize(
    "markup",
    [
        f'<h2 class="hero-text">{STANDFIRST}</h2>',
        f"<p>{STANDFIRST}</p>",
        f'<p class="leading-6 text-gray-700">{STANDFIRST}</p>',  # "leading" is not "lead"
    ],
    ids=["neutral-class", "bare", "lookalike-class"],
)
def test_a_line_the_markup_does_not_name_a_standfirst_is_dropped(markup: str) -> None:
    """The description alone also repeats sub-headlines that are not the article's text."""
    assert _trimmed(_page(markup)) == DROPPED


def test_a_named_teaser_the_description_does_not_repeat_is_dropped() -> None:
    other = "Ferry fares rise in spring as fuel costs climb for the third year running"
    page = _page(f'<p class="teaser">{other}</p>')
    assert _trimmed(page, other) == DROPPED


def test_a_page_without_a_description_keeps_no_standfirst() -> None:
    assert _trimmed(_page(f'<p class="standfirst">{STANDFIRST}</p>', description=None)) == DROPPED
    assert _trimmed(None) == DROPPED


def test_a_short_named_line_is_not_a_standfirst() -> None:
    label = "Bridge opens again today"
    page = _page(f'<p class="standfirst">{label}</p>', description=label)
    assert _trimmed(page, label) == DROPPED


def test_a_headline_the_description_repeats_is_not_a_standfirst() -> None:
    headline = "Cars and cyclists return to the harbour crossing this week"
    page = _page("", description=headline, headline=headline)
    text = "\n".join(["Share this article", headline, "By Ann Lee", *PARAGRAPHS])
    assert trim_edges(text, " ".join(PARAGRAPHS), page) == DROPPED


def test_a_script_repeating_the_line_is_not_its_markup() -> None:
    """Templates and app state repeat the standfirst under names: the visible markup counts."""
    script = f'<script type="text/template" class="summary">{STANDFIRST}</script>'
    page = _page(f'<h2 class="hero-text">{STANDFIRST}</h2>{script}')
    assert _trimmed(page) == DROPPED


def test_line_markup_is_the_innermost_holders_and_their_parent() -> None:
    page = _page(f'<div class="intro"><p><b>{STANDFIRST}</b></p></div>')
    assert [element.tag for element in line_markup(page, STANDFIRST)] == ["div", "p", "b", "header"]
    assert line_markup(page, "A line that is nowhere on the page at all") == []
