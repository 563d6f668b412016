"""Per-outlet extraction overrides: the selectors an outlet declares under ``extraction:``
in the registry (their schema and compilation: :mod:`newsflow.selectors`), applied to a page.

What an override finds wins over the generic result, and the field's ``*_source`` records
``outlet:<field>``; when it finds nothing the generic result stands (a redesign degrades to the
generic extractor instead of to empty fields).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from enrich.pagemeta import normalize_space, parse_datetime, plausible
from newsflow.selectors import CompiledOverrides

# Blocks that are one line of body text each; their ancestors' text is not repeated.
_BLOCKS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "dd", "dt", "tr"}
)
_DROPPED_INSIDE_BODY = frozenset({"script", "style", "noscript", "template"})
# "Published: 09:12 GMT, 18 Nov 2026" -> "09:12 GMT, 18 Nov 2026"
_DATE_LABEL = re.compile(r"^[^\d:]{1,40}:\s+")


def without_dropped(tree: Any, compiled: CompiledOverrides) -> Any:
    """A copy of ``tree`` without the ``drop`` matches (the tree itself when there are none)."""
    if not compiled.drop:
        return tree
    from copy import deepcopy

    copy = deepcopy(tree)
    for selector in compiled.drop:
        for node in _elements(selector(copy)):
            parent = node.getparent()
            if parent is not None:
                node.drop_tree()
    return copy


def body_text(tree: Any, compiled: CompiledOverrides) -> str | None:
    """The text of the ``body`` matches, one block per line, in document order."""
    if not compiled.body:
        return None
    lines: list[str] = []
    seen: set[int] = set()
    for selector in compiled.body:
        for node in _elements(selector(tree)):
            if id(node) not in seen:
                seen.add(id(node))
                lines.extend(_block_lines(node))
    text = "\n".join(line for line in lines if line)
    return text or None


def first_text(tree: Any, selector: Any) -> str | None:
    if selector is None:
        return None
    for found in selector(tree):
        text = _as_text(found)
        if text:
            return text
    return None


def all_texts(tree: Any, selector: Any) -> list[str]:
    if selector is None:
        return []
    return [text for found in selector(tree) if (text := _as_text(found))]


def published_time(tree: Any, selector: Any) -> datetime | None:
    """The first match that parses as a plausible time: ``datetime``/``content`` attributes
    (ISO 8601) first, then the text ("Published: 09:12 GMT, 18 November 2026")."""
    if selector is None:
        return None
    for found in selector(tree):
        candidates = []
        if hasattr(found, "get"):
            candidates += [found.get(attribute) for attribute in ("datetime", "content")]
        candidates.append(_as_text(found))
        for candidate in candidates:
            parsed = _parse_date(candidate) if candidate else None
            if parsed is not None and plausible(parsed):
                return parsed
    return None


def _parse_date(value: str) -> datetime | None:
    value = _DATE_LABEL.sub("", normalize_space(value))
    parsed = parse_datetime(value)
    if parsed is not None:
        return parsed[0]
    import dateparser

    # the zone the text states is kept (it decides the outlet's day); a text without one is UTC
    found = dateparser.parse(value)
    if not isinstance(found, datetime):
        return None
    return found if found.utcoffset() is not None else found.replace(tzinfo=UTC)


def _elements(results: Any) -> list[Any]:
    if not isinstance(results, list):
        return []
    return [r for r in results if hasattr(r, "iter") and isinstance(r.tag, str)]


def _as_text(found: Any) -> str:
    if hasattr(found, "text_content"):
        return normalize_space(str(found.text_content()))
    if isinstance(found, str):  # an attribute value or a text node
        return normalize_space(found)
    return ""


def _block_lines(node: Any) -> list[str]:
    """One line per block element; inline text outside blocks joins its neighbours."""
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = normalize_space("".join(current))
        if line:
            lines.append(line)
        current.clear()

    def walk(element: Any) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in _DROPPED_INSIDE_BODY:
            if element.tail:
                current.append(element.tail)
            return
        block = tag in _BLOCKS or tag == "br"
        if block:
            flush()
        if tag in ("td", "th"):
            current.append(" ")
        if element.text and tag:
            current.append(element.text)
        for child in element:
            walk(child)
        if block:
            flush()
        if element.tail:
            current.append(element.tail)

    if node.text:  # the match's own text, not its tail (which is outside the match)
        current.append(node.text)
    for child in node:
        walk(child)
    flush()
    return lines
