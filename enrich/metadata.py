"""Article metadata (title, authors, publication date), each with the method that found it.

What the publisher declares (schema.org JSON-LD, Open Graph, ``<meta>``) comes first, then
trafilatura's heuristics (byline XPaths, the ``<h1>``), and htmldate's page search only when
nothing declared a date: that search is the costliest step, and declared dates are more often
right. Only trafilatura's pieces that matter are run (no license, tags or categories).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from enrich.pagemeta import ARTICLE_TYPES, PageSignals, normalize_space

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Metadata:
    title: str | None = None
    title_source: str | None = None
    author: str | None = None  # raw, "; "-separated (split by the caller)
    authors_source: str | None = None
    heuristic_date: date | None = None  # URL's or htmldate's, only when the page declares none
    heuristic_date_source: str | None = None  # "url" or "htmldate"
    sitename: str | None = None
    pagetype: str | None = None


def _article_objects(signals: PageSignals) -> list[dict[str, Any]]:
    def types(obj: dict[str, Any]) -> set[str]:
        raw = obj.get("@type")
        values = raw if isinstance(raw, list) else [raw]
        return {v.rsplit("/", 1)[-1].lower() for v in values if isinstance(v, str)}

    return [obj for obj in signals.json_ld if types(obj) & ARTICLE_TYPES]


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name") or value.get("@value")
    if isinstance(value, str):
        cleaned = normalize_space(value)
        return cleaned or None
    return None


_PERSON_KEYS = ("author", "creator")


def json_ld_people(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Names of the ``Person`` authors of the page's article objects (organizations skipped:
    a publisher's name is not a byline)."""
    names: list[str] = []
    for obj in objects:
        for key in _PERSON_KEYS:
            raw = obj.get(key)
            for item in raw if isinstance(raw, list) else [raw]:
                if isinstance(item, str):
                    name: str | None = normalize_space(item)
                elif isinstance(item, dict):
                    kinds = item.get("@type")
                    kinds = kinds if isinstance(kinds, list) else [kinds]
                    if any(isinstance(k, str) and k.lower() == "organization" for k in kinds):
                        continue
                    name = _text(item.get("name"))
                    if not name and item.get("givenName") and item.get("familyName"):
                        name = f"{item['givenName']} {item['familyName']}"
                else:
                    name = None
                if name and name not in names:
                    names.append(name)
        if names:
            return names
    return names


def read_metadata(tree: Any, url: str | None, signals: PageSignals) -> Metadata:
    """Title, author and (when the page declares none) a heuristic date, with sources."""
    from trafilatura.metadata import (
        examine_meta,
        extract_author,
        extract_meta_json,
        extract_sitename,
        extract_title,
    )

    try:
        doc = examine_meta(tree)
        meta_author = doc.author if doc.author and " " in doc.author else None
        meta_title = doc.title
        doc = extract_meta_json(tree, doc)
    except Exception:  # a metadata bug must not cost the page its text
        log.warning("metadata extraction failed on %s", url, exc_info=True)
        return Metadata()

    articles = _article_objects(signals)
    headline = next((t for o in articles if (t := _text(o.get("headline") or o.get("name")))), None)

    title, title_source = headline, "json-ld:headline"
    if not title and meta_title:
        title, title_source = meta_title, "meta"
    if not title and doc.title:
        title, title_source = doc.title, "json-ld"
    if not title:
        title, title_source = extract_title(tree), "heuristic"
    visible = headline_on_page(signals.headings, [headline, meta_title, doc.title, title])
    if visible:
        title, title_source = visible, "h1"
    if title:
        title = html.unescape(title)  # JSON-LD often carries entities (&quot;, &#8216;)

    people = json_ld_people(articles)
    if people:
        author: str | None = "; ".join(people)
        authors_source: str | None = "json-ld:author"
    elif meta_author:
        author, authors_source = meta_author, "meta"
    elif doc.author:
        author, authors_source = doc.author, "json-ld"
    else:
        author, authors_source = extract_author(tree), "byline"
    if not author:
        authors_source = None

    heuristic: date | None = None
    heuristic_source: str | None = None
    if signals.published is None:
        heuristic, heuristic_source = url_date(url), "url"
        if heuristic is None:
            heuristic, heuristic_source = find_date(tree, url), "htmldate"

    sitename = doc.sitename or extract_sitename(tree)
    return Metadata(
        title=title or None,
        title_source=title_source if title else None,
        author=author,
        authors_source=authors_source,
        heuristic_date=heuristic,
        heuristic_date_source=heuristic_source if heuristic else None,
        sitename=sitename,
        pagetype=doc.pagetype,
    )


_URL_DATE = re.compile(
    r"/((?:19|20)\d{2})[/-](0[1-9]|1[0-2])[/-](0[1-9]|[12]\d|3[01])(?:/|$|-)"
    r"|[/-]((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:/|$|\.)"
)


def url_date(url: str | None) -> date | None:
    """A full day in the URL's path (``/2024/05/14/``, ``-20240514/``): the publisher's own
    filing of the page, more reliable than dates found in the page's text and links."""
    if not url:
        return None
    match = _URL_DATE.search(urlsplit(url).path)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups() if g)
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    return found if found <= datetime.now(UTC).date() + timedelta(days=1) else None


def find_date(tree: Any, url: str | None) -> date | None:
    """htmldate's publication date (original, not last-modified; extensive search)."""
    from htmldate import find_date as htmldate_find

    tomorrow = datetime.now(UTC) + timedelta(days=1)
    try:
        found = htmldate_find(
            tree,
            url=url,
            original_date=True,
            extensive_search=True,
            max_date=tomorrow.strftime("%Y-%m-%d"),
        )
    except Exception:
        log.warning("date search failed on %s", url, exc_info=True)
        return None
    if not isinstance(found, str):
        return None
    try:
        return date.fromisoformat(found[:10])
    except ValueError:
        return None


_NOT_HEADLINE = re.compile(r"^\W*$")
_WORDS = re.compile(r"\w+")
MIN_HEADLINE_WORDS = 3
MIN_SHARED_WORDS = 0.8


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(html.unescape(text).casefold()))


def headline_on_page(headings: Sequence[str], declared: Sequence[str | None]) -> str | None:
    """The ``<h1>`` readers see, when it is this article's headline.

    Declared titles (JSON-LD ``headline``, ``og:title``, ``<title>``) are often an SEO variant
    with a kicker ("Topic: Headline") or a site name; the visible ``<h1>`` is the headline.
    An ``<h1>`` counts when it is sentence-like and has most of its words in a declared
    title, which tells it from a logo or a section name.
    """
    references = [_words(t) for t in declared if t]
    for heading in headings:
        words = _words(heading)
        if len(words) < MIN_HEADLINE_WORDS:
            continue
        for ref in references:
            shared = len(words & ref)
            if ref and shared >= MIN_SHARED_WORDS * len(words):
                return heading
    return None


def best_title(candidates: Sequence[tuple[str | None, str]]) -> tuple[str | None, str | None]:
    """The first usable candidate and its source."""
    for value, source in candidates:
        if value and not _NOT_HEADLINE.match(value):
            return value, source
    return None, None
