"""Article metadata (title, authors, publication date), each with the method that found it.

Conventions, chosen to match what a reader sees on the page:

- title: the visible headline (the article's ``<h1>``) when the page has one that is about the
  same thing as the declared titles; else the declared title (JSON-LD ``headline``, Open
  Graph, ``<title>``);
- authors: the declared people (JSON-LD ``author``), else ``<meta>``, else the visible byline;
- date: the date printed in the article's header (often "Updated ..."), else the declared
  one (read in :mod:`enrich.pagemeta`), else the URL's, else htmldate's quick search.

Everything here reads the already parsed tree and the signals of :mod:`enrich.pagemeta`; no
trafilatura metadata pass runs (its byline search deep-copies the tree, and htmldate's
extensive search runs dateparser, together about half of a page's extraction time).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from enrich.authors import OTHER_CREDIT, look_like_people, split_authors
from enrich.dates import find_date, text_date, url_date, visible_date
from enrich.pagemeta import (
    ARTICLE_TYPES,
    PageSignals,
    name_key,
    names_the_site,
    normalize_space,
    site_keys,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Metadata:
    title: str | None = None
    title_source: str | None = None
    author: str | None = None  # raw, "; "-separated (split by the caller)
    authors_source: str | None = None
    # The header's visible date, else (only when the page declares none) the URL's or
    # htmldate's: the caller weighs it against the declared date.
    heuristic_date: date | None = None
    heuristic_date_source: str | None = None  # "visible:...", "url", "text" or "htmldate"
    sitename: str | None = None
    pagetype: str | None = None


def read_metadata(tree: Any, url: str | None, signals: PageSignals) -> Metadata:
    """Title, author and a heuristic date, with the method that found each."""
    try:
        return _read(tree, url, signals)
    except Exception:  # a metadata bug must not cost the page its text
        log.warning("metadata extraction failed on %s", url, exc_info=True)
        return Metadata()


def _read(tree: Any, url: str | None, signals: PageSignals) -> Metadata:
    articles = _article_objects(signals)
    sitename = signals.site_name or _publisher_name(articles)
    title, title_source, heading = choose_title(signals, articles, [sitename], url)

    # a declared title wins over the <h1>, which still marks where the byline is
    anchor = heading if heading is not None or not signals.h1_nodes else signals.h1_nodes[0]
    author, authors_source = choose_authors(tree, anchor, signals, articles, sitename, url)

    heuristic, heuristic_source = visible_date(tree, heading, url)
    if heuristic is None and signals.published is None:
        heuristic, heuristic_source = url_date(url), "url"
        if heuristic is None:
            heuristic, heuristic_source = text_date(tree), "text"
        if heuristic is None:
            heuristic, heuristic_source = find_date(tree, url), "htmldate"
    return Metadata(
        title=title,
        title_source=title_source,
        author=author,
        authors_source=authors_source,
        heuristic_date=heuristic,
        heuristic_date_source=heuristic_source if heuristic else None,
        sitename=sitename,
        pagetype=signals.og_type,
    )


# --- JSON-LD ------------------------------------------------------------------------------


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
        cleaned = normalize_space(html.unescape(value))
        return cleaned or None
    return None


def _publisher_name(articles: Sequence[dict[str, Any]]) -> str | None:
    for obj in articles:
        name = _text(obj.get("publisher"))
        if name:
            return name
    return None


_PERSON_KEYS = ("author", "creator")


def json_ld_people(
    objects: Iterable[dict[str, Any]],
    exclude: Sequence[str | None] = (),
    *,
    keep_publisher: bool = False,
    graph: Iterable[dict[str, Any]] = (),
) -> list[str]:
    """Names of the authors of the page's article objects.

    A ``Person`` always counts; an ``Organization`` only when it is not the publisher itself
    (a news agency such as "dpa" is a byline, the site's own name is not), unless
    ``keep_publisher``. An author given as a reference (``{"@id": ...}``, as Yoast writes
    it) is looked up among the page's other JSON-LD objects (``graph``).
    """
    by_id = {obj["@id"]: obj for obj in graph if isinstance(obj.get("@id"), str)}
    excluded = {name_key(name) for name in exclude if name}
    names: list[str] = []
    for obj in objects:
        if not keep_publisher:
            excluded |= {name_key(name) for name in [_text(obj.get("publisher"))] if name}
        for key in _PERSON_KEYS:
            raw = obj.get(key)
            for item in raw if isinstance(raw, list) else [raw]:
                name: str | None = None
                if isinstance(item, str):
                    name = normalize_space(html.unescape(item))
                    if _NOT_A_NAME_VALUE.search(name):
                        name = None
                elif isinstance(item, dict):
                    if set(item) == {"@id"} and isinstance(item["@id"], str):
                        item = by_id.get(item["@id"], item)
                    kinds = item.get("@type")
                    kinds = kinds if isinstance(kinds, list) else [kinds]
                    organization = any(
                        isinstance(k, str) and k.lower() == "organization" for k in kinds
                    )
                    name = _text(item.get("name"))
                    if not name and item.get("givenName") and item.get("familyName"):
                        name = f"{item['givenName']} {item['familyName']}"
                    if organization and name and name_key(name) in excluded:
                        name = None
                if name and name not in names:
                    names.append(name)
        if names:
            return names
    return names


_NOT_A_NAME_VALUE = re.compile(r"^https?://|^@")


# --- title --------------------------------------------------------------------------------

_WORDS = re.compile(r"\w+")
MIN_SHARED_WORDS = 0.8  # an <h1> with this share of its words in a declared title is it
MIN_RELATED_WORDS = 0.3  # ... with less, but at least this share, it is a reworded headline
MIN_RELATED_COUNT = 2
MIN_HEADLINE_WORDS = 2
# <h1>s inside these containers are the site's logo or navigation, not the headline.
_NOT_HEADLINE_CONTAINERS = frozenset({"nav", "footer", "aside", "button", "label", "form"})
_NOT_HEADLINE_CLASS = re.compile(r"logo|brand|site-?title|site-?name|menu|navbar|modal", re.I)


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(html.unescape(text).casefold()))


def declared_titles(
    signals: PageSignals, articles: Sequence[dict[str, Any]] | None = None
) -> list[tuple[str, str]]:
    """The titles the page declares, with their sources, best first. ``articles``: the page's
    JSON-LD article objects, when the caller has them already."""
    if articles is None:
        articles = _article_objects(signals)
    headline = next((t for o in articles if (t := _text(o.get("headline") or o.get("name")))), None)
    found = [
        (headline, "json-ld:headline"),
        (signals.meta.get("og:title"), "og:title"),
        (signals.meta.get("twitter:title"), "twitter:title"),
        (signals.meta.get("dc.title"), "dc.title"),
        (signals.title_tag, "title"),
    ]
    titles: list[tuple[str, str]] = []
    for value, source in found:
        if value and (cleaned := normalize_space(html.unescape(value))):
            titles.append((cleaned, source))
    return titles


def _untruncated(title: str, source: str, declared: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """JSON-LD headlines are often cut at 110 characters: a declared title that continues
    the same text is the full one."""
    stem = title.rstrip(" .…")
    for other, other_source in declared:
        if len(other) > len(title) and other.startswith(stem):
            return other, other_source
    return title, source


def _headline_node_ok(node: Any) -> bool:
    for ancestor in node.iterancestors():
        if ancestor.tag in _NOT_HEADLINE_CONTAINERS:
            return False
        if ancestor.tag in ("body", "article", "main"):
            break
        marker = f"{ancestor.get('class', '')} {ancestor.get('id', '')}"
        if _NOT_HEADLINE_CLASS.search(marker):
            return False
    marker = f"{node.get('class', '')} {node.get('id', '')}"
    return not _NOT_HEADLINE_CLASS.search(marker) and not _links_home(node)


def _links_home(node: Any) -> bool:
    """A heading that is one link to the site's front page: the blog's name, its logo."""
    links = node.findall(".//a")
    if len(links) != 1:
        return False
    target = urlsplit(str(links[0].get("href") or "?"))
    if target.path not in ("", "/") or target.query or target.fragment:
        return False
    return normalize_space(links[0].text_content()) == normalize_space(node.text_content())


# The post's own title on blog platforms whose <h1> is the blog's name.
_ENTRY_TITLE = etree.XPath(
    "//*[self::h1 or self::h2 or self::h3]"
    "[contains(concat(' ', normalize-space(@class), ' '), ' entry-title ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' post-title ')"
    " or @itemprop='headline']"
)


def _entry_title(node: Any) -> str | None:
    """The first post title marked up as such (hAtom ``entry-title``, ``post-title``)."""
    for heading in _ENTRY_TITLE(node):
        text = normalize_space(heading.text_content())
        if len(text.split()) >= MIN_HEADLINE_WORDS:
            return text
    return None


def _without_kicker(node: Any, text: str, declared: Sequence[tuple[str, str]]) -> str:
    """``<h1><span>Kicker</span> Headline</h1>``: the headline without the separately set
    kicker, when a declared title confirms where the headline starts."""
    for child in node:
        kicker = normalize_space(child.text_content())
        if not kicker or not text.startswith(kicker) or kicker == text:
            return text
        rest = text[len(kicker) :].lstrip(" :|–—-")
        if any(name_key(rest) == name_key(t) for t, _ in declared):
            return rest
        return text
    return text


_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_WORDS = (
    rf"(?:{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\.?\s+{_MONTHS},?\s+\d{{4}}"
    r"|\d{1,4}[./-]\d{1,2}[./-]\d{2,4})"
)
# What a template sets inside the <h1> around the headline: a date line or a byline.
_FURNITURE_AFTER = re.compile(
    rf"{_DATE_WORDS}|\b(?:posted|published|updated|comments?)\b|\bby\s+\w", re.I
)
_FURNITURE_BEFORE = re.compile(rf"^\W*{_DATE_WORDS}\W*$", re.I)
MAX_FURNITURE_WORDS = 8


def _without_furniture(text: str, declared: Sequence[tuple[str, str]]) -> str:
    """``<h1>Headline <small>Posted on July 1, 2024 by Ann</small></h1>`` and
    ``<h1><time>Dec 18 2025</time> Headline</h1>``: the headline a declared title confirms,
    without the date or byline set inside the same ``<h1>``."""
    folded = text.casefold()
    for title, _ in declared:
        stem = title.casefold()
        if len(stem.split()) < 3 or len(stem) >= len(folded):
            continue
        if folded.startswith(stem):
            rest = text[len(stem) :]
            if len(rest.split()) <= MAX_FURNITURE_WORDS and _FURNITURE_AFTER.search(rest):
                return text[: len(stem)].strip()
        elif folded.endswith(stem) and _FURNITURE_BEFORE.match(text[: -len(stem)]):
            return text[-len(stem) :].strip()
    return text


# Where a declared title parts a leading site name from the headline: "Blog Name: Headline"
# ("Headline - Site" and "Headline | Site" put the headline first).
_BRANDING_SEPARATOR = re.compile(r"\s*:\s+")


def _is_branding_of(text: str, declared: Sequence[tuple[str, str]]) -> bool:
    """An ``<h1>`` (that names the site) is the shorter, leading part of a declared
    ``"Site: Headline"`` title: the blog's name set as a heading, not the article's
    headline."""
    key = name_key(text)
    for title, _ in declared:
        parts = _BRANDING_SEPARATOR.split(title, maxsplit=1)
        if len(parts) == 2 and name_key(parts[0]) == key and len(parts[0]) < len(parts[1]):
            return True
    return False


def choose_title(
    signals: PageSignals,
    articles: Sequence[dict[str, Any]],
    site_names: Sequence[str | None],
    url: str | None,
) -> tuple[str | None, str | None, Any]:
    """The headline, its source, and its ``<h1>`` element (``None`` when not from one).

    Declared titles (JSON-LD ``headline``, ``og:title``, ``<title>``) are often an SEO
    variant; the visible ``<h1>`` is what readers see. An ``<h1>`` counts when it is not the
    logo or navigation and shares words with a declared title (a logo or a section name
    shares at most one), or when nothing is declared.
    """
    declared = declared_titles(signals, articles)
    sites = site_keys([*site_names, signals.site_name], url)  # an <h1> that is the logo
    references = [_words(t) for t, _ in declared]
    candidates: list[tuple[float, int, Any, str]] = []
    for index, (node, text) in enumerate(zip(signals.h1_nodes, signals.headings, strict=False)):
        words = _words(text)
        if len(words) < MIN_HEADLINE_WORDS or name_key(text) in sites:
            continue
        if names_the_site(text, sites) and _is_branding_of(text, declared):
            continue
        if not _headline_node_ok(node):
            continue
        best = max((len(words & ref) for ref in references if ref), default=0)
        share = best / len(words)
        if share >= MIN_SHARED_WORDS or (share >= MIN_RELATED_WORDS and best >= MIN_RELATED_COUNT):
            candidates.append((share, -index, node, text))
        elif not references:
            candidates.append((0.0, -index, node, text))
    if candidates:
        # the first confirmed <h1>; a later one only when it is a much closer match
        candidates.sort(key=lambda c: -c[1])
        first = candidates[0]
        closer = [c for c in candidates if c[0] >= MIN_SHARED_WORDS]
        share, _, node, text = first if first[0] >= MIN_SHARED_WORDS or not closer else closer[0]
        return _without_furniture(_without_kicker(node, text, declared), declared), "h1", node
    title, source = _untruncated(*declared[0], declared) if declared else (None, None)
    logos = {
        name_key(text)
        for node, text in zip(signals.h1_nodes, signals.headings, strict=False)
        if _links_home(node)
    }
    # a blog: the <h1> is its name, and so may be its <title>; the post's title is marked
    entry = (
        _entry_title(signals.h1_nodes[0].getroottree())
        if logos
        and (title is None or name_key(title) in logos | sites)
        and urlsplit(url or "").path not in ("", "/")  # a front page has many posts
        else None
    )
    if entry:
        return entry, "entry-title", None
    return title, source, None


# --- authors ------------------------------------------------------------------------------

_META_AUTHOR_KEYS = (
    "author",
    "article:author",
    "parsely-author",
    "sailthru.author",
    "dc.creator",
    "dcterms.creator",
    "byl",
)


def meta_author(signals: PageSignals) -> str | None:
    """The ``<meta>`` author, when it is a name (not a URL or a handle)."""
    for key in _META_AUTHOR_KEYS:
        value = signals.meta.get(key)
        if value and not _NOT_A_NAME_VALUE.search(value):
            return normalize_space(html.unescape(value))
    return None


def _only_the_site(raw: str, sites: set[str]) -> bool:
    """A declared author that is the site itself ("Herald", "herald.example"): a page whose
    template fills the author field with the publisher; its visible byline names people."""
    names = split_authors(raw)
    return bool(names) and all(names_the_site(name, sites) for name in names)


# A CMS login, not a name: "andrew.keaveney", "kffnirmitap", "page.head.extra.author".
_HANDLE = re.compile(r"^(?=\S*[._]\S)\S+$|^[a-z]{7,}$")


def _without_the_site(raw: str, sites: set[str]) -> str:
    """ "Ann Lee and Bo Chan, The Herald" -> "Ann Lee; Bo Chan": the publication named after
    its writers is not one of them."""
    names = split_authors(raw)
    people = [name for name in names if not names_the_site(name, sites)]
    return "; ".join(people) if people and len(people) < len(names) else raw


_HONORIFIC = re.compile(r"^(?:dr|prof|mr|mrs|ms)\.?\s+", re.I)


def _person_key(name: str) -> str:
    return _HONORIFIC.sub("", name).casefold()


def _more_of_them(declared: str, tree: Any, heading: Any, sites: set[str]) -> str | None:
    """The marked-up byline, when it names the declared authors and more: metadata often
    lists only the first of several authors."""
    wanted = {_person_key(name) for name in split_authors(declared)}
    candidates = byline_candidates(tree, heading, marked_only=True)
    names = next((names for text in candidates if (names := split_authors(text))), [])
    found = {_person_key(name) for name in names}
    if wanted < found and look_like_people(names):
        return "; ".join(n for n in names if not names_the_site(n, sites))
    return None


def choose_authors(
    tree: Any,
    heading: Any,
    signals: PageSignals,
    articles: Sequence[dict[str, Any]],
    sitename: str | None,
    url: str | None,
) -> tuple[str | None, str | None]:
    """The raw author string and its source: JSON-LD people, else ``<meta>``, else the
    visible byline. A declared author that yields no name, or names only the site, gives way
    to the next source; the site's name is kept only when nothing else names anyone."""
    sites = site_keys([sitename, _publisher_name(articles), signals.site_name], url, min_label=3)
    fallback: tuple[str | None, str | None] = (None, None)
    people = json_ld_people(articles, exclude=[sitename], graph=signals.json_ld)
    # the site as its own author: the last resort
    publisher = (
        json_ld_people(articles, keep_publisher=True, graph=signals.json_ld) if not people else []
    )
    declared = [
        ("; ".join(people) if people else None, "json-ld:author"),
        (meta_author(signals), "meta"),
    ]
    for raw, source in declared:
        if not raw or not split_authors(raw):
            continue
        if not _only_the_site(raw, sites) and not _HANDLE.match(raw):
            raw = _without_the_site(raw, sites)
            return _more_of_them(raw, tree, heading, sites) or raw, source
        if fallback[0] is None:
            fallback = (raw, source)
    first_byline: str | None = None
    marked = _MarkedBylines(tree, heading)
    for text in byline_candidates(tree, heading):
        if not (names := split_authors(text)):
            continue
        first_byline = first_byline or text
        if not _only_the_site(text, sites) and (
            fallback[0] is None or look_like_people(names) or marked.person(text, names)
        ):
            return _without_the_site(text, sites), "byline"
    if fallback[0] is None and first_byline:
        return first_byline, "byline"
    if fallback[0] is not None and (signed := _signed_paragraph(heading)):
        return signed, "byline"
    if fallback[0] is None and publisher:
        return "; ".join(publisher), "json-ld:author"
    return fallback


class _MarkedBylines:
    """The bylines the markup calls the author (``itemprop=author``, ``rel=author``, an author
    page's link), searched for once, when first asked."""

    def __init__(self, tree: Any, heading: Any) -> None:
        self.tree, self.heading = tree, heading
        self._texts: set[str] | None = None

    def person(self, text: str, names: list[str]) -> bool:
        """A marked byline that opens with a person's name: it outranks a declared author
        that is the site, though what follows the name is a credential ("Tracy Parker,
        Dietitian")."""
        if not look_like_people(names[:1]):
            return False
        if self._texts is None:
            self._texts = set(byline_candidates(self.tree, self.heading, marked_only=True))
        return text in self._texts


SIGNED_PARAGRAPHS = 3  # paragraphs after the headline where a name line is looked for


def _signed_paragraph(heading: Any) -> str | None:
    """A paragraph that is only a name in bold, opening or closing the article ("<p><strong>
    Ann Lee</strong></p>"): how many news sites sign their articles, asked only when the
    declared author is the site itself."""
    if heading is None:
        return None
    container = next((a for a in heading.iterancestors() if a.tag in ("article", "main")), None)
    paragraphs = _NEXT_PARAGRAPHS(heading)
    if container is not None:
        paragraphs += _LAST_PARAGRAPHS(container)[-1:]
    for paragraph in paragraphs:
        text = normalize_space(paragraph.text_content())
        bold = normalize_space(" ".join(_BOLD_TEXTS(paragraph)))
        if text and bold == text and look_like_people(names := split_authors(text)):
            return "; ".join(names)
    return None


_NEXT_PARAGRAPHS = etree.XPath(f"following::p[position() <= {SIGNED_PARAGRAPHS}]")
_LAST_PARAGRAPHS = etree.XPath(".//p[last()]")
_BOLD_TEXTS = etree.XPath("./strong//text() | ./b//text()")

# Byline markup, read in one XPath search; ``_byline_tier`` ranks it, most specific first.
# The elements that have an attribute such as itemprop="author" or a class with "byline" in
# it: the owners of the attributes found (``/..``), which is the same set as the elements
# found by testing each one's attributes (``//*[@itemprop='author' or ...]``), in a third
# less time (a search for one attribute name, not every element's predicate).
_BYLINE = etree.XPath(
    "(//@itemprop[.='author'] | //@rel[.='author'] | //@href[contains(.,'/author')]"
    " | //@class[contains(.,'uthor') or contains(.,'yline')]"
    " | //@id[contains(.,'author') or contains(.,'byline')])/.."
)
# ``//*[@itemprop='author'] | //a[@rel='author' or contains(@href,'/author')]``
_MARKED_AUTHOR = etree.XPath(
    "(//@itemprop[.='author'] | //a/@rel[.='author'] | //a/@href[contains(.,'/author')])/.."
)
_AUTHOR_NAME_CLASS = re.compile(r"author-?_{0,2}name", re.I)
_BYLINE_CLASS = re.compile(r"byline", re.I)
_AUTHOR_CLASS = re.compile(r"author", re.I)
_AUTHOR_HREF = re.compile(r"/authors?/")


def _byline_tier(node: Any) -> int | None:
    """0 ``itemprop=author``, 1 ``rel=author``, 2 a link to an author page, 3 an author-name
    class, 4 a byline class, 5 an author class; ``None``: not a byline."""
    if node.get("itemprop") == "author":
        return 0
    if node.tag == "a" and node.get("rel") == "author":
        return 1
    if node.tag == "a" and _AUTHOR_HREF.search(node.get("href") or ""):
        return 2
    marker = f"{node.get('class', '')} {node.get('id', '')}"
    if _AUTHOR_NAME_CLASS.search(marker):
        return 3
    if _BYLINE_CLASS.search(marker):
        return 4
    if _AUTHOR_CLASS.search(marker):
        return 5
    return None


# (Elementor, a common page builder, puts every block in an "elementor-widget" container.)
_BYLINE_SKIP = re.compile(
    r"(?<![a-z])(?<!elementor-)(?:comment|related|sidebar|widget|share)", re.I
)
_BYLINE_NOT_NAME_CLASS = re.compile(r"\bbio|avatar|image|img|photo|desc|about", re.I)
_BYLINE_PREFIXES = re.compile(
    r"^(?:(?:written|posted|published|reviewed|insights|words|text)\s+(?:by|from)|by|von|par|por|"
    r"door|av|af|di|autor(?:in)?|author|auteur)\b\s*:?\s*",
    re.I,
)
MAX_BYLINE_CHARS = 120
MAX_BYLINE_ANCESTORS = 8  # how far up a byline's containers are checked for comments etc.
BYLINE_WINDOW = 700  # elements after the headline (and a quarter before) that can be a byline


_POSITION = etree.XPath("count(preceding::*) + count(ancestor::*)")


def _document_position(node: Any) -> int:
    """The element's index in document order, counted in C: a dict of every element's
    position costs a Python object per element, more than the whole byline search."""
    return int(_POSITION(node))


def byline_candidates(tree: Any, heading: Any, *, marked_only: bool = False) -> Iterator[str]:
    """Texts of the bylines near the headline, best first: ``itemprop=author``,
    ``rel=author``, author links, elements whose class says author name, byline or author,
    then short lines that start with "By" just after the headline. ``marked_only``: the
    first three kinds, found in a quarter of the time (no class or text search).

    Lazy, one tier at a time: the caller usually stops at the first tier.
    """
    body = tree.find("body")
    if body is None:
        return
    tiers: dict[int, list[Any]] = {}
    for node in (_MARKED_AUTHOR if marked_only else _BYLINE)(tree):
        tier = _byline_tier(node)
        if tier is not None:
            tiers.setdefault(tier, []).append(node)
    start = _document_position(heading) if heading is not None else 0
    for tier in sorted(tiers):
        ranked: list[tuple[int, Any, str]] = []  # distance from the headline, node, text
        for node in tiers[tier]:
            if not _byline_node_ok(node):
                continue
            rank = 0
            if heading is not None:
                distance = _document_position(node) - start
                if distance < -BYLINE_WINDOW // 4 or (
                    distance > BYLINE_WINDOW and not _credited(node)
                ):
                    continue
                rank = distance if distance >= 0 else BYLINE_WINDOW - distance
            if text := _byline_text(node):
                ranked.append((rank, node, text))
        if not ranked:
            continue
        ranked.sort(key=lambda c: c[0])
        if coauthors := _with_coauthors(ranked):
            yield coauthors
        yield from (text for _, _, text in ranked)
    if marked_only:
        return
    yield from _by_lines(heading)
    yield from _written_by_lines(heading)


# An explicit credit, trusted farther from the headline than a bare "By": "Written by Ann
# Lee" in the author box after the text.
_WRITTEN_BY = re.compile(r"^\s*(?:written|authored|article|words|posted)\s+by\b", re.I)
_WRITTEN_BY_WINDOW = etree.XPath(f"following::*[position() <= {BYLINE_WINDOW // 2}]")


def _credited(node: Any) -> bool:
    """A name the line around it credits ("Posted by <span>Ann Lee</span> at 10:30"): blog
    platforms print it below the post, however long the post is."""
    for line in (node, node.getparent()):
        if line is not None and _WRITTEN_BY.match(line.text or ""):
            return True
    return False


def _written_by_lines(heading: Any) -> Iterator[str]:
    """ "Written by Ann Lee" lines in the article after the headline."""
    if heading is None:
        return
    for node in _WRITTEN_BY_WINDOW(heading):
        if node.tag in ("script", "style", "a") or not _WRITTEN_BY.match(node.text or ""):
            continue
        text = normalize_space(node.text_content())
        following = node.getnext()
        if _WRITTEN_BY.sub("", text).strip(" :") == "" and following is not None:
            # a label and its value: "<dt>Written by</dt><dd>Ann Lee</dd>"
            text = f"{text} {normalize_space(following.text_content())}"
        if _is_by_line(text) and _byline_node_ok(node):
            yield text


# What is left of a list of authors without the names: "By", commas, "and".
_NAME_JOINTS = re.compile(
    r"^(?:(?:written|posted|authored)\s+)?(?:by|von|par|por|door|av|af)?\s*:?"
    r"(?:[\s,;&|/·•]|\b(?:and|und|og|och|en|et|y|e)\b)*$",
    re.I,
)
_CREDIT_NOT_AUTHOR = re.compile(rf"^{OTHER_CREDIT}\b", re.I)
MAX_COAUTHOR_LEVELS = 5  # how far up from a byline its list of co-authors is looked for
MAX_COAUTHORS_CHARS = 3 * MAX_BYLINE_CHARS


def _with_coauthors(ranked: list[tuple[int, Any, str]]) -> str | None:
    """The best byline with its co-authors, where each name is marked up on its own
    ("<a rel=author>Ann Lee</a> and <a rel=author>Bo Chan</a>"): the nearest container that
    holds nothing but bylines of the same kind and separators."""
    best = ranked[0][1]
    texts = {node: text for _, node, text in ranked}
    container = best
    for _ in range(MAX_COAUTHOR_LEVELS):
        container = container.getparent()
        if container is None:
            return None
        rest = normalize_space(container.text_content())
        if len(rest) > MAX_COAUTHORS_CHARS:
            return None  # more than a list of names: the article, a sidebar
        outermost = [
            node
            for node in container.iterdescendants()
            if node in texts and not any(a in texts for a in _ancestors_below(node, container))
        ]
        if len(outermost) < 2:
            continue
        for node in outermost:
            text = normalize_space(node.text_content())
            if _CREDIT_NOT_AUTHOR.match(text):
                return None  # "Written by Ann Lee" beside "Reviewed by Bo Chan"
            rest = rest.replace(text, " ", 1)
        if not _NAME_JOINTS.match(rest.strip()):
            return None
        names: dict[str, str] = {}
        for node in outermost:
            for name in split_authors(texts[node]):
                names.setdefault(name.casefold(), name)
        return "; ".join(names.values()) if len(names) > 1 else None
    return None


def _ancestors_below(node: Any, top: Any) -> Iterator[Any]:
    for ancestor in node.iterancestors():
        if ancestor is top:
            return
        yield ancestor


_BY_LINE = re.compile(
    r"^\s*(?:(?:written|posted|published|article|story|words|reporting)\s+)?"
    r"(?:by|von|par|por|door|av|af)\b\s*:?\s*\w",
    re.I,
)
BY_LINE_WINDOW = 60  # elements after the headline where an unmarked "By ..." line is looked for
# Words of a sentence, not of a name: "By the end of the year" is no byline.
_SENTENCE_WORDS = frozenset(
    {"the", "a", "an", "to", "of", "in", "for", "with", "this", "that", "it", "is", "was"}
)


def _is_by_line(text: str) -> bool:
    """ "By Ann Lee", not "By value" or "By clicking Start you accept our Terms"."""
    if len(text) > MAX_BYLINE_CHARS or not (match := _BY_LINE.match(text)):
        return False
    if text[match.end() - 1].islower():
        return False
    names = split_authors(text)
    return bool(names) and all(
        len(words := name.casefold().split()) <= 4 and not _SENTENCE_WORDS.intersection(words)
        for name in names
    )


def _by_lines(heading: Any) -> list[str]:
    """Unmarked "By Ann Lee" lines just after the headline (no author class or link)."""
    if heading is None:
        return []
    lines: list[str] = []
    for count, element in enumerate(heading.itersiblings()):
        if count >= 3:
            break
        for seen, node in enumerate(element.iter()):
            if seen >= BY_LINE_WINDOW:
                break
            if not isinstance(node.tag, str) or node.tag in ("script", "style", "a"):
                continue
            if _is_by_line(text := normalize_space(node.text_content())):
                lines.append(text)
    if lines:
        return lines
    parent = heading.getparent()
    grandparent = parent.getparent() if parent is not None else None
    if grandparent is None or parent is None:
        return lines
    for element in list(parent.itersiblings())[:3]:
        for count, node in enumerate(element.iter()):
            if count >= BY_LINE_WINDOW:
                break
            if not isinstance(node.tag, str) or node.tag in ("script", "style", "a"):
                continue
            if _is_by_line(text := normalize_space(node.text_content())):
                lines.append(text)
    return lines


def _names_of(element: Any) -> str:
    """Class names and id, without utility classes (``lg:mr-[--sidebar-width]``), which say
    how an element looks, not what it is."""
    classes = (element.get("class") or "").split()
    kept = [c for c in classes if "[" not in c and ":" not in c]
    return f"{' '.join(kept)} {element.get('id', '')}"


def _byline_node_ok(node: Any) -> bool:
    """Not a comment's author, a related article's, or one in the page's sidebar or footer."""
    if node.tag in ("meta", "link", "script", "style", "img", "body", "html"):
        return False
    marker = f"{node.get('class', '')} {node.get('id', '')}"
    if _BYLINE_NOT_NAME_CLASS.search(marker) and node.get("itemprop") != "author":
        return False
    page_footer = False
    for depth, ancestor in enumerate(node.iterancestors()):
        if ancestor.tag in ("article", "main"):
            # a footer inside the article is its meta line, unless the "article" is a card
            # in a list of related ones
            return not (
                ancestor.tag == "article"
                and depth < MAX_BYLINE_ANCESTORS
                and _BYLINE_SKIP.search(_names_of(ancestor))
            )
        if ancestor.tag == "body":
            break  # the body's classes describe the page, not this element
        if ancestor.tag in ("aside", "nav"):
            return False
        page_footer = page_footer or ancestor.tag == "footer"
        if depth < MAX_BYLINE_ANCESTORS and _BYLINE_SKIP.search(_names_of(ancestor)):
            return False
    return not page_footer


_NAME_PROPERTY = etree.XPath(".//*[@itemprop='name']")


def _byline_text(node: Any) -> str | None:
    names = _NAME_PROPERTY(node)
    target = names[0] if names else node
    text = normalize_space(" ".join(target.itertext()))
    text = _BYLINE_PREFIXES.sub("", text)
    if not text or len(text) > MAX_BYLINE_CHARS or not any(c.isalpha() for c in text):
        return None
    return text
