"""Discovery: turn feeds and sitemaps (bytes) into the article URLs they announce.

Pure functions over bytes, no network: :func:`parse_feed` reads RSS 2.0, RSS 0.9x/1.0 (RDF)
and Atom; :func:`parse_sitemap` reads plain and Google News sitemaps and sitemap indexes;
:func:`walk_sitemaps` follows an index recursively through a caller-supplied ``load``
function (so the fetching, with all its guards, stays in :mod:`ingest.fetch`).

XML is parsed with entity resolution, DTD loading and network access off and without
``huge_tree``; a document that declares entities (billion laughs, external entities) is
rejected outright with a :class:`DiscoveryError`.
"""

from __future__ import annotations

import html
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from lxml import etree
from lxml import html as lxml_html

from ingest.reasons import Reason
from newsflow.urls import InvalidURLError, normalize_url

__all__ = [
    "COMMON_FEED_PATHS",
    "COMMON_SITEMAP_PATHS",
    "DiscoveredItem",
    "DiscoveryError",
    "HomepageLinks",
    "SitemapDocument",
    "SitemapFailure",
    "SitemapWalk",
    "dedupe",
    "gunzip_limited",
    "looks_like_article",
    "parse_date",
    "parse_document",
    "parse_feed",
    "parse_homepage",
    "parse_json_feed",
    "parse_sitemap",
    "parse_xml",
    "split_onsite",
    "walk_sitemaps",
]

#: Upper bound for a (decompressed) feed or sitemap; the sitemap protocol allows 50 MB.
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

_NS_XML = "http://www.w3.org/XML/1998/namespace"


class DiscoveryError(ValueError):
    """A feed or sitemap could not be parsed (or was refused as hostile)."""


@dataclass(frozen=True)
class DiscoveredItem:
    """An article URL announced by a feed or sitemap. ``url`` is normalized."""

    url: str
    title: str | None = None
    published_at: datetime | None = None  # always timezone-aware when set


@dataclass(frozen=True)
class SitemapDocument:
    """One parsed sitemap: article ``items`` (urlset) or child ``sitemaps`` (index)."""

    items: list[DiscoveredItem] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    is_index: bool = False


@dataclass(frozen=True)
class SitemapFailure:
    url: str
    reason: Reason  # parse_error, too_deep, offsite; fetch failures are the loader's business
    detail: str = ""


@dataclass(frozen=True)
class SitemapWalk:
    items: list[DiscoveredItem]
    failures: list[SitemapFailure]
    visited: list[str]  # sitemap URLs loaded, in order
    truncated: bool = False  # stopped at max_urls or max_sitemaps


# --------------------------------------------------------------------------- safe XML


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )


def _maybe_gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzipped document (``sitemap.xml.gz``), refusing to inflate past ``limit``."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DiscoveryError(f"corrupt gzip data: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise DiscoveryError(f"document inflates to more than {limit} bytes")
    return out


def parse_xml(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse untrusted XML safely and return the root element.

    Raises :class:`DiscoveryError` for malformed XML and for any document whose DTD declares
    entities (the billion-laughs and external-entity attacks both need a declaration).
    """
    if len(data) > max_bytes:
        raise DiscoveryError(f"document is larger than {max_bytes} bytes")
    data = _maybe_gunzip(data, max_bytes)
    if not data.strip():
        raise DiscoveryError("empty document")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if "entity" in message.lower() and "amplification" in message.lower():
            raise DiscoveryError(f"refused hostile XML (entity expansion): {message}") from exc
        raise DiscoveryError(f"not well-formed XML: {message}") from exc
    except (ValueError, etree.LxmlError) as exc:
        raise DiscoveryError(f"cannot parse XML: {exc}") from exc
    if root is None:
        raise DiscoveryError("empty document")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and (list(dtd.iterentities()) or list(dtd.iterelements())):
        raise DiscoveryError(
            "refused hostile XML: the document type declares entities or elements "
            "(entity expansion / external entity attack)"
        )
    return root


def _local(node: Any) -> str:
    tag = node.tag
    if not isinstance(tag, str):  # comments, entities, processing instructions
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _children(node: Any, name: str) -> Iterator[Any]:
    for child in node:
        if _local(child) == name:
            yield child


def _child(node: Any, *names: str) -> Any | None:
    for name in names:
        for child in _children(node, name):
            return child
    return None


def _text(node: Any | None) -> str:
    """Concatenated text of ``node``; undeclared entities (``&nbsp;``) become characters."""
    if node is None:
        return ""
    parts: list[str] = []

    def walk(el: Any) -> None:
        if isinstance(el, etree._Entity):
            parts.append(html.unescape(f"&{el.name};") if el.name else "")
        elif isinstance(el.tag, str):
            parts.append(el.text or "")
            for child in el:
                walk(child)
                parts.append(child.tail or "")

    walk(node)
    return "".join(parts)


def _clean(text: str) -> str | None:
    collapsed = " ".join(text.split())
    return collapsed or None


def _title(node: Any | None) -> str | None:
    if node is None:
        return None
    text = _text(node)
    kind = (node.get("type") or "").lower()
    if kind in ("html", "text/html") or ("<" in text and ">" in text):
        # Entity-escaped HTML (Atom type="html", or RSS titles with markup): strip the tags.
        try:
            fragment = etree.fromstring(
                f"<t>{text}</t>".encode(), etree.HTMLParser(no_network=True)
            )
            text = _text(fragment) if fragment is not None else text
        except (etree.LxmlError, ValueError):
            pass
        text = html.unescape(text)
    return _clean(text)


# --------------------------------------------------------------------------- dates


def parse_date(value: str | None) -> datetime | None:
    """Parse an RFC 822 (RSS) or ISO 8601/W3C (Atom, sitemaps) date into an aware datetime.

    Naive values are taken as UTC; unparseable values give ``None``.
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    parsed: datetime | None = None
    iso = value.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None or parsed.tzinfo.utcoffset(parsed) is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# --------------------------------------------------------------------------- feeds


def _absolute(link: str, base: str | None) -> str | None:
    link = link.strip()
    if not link:
        return None
    try:
        return normalize_url(urljoin(base, link) if base else link)
    except (InvalidURLError, ValueError):
        return None


def _xml_base(node: Any, fallback: str | None) -> str | None:
    """Resolve ``xml:base`` attributes from the root down to ``node``."""
    chain = [node, *node.iterancestors()]
    base = fallback
    for el in reversed(chain):
        declared = el.get(f"{{{_NS_XML}}}base")
        if declared:
            base = urljoin(base, declared) if base else declared
    return base


def _rss_items(root: Any, base_url: str | None) -> Iterator[DiscoveredItem]:
    channel = _child(root, "channel")
    containers = [root] if channel is None else [channel, root]  # RSS 1.0 items sit at root
    for container in containers:
        for item in _children(container, "item"):
            link = _text(_child(item, "link"))
            if not link.strip():
                guid = _child(item, "guid")
                if guid is not None and (guid.get("isPermaLink") or "true").lower() == "true":
                    link = _text(guid)
            url = _absolute(link, _xml_base(item, base_url))
            if url is None:
                continue
            date = _text(_child(item, "pubdate", "date", "published", "updated"))
            yield DiscoveredItem(url, _title(_child(item, "title")), parse_date(date))


def _atom_link(entry: Any) -> str:
    fallback = ""
    for link in _children(entry, "link"):
        rel = (link.get("rel") or "alternate").lower()
        href = link.get("href") or ""
        if rel == "alternate" and (link.get("type") or "text/html").lower() in (
            "text/html",
            "application/xhtml+xml",
        ):
            return href
        if rel == "alternate" and not fallback:
            fallback = href
    return fallback


def _atom_items(root: Any, base_url: str | None) -> Iterator[DiscoveredItem]:
    for entry in _children(root, "entry"):
        href = _atom_link(entry)
        url = _absolute(href, _xml_base(entry, base_url))
        if url is None:
            continue
        date = _text(_child(entry, "published", "issued", "updated", "modified"))
        yield DiscoveredItem(url, _title(_child(entry, "title")), parse_date(date))


def parse_json_feed(data: bytes, *, base_url: str | None = None) -> list[DiscoveredItem]:
    """Items of a JSON Feed (1.0/1.1): ``url`` (or ``external_url``), ``title``, dates."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DiscoveryError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(_maybe_gunzip(data, MAX_DOCUMENT_BYTES).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DiscoveryError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise DiscoveryError("not a JSON Feed (no jsonfeed.org version)")
    entries = doc.get("items")
    if not isinstance(entries, list):
        raise DiscoveryError("JSON Feed without an 'items' list")
    home = doc.get("home_page_url")
    base = home if isinstance(home, str) else None

    def items() -> Iterator[DiscoveredItem]:
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            link = entry.get("url") or entry.get("external_url")
            if not isinstance(link, str):
                continue
            url = _absolute(link, base_url or base)
            if url is None:
                continue
            title = entry.get("title")
            date = entry.get("date_published") or entry.get("date_modified")
            yield DiscoveredItem(
                url,
                _clean(title) if isinstance(title, str) else None,
                parse_date(date) if isinstance(date, str) else None,
            )

    return dedupe(items())


def parse_feed(data: bytes, *, base_url: str | None = None) -> list[DiscoveredItem]:
    """Items of an RSS 2.0 / 0.9x / 1.0, Atom or JSON Feed, deduplicated by normalized URL.

    ``base_url`` (the feed's own URL) resolves relative links.
    """
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return parse_json_feed(data, base_url=base_url)
    root = parse_xml(data)
    kind = _local(root)
    if kind == "rss" or kind == "rdf":
        items = _rss_items(root, base_url)
    elif kind == "feed":
        items = _atom_items(root, base_url)
    else:
        raise DiscoveryError(f"not an RSS or Atom feed (root element <{kind or '?'}>)")
    return dedupe(items)


# --------------------------------------------------------------------------- sitemaps


def parse_sitemap(data: bytes, *, base_url: str | None = None) -> SitemapDocument:
    """A sitemap (``<urlset>``, with or without Google News tags) or sitemap index."""
    root = parse_xml(data)
    kind = _local(root)
    if kind == "sitemapindex":
        children: list[str] = []
        for entry in _children(root, "sitemap"):
            url = _absolute(_text(_child(entry, "loc")), base_url)
            if url is not None and url not in children:
                children.append(url)
        return SitemapDocument(sitemaps=children, is_index=True)
    if kind != "urlset":
        raise DiscoveryError(f"not a sitemap (root element <{kind or '?'}>)")

    def items() -> Iterator[DiscoveredItem]:
        for entry in _children(root, "url"):
            url = _absolute(_text(_child(entry, "loc")), base_url)
            if url is None:
                continue
            news = _child(entry, "news")
            title = _title(_child(news, "title")) if news is not None else None
            date = parse_date(_text(_child(news, "publication_date"))) if news is not None else None
            if date is None:
                date = parse_date(_text(_child(entry, "lastmod")))
            yield DiscoveredItem(url, title, date)

    return SitemapDocument(items=dedupe(items()))


def parse_document(data: bytes, *, base_url: str | None = None) -> list[DiscoveredItem]:
    """Items of a feed or (non-index) sitemap, whichever ``data`` turns out to be."""
    root_kind = _local(parse_xml(data))
    if root_kind in ("urlset", "sitemapindex"):
        doc = parse_sitemap(data, base_url=base_url)
        if doc.is_index:
            raise DiscoveryError("a sitemap index needs walk_sitemaps()")
        return doc.items
    return parse_feed(data, base_url=base_url)


def walk_sitemaps(
    root_url: str,
    load: Callable[[str], bytes | SitemapDocument | None],
    *,
    max_depth: int = 3,
    max_urls: int = 5000,
    max_sitemaps: int = 50,
    follow: Callable[[str], bool] | None = None,
    on_parsed: Callable[[str, SitemapDocument], None] | None = None,
) -> SitemapWalk:
    """Collect items from a sitemap or sitemap index, following nested indexes.

    ``load(url)`` returns the document bytes or ``None`` when it could not be fetched (the
    loader records why), or an already parsed :class:`SitemapDocument` (e.g. an unchanged
    index's remembered children). ``on_parsed(url, doc)`` is told of each document parsed
    from bytes (the caller records its validators only then). ``max_depth`` bounds nesting
    (the root is depth 0), ``max_urls`` the number of items, ``max_sitemaps`` the number of
    documents loaded. ``follow`` decides whether a child sitemap URL may be loaded (e.g.
    only the outlet's own domains).
    """
    items: list[DiscoveredItem] = []
    failures: list[SitemapFailure] = []
    visited: list[str] = []
    seen_docs: set[str] = set()
    truncated = False
    try:
        start = normalize_url(root_url)
    except ValueError as exc:  # InvalidURLError, or a bad port
        return SitemapWalk([], [SitemapFailure(root_url, Reason.PARSE_ERROR, str(exc))], [])
    queue: list[tuple[str, int]] = [(start, 0)]
    while queue:
        url, depth = queue.pop(0)
        if url in seen_docs:
            continue
        if len(visited) >= max_sitemaps:
            truncated = True
            break
        seen_docs.add(url)
        visited.append(url)
        data = load(url)
        if data is None:
            continue
        if isinstance(data, SitemapDocument):
            doc = data
        else:
            try:
                doc = parse_sitemap(data, base_url=url)
            except DiscoveryError as exc:
                failures.append(SitemapFailure(url, Reason.PARSE_ERROR, str(exc)))
                continue
            if on_parsed is not None:
                on_parsed(url, doc)
        if doc.is_index:
            for child in doc.sitemaps:
                if depth + 1 > max_depth:
                    failures.append(
                        SitemapFailure(child, Reason.TOO_DEEP, f"nested deeper than {max_depth}")
                    )
                elif follow is not None and not follow(child):
                    failures.append(SitemapFailure(child, Reason.OFFSITE, "sitemap not followed"))
                else:
                    queue.append((child, depth + 1))
            continue
        room = max_urls - len(items)
        if len(doc.items) > room:
            truncated = True
        items.extend(doc.items[: max(room, 0)])
        if len(items) >= max_urls:
            truncated = truncated or bool(queue)
            break
    return SitemapWalk(dedupe(items), failures, visited, truncated)


# --------------------------------------------------------------------------- helpers


def dedupe(items: Iterable[DiscoveredItem]) -> list[DiscoveredItem]:
    """Keep the first item per normalized URL, filling its missing title/date from later ones."""
    merged: dict[str, DiscoveredItem] = {}
    for item in items:
        try:
            key = normalize_url(item.url)
        except InvalidURLError:
            continue
        known = merged.get(key)
        if known is None:
            merged[key] = replace(item, url=key)
        elif (known.title is None and item.title) or (
            known.published_at is None and item.published_at
        ):
            merged[key] = replace(
                known,
                title=known.title or item.title,
                published_at=known.published_at or item.published_at,
            )
    return list(merged.values())


def split_onsite(
    items: Iterable[DiscoveredItem], is_onsite: Callable[[str], bool]
) -> tuple[list[DiscoveredItem], list[DiscoveredItem]]:
    """Split items into (kept, dropped) by the outlet's domain rule (``Outlet.is_onsite``)."""
    kept: list[DiscoveredItem] = []
    dropped: list[DiscoveredItem] = []
    for item in items:
        (kept if is_onsite(item.url) else dropped).append(item)
    return kept, dropped


def gunzip_limited(data: bytes, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Public wrapper of the bounded gzip inflater (for callers holding ``.xml.gz`` bytes)."""
    return _maybe_gunzip(data, limit)


# --------------------------------------------------------------------------- homepages

#: Where feeds and sitemaps usually live, tried when a homepage advertises none.
COMMON_FEED_PATHS = ("/feed", "/rss.xml", "/atom.xml", "/feed.xml", "/rss", "/index.xml")
COMMON_SITEMAP_PATHS = ("/news-sitemap.xml", "/sitemap_news.xml", "/sitemap.xml")

_FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json+feed",  # seen in the wild
    }
)
_NOT_ARTICLE_SEGMENTS = frozenset(
    {
        "tag",
        "tags",
        "category",
        "categories",
        "author",
        "authors",
        "search",
        "login",
        "logout",
        "signin",
        "register",
        "subscribe",
        "account",
        "about",
        "contact",
        "privacy",
        "terms",
        "feed",
        "rss",
        "wp-admin",
        "wp-login.php",
        "cdn-cgi",
    }
)
_NOT_ARTICLE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".svg",
    ".webp",
    ".pdf",
    ".css",
    ".js",
    ".xml",
    ".json",
    ".zip",
    ".mp3",
    ".mp4",
)
_SLUGGY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+){2,}", re.IGNORECASE)  # three+ words
_DIGITS = re.compile(r"\d{4,}")


@dataclass(frozen=True)
class HomepageLinks:
    """What a homepage (or section page) points at."""

    feeds: list[str] = field(default_factory=list)  # <link rel="alternate" type=feed>
    links: list[DiscoveredItem] = field(default_factory=list)  # <a href>, anchor text as title
    canonical: str | None = None  # <link rel="canonical">


def _rels(element: Any) -> set[str]:
    return {r.lower() for r in (element.get("rel") or "").split()}


def parse_homepage(data: bytes | str, *, base_url: str) -> HomepageLinks:
    """Feed links (``<link rel="alternate" type="application/rss+xml|atom+xml|feed+json">``),
    the canonical URL and every ``<a href>`` of an HTML page, absolute and normalized.

    Honours ``<base href>``; ignores ``javascript:``/``mailto:`` and fragments-only links.
    Raises :class:`DiscoveryError` when the bytes are not parseable HTML.
    """
    if isinstance(data, bytes) and not data.strip():
        raise DiscoveryError("empty page")
    if isinstance(data, str) and not data.strip():
        raise DiscoveryError("empty page")
    try:
        root = lxml_html.fromstring(data)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as exc:
        raise DiscoveryError(f"not parseable HTML: {exc}") from None
    base = base_url
    for element in root.iter("base"):
        href = element.get("href")
        if href:
            base = urljoin(base_url, href.strip())
            break
    feeds: list[str] = []
    canonical: str | None = None
    for element in root.iter("link"):
        rels = _rels(element)
        href = element.get("href")
        if not href:
            continue
        if "alternate" in rels:
            media = (element.get("type") or "").split(";")[0].strip().lower()
            if media in _FEED_TYPES:
                url = _absolute(href, base)
                if url is not None and url not in feeds:
                    feeds.append(url)
        elif "canonical" in rels and canonical is None:
            canonical = _absolute(href, base)
    links: list[DiscoveredItem] = []
    for element in root.iter("a"):
        href = (element.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        if href.split(":", 1)[0].lower() in ("javascript", "mailto", "tel", "data"):
            continue
        url = _absolute(href, base)
        if url is None:
            continue
        links.append(DiscoveredItem(url, _clean(element.text_content() or "")))
    return HomepageLinks(feeds=feeds, links=dedupe(links), canonical=canonical)


def looks_like_article(url: str, *, not_these: Iterable[str] = ()) -> bool:
    """A cheap guess whether a same-site link is an article rather than navigation.

    A path that is not the root, has no static-file extension and no navigation segment
    (``/tag/``, ``/author/``, ``/about`` ...), and whose last segment is a slug of three or
    more words, carries a 4+ digit number (ids, years), or ends in ``.html``/``.htm``.
    ``not_these`` (e.g. the homepage and section pages) never count.
    """
    try:
        normalized = normalize_url(url)
    except InvalidURLError:
        return False
    excluded = set()
    for other in not_these:
        try:
            excluded.add(normalize_url(other))
        except InvalidURLError:
            continue
    if normalized in excluded:
        return False
    path = urlsplit(normalized).path
    segments = [s for s in path.split("/") if s]
    if not segments:
        return False
    if any(s.lower() in _NOT_ARTICLE_SEGMENTS for s in segments):
        return False
    last = segments[-1].lower()
    if last.endswith(_NOT_ARTICLE_EXTENSIONS):
        return False
    if last.endswith((".html", ".htm")):
        return True
    return bool(_SLUGGY.search(last) or _DIGITS.search(path))
