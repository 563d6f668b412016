"""The sample outlets' content: articles as data, rendered through per-outlet templates.

Layout (all under ``samples/``)::

    outlets/<slug>/outlet.yaml          how the outlet looks and where its feeds live
    outlets/<slug>/articles/*.md        one article each: YAML front matter + paragraphs
    templates/<slug>/home.html          string.Template pages, one look per outlet
    templates/<slug>/article.html

An article may be a syndicated copy (``syndicated_from: <outlet>/<slug>``): it carries the
original's body paragraphs verbatim, in its own outlet's template, optionally with its own
headline and standfirst. Rendering is pure (``base_url`` in, text out) so the HTTP server in
:mod:`devstack.samples.site` stays thin.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from string import Template
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import yaml

# The sample outlets are data at the top of the repository: the registry the demo crawls,
# each outlet's articles (Markdown) and its page templates.
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"
OUTLETS_DIR = SAMPLES_DIR / "outlets"
TEMPLATES_DIR = SAMPLES_DIR / "templates"

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ContentError(ValueError):
    """The bundled sample content is inconsistent (a bug in samples/, not in a request)."""


@dataclass(frozen=True)
class Block:
    kind: str  # "p" or "h2"
    text: str


@dataclass
class Article:
    outlet: str
    slug: str
    headline: str
    standfirst: str
    authors: list[str]
    published: datetime
    updated: datetime | None
    section: str
    tags: list[str]
    blocks: list[Block]
    syndicated_from: str | None = None  # "<outlet>/<slug>"
    credit: str | None = None  # e.g. "Kestrel Wire" for syndicated copies
    path: str = ""  # below the outlet prefix, e.g. "news/2026/nov/18/some-slug"

    @property
    def paragraphs(self) -> list[str]:
        return [b.text for b in self.blocks if b.kind == "p"]


@dataclass
class FeedSpec:
    path: str
    format: str  # rss | atom | news-sitemap | sitemap | sitemap-index
    children: list[str] = field(default_factory=list)  # for sitemap-index: sitemap paths
    select: str = "all"  # all | recent | archive (sitemaps split by date)
    tracking: str = ""  # query string appended to links (to exercise URL normalization)
    xml_base: bool = False  # Atom: relative links under xml:base


@dataclass
class Outlet:
    slug: str
    display_name: str
    tagline: str
    kind: str
    language: str
    article_path: str
    date_style: str
    charset: str
    jsonld: str | None  # "NewsArticle", "BlogPosting" or None
    opengraph: bool
    nav: list[str]
    feeds: list[FeedSpec]
    extra_feed_items: list[dict[str, str]]
    articles: list[Article] = field(default_factory=list)
    home_template: Template | None = None
    article_template: Template | None = None

    def prefix(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.slug}/"

    def url(self, base_url: str, path: str) -> str:
        return self.prefix(base_url) + path.lstrip("/")

    def newest_first(self) -> list[Article]:
        return sorted(self.articles, key=lambda a: a.published, reverse=True)


# --------------------------------------------------------------------------- loading


def _split_front_matter(text: str, source: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        raise ContentError(f"{source}: missing YAML front matter")
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    if not isinstance(meta, dict):
        raise ContentError(f"{source}: front matter is not a mapping")
    return meta, body


def _blocks(body: str) -> list[Block]:
    blocks: list[Block] = []
    for chunk in body.strip().split("\n\n"):
        text = " ".join(chunk.split())
        if not text:
            continue
        if text.startswith("## "):
            blocks.append(Block("h2", text[3:].strip()))
        else:
            blocks.append(Block("p", text))
    return blocks


def _datetime(value: object, source: Path, key: str) -> datetime:
    parsed = value if isinstance(value, datetime) else None
    if parsed is None and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
    if parsed is None or parsed.tzinfo is None:
        raise ContentError(f"{source}: {key!r} must be an ISO datetime with a UTC offset")
    return parsed


def _load_article(outlet: str, source: Path) -> Article:
    meta, body = _split_front_matter(source.read_text(encoding="utf-8"), source)
    try:
        authors = meta.get("authors") or []
        return Article(
            outlet=outlet,
            slug=str(meta["slug"]),
            headline=str(meta.get("headline", "")),
            standfirst=str(meta.get("standfirst", "")),
            authors=[str(a) for a in authors],
            published=_datetime(meta["published"], source, "published"),
            updated=_datetime(meta["updated"], source, "updated") if meta.get("updated") else None,
            section=str(meta.get("section", "News")),
            tags=[str(t) for t in meta.get("tags") or []],
            blocks=_blocks(body),
            syndicated_from=meta.get("syndicated_from"),
            credit=meta.get("credit"),
        )
    except KeyError as exc:
        raise ContentError(f"{source}: missing front matter key {exc}") from None


def _load_outlet(directory: Path, *, include_upcoming: bool = False) -> Outlet:
    config = yaml.safe_load((directory / "outlet.yaml").read_text(encoding="utf-8"))
    slug = directory.name
    outlet = Outlet(
        slug=slug,
        display_name=config["display_name"],
        tagline=config.get("tagline", ""),
        kind=config.get("kind", "news"),
        language=config.get("language", "en"),
        article_path=config["article_path"],
        date_style=config["date_style"],
        charset=config.get("charset", "utf-8"),
        jsonld=config.get("jsonld"),
        opengraph=bool(config.get("opengraph", False)),
        nav=list(config.get("nav", [])),
        feeds=[FeedSpec(**spec) for spec in config.get("feeds", [])],
        extra_feed_items=list(config.get("extra_feed_items", [])),
    )
    sources = sorted((directory / "articles").glob("*.md"))
    if include_upcoming:
        sources += sorted((directory / "upcoming").glob("*.md"))
    for source in sources:
        outlet.articles.append(_load_article(slug, source))
    templates = TEMPLATES_DIR / slug
    outlet.home_template = Template((templates / "home.html").read_text(encoding="utf-8"))
    outlet.article_template = Template((templates / "article.html").read_text(encoding="utf-8"))
    return outlet


def _article_path(pattern: str, article: Article) -> str:
    p = article.published
    return pattern.format(
        year=f"{p.year:04d}",
        month=f"{p.month:02d}",
        mon=_MONTHS[p.month - 1][:3].lower(),
        day=f"{p.day:02d}",
        ymd=f"{p.year:04d}{p.month:02d}{p.day:02d}",
        slug=article.slug,
    )


def load_outlets(root: Path = OUTLETS_DIR, *, include_upcoming: bool = False) -> dict[str, Outlet]:
    """All sample outlets, with syndicated copies resolved and article paths assigned.

    ``upcoming/`` (optional, per outlet) holds articles the site does not serve yet, e.g.
    content that waits for a pipeline feature; ``include_upcoming=True`` reads them too (for
    benchmarks and tests that need them before the site serves them). Nothing is held back
    now: the outlets' own coverage of the seed event is served, and story clustering joins
    it to the wire story.
    """
    outlets = {
        d.name: _load_outlet(d, include_upcoming=include_upcoming)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    originals = {f"{o.slug}/{a.slug}": a for o in outlets.values() for a in o.articles}
    for outlet in outlets.values():
        paths: set[str] = set()
        for article in outlet.articles:
            if article.syndicated_from:
                original = originals.get(article.syndicated_from)
                if original is None or original.syndicated_from:
                    raise ContentError(
                        f"{outlet.slug}/{article.slug}: syndicated_from "
                        f"{article.syndicated_from!r} is not an original article"
                    )
                article.blocks = list(original.blocks)
                article.headline = article.headline or original.headline
                article.standfirst = article.standfirst or original.standfirst
                article.authors = article.authors or list(original.authors)
                article.credit = article.credit or outlets[original.outlet].display_name
            if not article.blocks or not article.headline:
                raise ContentError(f"{outlet.slug}/{article.slug}: needs a headline and a body")
            article.path = _article_path(outlet.article_path, article)
            if article.path in paths:
                raise ContentError(f"{outlet.slug}: two articles at {article.path}")
            paths.add(article.path)
    return outlets


# --------------------------------------------------------------------------- formatting


def _clock12(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d}{'am' if moment.hour < 12 else 'pm'}"


def format_date(moment: datetime, style: str) -> str:
    """Human dates in each outlet's house style (all sample dates are UTC/GMT)."""
    day, month = moment.day, _MONTHS[moment.month - 1]
    weekday = _DAYS[moment.weekday()]
    if style == "ledger":  # Wed 18 Nov 2026 14.40 GMT
        return (
            f"{weekday[:3]} {day} {month[:3]} {moment.year} "
            f"{moment.hour:02d}.{moment.minute:02d} GMT"
        )
    if style == "gazette":  # 18/11/2026 3:10pm
        return f"{day:02d}/{moment.month:02d}/{moment.year} {_clock12(moment)}"
    if style == "wire":  # 18 November 2026 14:05 UTC
        return f"{day} {month} {moment.year} {moment.hour:02d}:{moment.minute:02d} UTC"
    if style == "klaxon":  # 09:12 GMT, 18 November 2026
        return f"{moment.hour:02d}:{moment.minute:02d} GMT, {day} {month} {moment.year}"
    if style == "blog":  # November 18, 2026
        return f"{month} {day}, {moment.year}"
    raise ContentError(f"unknown date style {style!r}")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _byline(outlet: Outlet, article: Article) -> str:
    names = [_esc(a) for a in article.authors]
    if not names:
        joined = ""
    elif len(names) == 1:
        joined = names[0]
    else:
        joined = ", ".join(names[:-1]) + " and " + names[-1]
    credit = _esc(article.credit) if article.credit else ""
    style = outlet.date_style
    if style == "ledger":
        people = f'<a rel="author" class="byline__name">{joined}</a>' if joined else ""
        return people + (f' <span class="byline__agency">({credit})</span>' if credit else "")
    if style == "gazette":
        text = f"By {joined}" if joined else ""
        return text + (f" &middot; {credit}" if credit else "")
    if style == "wire":
        return f"Reporting by {joined}" if joined else "Kestrel Wire staff"
    if style == "klaxon":
        return f"By <strong>{joined.upper()}</strong>" if joined else "By KLAXON REPORTER"
    return f'Posted by <span class="author vcard">{joined}</span>' if joined else ""


def _body(article: Article, *, paragraph_class: str = "") -> str:
    attr = f' class="{paragraph_class}"' if paragraph_class else ""
    lines = []
    for block in article.blocks:
        if block.kind == "h2":
            lines.append(f"<h2>{_esc(block.text)}</h2>")
        else:
            lines.append(f"<p{attr}>{_esc(block.text)}</p>")
    return "\n        ".join(lines)


def _jsonld(outlet: Outlet, article: Article, url: str, base_url: str) -> str:
    if not outlet.jsonld:
        return ""
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": outlet.jsonld,
        "headline": article.headline,
        "description": article.standfirst,
        "datePublished": article.published.isoformat(),
        "dateModified": (article.updated or article.published).isoformat(),
        "mainEntityOfPage": url,
        "articleSection": article.section,
        "inLanguage": outlet.language,
        "author": [{"@type": "Person", "name": a} for a in article.authors],
        "publisher": {
            "@type": "Organization",
            "name": outlet.display_name,
            "url": outlet.prefix(base_url),
        },
    }
    if article.tags:
        data["keywords"] = ", ".join(article.tags)
    encoded = json.dumps(data, indent=2, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/ld+json">\n{encoded}\n</script>'


def _opengraph(outlet: Outlet, article: Article, url: str) -> str:
    if not outlet.opengraph:
        return ""
    tags = [
        ("og:site_name", outlet.display_name),
        ("og:type", "article"),
        ("og:title", article.headline),
        ("og:description", article.standfirst),
        ("og:url", url),
    ]
    if outlet.jsonld:  # the outlets with structured data also give article times
        tags.append(("article:published_time", article.published.isoformat()))
        tags.append(("article:section", article.section))
    return "\n    ".join(
        f'<meta property="{name}" content="{_esc(value)}">' for name, value in tags
    )


def _nav(outlet: Outlet, base_url: str) -> str:
    home = outlet.prefix(base_url)
    items = [f'<li><a href="{home}">Home</a></li>']
    for name in outlet.nav:
        items.append(f'<li><a href="{home}section/{name.lower()}">{_esc(name)}</a></li>')
    return "\n        ".join(items)


def _related(outlet: Outlet, article: Article, base_url: str, limit: int = 3) -> str:
    others = [a for a in outlet.newest_first() if a is not article][:limit]
    return "\n          ".join(
        f'<li><a href="{outlet.url(base_url, a.path)}">{_esc(a.headline)}</a></li>' for a in others
    )


def render_article(outlet: Outlet, article: Article, base_url: str) -> str:
    assert outlet.article_template is not None
    url = outlet.url(base_url, article.path)
    updated = article.updated or article.published
    return outlet.article_template.substitute(
        lang=outlet.language,
        charset=outlet.charset,
        outlet_name=_esc(outlet.display_name),
        tagline=_esc(outlet.tagline),
        home=outlet.prefix(base_url),
        base=base_url.rstrip("/"),
        url=url,
        headline=_esc(article.headline),
        standfirst=_esc(article.standfirst),
        section=_esc(article.section),
        section_slug=article.section.lower().replace(" ", "-"),
        tags=", ".join(_esc(t) for t in article.tags),
        byline=_byline(outlet, article),
        published_iso=article.published.isoformat(),
        published=format_date(article.published, outlet.date_style),
        updated_iso=updated.isoformat(),
        updated=format_date(updated, outlet.date_style),
        body=_body(article),
        related=_related(outlet, article, base_url),
        nav=_nav(outlet, base_url),
        jsonld=_jsonld(outlet, article, url, base_url),
        opengraph=_opengraph(outlet, article, url),
        year=str(article.published.year),
    )


def render_home(outlet: Outlet, base_url: str) -> str:
    assert outlet.home_template is not None
    entries = []
    for article in outlet.newest_first():
        entries.append(
            f'<li class="teaser"><a href="{outlet.url(base_url, article.path)}">'
            f"{_esc(article.headline)}</a>"
            f'<p class="teaser__standfirst">{_esc(article.standfirst)}</p>'
            f'<span class="teaser__date">{format_date(article.published, outlet.date_style)}'
            "</span></li>"
        )
    newest = outlet.newest_first()[0].published if outlet.articles else None
    return outlet.home_template.substitute(
        lang=outlet.language,
        charset=outlet.charset,
        outlet_name=_esc(outlet.display_name),
        tagline=_esc(outlet.tagline),
        home=outlet.prefix(base_url),
        base=base_url.rstrip("/"),
        nav=_nav(outlet, base_url),
        teasers="\n        ".join(entries),
        year=str(newest.year if newest else 2026),
    )


def render_index(outlets: dict[str, Outlet], base_url: str) -> str:
    rows = []
    for outlet in outlets.values():
        feeds = ", ".join(
            f'<a href="{outlet.url(base_url, f.path)}">{_esc(f.path)}</a> ({f.format})'
            for f in outlet.feeds
        )
        rows.append(
            f'<li><a href="{outlet.prefix(base_url)}">{_esc(outlet.display_name)}</a> '
            f"&mdash; {_esc(outlet.kind)}; {len(outlet.articles)} articles; {feeds}</li>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Newsflow sample outlets</title></head><body>\n"
        "<h1>Newsflow sample outlets</h1>\n"
        "<p>Invented news outlets for local development and tests.</p>\n<ul>\n"
        + "\n".join(rows)
        + "\n</ul>\n</body></html>\n"
    )


# --------------------------------------------------------------------------- feeds


def _feed_articles(outlet: Outlet, spec: FeedSpec) -> list[Article]:
    articles = outlet.newest_first()
    if spec.select == "all":
        return articles
    newest = articles[0].published if articles else None
    if newest is None:
        return []
    cutoff = newest.toordinal() - 7  # "recent" = the last week of the newest article
    recent = [a for a in articles if a.published.toordinal() > cutoff]
    if spec.select == "recent":
        return recent
    if spec.select == "archive":
        return [a for a in articles if a not in recent]
    raise ContentError(f"{outlet.slug}: unknown feed selection {spec.select!r}")


def _link(outlet: Outlet, base_url: str, path: str, spec: FeedSpec) -> str:
    url = outlet.url(base_url, path)
    return f"{url}?{spec.tracking}" if spec.tracking else url


def _extra_items(outlet: Outlet) -> list[dict[str, str]]:
    return outlet.extra_feed_items


def render_rss(outlet: Outlet, spec: FeedSpec, base_url: str) -> str:
    articles = _feed_articles(outlet, spec)
    last = articles[0].published if articles else None
    items = []
    for article in articles:
        link = _link(outlet, base_url, article.path, spec)
        authors = ", ".join(article.authors) or outlet.display_name
        items.append(
            "    <item>\n"
            f"      <title>{xml_escape(article.headline)}</title>\n"
            f"      <link>{xml_escape(link)}</link>\n"
            f'      <guid isPermaLink="false">{outlet.slug}-{article.slug}</guid>\n'
            f"      <pubDate>{format_datetime(article.published)}</pubDate>\n"
            f"      <dc:creator>{xml_escape(authors)}</dc:creator>\n"
            f"      <category>{xml_escape(article.section)}</category>\n"
            f"      <description>{xml_escape(article.standfirst)}</description>\n"
            "    </item>"
        )
    for extra in _extra_items(outlet):
        link = _link(outlet, base_url, extra["path"], spec)
        items.append(
            "    <item>\n"
            f"      <title>{xml_escape(extra['title'])}</title>\n"
            f"      <link>{xml_escape(link)}</link>\n"
            "    </item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom">\n'
        "  <channel>\n"
        f"    <title>{xml_escape(outlet.display_name)}</title>\n"
        f"    <link>{xml_escape(outlet.prefix(base_url))}</link>\n"
        f'    <atom:link href={quoteattr(outlet.url(base_url, spec.path))} rel="self" '
        'type="application/rss+xml"/>\n'
        f"    <description>{xml_escape(outlet.tagline)}</description>\n"
        f"    <language>{outlet.language}</language>\n"
        + (f"    <lastBuildDate>{format_datetime(last)}</lastBuildDate>\n" if last else "")
        + "\n".join(items)
        + "\n  </channel>\n</rss>\n"
    )


def render_atom(outlet: Outlet, spec: FeedSpec, base_url: str) -> str:
    articles = _feed_articles(outlet, spec)
    prefix = outlet.prefix(base_url)
    updated = max((a.updated or a.published for a in articles), default=None)
    base_attr = f" xml:base={quoteattr(prefix)}" if spec.xml_base else ""
    entries = []
    for article in articles:
        href = article.path if spec.xml_base else _link(outlet, base_url, article.path, spec)
        authors = "".join(
            f"\n    <author><name>{xml_escape(a)}</name></author>" for a in article.authors
        )
        entries.append(
            "  <entry>\n"
            f"    <id>tag:{outlet.slug}.example,{article.published.year}:{article.slug}</id>\n"
            f'    <title type="html">{xml_escape(xml_escape(article.headline))}</title>\n'
            f'    <link rel="alternate" type="text/html" href={quoteattr(href)}/>\n'
            f"    <published>{article.published.isoformat()}</published>\n"
            f"    <updated>{(article.updated or article.published).isoformat()}</updated>"
            f"{authors}\n"
            f"    <summary>{xml_escape(article.standfirst)}</summary>\n"
            "  </entry>"
        )
    for extra in _extra_items(outlet):
        href = extra["path"] if spec.xml_base else _link(outlet, base_url, extra["path"], spec)
        stamp = (updated or datetime.fromisoformat("2026-11-01T00:00:00+00:00")).isoformat()
        entries.append(
            "  <entry>\n"
            f"    <id>tag:{outlet.slug}.example,2026:{xml_escape(extra['path'])}</id>\n"
            f"    <title>{xml_escape(extra['title'])}</title>\n"
            f"    <link href={quoteattr(href)}/>\n"
            f"    <updated>{stamp}</updated>\n"
            "  </entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{outlet.language}"{base_attr}>\n'
        f"  <id>{xml_escape(prefix)}</id>\n"
        f"  <title>{xml_escape(outlet.display_name)}</title>\n"
        f"  <subtitle>{xml_escape(outlet.tagline)}</subtitle>\n"
        f'  <link rel="self" href={quoteattr(outlet.url(base_url, spec.path))}/>\n'
        f'  <link rel="alternate" type="text/html" href={quoteattr(prefix)}/>\n'
        + (f"  <updated>{updated.isoformat()}</updated>\n" if updated else "")
        + "\n".join(entries)
        + "\n</feed>\n"
    )


def render_sitemap(outlet: Outlet, spec: FeedSpec, base_url: str) -> str:
    news = spec.format == "news-sitemap"
    namespaces = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    if news:
        namespaces += ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"'
    urls = []
    for article in _feed_articles(outlet, spec):
        loc = xml_escape(_link(outlet, base_url, article.path, spec))
        if news:
            urls.append(
                "  <url>\n"
                f"    <loc>{loc}</loc>\n"
                "    <news:news>\n"
                "      <news:publication>\n"
                f"        <news:name>{xml_escape(outlet.display_name)}</news:name>\n"
                f"        <news:language>{outlet.language}</news:language>\n"
                "      </news:publication>\n"
                "      <news:publication_date>"
                f"{article.published.isoformat()}</news:publication_date>\n"
                f"      <news:title>{xml_escape(article.headline)}</news:title>\n"
                "    </news:news>\n"
                "  </url>"
            )
        else:
            lastmod = (article.updated or article.published).isoformat()
            urls.append(
                f"  <url>\n    <loc>{loc}</loc>\n    <lastmod>{lastmod}</lastmod>\n  </url>"
            )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<urlset {namespaces}>\n" + "\n".join(urls) + "\n</urlset>\n"
    )


def render_sitemap_index(outlet: Outlet, spec: FeedSpec, base_url: str) -> str:
    newest = outlet.newest_first()[0].published.isoformat() if outlet.articles else ""
    entries = "\n".join(
        f"  <sitemap>\n    <loc>{xml_escape(outlet.url(base_url, child))}</loc>\n"
        f"    <lastmod>{newest}</lastmod>\n  </sitemap>"
        for child in spec.children
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{entries}\n</sitemapindex>\n"
    )


FEED_TYPES = {
    "rss": ("application/rss+xml; charset=utf-8", render_rss),
    "atom": ("application/atom+xml; charset=utf-8", render_atom),
    "news-sitemap": ("application/xml; charset=utf-8", render_sitemap),
    "sitemap": ("application/xml; charset=utf-8", render_sitemap),
    "sitemap-index": ("application/xml; charset=utf-8", render_sitemap_index),
}
