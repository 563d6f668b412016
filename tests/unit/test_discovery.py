"""Discovery: feeds and sitemaps (bytes) -> article URLs, safely."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.discovery import (
    DiscoveredItem,
    DiscoveryError,
    dedupe,
    parse_date,
    parse_document,
    parse_feed,
    parse_sitemap,
    split_onsite,
    walk_sitemaps,
)
from newsflow.outlets import Outlet

RSS2 = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>The Example Times</title>
    <link>https://www.example.com/</link>
    <item>
      <title>Storm &amp; floods hit the coast</title>
      <link>https://www.example.com/news/storm/?utm_source=rss&amp;utm_medium=feed</link>
      <guid isPermaLink="false">abc-1</guid>
      <pubDate>Wed, 18 Nov 2026 14:05:00 GMT</pubDate>
    </item>
    <item>
      <title>Permalink guid only</title>
      <guid>https://www.example.com/news/guid-only</guid>
      <pubDate>Tue, 17 Nov 2026 09:00:00 +0100</pubDate>
    </item>
    <item>
      <title>Relative link</title>
      <link>/news/relative</link>
      <dc:date>2026-11-16T08:30:00Z</dc:date>
    </item>
    <item>
      <title>No link at all</title>
      <guid isPermaLink="false">xyz</guid>
    </item>
    <item>
      <title>  Duplicate   of the first  </title>
      <link>https://WWW.example.com/news/storm#comments</link>
    </item>
    <item>
      <link>https://www.example.com/news/untitled</link>
      <pubDate>not a date</pubDate>
    </item>
  </channel>
</rss>"""

RSS091 = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
  "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91">
  <channel>
    <title>Old School</title>
    <link>http://oldschool.example/</link>
    <item>
      <title>Caf\xe9&nbsp;society returns</title>
      <link>http://oldschool.example/cafe.html</link>
    </item>
  </channel>
</rss>"""

RSS10 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="http://rdf.example/">
    <title>RDF site</title>
    <link>http://rdf.example/</link>
  </channel>
  <item rdf:about="http://rdf.example/one">
    <title>First RDF item</title>
    <link>http://rdf.example/one</link>
    <dc:date>2026-11-15T10:00:00+02:00</dc:date>
  </item>
</rdf:RDF>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/">
  <title>A blog</title>
  <entry>
    <title type="html">Councils &amp;amp; &lt;em&gt;budgets&lt;/em&gt;</title>
    <link rel="alternate" type="text/html" href="2026/11/budgets/"/>
    <link rel="edit" href="https://blog.example.org/wp-json/edit/1"/>
    <published>2026-11-18T20:00:00+00:00</published>
    <updated>2026-11-19T08:00:00+00:00</updated>
  </entry>
  <entry xml:base="https://blog.example.org/archive/">
    <title>Only updated</title>
    <link rel="enclosure" href="https://cdn.example.org/a.mp3"/>
    <link href="old-post"/>
    <updated>2026-10-01T12:00:00Z</updated>
  </entry>
  <entry>
    <title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">An <b>xhtml</b> title</div>
    </title>
    <link rel="alternate" type="application/pdf" href="https://blog.example.org/x.pdf"/>
    <link rel="alternate" href="https://blog.example.org/xhtml-title"/>
  </entry>
</feed>"""

NEWS_SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url>
    <loc>https://wire.example/stories/20261118/one</loc>
    <news:news>
      <news:publication><news:name>Wire</news:name><news:language>en</news:language></news:publication>
      <news:publication_date>2026-11-18T14:05:00+00:00</news:publication_date>
      <news:title>Story one</news:title>
    </news:news>
  </url>
  <url>
    <loc>https://wire.example/stories/20261117/two</loc>
    <lastmod>2026-11-17</lastmod>
  </url>
</urlset>"""

INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://wire.example/sitemaps/news.xml</loc></sitemap>
  <sitemap><loc>https://wire.example/sitemaps/archive.xml.gz</loc></sitemap>
  <sitemap><loc>https://elsewhere.example/sitemap.xml</loc></sitemap>
</sitemapindex>"""

ARCHIVE = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://wire.example/stories/20261001/old</loc><lastmod>2026-10-01T09:00:00Z</lastmod></url>
  <url><loc>https://wire.example/stories/20261117/two</loc></url>
</urlset>"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --------------------------------------------------------------------------- feeds


def test_rss2_items_are_normalized_dated_and_deduplicated() -> None:
    items = parse_feed(RSS2, base_url="https://www.example.com/feed.xml")
    assert [i.url for i in items] == [
        "https://www.example.com/news/storm",
        "https://www.example.com/news/guid-only",
        "https://www.example.com/news/relative",
        "https://www.example.com/news/untitled",
    ]
    storm, guid, relative, untitled = items
    assert storm.title == "Storm & floods hit the coast"
    assert storm.published_at == utc(2026, 11, 18, 14, 5)
    assert guid.published_at == datetime(2026, 11, 17, 9, tzinfo=timezone(timedelta(hours=1)))
    assert relative.published_at == utc(2026, 11, 16, 8, 30)
    assert untitled.title is None and untitled.published_at is None
    assert all(i.published_at is None or i.published_at.tzinfo for i in items)


def test_rss_091_with_external_doctype_and_html_entities() -> None:
    [item] = parse_feed(RSS091)
    assert item.url == "http://oldschool.example/cafe.html"
    assert item.title == "Café society returns"  # &nbsp; resolved, whitespace collapsed


def test_rss_10_rdf() -> None:
    [item] = parse_feed(RSS10)
    assert item.url == "http://rdf.example/one"
    assert item.title == "First RDF item"
    assert item.published_at == utc(2026, 11, 15, 8)


def test_atom_with_xml_base_html_titles_and_link_choice() -> None:
    items = parse_feed(ATOM, base_url="https://blog.example.org/feed.atom")
    assert [i.url for i in items] == [
        "https://blog.example.org/2026/11/budgets",
        "https://blog.example.org/archive/old-post",
        "https://blog.example.org/xhtml-title",
    ]
    budgets, old, xhtml = items
    assert budgets.title == "Councils & budgets"
    assert budgets.published_at == utc(2026, 11, 18, 20)  # published wins over updated
    assert old.published_at == utc(2026, 10, 1, 12)
    assert xhtml.title == "An xhtml title"


def test_feed_rejects_other_documents() -> None:
    with pytest.raises(DiscoveryError, match="not an RSS or Atom feed"):
        parse_feed(b"<html><body>hello</body></html>")
    with pytest.raises(DiscoveryError, match="not well-formed"):
        parse_feed(b"<rss><channel><item></channel></rss>")
    with pytest.raises(DiscoveryError, match="empty"):
        parse_feed(b"   ")


# --------------------------------------------------------------------------- sitemaps


def test_google_news_sitemap() -> None:
    doc = parse_sitemap(NEWS_SITEMAP)
    assert not doc.is_index
    one, two = doc.items
    assert one == DiscoveredItem(
        "https://wire.example/stories/20261118/one", "Story one", utc(2026, 11, 18, 14, 5)
    )
    assert two.title is None
    assert two.published_at == utc(2026, 11, 17)  # plain lastmod as a fallback


def test_sitemap_index_lists_children() -> None:
    doc = parse_sitemap(INDEX)
    assert doc.is_index and not doc.items
    assert doc.sitemaps[0] == "https://wire.example/sitemaps/news.xml"
    assert len(doc.sitemaps) == 3


def test_parse_document_detects_the_kind() -> None:
    assert len(parse_document(NEWS_SITEMAP)) == 2
    assert len(parse_document(ATOM)) == 3
    with pytest.raises(DiscoveryError, match="walk_sitemaps"):
        parse_document(INDEX)


def test_walk_sitemaps_recurses_with_gzip_filter_and_bounds() -> None:
    docs = {
        "https://wire.example/sitemap.xml": INDEX,
        "https://wire.example/sitemaps/news.xml": NEWS_SITEMAP,
        "https://wire.example/sitemaps/archive.xml.gz": gzip.compress(ARCHIVE),
    }
    loaded: list[str] = []

    def load(url: str) -> bytes | None:
        loaded.append(url)
        return docs.get(url)

    walk = walk_sitemaps(
        "https://wire.example/sitemap.xml",
        load,
        follow=lambda url: url.startswith("https://wire.example/"),
    )
    assert [i.url.rsplit("/", 1)[-1] for i in walk.items] == ["one", "two", "old"]
    assert walk.visited == loaded == list(docs)
    assert [(f.url, f.reason) for f in walk.failures] == [
        ("https://elsewhere.example/sitemap.xml", "offsite")
    ]
    assert not walk.truncated

    capped = walk_sitemaps("https://wire.example/sitemap.xml", docs.get, max_urls=2)
    assert len(capped.items) == 2 and capped.truncated

    shallow = walk_sitemaps("https://wire.example/sitemap.xml", docs.get, max_depth=0)
    assert shallow.items == []
    assert {f.reason for f in shallow.failures} == {"too_deep"}


def test_walk_sitemaps_survives_loops_missing_and_broken_documents() -> None:
    loop = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc>https://a.example/index.xml</loc></sitemap>
      <sitemap><loc>https://a.example/missing.xml</loc></sitemap>
      <sitemap><loc>https://a.example/broken.xml</loc></sitemap>
    </sitemapindex>"""
    docs = {"https://a.example/index.xml": loop, "https://a.example/broken.xml": b"<urlset"}
    walk = walk_sitemaps("https://a.example/index.xml", docs.get, max_depth=10)
    assert walk.items == []
    assert walk.visited == [
        "https://a.example/index.xml",
        "https://a.example/missing.xml",
        "https://a.example/broken.xml",
    ]
    assert [(f.url, f.reason) for f in walk.failures] == [
        ("https://a.example/broken.xml", "parse_error")
    ]


# --------------------------------------------------------------------------- hostile XML

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><rss><channel><item><title>&lol9;</title><link>https://x.example/a</link>"
    b"</item></channel></rss>"
)
QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><rss><channel><item><title>'
    + b"&a;" * 10_000
    + b"</title></item></channel></rss>"
)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(QUADRATIC_BLOWUP, id="quadratic-blowup"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<rss><channel><item><title>&x;</title></item></channel></rss>",
            id="external-entity",
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE r ['
            b'<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><rss><channel/></rss>',
            id="external-parameter-entity",
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "http://127.0.0.1:9/">]>'
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>&x;</loc></url></urlset>",
            id="sitemap-xxe",
        ),
    ],
)
def test_hostile_xml_is_refused_quickly(document: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match=r"hostile|entity|well-formed"):
        parse_feed(document)
    with pytest.raises(DiscoveryError):
        parse_sitemap(document)
    assert time.monotonic() - started < 2


def test_external_file_contents_never_leak(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        "<rss><channel><item><title>&x;</title><link>https://x.example/&x;</link>"
        "</item></channel></rss>"
    ).encode()
    with pytest.raises(DiscoveryError) as caught:
        parse_feed(doc)
    assert "TOP-SECRET" not in str(caught.value)


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"<urlset>" + b" " * (60 * 1024 * 1024) + b"</urlset>")
    assert len(bomb) < 100 * 1024
    with pytest.raises(DiscoveryError, match="inflates"):
        parse_sitemap(bomb)


def test_oversized_document_is_refused() -> None:
    from ingest.discovery import parse_xml

    with pytest.raises(DiscoveryError, match="larger than"):
        parse_xml(b"<rss>" + b" " * 2000 + b"</rss>", max_bytes=1000)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Wed, 18 Nov 2026 14:05:00 GMT", utc(2026, 11, 18, 14, 5)),
        ("Wed, 18 Nov 2026 14:05:00 +0000", utc(2026, 11, 18, 14, 5)),
        (
            "18 Nov 2026 14:05 EST",
            datetime(2026, 11, 18, 14, 5, tzinfo=timezone(-timedelta(hours=5))),
        ),
        ("2026-11-18T14:05:00Z", utc(2026, 11, 18, 14, 5)),
        (
            "2026-11-18T14:05:00.123+01:00",
            datetime(2026, 11, 18, 14, 5, 0, 123000, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("2026-11-18", utc(2026, 11, 18)),
        ("2026-11-18T14:05:00", utc(2026, 11, 18, 14, 5)),  # naive -> UTC
        ("", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_date(raw: str | None, expected: datetime | None) -> None:
    assert parse_date(raw) == expected


def test_dedupe_merges_missing_fields() -> None:
    items = dedupe(
        [
            DiscoveredItem("https://x.example/a/", None, None),
            DiscoveredItem("https://X.example/a?utm_source=y", "Title", utc(2026, 11, 1)),
            DiscoveredItem("https://x.example/a", "Other title", None),
            DiscoveredItem("not a url"),
        ]
    )
    assert items == [DiscoveredItem("https://x.example/a", "Title", utc(2026, 11, 1))]


def test_split_onsite_uses_the_outlet_domains() -> None:
    outlet = Outlet(
        name="example",
        display_name="Example",
        homepage="https://www.example.com/",
        feeds=["https://feeds.example.net/x.xml"],
        allowed_domains=["cdn-news.example.org"],
    )
    kept, dropped = split_onsite(
        [
            DiscoveredItem("https://example.com/a"),
            DiscoveredItem("https://news.example.com/b"),
            DiscoveredItem("https://cdn-news.example.org/c"),
            DiscoveredItem("https://feeds.example.net/d"),
            DiscoveredItem("https://evil.example/e"),
        ],
        outlet.is_onsite,
    )
    assert [i.url[-1] for i in kept] == ["a", "b", "c"]
    assert [i.url[-1] for i in dropped] == ["d", "e"]
