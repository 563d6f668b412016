"""Extraction: one fetched HTML page in, its article fields out.

``extract_page`` is the single entry point, used by the enrich worker and by
``newsflow extract`` alike:

1. decode (bytes: BOM, ``<meta charset>``, else UTF-8 with replacement) and parse the page;
2. read what the publisher declares: canonical URL, Open Graph / schema.org page type,
   machine-readable publication time (:mod:`enrich.pagemeta`);
3. metadata (:mod:`enrich.metadata`): the visible headline, byline and header date checked
   against what the page declares (JSON-LD, Open Graph, ``<meta>``), then the URL's date and
   htmldate's quick search; each field records its source;
4. body text from the cascade (:mod:`enrich.backends`), or the outlet's registry selectors
   (:mod:`enrich.overrides`), which win over every generic rule;
5. language (py3langid) and the article/non-article verdict.

Feed hints fill gaps only: the feed's title when the page has none, the feed's time when the
page has no date (or only a bare date on the same day). Failures raise :class:`ExtractionError`
with a stable ``reason``, which the worker uses to route the page to the dead-letter topic.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from enrich.authors import split_authors
from enrich.backends import DEFAULT_CASCADE, Body, BodyExtractor, clean_text, run_cascade
from enrich.dates import extensive_date, published_at
from enrich.language import detect_language
from enrich.metadata import Metadata, read_metadata
from enrich.overrides import (
    all_texts,
    body_text,
    first_text,
    published_time,
    without_dropped,
)
from enrich.pagemeta import (
    ARTICLE_TYPES,
    NON_ARTICLE_TYPES,
    OG_ARTICLE_TYPES,
    PageSignals,
    name_key,
    names_the_site,
    normalize_space,
    read_signals,
    site_keys,
)
from newsflow.decoding import decode_html, decoded_as_utf8, repair_double_encoding
from newsflow.selectors import CompiledOverrides, ExtractionOverrides

log = logging.getLogger(__name__)

# Bump when a change here (not in a backend) changes what pages extract to.
NEWSFLOW_EXTRACTION_REVISION = 4

ExtractionErrorReason = Literal["unparseable_html", "empty_text"]


class ExtractionError(Exception):
    """A page that cannot be extracted; ``reason`` is a stable code for dead letters.

    - ``unparseable_html``: the input is empty, binary, or not HTML at all;
    - ``empty_text``: the page parsed, but has no body text.
    """

    UNPARSEABLE_HTML: ExtractionErrorReason = "unparseable_html"
    EMPTY_TEXT: ExtractionErrorReason = "empty_text"

    def __init__(self, reason: ExtractionErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: ExtractionErrorReason = reason
        self.detail = detail


class Extraction(BaseModel):
    """What a page yields. Feeds :class:`newsflow.contracts.Article`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = None
    text: str = Field(min_length=1)  # one paragraph per line
    authors: list[str] = Field(default_factory=list)
    published_at: AwareDatetime | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")  # ISO 639-1
    canonical_url: str | None = None  # absolute http(s)
    is_article: bool
    article_reason: str  # why ``is_article`` is what it is, for humans and debugging
    extractor: str  # e.g. "trafilatura/2.3.1+newsflow/1"
    # Provenance, per field: which method produced it (for debugging and evaluation).
    published_date: date | None = None  # the calendar day as the publisher states it
    body_method: str = ""  # the backend whose text was kept, e.g. "trafilatura/2.3.1"
    title_source: str | None = None  # e.g. "json-ld:headline", "og:title", "h1", "feed"
    date_source: str | None = None  # e.g. "json-ld:datePublished", "htmldate", "feed"
    authors_source: str | None = None  # e.g. "json-ld:author", "meta:author", "byline"


def extract_page(
    html: str | bytes,
    url: str | None = None,
    *,
    feed_title: str | None = None,
    feed_published_at: datetime | None = None,
    cascade: Sequence[BodyExtractor] = DEFAULT_CASCADE,
    overrides: ExtractionOverrides | None = None,
) -> Extraction:
    """Extract one page. ``url`` (as fetched) resolves relative links and helps date search.

    ``overrides`` are the outlet's selectors from the registry: what they find wins.
    Raises :class:`ExtractionError` (``unparseable_html`` or ``empty_text``).
    """
    tree = parse_page(html)
    selectors = overrides.compiled if overrides else None
    if selectors is not None:
        tree = without_dropped(tree, selectors)
    signals = read_signals(tree, url)
    page_url = signals.canonical_url or url
    body = _outlet_body(tree, selectors) or run_cascade(tree, page_url, cascade)
    if body is None:
        raise ExtractionError("empty_text", "no body text found")
    meta = read_metadata(tree, page_url, signals)

    title = page_title(meta, signals, page_url)
    title_source = meta.title_source
    if not title and feed_title:
        title, title_source = _clean_title(feed_title), "feed"
    text = _without_title(body.text, title)
    verdict, reason = classify_page(signals, text, page_url, meta.pagetype)
    authors = split_authors(meta.author)
    published, published_day, date_source = published_at(
        signals, meta.heuristic_date, meta.heuristic_date_source, feed_published_at
    )
    language = detect_language(f"{title}\n{text}" if title else text)
    if published is None and verdict:
        published, published_day, date_source = extensive_date(tree, page_url, language)
    authors_source = meta.authors_source
    if selectors is not None:
        if outlet_title := first_text(tree, selectors.title):
            title, title_source = outlet_title, "outlet:title"
        if outlet_authors := split_authors("; ".join(all_texts(tree, selectors.authors))):
            authors, authors_source = outlet_authors, "outlet:authors"
        if outlet_date := published_time(tree, selectors.published):
            published, published_day = outlet_date, outlet_date.date()
            date_source = "outlet:published"
        if selectors.article_pages is not None and any(
            u and selectors.article_pages.search(u) for u in (url, page_url)
        ):
            verdict, reason = True, "outlet's article_pages pattern"
    return Extraction(
        title=nfc(title) if title else title,
        text=nfc(text),
        authors=[nfc(author) for author in authors],
        published_at=published,
        language=language,
        canonical_url=signals.canonical_url,
        is_article=verdict,
        article_reason=reason,
        extractor=f"{body.backend}+newsflow/{NEWSFLOW_EXTRACTION_REVISION}",
        published_date=published_day,
        body_method=body.backend,
        title_source=title_source if title else None,
        date_source=date_source,
        authors_source=authors_source if authors else None,
    )


def nfc(text: str) -> str:
    """The text in composed form (NFC): a page's "geprüft" spelled with a combining diaeresis
    must match a search for the one everyone types."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _outlet_body(tree: Any, selectors: CompiledOverrides | None) -> Body | None:
    text = body_text(tree, selectors) if selectors is not None else None
    cleaned = clean_text(text) if text else ""
    return Body(text=cleaned, backend="outlet-selectors") if cleaned else None


# --- parsing --------------------------------------------------------------------------------

_MARKUP = re.compile(r"<\s*[A-Za-z!]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")
HEAD_CHARS = 4096  # the start of the page that must look like HTML
_local = threading.local()  # lxml parsers must not be shared between threads


def parse_page(html: str | bytes) -> Any:
    """:func:`parse_html` of the page, bytes decoded by :func:`decode_html`.

    Bytes that decode to their own UTF-8 (valid UTF-8 or ASCII, nearly every page) go to the
    parser as they are: neither decoded nor encoded again.
    """
    if isinstance(html, str):
        return parse_html(html)
    utf8 = decoded_as_utf8(html)
    if utf8 is None:
        return parse_html(decode_html(html))
    # a prefix of at least HEAD_CHARS characters (at most 4 bytes each), a cut one dropped
    head = utf8[: 4 * HEAD_CHARS + 4].decode("utf-8", errors="ignore")[:HEAD_CHARS]
    if not head.strip() or not _MARKUP.search(head):
        return parse_html(utf8.decode("utf-8"))  # the checks need the whole text
    _refuse_binary(head)
    return _parse_utf8(utf8)


def parse_html(text: str) -> Any:
    """Parse a page into an lxml document, or raise ``unparseable_html``."""
    if not text.strip():
        raise ExtractionError("unparseable_html", "empty document")
    head = text[:HEAD_CHARS]
    _refuse_binary(head)
    if not _MARKUP.search(head) and not _MARKUP.search(text):
        raise ExtractionError("unparseable_html", "no HTML markup")
    return _parse_utf8(text.encode("utf-8", errors="replace"))


def _refuse_binary(head: str) -> None:
    if len(_CONTROL.findall(head)) > len(head) // 100 + 2:
        raise ExtractionError("unparseable_html", "binary data, not HTML")


def _parse_utf8(data: bytes) -> Any:
    from lxml import etree
    from lxml import html as lxml_html

    parser = getattr(_local, "parser", None)
    if parser is None:
        # the settings trafilatura parses with (comments and processing instructions dropped)
        parser = _local.parser = etree.HTMLParser(
            collect_ids=False,
            default_doctype=False,
            encoding="utf-8",
            remove_comments=True,
            remove_pis=True,
        )
        parser.set_element_class_lookup(html_element_classes())
    try:
        tree = lxml_html.document_fromstring(data, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as exc:
        raise ExtractionError("unparseable_html", str(exc) or type(exc).__name__) from exc
    if tree is None or len(tree) == 0:
        raise ExtractionError("unparseable_html", "no document element")
    return tree


def html_element_classes() -> Any:
    """The element classes of ``lxml.html``'s parser, looked up in C.

    ``lxml.html.HTMLParser`` asks a Python method for the class of every element object the
    tree hands out (thousands per page, in trafilatura's passes over its copies of the tree
    too); a namespace lookup gives the same classes (tag names are lower case in a parsed
    HTML document) without the call.
    """
    from lxml import etree
    from lxml import html as lxml_html

    lookup = etree.ElementNamespaceClassLookup(
        etree.ElementDefaultClassLookup(
            element=lxml_html.HtmlElement,
            comment=lxml_html.HtmlComment,
            pi=lxml_html.HtmlProcessingInstruction,
            entity=lxml_html.HtmlEntity,
        )
    )
    by_tag = lookup.get_namespace(None)
    by_tag["form"] = lxml_html.FormElement
    by_tag["input"] = lxml_html.InputElement
    by_tag["label"] = lxml_html.LabelElement
    by_tag["select"] = lxml_html.SelectElement
    by_tag["textarea"] = lxml_html.TextareaElement
    return lookup


# --- metadata -------------------------------------------------------------------------------


def _without_title(text: str, title: str | None) -> str:
    """The body without its first line when that line is the headline (already in ``title``)."""
    first, newline, rest = text.partition("\n")
    if title and newline and rest.strip() and first.casefold() == title.casefold():
        return rest
    return text


# " | ", " - ", " – ", " — ", " • ", " · ", " :: ", " » ": what joins a headline and a site name
_TITLE_SEPARATOR = re.compile(r"(\s+(?:[|•·»–—-]|::)\s+)")
_TITLE_SEPARATOR_END = re.compile(r"\s+(?:[|•·»–—-]|::)\s+$")


MAX_GLUED_BRANDING_WORDS = 3
_HOST_NAME = re.compile(r"[\w-]+(?:\.[\w-]+)+")


def refine_title(
    title: str | None, headings: Sequence[str], site_names: Sequence[Any], url: str | None
) -> str | None:
    """Drop the branding from a ``<title>``-style headline.

    ``"Bridge reopens | Coastal Herald"`` -> ``"Bridge reopens"``, when the page's ``<h1>`` is
    the part the separators set apart, or when the dropped part is the site's name
    (``og:site_name`` or the host name).
    """
    if not title:
        return title
    keys = site_keys([str(name) for name in site_names if name], url)

    def is_site(segment: str) -> bool:
        return names_the_site(segment, keys)

    folded = title.casefold()
    for heading in headings:
        # an <h1> that is the logo or a section name is no headline
        if len(heading) * 2 < len(title) or len(heading) >= len(title) or is_site(heading):
            continue
        start = folded.find(heading.casefold())
        if start < 0:
            continue
        before, after = title[:start], title[start + len(heading) :]
        if (not before or _TITLE_SEPARATOR_END.search(before)) and (
            not after or _TITLE_SEPARATOR.match(after)
        ):
            return heading
    first, _, rest = title.partition(" ")
    if _HOST_NAME.fullmatch(first) and rest[:1].isalnum() and name_key(first) in keys:
        return rest  # "herald.example Bridge reopens": the host name set before the headline
    if urlsplit(url or "").path not in ("", "/") and (
        headline := _after_blog_name(title, headings, site_names)
    ):
        # a post's title after the blog's name; a front page's "Brand: tagline" is its title
        return refine_title(headline, headings, site_names, url)
    parts = _TITLE_SEPARATOR.split(title)  # [text, separator, text, separator, text, ...]
    if len(parts) < 3:
        # "Headline-Politics | Herald" without spaces, in a declared title (an <h1> carries no
        # branding): a short tail that ends with the site's declared name (not a host name,
        # which may be a word of the headline) goes
        head, separator, tail = title.rpartition("-")
        names = site_keys([str(name) for name in site_names if name], None)
        if (
            separator
            and head.strip()
            and title not in headings
            and len(tail.split()) <= MAX_GLUED_BRANDING_WORDS
            and any(name_key(tail).endswith(name) for name in names if len(name) >= 4)
        ):
            return head.strip()
        return title
    if is_site(parts[-1]):
        return "".join(parts[:-2]).strip() or title
    if is_site(parts[0]):
        return "".join(parts[2:]).strip() or title
    return title


MIN_BLOG_HEADLINE_WORDS = 3


def _after_blog_name(title: str, headings: Sequence[str], site_names: Sequence[Any]) -> str | None:
    """The headline of a blog's ``"Blog Name: Headline"`` title, when the part before the
    colon is the site's declared name or its logo heading (not just a word of the host)."""
    name, colon, rest = title.partition(": ")
    if not colon or len(rest.split()) < MIN_BLOG_HEADLINE_WORDS:
        return None
    key = name_key(name)
    logos = {name_key(heading) for heading in headings}
    names = site_keys([str(site) for site in site_names if site], None)
    return rest.strip() if key and (key in logos or key in names) else None


def page_title(meta: Metadata, signals: PageSignals, page_url: str | None) -> str | None:
    """The headline metadata chose, repaired and without the site's branding."""
    return refine_title(
        _clean_title(meta.title), signals.headings, [signals.site_name, meta.sitename], page_url
    )


def _clean_title(title: Any) -> str | None:
    if not isinstance(title, str):
        return None
    return normalize_space(repair_double_encoding(title)) or None


# --- article or not -------------------------------------------------------------------------

# Calibrated on the 1,358 pages (711 articles, 7 page types) of the WCXB dev split: accuracy
# 0.84, article precision 0.83, recall 0.88. Stricter rules traded too much recall.
MIN_ARTICLE_WORDS = 50  # fewer words than this is never an article body
MAX_LINK_SHARE = 0.5  # more of the text than this inside links: a list of links
UNDECLARED_MIN_WORDS = 250  # without a declared type, an article must be this long ...
UNDECLARED_MAX_LINK_SHARE = 0.25  # ... have little link text ...
UNDECLARED_MIN_LINE_WORDS = 12.0  # ... paragraphs rather than short lines, on average ...
UNDECLARED_MIN_SLUG_WORDS = 4  # ... and an article-like URL: a slug of words, or a dated path

_DATED_PATH = re.compile(r"/(?:19|20)\d{2}/(?:0?[1-9]|1[0-2])(?:/|$)|/(?:19|20)\d{2}-\d{2}-\d{2}")
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{2,5}$")
_SLUG_SEPARATORS = re.compile(r"[-_+]+")


@dataclass(frozen=True, slots=True)
class TextShape:
    words: int
    lines: int
    link_share: float  # share of the text's characters on lines that are link texts

    @property
    def words_per_line(self) -> float:
        return self.words / self.lines if self.lines else 0.0


_LIST_MARKER = re.compile(r"^(?:[-*•#>|]+\s+)+")


def text_shape(text: str, anchor_texts: frozenset[str]) -> TextShape:
    lines = text.splitlines()
    total = sum(len(line) for line in lines) or 1
    linked = sum(len(line) for line in lines if _LIST_MARKER.sub("", line).lower() in anchor_texts)
    return TextShape(words=len(text.split()), lines=len(lines), link_share=linked / total)


def article_like_url(url: str | None) -> bool | None:
    """Does the URL look like one article's (``/2024/05/some-story`` or ``/a-slug-of-words``)?

    ``None`` when there is no URL to judge.
    """
    if not url:
        return None
    path = urlsplit(url).path
    if _DATED_PATH.search(path):
        return True
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        return False
    slug = _FILE_SUFFIX.sub("", segments[-1])
    return len([w for w in _SLUG_SEPARATORS.split(slug) if w]) >= UNDECLARED_MIN_SLUG_WORDS


def classify_page(
    signals: PageSignals, text: str, url: str | None = None, trafilatura_pagetype: Any = None
) -> tuple[bool, str]:
    """Is this page one article? Returns the verdict and the rule that decided it.

    Rules, in order: too little text -> no; mostly link text -> no; declared an article
    (schema.org ``@type``, ``og:type``, or trafilatura's page type) -> yes; declared something
    else (collection, product, ...) -> no; otherwise long text in paragraphs, with little link
    text, at an article-like URL -> yes, else no.
    """
    shape = text_shape(text, signals.anchor_texts)
    if shape.words < MIN_ARTICLE_WORDS:
        return False, f"too little text ({shape.words} words)"
    if shape.link_share > MAX_LINK_SHARE:
        return False, f"mostly link text ({shape.link_share:.0%})"
    if signals.declares_article:
        declared = sorted(signals.schema_types & ARTICLE_TYPES)
        source = f"schema.org {declared[0]}" if declared else f"og:type {signals.og_type}"
        return True, f"declared article ({source})"
    pagetype = str(trafilatura_pagetype or "").lower()
    if pagetype in ARTICLE_TYPES or pagetype in OG_ARTICLE_TYPES:
        return True, f"declared article (page type {pagetype})"
    if signals.declares_non_article:
        declared = sorted(signals.schema_types & NON_ARTICLE_TYPES)
        return False, f"declared non-article (schema.org {', '.join(declared)})"
    url_verdict = article_like_url(url)
    shape_note = (
        f"{shape.words} words, {shape.words_per_line:.0f} per line, "
        f"{shape.link_share:.0%} link text"
    )
    if (
        shape.words >= UNDECLARED_MIN_WORDS
        and shape.link_share <= UNDECLARED_MAX_LINK_SHARE
        and shape.words_per_line >= UNDECLARED_MIN_LINE_WORDS
    ):
        if url_verdict is False:
            return False, f"article-like text ({shape_note}) but not an article URL"
        return True, f"article-like text ({shape_note})"
    return False, f"no article declared, text not article-like ({shape_note})"
