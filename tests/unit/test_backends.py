"""The body cascade's text handling: plain-text rendering and the readability check."""

from __future__ import annotations

from typing import Any

from enrich.backends import DEFAULT_CASCADE, Body, TrafilaturaBody, clean_text, run_cascade
from enrich.body_vote import (
    capturing_readability,
    drop_trailing_links,
    ngrams,
    page_summary,
    support,
    trim_edges,
    words,
)
from enrich.extract import parse_html

PARAGRAPHS = [
    "The harbour bridge reopened on Monday after two years of repairs to its steel deck.",
    "Engineers replaced more than four hundred rivets and repainted the whole span twice.",
    "Traffic is expected to return to its old level within a month, the council said.",
    "Cyclists get a separate lane on the north side for the first time since it opened.",
]


def _article_html() -> str:
    body = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
    return (
        "<html><head><title>Bridge reopens</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        f"<article><h1>Bridge reopens</h1>{body}</article>"
        "<footer><p>Copyright 2024 Coastal Herald</p></footer></body></html>"
    )


def test_clean_text_renders_markdown_lists_and_tables_as_plain_text() -> None:
    raw = (
        "Intro line.\n- first item\n  - nested item\n-\n| Pos | Name |\n|---|---|\n| 1 | A \\| B |"
    )
    assert clean_text(raw) == "Intro line.\nfirst item\nnested item\nPos Name\n1 A | B"


def test_clean_text_keeps_hyphens_inside_lines() -> None:
    assert clean_text("Rates rose - slightly - in May.") == "Rates rose - slightly - in May."


def test_support_counts_shared_trigrams() -> None:
    found = ngrams(words("the quick brown fox jumps over the lazy dog"))
    assert support(words("The quick brown fox"), found) == 1.0
    assert support(words("the quick brown fox sat down"), found) == 0.5
    assert support(words("lazy dog"), found) == 1.0  # shorter than a trigram: looked up whole
    assert support(words("lazy cat"), found) == 0.0


def test_grams_answer_as_the_set_of_every_run_of_one_to_three_words() -> None:
    import random

    rng = random.Random(7)
    vocabulary = ["the", "bridge", "reopened", "on", "monday", "after", "repairs", "deck"]
    for _ in range(200):
        text = [rng.choice(vocabulary) for _ in range(rng.randint(0, 30))]
        every_run = {tuple(text[i : i + n]) for n in (1, 2, 3) for i in range(len(text) - n + 1)}
        found = ngrams(text)
        for _ in range(20):
            probe = tuple(rng.choice(vocabulary) for _ in range(rng.randint(0, 4)))
            assert (probe in found) == (probe in every_run)
        line = [rng.choice(vocabulary) for _ in range(rng.randint(0, 8))]
        plain = (
            1.0
            if not line
            else float(tuple(line) in every_run)
            if len(line) < 3
            else sum(tuple(line[i : i + 3]) in every_run for i in range(len(line) - 2))
            / (len(line) - 2)
        )
        assert support(line, found) == plain


def test_trim_edges_drops_unconfirmed_short_lines_at_both_ends() -> None:
    text = "\n".join(["Share this article", *PARAGRAPHS, "Sign up for our newsletter"])
    assert trim_edges(text, " ".join(PARAGRAPHS)) == "\n".join(PARAGRAPHS)


def test_trim_edges_drops_whole_runs_of_furniture_readability_lacks() -> None:
    related = ["Related", "Council approves new ferry timetable", "Storm closes coastal road"]
    text = "\n".join(["Menu", "Share this article", *PARAGRAPHS, *related])
    assert trim_edges(text, " ".join(PARAGRAPHS)) == "\n".join(PARAGRAPHS)


def test_trim_edges_needs_readability_to_vouch_for_what_is_kept() -> None:
    # a listing: readability found the long paragraphs only, the short items are content too
    items = [f"Harbour notice {n}: berth {n} closed for dredging" for n in range(4)]
    text = "\n".join(["Notices", PARAGRAPHS[0], *items, *PARAGRAPHS[1:], "Archive"])
    assert trim_edges(text, " ".join(PARAGRAPHS)) == text


def test_trim_edges_never_drops_most_of_the_text() -> None:
    lines = ["Menu", *[f"Ferry route {n} runs on the winter timetable" for n in range(6)]]
    text = "\n".join([*lines, PARAGRAPHS[0]])
    assert trim_edges(text, PARAGRAPHS[0]) == text


def test_trim_edges_keeps_unconfirmed_lines_inside_the_text() -> None:
    inner = [PARAGRAPHS[0], "Key figures", PARAGRAPHS[1], PARAGRAPHS[2]]
    assert trim_edges("\n".join(inner), " ".join(PARAGRAPHS)) == "\n".join(inner)


def test_trim_edges_ignores_a_confirming_text_about_something_else() -> None:
    text = "\n".join(["Share this article", *PARAGRAPHS])
    assert trim_edges(text, "") == text
    # readability found another part of the page: it would drop most of the text
    assert trim_edges(text, PARAGRAPHS[3]) == text


def _page_with_links(*link_texts: str) -> Any:
    links = "".join(f"<li><a href='/{n}'>{text}</a></li>" for n, text in enumerate(link_texts))
    return parse_html(f"<html><body><article>x</article><ul>{links}</ul></body></html>")


def test_drop_trailing_links_drops_related_headlines_after_the_article() -> None:
    related = ["Ferry timetable changes in June", "Storm closes the coastal road"]
    tree = _page_with_links("Home", *related)
    text = "\n".join([*PARAGRAPHS, "Related", *related])
    # "Related" is no link: the run of link lines ends there
    assert drop_trailing_links(text, tree) == "\n".join([*PARAGRAPHS, "Related"])


def test_drop_trailing_links_keeps_lines_that_are_not_whole_links() -> None:
    tree = _page_with_links("Ferry timetable", "council")
    text = "\n".join([*PARAGRAPHS, "Ferry timetable changes in June"])
    assert drop_trailing_links(text, tree) == text


def test_drop_trailing_links_never_drops_most_of_the_text() -> None:
    links = [f"Harbour notice {n}: berth {n} closed" for n in range(8)]
    text = "\n".join([PARAGRAPHS[0], *links])
    assert drop_trailing_links(text, _page_with_links(*links)) == text


def test_trafilatura_body_leaves_the_tree_alone_and_names_its_method() -> None:
    tree = parse_html(_article_html())
    before = _serialized(tree)
    body = run_cascade(tree, "https://herald.example/2024/05/bridge-reopens", (TrafilaturaBody(),))
    assert body is not None
    assert _serialized(tree) == before
    for paragraph in PARAGRAPHS:
        assert paragraph in body.text
    assert "Copyright" not in body.text
    assert body.backend.startswith(("trafilatura/", "trafilatura+readability-edges/"))


def test_recall_mode_is_named_and_tried_before_the_baseline() -> None:
    assert TrafilaturaBody(favor_recall=True).name.startswith("trafilatura-recall/")
    assert [backend.name.split("/")[0] for backend in DEFAULT_CASCADE] == [
        "trafilatura",
        "trafilatura-recall",
        "trafilatura-baseline",
    ]


def test_the_cascade_goes_on_when_a_backend_finds_nothing() -> None:
    class Nothing:
        name = "nothing/1"

        def extract(self, tree: Any, url: str | None) -> None:
            return None

    class Something:
        name = "something/1"

        def extract(self, tree: Any, url: str | None) -> str:
            return "Found."

    body = run_cascade(parse_html(_article_html()), None, (Nothing(), Something()))
    assert body == Body(text="Found.", backend="something/1")


def test_readability_is_captured_per_context_only() -> None:
    from trafilatura import bare_extraction

    tree = parse_html(_article_html())
    with capturing_readability() as seen:
        bare_extraction(tree, include_comments=False, with_metadata=False)
    assert seen and PARAGRAPHS[0] in " ".join(seen[0].split())
    with capturing_readability() as again:
        pass
    assert again == []


def test_a_backend_can_name_the_method_per_page() -> None:
    class Chooser:
        name = "chooser/1"

        def extract(self, tree: Any, url: str | None) -> Body:
            return Body(text="  One.\n\n- Two.", backend="chooser-b/1")

    body = run_cascade(parse_html(_article_html()), None, (Chooser(),))
    assert body == Body(text="One.\nTwo.", backend="chooser-b/1")


def _serialized(tree: Any) -> bytes:
    from lxml import etree

    return bytes(etree.tostring(tree))


def test_page_summary_reads_the_declared_descriptions() -> None:
    tree = parse_html(
        "<html><head><meta name='description' content='Bridge opens.'>"
        "<meta property='og:description' content='The bridge opens again.'></head>"
        "<body><p>x</p></body></html>"
    )
    assert page_summary(tree) == "Bridge opens.\nThe bridge opens again."
