"""The search box's query syntax, parsed by us into Elasticsearch query DSL.

User input never reaches ``query_string`` (whose Lucene syntax errors on a stray ``/`` or
``[`` and allows expensive regex/wildcard/fuzzy queries). The syntax:

- words (all must match, in the title or the text), ``"quoted phrases"``
- ``AND``, ``OR``, ``NOT`` (upper case only; lower case are words; also ``&``/``&&`` and
  ``|``/``||``), ``-word``, ``+word``
- parentheses for grouping
- field prefixes ``title:``, ``outlet:``, ``author:``, ``lang:`` before a word, a phrase or a
  group; any other ``name:value`` is plain text (``10:30``, ``http://...``)

Malformed input degrades instead of failing: an unbalanced quote is text, an unmatched
parenthesis is ignored, a dangling operator and a word of punctuation alone are dropped,
parentheses deeper than ``MAX_DEPTH`` are flattened, and a run of NOTs folds to one or none
(``- -a`` is ``a``). Only size is refused (``QueryTooComplexError``): more than
``MAX_CLAUSES`` terms, more than ``MAX_AUTHOR_CLAUSES`` ``author:`` terms (each is a
substring scan of the author names), or NOTs nested beyond ``MAX_DEPTH`` (a NOT counts as one
level, as a parenthesis does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Text fields with their boosts; ``.english`` subfields exist only where the cluster has the
# language analyzers (a missing field in ``multi_match`` simply matches nothing).
TEXT_FIELDS = ("title^3", "title.english^3", "text", "text.english")
TITLE_FIELDS = ("title", "title.english")
FIELD_PREFIXES = ("title", "outlet", "author", "lang")
MAX_CLAUSES = 32
MAX_AUTHOR_CLAUSES = 4
MAX_DEPTH = 8
# The phrase-proximity bonus for plain words: documents with the words close together first.
PROXIMITY_SLOP = 3
PROXIMITY_BOOST = 2.0


class QueryTooComplexError(ValueError):
    """More terms than a search box needs: refused, with a message for the user."""


# --- syntax tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    text: str
    field: str | None = None


@dataclass(frozen=True)
class Phrase:
    text: str
    field: str | None = None


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class MatchAll:
    pass


Node = Term | Phrase | Not | And | Or | MatchAll


# --- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # word, phrase, lparen, rparen, and, or, not, minus, field
    text: str = ""


_OPERATORS = {
    "AND": "and",
    "OR": "or",
    "NOT": "not",
    "&&": "and",
    "||": "or",
    "&": "and",
    "|": "or",
}
_FIELD_RE = re.compile(r"^(title|outlet|author|lang):(.*)$", re.IGNORECASE | re.DOTALL)


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "(":
            tokens.append(_Tok("lparen"))
            i += 1
            continue
        if ch == ")":
            tokens.append(_Tok("rparen"))
            i += 1
            continue
        if ch == '"':
            end = text.find('"', i + 1)
            if end == -1:  # unbalanced quote: the rest is words
                i += 1
                continue
            tokens.append(_Tok("phrase", text[i + 1 : end]))
            i = end + 1
            continue
        if ch in "-+" and i + 1 < n and not text[i + 1].isspace():
            # A sign binds to what follows ("-word", "-(a b)", '-"a b"'); inside a word
            # ("covid-19") it is part of the word, handled below.
            if ch == "-":
                tokens.append(_Tok("minus"))
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in '()"':
            j += 1
        word = text[i:j]
        i = j
        field = _FIELD_RE.match(word)
        if field:
            name, rest = field.group(1).lower(), field.group(2)
            if rest:
                tokens.append(_Tok("field", name))
                tokens.append(_Tok("word", rest))
                continue
            if i < n and text[i] in '("':  # title:"a b", title:(a OR b)
                tokens.append(_Tok("field", name))
                continue
        if word in _OPERATORS:
            tokens.append(_Tok(_OPERATORS[word]))
        elif analyze(word):
            # A word of punctuation alone ("—", "/") has no token to match: as a required
            # term it would make the whole query match nothing, so it is dropped.
            tokens.append(_Tok("word", word))
    return tokens


# --- parser -------------------------------------------------------------------------------


class _Parser:
    """Recursive descent: or_expr := and_expr (OR and_expr)*; and_expr := unary+ (with
    optional AND between); unary := (NOT|-) unary | primary; primary := [field] atom."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.clauses = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        parts: list[Node] = []
        while self.peek() is not None:
            node = self.or_expr()
            if node is not None:
                parts.append(node)
            elif self.peek() is not None:  # a stray ")" or operator: skip it
                self.take()
        tree = _simplify(And(tuple(parts))) if parts else MatchAll()
        # Counted on the tree: a group's prefix (author:(a b)) reaches its terms only there.
        if _count_leaves(tree, "author") > MAX_AUTHOR_CLAUSES:
            raise QueryTooComplexError(
                f"the query has more than {MAX_AUTHOR_CLAUSES} author: terms"
            )
        return tree

    def or_expr(self) -> Node | None:
        options: list[Node] = []
        node = self.and_expr()
        if node is not None:
            options.append(node)
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.take()
            node = self.and_expr()
            if node is not None:
                options.append(node)
        if not options:
            return None
        return options[0] if len(options) == 1 else Or(tuple(options))

    def and_expr(self) -> Node | None:
        parts: list[Node] = []
        while (tok := self.peek()) is not None and tok.kind not in ("or", "rparen"):
            if tok.kind == "and":
                self.take()
                continue
            node = self.unary()
            if node is not None:
                parts.append(node)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node | None:
        tok = self.take()
        negations = 0
        while tok.kind in ("not", "minus"):  # a loop, not recursion: "------a" may be long
            nxt = self.peek()
            if nxt is None or nxt.kind in ("or", "and", "rparen"):
                return None  # a dangling NOT
            negations += 1
            tok = self.take()
        if negations % 2 == 0:
            return self.primary(tok, None)
        if self.depth >= MAX_DEPTH:
            raise QueryTooComplexError(f"the query nests NOT deeper than {MAX_DEPTH} levels")
        self.depth += 1
        child = self.primary(tok, None)
        self.depth -= 1
        return Not(child) if child is not None else None

    def primary(self, tok: _Tok, field: str | None) -> Node | None:
        if tok.kind == "field":
            nxt = self.peek()
            if nxt is None:
                return None
            return self.primary(self.take(), tok.text)
        if tok.kind == "word":
            return self.leaf(Term(tok.text, field))
        if tok.kind == "phrase":
            words = tok.text.split()
            if not words:
                return None
            text = " ".join(words)
            return self.leaf(Phrase(text, field) if len(words) > 1 else Term(text, field))
        if tok.kind == "lparen":
            return self.group(field)
        return None  # "rparen"/operators are handled by the callers

    def group(self, field: str | None) -> Node | None:
        if self.depth >= MAX_DEPTH:  # too deep: the parenthesis is ignored
            return None
        self.depth += 1
        node = self.or_expr()
        self.depth -= 1
        if (tok := self.peek()) is not None and tok.kind == "rparen":
            self.take()
        # An unclosed "(" simply ends with the input.
        if node is not None and field is not None:
            node = _with_field(node, field)
        return node

    def leaf(self, node: Term | Phrase) -> Node:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise QueryTooComplexError(f"the query has more than {MAX_CLAUSES} terms")
        return node


def _with_field(node: Node, field: str) -> Node:
    """``title:(a OR "b c")``: the prefix applies to every unprefixed term in the group."""
    if isinstance(node, Term | Phrase):
        return node if node.field else type(node)(node.text, field)
    if isinstance(node, Not):
        return Not(_with_field(node.child, field))
    if isinstance(node, And):
        return And(tuple(_with_field(c, field) for c in node.children))
    if isinstance(node, Or):
        return Or(tuple(_with_field(c, field) for c in node.children))
    return node


def _simplify(node: Node) -> Node:
    """Flatten nested ANDs/ORs and single-child groups, so equal queries give equal trees."""
    if isinstance(node, And | Or):
        kind = type(node)
        flat: list[Node] = []
        for child in (_simplify(c) for c in node.children):
            if isinstance(child, kind):
                flat.extend(child.children)
            elif not isinstance(child, MatchAll):
                flat.append(child)
        if not flat:
            return MatchAll()
        return flat[0] if len(flat) == 1 else kind(tuple(flat))
    if isinstance(node, Not):
        child = _simplify(node.child)
        return child.child if isinstance(child, Not) else Not(child)  # -(-a) is a
    return node


def _count_leaves(node: Node, field: str) -> int:
    if isinstance(node, Term | Phrase):
        return int(node.field == field)
    if isinstance(node, Not):
        return _count_leaves(node.child, field)
    if isinstance(node, And | Or):
        return sum(_count_leaves(c, field) for c in node.children)
    return 0


def parse(text: str) -> Node:
    """The syntax tree of a search-box query; never fails on syntax (see the module doc)."""
    return _Parser(_tokenize(text)).parse()


# --- Elasticsearch DSL --------------------------------------------------------------------


def _escape_wildcard(value: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", value)


def _leaf_query(node: Term | Phrase) -> dict[str, Any]:
    text = node.text
    if node.field == "outlet":
        return {"term": {"outlet": {"value": text, "case_insensitive": True}}}
    if node.field == "lang":
        return {"term": {"language": {"value": text.lower()}}}
    if node.field == "author":
        # Authors are keywords ("Jane Smith"): the exact name, or a part of it. The value is
        # escaped, so the user cannot write wildcards of their own.
        return {
            "bool": {
                "should": [
                    {"term": {"authors": {"value": text, "case_insensitive": True}}},
                    {
                        "wildcard": {
                            "authors": {
                                "value": f"*{_escape_wildcard(text)}*",
                                "case_insensitive": True,
                            }
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }
    fields = list(TITLE_FIELDS if node.field == "title" else TEXT_FIELDS)
    if isinstance(node, Phrase):
        return {"multi_match": {"query": text, "type": "phrase", "fields": fields}}
    # One word may analyze into several tokens ("covid-19"): all of them, in one field.
    return {
        "multi_match": {"query": text, "type": "best_fields", "fields": fields, "operator": "and"}
    }


def _is_filter(node: Node) -> bool:
    """Exact-value clauses: they narrow the result but should not change its ranking."""
    return isinstance(node, Term | Phrase) and node.field in ("outlet", "lang", "author")


def to_es(node: Node) -> dict[str, Any]:
    """Elasticsearch query DSL for a syntax tree (bool/match/multi_match/term only)."""
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, Term | Phrase):
        query = _leaf_query(node)
        return {"bool": {"filter": [query]}} if _is_filter(node) else query
    if isinstance(node, Not):
        return {"bool": {"must_not": [to_es(node.child)]}}
    if isinstance(node, Or):
        return {"bool": {"should": [to_es(c) for c in node.children], "minimum_should_match": 1}}
    must: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    must_not: list[dict[str, Any]] = []
    plain: list[str] = []
    for child in node.children:
        if isinstance(child, Not):
            must_not.append(to_es(child.child))
        elif _is_filter(child):
            assert isinstance(child, Term | Phrase)
            filters.append(_leaf_query(child))
        else:
            if isinstance(child, Term) and child.field is None:
                plain.append(child.text)
            must.append(to_es(child))
    bool_query: dict[str, Any] = {}
    if must:
        bool_query["must"] = must
    if filters:
        bool_query["filter"] = filters
    if must_not:
        bool_query["must_not"] = must_not
    if len(plain) > 1:
        bool_query["should"] = [
            {
                "multi_match": {
                    "query": " ".join(plain),
                    "type": "phrase",
                    "fields": list(TEXT_FIELDS),
                    "slop": PROXIMITY_SLOP,
                    "boost": PROXIMITY_BOOST,
                }
            }
        ]
    return {"bool": bool_query}


def compile_query(text: str) -> dict[str, Any]:
    """Search-box text → query DSL; raises only ``QueryTooComplexError``."""
    return to_es(parse(text))


def describe(node: Node) -> str:
    """A canonical text form of the tree: what the API echoes back as the understood query."""
    if isinstance(node, MatchAll):
        return "*"
    if isinstance(node, Term):
        return f"{node.field}:{node.text}" if node.field else node.text
    if isinstance(node, Phrase):
        return f'{node.field}:"{node.text}"' if node.field else f'"{node.text}"'
    if isinstance(node, Not):
        return f"NOT {describe(node.child)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(describe(c) for c in node.children) + ")"


# --- in-process evaluation ----------------------------------------------------------------
#
# The alert stage matches each new article against every watch without asking Elasticsearch
# (no race with the index stage, no percolator needed). ``evaluate`` gives the same answer as
# ``to_es`` on the minimal cluster's ``standard`` analyzer; where the full image adds English
# stemming (``title.english``), search may match more word forms than a watch does.

# Unicode word segmentation as the standard tokenizer does it, near enough: runs of word
# characters, joined across ``.``/``'`` (``u.s``, ``don't``, ``3.5``), ``:`` between letters
# and ``,``/``;`` between digits (``1,000``); everything else separates (``covid-19``).
_WORD_RE = re.compile(
    r"[^\W_]\w*(?:(?:[.'’]|(?<=[^\W\d_]):(?=[^\W\d_])|(?<=\d)[,;](?=\d))\w+)*|_+\w*",
)
# Ideographs and kana are one token each in the standard tokenizer.
_IDEOGRAPHIC_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def analyze(text: str) -> list[str]:
    """Lower-cased tokens of ``text``, close to Elasticsearch's ``standard`` analyzer."""
    tokens: list[str] = []
    for match in _WORD_RE.finditer(text):
        token = match.group(0).lower()
        if _IDEOGRAPHIC_RE.search(token):
            tokens.extend(_split_ideographs(token))
        else:
            tokens.append(token)
    return tokens


def _split_ideographs(token: str) -> list[str]:
    parts: list[str] = []
    run = ""
    for ch in token:
        if _IDEOGRAPHIC_RE.match(ch):
            if run:
                parts.append(run)
                run = ""
            parts.append(ch)
        else:
            run += ch
    if run:
        parts.append(run)
    return parts


@dataclass(frozen=True)
class AnalyzedField:
    """A text field's tokens and where each occurs (for phrases)."""

    tokens: tuple[str, ...]
    positions: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, text: str | None) -> AnalyzedField:
        tokens = tuple(analyze(text or ""))
        positions: dict[str, list[int]] = {}
        for i, token in enumerate(tokens):
            positions.setdefault(token, []).append(i)
        return cls(tokens, {t: tuple(p) for t, p in positions.items()})

    def has_all(self, words: list[str]) -> bool:
        return bool(words) and all(w in self.positions for w in words)

    def has_phrase(self, words: list[str]) -> bool:
        if not self.has_all(words):
            return False
        n = len(words)
        return any(
            self.tokens[start : start + n] == tuple(words) for start in self.positions[words[0]]
        )


@dataclass(frozen=True)
class MatchDocument:
    """An article as the evaluator sees it: analyzed once, matched against every watch."""

    title: AnalyzedField
    text: AnalyzedField
    outlet: str
    authors: tuple[str, ...]
    language: str | None

    @classmethod
    def of(
        cls,
        *,
        title: str | None,
        text: str,
        outlet: str,
        authors: tuple[str, ...] | list[str] = (),
        language: str | None = None,
    ) -> MatchDocument:
        return cls(
            AnalyzedField.of(title),
            AnalyzedField.of(text),
            outlet.lower(),
            tuple(a.lower() for a in authors),
            language,
        )


def _leaf_matches(node: Term | Phrase, doc: MatchDocument) -> bool:
    text = node.text
    if node.field == "outlet":  # keyword, case-insensitive term
        return doc.outlet == text.lower()
    if node.field == "lang":
        return doc.language == text.lower()
    if node.field == "author":  # the exact name or a part of it, any case
        needle = text.lower()
        return any(needle in author for author in doc.authors)
    words = analyze(text)
    fields = (doc.title,) if node.field == "title" else (doc.title, doc.text)
    if isinstance(node, Phrase):
        return any(f.has_phrase(words) for f in fields)
    # best_fields with operator "and": every token of the word, in one field.
    return any(f.has_all(words) for f in fields)


def evaluate(node: Node, doc: MatchDocument) -> bool:
    """Whether ``to_es(node)`` would match ``doc`` (scoring aside)."""
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Term | Phrase):
        return _leaf_matches(node, doc)
    if isinstance(node, Not):
        return not evaluate(node.child, doc)
    if isinstance(node, Or):
        return any(evaluate(c, doc) for c in node.children)
    return all(evaluate(c, doc) for c in node.children)
