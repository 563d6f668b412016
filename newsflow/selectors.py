"""The extraction-selector schema of the outlets registry: what an outlet may declare under
``extraction:`` and how each selector is compiled.

Declared in the outlets registry (see :mod:`newsflow.outlets`)::

    extraction:
      body: [".story-body"]                 # elements whose text is the article body
      drop: [".promo", "aside"]             # removed before any extraction
      title: "h1.headline"
      authors: ".byline a"                  # every match is one byline (split further)
      published: "//div[@class='times']/text()[1]"   # an attribute, element or text node
      article_pages: "/news/[^/]+/$"        # regex on the URL: such pages are articles

A selector is XPath when it starts with ``/``, ``./`` or ``(``, otherwise CSS. Both are
compiled when the registry is loaded, so a bad selector is reported with the outlet's name and
the field before any page is fetched. Applying them to a page is the enrich stage's job
(``enrich.overrides``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

_MAX_SELECTOR_LENGTH = 500
_XPATH_START = ("/", "./", "(")


def _compile(selector: str) -> Any:
    from lxml import etree

    if selector.startswith(_XPATH_START):
        return etree.XPath(selector)
    from lxml.cssselect import CSSSelector

    return CSSSelector(selector)


def _check_selector(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("selector", "empty selector")
    if len(value) > _MAX_SELECTOR_LENGTH:
        raise PydanticCustomError(
            "selector",
            "selector too long (at most {limit} characters)",
            {"limit": _MAX_SELECTOR_LENGTH},
        )
    kind = "XPath" if value.startswith(_XPATH_START) else "CSS selector"
    try:
        _compile(value)
    except Exception as exc:  # lxml's XPathSyntaxError, cssselect's SelectorError
        raise PydanticCustomError(
            "selector",
            "not a valid {kind}: {error} (XPath must start with '/', './' or '(')",
            {"kind": kind, "error": str(exc) or type(exc).__name__},
        ) from None
    return value


def check_regex(value: str) -> str:
    """A regular expression that compiles, or a validation error saying why (shared with the
    outlets registry's URL patterns)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise PydanticCustomError(
            "regex", "not a valid regular expression: {error}", {"error": str(exc)}
        ) from None
    return value


Selector = Annotated[str, AfterValidator(_check_selector)]
URLPattern = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(check_regex)]


class ExtractionOverrides(BaseModel):
    """Selectors that replace the generic extractor's guess for one outlet's pages."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    body: list[Selector] = Field(default_factory=list, max_length=20)
    drop: list[Selector] = Field(default_factory=list, max_length=50)
    title: Selector | None = None
    authors: Selector | None = None
    published: Selector | None = None
    article_pages: URLPattern | None = None

    @cached_property
    def compiled(self) -> CompiledOverrides:
        return CompiledOverrides(
            body=tuple(_compile(s) for s in self.body),
            drop=tuple(_compile(s) for s in self.drop),
            title=_compile(self.title) if self.title else None,
            authors=_compile(self.authors) if self.authors else None,
            published=_compile(self.published) if self.published else None,
            article_pages=re.compile(self.article_pages) if self.article_pages else None,
        )


@dataclass(frozen=True, slots=True)
class CompiledOverrides:
    body: tuple[Any, ...]
    drop: tuple[Any, ...]
    title: Any
    authors: Any
    published: Any
    article_pages: re.Pattern[str] | None
