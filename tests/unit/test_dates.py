"""Publication dates on small hand-written pages: numeric day orders, "Updated" labels, date
lines beside icons, hAtom ``published`` parts, and the body-text fallback."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from enrich import dates, metadata
from enrich.dates import (
    EXTENSIVE,
    extensive_date,
    find_date,
    published_at,
    text_date,
    visible_date,
    written_day,
)
from enrich.extract import extract_page, parse_html
from enrich.metadata import read_metadata
from enrich.pagemeta import read_signals

URL = "https://herald.example/news/bridge-reopens-after-repairs"
HEADLINE = "<h1>Bridge reopens after two years of repairs</h1>"


def _page(body: str, head: str = "", lang: str = "") -> str:
    attrs = f' lang="{lang}"' if lang else ""
    return f"<html{attrs}><head>{head}</head><body>{body}</body></html>"


def _visible(page: str, url: str = URL) -> tuple[date | None, str | None]:
    tree = parse_html(page)
    return visible_date(tree, tree.xpath("//h1")[0], url)


def _published(page: str) -> tuple[date | None, str | None]:
    tree = parse_html(page)
    signals = read_signals(tree, URL)
    meta = read_metadata(tree, URL, signals)
    _, day, source = published_at(signals, meta.heuristic_date, meta.heuristic_date_source, None)
    return day, source


def test_month_day_date_is_read_when_the_day_is_above_twelve() -> None:
    page = _page(f"<article>{HEADLINE}<p class='date'>2/24/2026</p></article>")
    assert _visible(page) == (date(2026, 2, 24), "visible:text")


def test_numeric_day_order_follows_the_other_dates_on_the_page() -> None:
    comments = "<div class='comments'><p>Reply posted 12/18/2025</p></div>"
    page = _page(f"<article>{HEADLINE}<p class='date'>10/12/2023</p></article>{comments}")
    day, source = _visible(page)
    assert day == date(2023, 10, 12)
    assert source is not None and source.startswith("visible:text")


def test_numeric_day_order_defaults_to_day_month_outside_english() -> None:
    page = _page(f"<article>{HEADLINE}<p class='date'>05.06.2025</p></article>", lang="de")
    day, _ = _visible(page)
    assert day == date(2025, 6, 5)


def test_numeric_day_order_follows_the_url_date() -> None:
    page = _page(f"<article>{HEADLINE}<p class='date'>03/10/2023</p></article>", lang="en-US")
    day, _ = _visible(page, "https://herald.example/2023/10/03/bridge/")
    assert day == date(2023, 10, 3)


def test_ambiguous_header_date_agrees_with_the_declared_date_read_the_other_way() -> None:
    page = _page(
        f"<article>{HEADLINE}<p class='post-date'>09.10.2024</p></article>",
        '<meta property="article:published_time" content="2024-09-10T16:07:00Z">',
    )
    assert _published(page) == (date(2024, 9, 10), "meta:article:published_time")


def test_updated_label_in_a_sibling_element_marks_the_date() -> None:
    page = _page(
        f"<article>{HEADLINE}<div><span class='posted-by'>By Ann Lee</span>"
        "<span class='on'><span class='label'>Updated</span>"
        "<time class='entry-date'>January 25, 2026</time></span></div></article>",
        '<meta property="article:published_time" content="2015-05-12T06:05:27Z">',
    )
    assert _visible(page) == (date(2026, 1, 25), "visible:time:updated")
    assert _published(page) == (date(2015, 5, 12), "meta:article:published_time")


def test_published_label_does_not_mark_an_update() -> None:
    page = _page(f"<article>{HEADLINE}<div class='meta'>Published|Oct 10, 2025</div></article>")
    assert _visible(page) == (date(2025, 10, 10), "visible:text")


def test_date_beside_an_icon_in_an_unmarked_container() -> None:
    page = _page(
        "<article><div class='flex gap-2'><svg><use href='#calendar'></use></svg> Dec 12, 2025"
        f"</div>{HEADLINE}<p>Text.</p></article>"
    )
    assert _visible(page) == (date(2025, 12, 12), "visible:text")


def test_date_line_padded_with_whitespace_is_read() -> None:
    padding = " " * 60
    page = _page(
        f"<article>{HEADLINE}<p>Dec 26, 2025{padding}<span>&#8226;</span>{padding}Ann Lee in"
        f"{padding}<a href='/pm'>Project Management</a>{padding}</p></article>"
    )
    assert _visible(page) == (date(2025, 12, 26), "visible:text")


def test_published_part_of_a_date_line_with_both_dates() -> None:
    page = _page(
        f"<article>{HEADLINE}<div class='entry-meta'><span class='posted-on'>"
        "<time class='updated'>May 21, 2025</time>"
        "<time class='entry-date published'>April 24, 2025</time></span></div></article>"
    )
    assert _visible(page) == (date(2025, 4, 24), "visible:text")


def test_text_date_is_the_first_date_outside_navigation() -> None:
    page = _page(
        "<nav><p>Latest: March 3, 2026</p></nav>"
        "<fieldset><legend>Advent of Code week 2</legend>20 December 2025"
        "<p>Text with a year 2025 in it.</p></fieldset>"
        "<footer>Copyright 2026</footer>"
    )
    assert text_date(parse_html(page)) == date(2025, 12, 20)


def test_text_date_is_the_last_resort_for_a_page_without_headline_or_declared_date() -> None:
    page = _page("<div class='x'><span>Nov 21, 2018</span></div><p>Body text.</p>")
    assert _published(page) == (date(2018, 11, 21), "text")


def test_text_date_finds_nothing_in_links_or_asides() -> None:
    page = _page("<aside><p>Dec 1, 2025</p></aside><p><a href='/x'>Nov 2, 2025</a></p>")
    assert text_date(parse_html(page)) is None


def test_feed_time_wins_over_a_date_found_only_in_the_body_text() -> None:
    page = _page("<div><span>Nov 21, 2018</span></div><p>Body text.</p>")
    tree = parse_html(page)
    signals = read_signals(tree, URL)
    meta = read_metadata(tree, URL, signals)
    assert meta.heuristic_date_source == "text"
    feed = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
    _, day, source = published_at(signals, meta.heuristic_date, meta.heuristic_date_source, feed)
    assert (day, source) == (date(2025, 3, 4), "feed")


def test_publication_after_an_updated_date_on_the_same_line() -> None:
    page = _page(
        f"<article>{HEADLINE}<div class='story-meta'>"
        "<span class='date'>Updated November 11, 2022</span> "
        "<span class='tt-date'>Originally published November 9, 2022</span></div></article>"
    )
    assert _visible(page) == (date(2022, 11, 9), "visible:text")


def test_updated_label_after_other_numbers_on_the_line() -> None:
    page = _page(
        f"<article>{HEADLINE}<p class='meta'>by Ann Lee 16 min read Last updated: "
        "August 19, 2025</p></article>"
    )
    assert _visible(page) == (date(2025, 8, 19), "visible:text:updated")


def test_month_in_capitals_above_the_headline_is_read() -> None:
    page = _page(f"<article><div class='date-article'>OCTOBER 13, 2025</div>{HEADLINE}</article>")
    assert _visible(page) == (date(2025, 10, 13), "visible:text")


def test_published_meta_written_out_is_the_declared_date() -> None:
    page = _page(HEADLINE + "<p>Text.</p>", head='<meta name="published" content="July 17, 2025">')
    assert _published(page) == (date(2025, 7, 17), "meta:published")


def _declared(value: str) -> str:
    return f'<meta property="article:published_time" content="{value}">'


def test_declared_offset_is_kept_and_decides_the_day() -> None:
    tree = parse_html(_page(HEADLINE + "<p>Text.</p>", head=_declared("2020-06-03T00:30+04:00")))
    signals = read_signals(tree, URL)
    when, day, _ = published_at(signals, None, None, None)
    assert day == date(2020, 6, 3)  # June 2 in UTC
    assert when is not None and when.utcoffset() == timedelta(hours=4)
    assert when == datetime(2020, 6, 2, 20, 30, tzinfo=UTC)  # the same moment for sorting


def test_printed_day_does_not_move_a_day_declared_with_its_offset() -> None:
    page = _page(
        f"<article>{HEADLINE}<p class='date'>June 3, 2020</p><p>Text.</p></article>",
        head=_declared("2020-06-02T22:30:00-02:00"),
    )
    assert _published(page) == (date(2020, 6, 2), "meta:article:published_time")


ARTICLE = "".join(
    f"<p>The harbour bridge in Port Aldwin reopened on Monday after two years of repairs to "
    f"its deck, and the council expects traffic to return within a month ({n}).</p>"
    for n in range(12)
)


def test_extensive_search_only_for_an_article_nothing_else_dates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searches: list[bool] = []

    def searching(tree: Any, url: str | None, *, extensive: bool = False) -> date | None:
        searches.append(extensive)
        return date(2020, 6, 3) if extensive else None

    monkeypatch.setattr(dates, "find_date", searching)
    monkeypatch.setattr(metadata, "find_date", searching)
    undated = _page(f"<article>{HEADLINE}{ARTICLE}</article>")
    got = extract_page(undated, URL)
    assert (got.published_date, got.date_source) == (date(2020, 6, 3), EXTENSIVE)
    assert searches == [False, True]  # the quick search first, then the extensive one
    searches.clear()
    feed = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
    assert extract_page(undated, URL, feed_published_at=feed).date_source == "feed"
    dated = _page(f"<article>{HEADLINE}<p class='date'>June 3, 2020</p>{ARTICLE}</article>")
    assert extract_page(dated, URL).date_source == "visible:text"
    short = _page(f"<article>{HEADLINE}<p>Too short to be an article.</p></article>")
    assert extract_page(short, URL).published_date is None
    assert True not in searches  # a feed time, a printed date, a non-article: no search


def test_find_date_extensive_reads_a_date_written_in_another_language() -> None:
    page = _page(f"<article>{HEADLINE}<div><p>Publié le 3 juin 2020</p><p>Text.</p></div>")
    tree = parse_html(page)
    assert find_date(tree, URL, extensive=True) == date(2020, 6, 3)


FINNISH_DATE = _page(f"<article>{HEADLINE}<div><p>3. kesäkuuta 2020</p><p>Text.</p></div>")


def test_extensive_search_reads_dates_in_words_in_the_pages_language() -> None:
    tree = parse_html(FINNISH_DATE)
    assert extensive_date(tree, URL, "fi")[1:] == (date(2020, 6, 3), EXTENSIVE)
    assert extensive_date(tree, URL, None)[1] == date(2020, 6, 3)  # unknown: every language
    assert extensive_date(tree, URL, "qq")[1] == date(2020, 6, 3)  # not dateparser's: every one
    assert extensive_date(tree, URL, "de")[1] is None  # Finnish words are not German or English


def test_the_date_parser_hook_is_htmldates_and_readings_are_not_shared_between_languages() -> None:
    from htmldate import extractors

    assert dates.install_date_parser_hook()  # fails when htmldate renames its hook
    with dates.dates_written_in("fi"):
        assert extractors.get_external_parser().get_date_data("3. kesäkuuta 2020")["date_obj"]
        assert set(extractors.get_external_parser().languages or ()) <= {"fi", "en"}
    extensive_date(parse_html(FINNISH_DATE), URL, "fi")
    assert extractors.try_date_expr.cache_info().currsize == 0
    with dates.dates_written_in(None):
        assert extractors.get_external_parser().languages is None


def test_extensive_search_guesses_from_a_year_alone_are_not_dates() -> None:
    page = _page(f"<article>{HEADLINE}<p>Text.</p></article><footer>© 2024 Herald</footer>")
    assert find_date(parse_html(page), URL, extensive=True) is None


@pytest.mark.parametrize(
    ("lang", "printed"),
    [
        ("de", "3. Juni 2020"),
        ("es", "3 de junio de 2020"),
        ("pt", "3 de junho de 2020"),
        ("it", "3 giugno 2020"),
        ("ca", "3 de juny de 2020"),
        ("ro", "3 iunie 2020"),
        ("pl", "3 czerwca 2020"),
        ("cs", "3. června 2020"),
        ("ru", "3 июня 2020 г."),
        ("uk", "3 червня 2020"),
        ("el", "3 Ιουνίου 2020"),
        ("hu", "2020. június 3."),
        ("lt", "2020 m. birželio 3 d."),
        ("ja", "2020年6月3日"),
        ("zh", "2020年06月03日 10:30"),
        ("ko", "2020년 6월 3일"),
        ("tr", "3 Haziran 2020"),
    ],
)
def test_header_date_written_in_the_outlets_language(lang: str, printed: str) -> None:
    page = _page(f"<article>{HEADLINE}<p class='date'>{printed}</p></article>", lang=lang)
    assert _visible(page) == (date(2020, 6, 3), "visible:text")


def test_written_day_is_not_read_from_a_number_and_a_word_alone() -> None:
    assert written_day("Marca 3 modelos 2020x") is None
    assert written_day("31 de febrero de 2020") is None
