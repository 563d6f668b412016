"""The corpus-convention report's pure helpers (the report itself reads ../shared/corpus)."""

from datetime import date

from bench.truth_conventions import day_spellings, visible_text
from enrich.extract import parse_html


def test_a_day_is_looked_for_in_the_spellings_pages_use() -> None:
    spellings = day_spellings(date(2025, 3, 7))
    for written in (
        "2025-03-07",
        "march 7, 2025",
        "mar 7, 2025",
        "mar. 07, 2025",
        "7 march 2025",
        "3/7/2025",
        "07.03.2025",
        "7. mar 2025",
    ):
        assert written in spellings, written


def test_visible_text_leaves_out_what_readers_do_not_see() -> None:
    tree = parse_html(
        "<html><head><title>T</title><script>var d='2025-03-07'</script></head>"
        "<body><p>Updated March 7, 2025</p><style>p{}</style></body></html>"
    )
    assert visible_text(tree) == "updated march 7, 2025"
    assert tree.xpath("//script"), "the page itself is left as it was"
