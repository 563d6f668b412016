"""The search box's query syntax: parse trees, degradation of malformed input, and the DSL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from newsflow.query import (
    MAX_AUTHOR_CLAUSES,
    MAX_CLAUSES,
    MAX_DEPTH,
    TEXT_FIELDS,
    And,
    MatchAll,
    Not,
    Or,
    Phrase,
    QueryTooComplexError,
    Term,
    compile_query,
    describe,
    parse,
    to_es,
)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("", MatchAll()),
        ("   ", MatchAll()),
        ("flood", Term("flood")),
        ("flood gates", And((Term("flood"), Term("gates")))),
        ('"flood gates"', Phrase("flood gates")),
        ('"flood"', Term("flood")),  # a one-word phrase is a word
        ('""', MatchAll()),
        ("flood AND gates", And((Term("flood"), Term("gates")))),
        ("flood OR gates", Or((Term("flood"), Term("gates")))),
        ("flood NOT gates", And((Term("flood"), Not(Term("gates"))))),
        ("flood -gates", And((Term("flood"), Not(Term("gates"))))),
        ("+flood", Term("flood")),
        ("-gates", Not(Term("gates"))),
        ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),  # AND binds tighter
        ("(a OR b) c", And((Or((Term("a"), Term("b"))), Term("c")))),
        ("a (b (c))", And((Term("a"), Term("b"), Term("c")))),  # groups flatten
        ('-"a b"', Not(Phrase("a b"))),
        ("-(a OR b)", Not(Or((Term("a"), Term("b"))))),
        ("NOT NOT a", Term("a")),  # double negation folds
        ("-(-a)", Term("a")),
        ("NOT -(NOT a)", Not(Term("a"))),
    ],
)
def test_parse(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("title:flood", Term("flood", "title")),
        ('title:"flood gates"', Phrase("flood gates", "title")),
        ("outlet:riverside", Term("riverside", "outlet")),
        ("OUTLET:riverside", Term("riverside", "outlet")),  # prefixes are case-insensitive
        ("author:smith", Term("smith", "author")),
        ("lang:en", Term("en", "lang")),
        (
            'title:(flood OR "weir gates")',
            Or((Term("flood", "title"), Phrase("weir gates", "title"))),
        ),
        ("title:(a outlet:x)", And((Term("a", "title"), Term("x", "outlet")))),
        ("-outlet:riverside", Not(Term("riverside", "outlet"))),
        # Unknown prefixes, times and URLs are plain words.
        ("foo:bar", Term("foo:bar")),
        ("10:30", Term("10:30")),
        ("http://example.com/a", Term("http://example.com/a")),
        ("title:", Term("title:")),
    ],
)
def test_field_prefixes(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ('"flood gates', And((Term("flood"), Term("gates")))),  # unbalanced quote: words
        ('flood "gates', And((Term("flood"), Term("gates")))),
        ('a "b c" "d', And((Term("a"), Phrase("b c"), Term("d")))),
        ("(flood gates", And((Term("flood"), Term("gates")))),  # unclosed group ends with input
        ("flood gates)", And((Term("flood"), Term("gates")))),  # stray ")" is ignored
        (")(", MatchAll()),
        ("a ) b", And((Term("a"), Term("b")))),
        ("flood AND", Term("flood")),  # dangling operators are dropped
        ("OR flood", Term("flood")),
        ("flood OR", Term("flood")),
        ("a OR OR b", Or((Term("a"), Term("b")))),
        ("NOT", MatchAll()),
        ("a NOT", Term("a")),
        ("-", MatchAll()),
        ("- a", Term("a")),  # a sign followed by a space is nothing
        ("AND OR NOT", MatchAll()),
        ("title:(", MatchAll()),
        ("covid-19", Term("covid-19")),  # a hyphen inside a word is part of it
        ("and or not", And((Term("and"), Term("or"), Term("not")))),  # lower case: words
        ("storm | gales", Or((Term("storm"), Term("gales")))),  # shell-style operators
        ("storm & gales", And((Term("storm"), Term("gales")))),
        ("storm — gales /", And((Term("storm"), Term("gales")))),  # punctuation alone: dropped
        ("!!!", MatchAll()),
    ],
)
def test_malformed_input_degrades(text: str, tree: object) -> None:
    assert parse(text) == tree


def test_lucene_syntax_is_just_text() -> None:
    # Everything that makes query_string fail or expensive is plain text here.
    for text in ["/regex.*/", "fo?o*", "a~2", "[a TO b]", "{x}", "a^10", "\\", "::", "!!!", "*"]:
        query = compile_query(text)
        serialized = json.dumps(query)
        assert "query_string" not in serialized
        assert "regexp" not in serialized and "fuzzy" not in serialized


def test_deep_nesting_is_flattened_not_refused() -> None:
    text = "(" * (MAX_DEPTH + 5) + "flood" + ")" * (MAX_DEPTH + 5)
    tree = parse(text)
    assert "flood" in describe(tree)


def test_long_not_chains_fold_instead_of_recursing() -> None:
    # 331 signs fit the length limit and used to raise RecursionError (an HTTP 500).
    assert parse("-" * 1000 + "flood") == Term("flood")
    assert parse("-" * 1001 + "flood") == Not(Term("flood"))
    assert parse("NOT " * 999 + "flood") == Not(Term("flood"))
    assert compile_query("-" * 331 + "flood") == compile_query("-flood")


def test_not_nesting_counts_toward_the_depth_limit() -> None:
    nested = "".join(f"-(w{i} " for i in range(MAX_DEPTH)) + ")" * MAX_DEPTH
    with pytest.raises(QueryTooComplexError, match="NOT"):
        parse(nested)
    shallow = "".join(f"-(w{i} " for i in range(MAX_DEPTH // 2)) + ")" * (MAX_DEPTH // 2)
    assert describe(parse(shallow)).count("NOT") == MAX_DEPTH // 2


def test_author_terms_are_capped() -> None:
    # Each author: term is a case-insensitive substring (wildcard) scan of every name.
    allowed = " ".join(f"author:a{i}" for i in range(MAX_AUTHOR_CLAUSES))
    assert describe(parse(allowed)).count("author:") == MAX_AUTHOR_CLAUSES
    for text in (
        f"{allowed} author:one-more",
        "author:(" + " ".join(f"a{i}" for i in range(MAX_AUTHOR_CLAUSES + 1)) + ")",
        f"{allowed} OR -author:x",
    ):
        with pytest.raises(QueryTooComplexError, match="author"):
            parse(text)


def test_too_many_terms_is_refused() -> None:
    parse(" ".join(f"w{i}" for i in range(MAX_CLAUSES)))
    with pytest.raises(QueryTooComplexError):
        parse(" ".join(f"w{i}" for i in range(MAX_CLAUSES + 1)))


def test_any_input_parses_or_is_too_complex() -> None:
    """A cheap fuzz: random mixes of the syntax's characters never raise anything else."""
    import random

    rng = random.Random(7)
    alphabet = ['"', "(", ")", "-", "+", " ", "AND ", "OR ", "NOT ", "title:", "a", "b", ":"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        try:
            query = to_es(parse(text))
        except QueryTooComplexError:
            continue
        json.dumps(query)


# --- DSL ----------------------------------------------------------------------------------


def _clauses(query: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = query["bool"].get(kind, [])
    return clauses


def test_empty_query_matches_all() -> None:
    assert compile_query("") == {"match_all": {}}


def test_word_searches_title_and_text() -> None:
    query = compile_query("flood")
    assert query == {
        "multi_match": {
            "query": "flood",
            "type": "best_fields",
            "fields": list(TEXT_FIELDS),
            "operator": "and",
        }
    }


def test_words_are_all_required_with_a_proximity_bonus() -> None:
    query = compile_query("weir gates")
    must = _clauses(query, "must")
    assert [c["multi_match"]["query"] for c in must] == ["weir", "gates"]
    [bonus] = _clauses(query, "should")
    assert bonus["multi_match"]["type"] == "phrase"
    assert bonus["multi_match"]["query"] == "weir gates"
    assert bonus["multi_match"]["slop"] > 0


def test_phrase_and_title_prefix() -> None:
    query = compile_query('title:"weir gates"')
    assert query["multi_match"]["type"] == "phrase"
    assert query["multi_match"]["fields"] == ["title", "title.english"]


def test_exact_value_prefixes_filter_without_scoring() -> None:
    query = compile_query("flood outlet:Riverside lang:EN")
    filters = _clauses(query, "filter")
    assert {"term": {"outlet": {"value": "Riverside", "case_insensitive": True}}} in filters
    assert {"term": {"language": {"value": "en"}}} in filters
    assert len(_clauses(query, "must")) == 1


def test_author_prefix_escapes_wildcards() -> None:
    query = compile_query("author:sm*th?")
    wildcard = _clauses(query, "filter")[0]["bool"]["should"][1]["wildcard"]["authors"]
    assert wildcard["value"] == "*sm\\*th\\?*"


def test_negation_and_or() -> None:
    query = compile_query("(flood OR storm) -snow")
    [group] = _clauses(query, "must")
    assert group["bool"]["minimum_should_match"] == 1
    assert len(group["bool"]["should"]) == 2
    [negated] = _clauses(query, "must_not")
    assert negated["multi_match"]["query"] == "snow"


def test_pure_negation_matches_everything_else() -> None:
    assert compile_query("-snow") == {"bool": {"must_not": [compile_query("snow")]}}


def test_describe_is_canonical() -> None:
    assert describe(parse('flood  AND  title:"weir gates" -snow')) == (
        '(flood AND title:"weir gates" AND NOT snow)'
    )
    assert describe(parse("")) == "*"
