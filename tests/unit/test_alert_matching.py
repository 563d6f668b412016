"""The in-process evaluator of the search syntax: what a watch matches without Elasticsearch."""

from __future__ import annotations

import pytest

from newsflow.query import MatchDocument, analyze, evaluate, parse

DOC = MatchDocument.of(
    title="Flood gates open at Marlow Weir",
    text=(
        "The river authority opened the sluice gates on Tuesday after Covid-19 rules eased. "
        "Water rose 3.5 metres; 1,000 homes in the U.S. style suburbs were warned. "
        "Residents don't expect drier weather."
    ),
    outlet="Riverside-Post",
    authors=["Jane Smith", "Al Brook"],
    language="en",
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Covid-19 cases", ["covid", "19", "cases"]),
        ("3.5 metres, 1,000 homes", ["3.5", "metres", "1,000", "homes"]),
        ("the U.S. and don't", ["the", "u.s", "and", "don't"]),
        ("at 10:30 a:b", ["at", "10", "30", "a:b"]),
        ("e-mail foo_bar!", ["e", "mail", "foo_bar"]),
        ("東京 weather", ["東", "京", "weather"]),
        ("Zürich’s CAFÉ", ["zürich’s", "café"]),
    ],
)
def test_tokens_are_close_to_the_standard_analyzer(text: str, tokens: list[str]) -> None:
    assert analyze(text) == tokens


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("flood", True),
        ("FLOOD gates", True),  # case-insensitive, all words
        ("flood zeppelin", False),
        ("flood OR zeppelin", True),
        ("flood -zeppelin", True),
        ("flood NOT gates", False),
        ('"sluice gates"', True),
        ('"gates sluice"', False),  # a phrase keeps its order
        ('"opened sluice"', False),  # and its adjacency
        ("title:marlow", True),
        ("title:sluice", False),  # only in the text
        ('title:"marlow weir"', True),
        ("covid-19", True),  # both tokens, in one field
        ("3.5", True),
        ("1,000", True),
        ("u.s.", True),
        ("outlet:riverside-post", True),  # keyword, any case
        ("outlet:riverside", False),  # not a part of it
        ("lang:EN", True),
        ("lang:fr", False),
        ("author:smith", True),  # a part of a name
        ('author:"jane smith"', True),
        ("author:jones", False),
        ("(flood OR zeppelin) AND title:weir", True),
        ("title:(zeppelin OR marlow)", True),
        ("-flood", False),
        ("flood AND (zeppelin OR airship)", False),
        # A word of punctuation alone is dropped by the parser (it has nothing to match).
        ("!!!", True),
        ("flood !!!", True),
        ("zeppelin | flood", True),
    ],
)
def test_evaluate(query: str, expected: bool) -> None:
    assert evaluate(parse(query), DOC) is expected


def test_missing_title_and_authors() -> None:
    doc = MatchDocument.of(title=None, text="sluice gates", outlet="x")
    assert evaluate(parse("sluice"), doc)
    assert not evaluate(parse("title:sluice"), doc)
    assert not evaluate(parse("author:smith"), doc)
    assert not evaluate(parse("lang:en"), doc)


def test_a_watch_with_a_long_not_chain_compiles_flat() -> None:
    """In percolator mode every watch's query goes to Elasticsearch in one bulk: one watch
    nested 331 deep (past its bool depth limit) used to fail the sync, so all matching."""
    from alert.matcher import compile_watch
    from newsflow.contracts import Watch
    from newsflow.query import Not, Term, to_es

    watch = Watch(id="w-" + "c" * 16, name="chain", query="-" * 331 + "sport")
    compiled = compile_watch(watch)
    assert compiled is not None and compiled.tree == Not(Term("sport"))
    assert to_es(compiled.tree) == {"bool": {"must_not": [to_es(Term("sport"))]}}
    assert evaluate(compiled.tree, DOC)
