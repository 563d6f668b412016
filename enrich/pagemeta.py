"""Page-level signals read straight from the parsed tree: canonical URL, declared page type,
machine-readable publication date, and the page's link texts.

These are the things a publisher states explicitly (``<link rel=canonical>``, Open Graph,
schema.org JSON-LD), so they are read here directly and preferred over heuristics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

# schema.org types that mark a page as one article (NewsArticle's subtypes included).
ARTICLE_TYPES = frozenset(
    {
        "article",
        "newsarticle",
        "blogposting",
        "reportagenewsarticle",
        "analysisnewsarticle",
        "opinionnewsarticle",
        "reviewnewsarticle",
        "backgroundnewsarticle",
        "askpublicnewsarticle",
        "satiricalarticle",
        "scholarlyarticle",
        "techarticle",
        "report",
        "liveblogposting",
        "socialmediaposting",
    }
)
# schema.org types that mark a page as something other than an article. Site-wide objects
# (WebSite, Organization, BreadcrumbList) appear on article pages too, so they are not here.
NON_ARTICLE_TYPES = frozenset(
    {
        "collectionpage",
        "itemlist",
        "searchresultspage",
        "profilepage",
        "product",
        "productgroup",
        "offer",
        "event",
        "faqpage",
        "qapage",
        "aboutpage",
        "contactpage",
        "checkoutpage",
        "jobposting",
        "recipe",
        "videoobject",
    }
)
OG_ARTICLE_TYPES = frozenset({"article", "news", "blog", "blogposting"})

# <meta> names/properties that carry the publication time, best first.
_DATE_META_KEYS = (
    "article:published_time",
    "og:published_time",
    "datepublished",
    "parsely-pub-date",
    "sailthru.date",
    "pubdate",
    "publishdate",
    "publish-date",
    "dc.date.issued",
    "dcterms.issued",
    "dcterms.created",
    "dc.date",
    "published",
    "date",
)
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_HAS_TIME = re.compile(r"\d{1,2}:\d{2}")


@dataclass(frozen=True, slots=True)
class PageDate:
    value: datetime  # timezone-aware
    has_time: bool  # False for a bare date (read as midnight UTC)
    source: str


@dataclass(frozen=True, slots=True)
class PageSignals:
    canonical_url: str | None
    og_type: str | None  # lower-cased
    schema_types: frozenset[str]  # lower-cased schema.org @type values found in JSON-LD
    published: PageDate | None
    anchor_texts: frozenset[str]  # normalized (lower-cased, single-spaced) link texts
    headings: tuple[str, ...] = ()  # the first few <h1> texts, whitespace-normalized
    site_name: str | None = None  # og:site_name / application-name
    json_ld: tuple[dict[str, Any], ...] = ()  # every JSON-LD object, @graph flattened
    meta: Mapping[str, str] = field(default_factory=dict)  # <meta> key (lower-cased) -> content
    title_tag: str | None = None  # the document's <title>, whitespace-normalized
    h1_nodes: tuple[Any, ...] = ()  # the <h1> elements behind ``headings``

    @property
    def declares_article(self) -> bool:
        return bool(self.schema_types & ARTICLE_TYPES) or self.og_type in OG_ARTICLE_TYPES

    @property
    def declares_non_article(self) -> bool:
        return bool(self.schema_types & NON_ARTICLE_TYPES) and not self.declares_article


def normalize_space(text: str) -> str:
    """Runs of whitespace as one space, none at the ends (``str.split`` splits on the same
    characters as the regular expression ``\\s``, several times faster)."""
    return " ".join(text.split())


_NOT_ALNUM = re.compile(r"[\W_]+")


def name_key(text: str) -> str:
    """A name reduced to its letters and digits, case-folded: "The Herald" -> "theherald"."""
    return _NOT_ALNUM.sub("", text.casefold())


def site_keys(names: Iterable[str | None], url: str | None, *, min_label: int = 4) -> set[str]:
    """The site's own names as :func:`name_key`s: the given names (``og:site_name``,
    publisher), the host's labels (not ``www``, ``m`` or the TLD) of at least ``min_label``
    characters, and the host itself ("herald.example")."""
    keys = {name_key(name) for name in names if name}
    host = (urlsplit(url).hostname or "") if url else ""
    labels = [label for label in host.casefold().split(".") if label not in ("www", "m")]
    keys |= {name_key(label) for label in labels[:-1] if len(label) >= min_label}
    keys |= {name_key(host), name_key(".".join(labels))}
    keys.discard("")
    return keys


def names_the_site(text: str, keys: set[str]) -> bool:
    """``text`` is one of the site's names, or contains one of four characters or more."""
    key = name_key(text)
    return bool(key) and any(k == key or (len(k) >= 4 and k in key) for k in keys)


def read_signals(tree: Any, url: str | None) -> PageSignals:
    """Read the explicit page signals from a parsed lxml document.

    The elements they come from are gathered in one walk over the tree (:func:`page_elements`)
    and ``<meta>`` tags into a map; every later lookup uses those, not another walk.
    """
    found = page_elements(tree)
    base = _base_url(found.bases, url)
    objects = list(_json_ld_objects(found.scripts))
    schema_types = frozenset(t for obj in objects for t in _types_of(obj))
    meta = _meta_map(found.metas)
    og_type = meta.get("og:type")
    h1_nodes, headings = _headings(found.h1s)
    title_tag = normalize_space(found.titles[0].text_content()) if found.titles else ""
    return PageSignals(
        canonical_url=_canonical(found.links, base, url, meta),
        og_type=og_type.lower() if og_type else None,
        schema_types=schema_types,
        published=_published(found.times, objects, meta),
        anchor_texts=_anchor_texts(found.anchors),
        headings=headings,
        site_name=meta.get("og:site_name") or meta.get("application-name"),
        json_ld=tuple(objects),
        meta=meta,
        title_tag=title_tag or None,
        h1_nodes=h1_nodes,
    )


@dataclass(frozen=True, slots=True)
class PageElements:
    """The elements the page signals are read from, each list in document order; what the
    XPath in each comment selects."""

    bases: list[Any]  # //head/base[@href]
    scripts: list[Any]  # //script[@type]
    metas: list[Any]  # //meta[@content]
    titles: list[Any]  # //title
    links: list[Any]  # //link[@rel][@href]
    times: list[Any]  # //time[@datetime][@itemprop='datePublished' or @pubdate]
    h1s: list[Any]  # //body//h1
    anchors: list[Any]  # //body//a[@href]


_SIGNAL_TAGS = ("base", "script", "meta", "title", "link", "time", "h1", "a", "body")


def page_elements(tree: Any) -> PageElements:
    """One walk over the whole document instead of an XPath search per kind of element:
    each ``//`` search walks every node of the page, a tag-filtered ``iter`` only makes
    Python objects for the elements it yields."""
    root = _document_root(tree)
    bases: list[Any] = []
    scripts: list[Any] = []
    metas: list[Any] = []
    titles: list[Any] = []
    links: list[Any] = []
    times: list[Any] = []
    bodies: list[Any] = []
    in_body: list[Any] = []  # <h1> and <a href> after a <body> starts: inside one, mostly
    for element in root.iter(*_SIGNAL_TAGS):
        tag = element.tag
        if tag == "a":
            if bodies and element.get("href") is not None:
                in_body.append(element)
        elif tag == "meta":
            if element.get("content") is not None:
                metas.append(element)
        elif tag == "script":
            if element.get("type") is not None:
                scripts.append(element)
        elif tag == "link":
            if element.get("rel") is not None and element.get("href") is not None:
                links.append(element)
        elif tag == "h1":
            if bodies:
                in_body.append(element)
        elif tag == "title":
            titles.append(element)
        elif tag == "time":
            if element.get("datetime") is not None and (
                element.get("itemprop") == "datePublished" or element.get("pubdate") is not None
            ):
                times.append(element)
        elif tag == "base":
            parent = element.getparent()
            if parent is not None and parent.tag == "head" and element.get("href") is not None:
                bases.append(element)
        else:
            bodies.append(element)
    if not (len(bodies) == 1 and _ends_document(bodies[0])):
        # more than one <body>, or elements after it: ask each element for its ancestors
        in_body = [e for e in in_body if next(e.iterancestors("body"), None) is not None]
    return PageElements(
        bases=bases,
        scripts=scripts,
        metas=metas,
        titles=titles,
        links=links,
        times=times,
        h1s=[e for e in in_body if e.tag == "h1"],
        anchors=[e for e in in_body if e.tag == "a"],
    )


def _document_root(tree: Any) -> Any:
    """The document's root element: an XPath search from any element covers the document."""
    if hasattr(tree, "getroottree"):
        return tree.getroottree().getroot()
    return tree.getroot()


def _ends_document(element: Any) -> bool:
    """Nothing follows ``element``'s subtree in document order: every node after it in a
    walk is one of its descendants."""
    node = element
    while node is not None:
        if node.getnext() is not None:
            return False
        node = node.getparent()
    return True


# --- URLs -------------------------------------------------------------------------------


def absolute_http_url(href: str | None, base: str | None) -> str | None:
    """``href`` resolved against ``base``; ``None`` unless the result is absolute http(s)."""
    if not href:
        return None
    href = href.strip()
    resolved = urljoin(base, href) if base else href
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return resolved


def _base_url(bases: list[Any], url: str | None) -> str | None:
    for base in bases[:1]:
        resolved = absolute_http_url(str(base.get("href")), url)
        if resolved:
            return resolved
    return url


def _canonical(
    links: list[Any], base: str | None, url: str | None, meta: Mapping[str, str]
) -> str | None:
    candidates: list[str] = []
    for link in links:
        if "canonical" in str(link.get("rel", "")).lower().split():
            candidates.append(str(link.get("href")))
    og_url = meta.get("og:url")
    if og_url:
        candidates.append(og_url)
    for candidate in candidates:
        resolved = absolute_http_url(candidate, base)
        if resolved is None:
            continue
        # A common template bug: every page declares the home page as canonical. Ignore a
        # root canonical for a page that is itself deeper in the site.
        if url and urlsplit(resolved).path in ("", "/") and urlsplit(url).path not in ("", "/"):
            continue
        return resolved
    return None


# --- <meta> -------------------------------------------------------------------------------


def _meta_map(metas: list[Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for meta in metas:
        name = meta.get("property") or meta.get("name") or meta.get("itemprop") or ""
        key = str(name).strip().lower()
        if key and key not in found:
            content = str(meta.get("content")).strip()
            if content:
                found[key] = content
    return found


# --- JSON-LD ------------------------------------------------------------------------------


def _json_ld_objects(scripts: list[Any]) -> Iterator[dict[str, Any]]:
    for script in scripts:
        if "ld+json" not in str(script.get("type", "")).lower():
            continue
        raw = (script.text or "").strip()
        if not raw:
            continue
        try:
            data = json.loads(raw, strict=False)
        except ValueError:
            continue
        yield from _walk_json_ld(data, depth=0)


def _walk_json_ld(data: Any, depth: int) -> Iterator[dict[str, Any]]:
    if depth > 4:
        return
    if isinstance(data, list):
        for item in data:
            yield from _walk_json_ld(item, depth + 1)
    elif isinstance(data, dict):
        yield data
        graph = data.get("@graph")
        if graph is not None:
            yield from _walk_json_ld(graph, depth + 1)
        main = data.get("mainEntity")
        if isinstance(main, dict | list):
            yield from _walk_json_ld(main, depth + 1)


def _types_of(obj: dict[str, Any]) -> Iterator[str]:
    raw = obj.get("@type")
    values = raw if isinstance(raw, list) else [raw]
    for value in values:
        if isinstance(value, str) and value:
            yield value.rsplit("/", 1)[-1].strip().lower()


# --- publication date ---------------------------------------------------------------------


def parse_datetime(value: str) -> tuple[datetime, bool] | None:
    """Parse an ISO 8601 (or RFC 2822) timestamp; naive values are taken as UTC.

    Returns the aware datetime and whether the value had a time of day.
    """
    text = value.strip()
    if not text:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
    if parsed is None:
        parsed = _written_date(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed, bool(_HAS_TIME.search(text))


# A day written out in English, as some templates fill date fields: "July 17, 2025".
_WRITTEN_DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%b. %d, %Y", "%d %B %Y", "%d %b %Y")


def _written_date(text: str) -> datetime | None:
    for pattern in _WRITTEN_DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def plausible(when: datetime, now: datetime | None = None) -> bool:
    """Not before 1990 and not more than a day in the future."""
    now = now or datetime.now(UTC)
    return _EARLIEST <= when <= now + timedelta(days=1)


def _published(
    times: list[Any], objects: list[dict[str, Any]], meta: Mapping[str, str]
) -> PageDate | None:
    # 1. JSON-LD datePublished, article objects first.
    ranked = sorted(objects, key=lambda o: 0 if set(_types_of(o)) & ARTICLE_TYPES else 1)
    for obj in ranked:
        for key in ("datePublished", "dateCreated"):
            value = obj.get(key)
            if isinstance(value, str):
                found = _page_date(value, f"json-ld:{key}")
                if found:
                    return found
    # 2. <meta> publication tags, best key first.
    for key in _DATE_META_KEYS:
        content = meta.get(key)
        found = _page_date(content, f"meta:{key}") if content else None
        if found:
            return found
    # 3. <time itemprop=datePublished> / <time pubdate>.
    for node in times:
        found = _page_date(str(node.get("datetime")), "time")
        if found:
            return found
    return None


def _page_date(value: str, source: str) -> PageDate | None:
    parsed = parse_datetime(value)
    if parsed is None or not plausible(parsed[0]):
        return None
    return PageDate(value=parsed[0], has_time=parsed[1], source=source)


# --- headings -----------------------------------------------------------------------------


def _headings(h1s: list[Any], limit: int = 5) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The first ``<h1>`` elements with text, and their texts."""
    nodes, texts = [], []
    for node in h1s[:limit]:
        text = normalize_space(node.text_content())
        if text:
            nodes.append(node)
            texts.append(text)
    return tuple(nodes), tuple(texts)


# --- links --------------------------------------------------------------------------------


def _anchor_texts(anchors: list[Any]) -> frozenset[str]:
    texts = set()
    for anchor in anchors:
        text = normalize_space(anchor.text_content()).lower()
        if len(text) >= 2:
            texts.add(text)
    return frozenset(texts)
