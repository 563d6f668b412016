"""Extraction on small hand-written pages, and a quality floor on the real corpus."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from enrich.authors import split_authors
from enrich.extract import (
    NEWSFLOW_EXTRACTION_REVISION,
    Extraction,
    ExtractionError,
    article_like_url,
    extract_page,
    refine_title,
)
from enrich.language import detect_language
from enrich.pagemeta import parse_datetime
from newsflow.decoding import decode_html, is_utf8_text, repair_double_encoding, sniff_encoding

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"

BRIDGE_PARAGRAPHS = [
    "The harbour bridge in Port Aldwin reopened to traffic on Tuesday morning, two years after "
    "engineers closed it when inspectors found deep cracks in two of its steel supports.",
    "Hundreds of residents walked across the span before the first cars were allowed on, and "
    "the town band played from a barge moored under the central arch.",
    "The repairs cost 48 million crowns, roughly a third more than the council first budgeted, "
    "mostly because the replacement steel had to be rolled abroad and shipped in sections.",
    "Local shop owners said the closure had pushed many customers to the ferry terminal on the "
    "far side of the bay, where parking is free and queues are short.",
    "The council says it will now inspect the bridge every six months rather than every three "
    "years, and it has installed sensors that report strain on the supports to the engineers.",
    "Traffic is expected to return to its old level within a month, although heavy lorries will "
    "stay on the ring road until the final load test is finished in the spring.",
]


def _paragraphs(paragraphs: list[str]) -> str:
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)


ARTICLE_URL = "https://coastal-herald.example/news/2024/05/harbour-bridge-reopens?utm_source=rss"
ARTICLE_HTML = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Harbour bridge reopens after two years of repairs | Coastal Herald</title>
<link rel="canonical" href="/news/2024/05/harbour-bridge-reopens">
<meta property="og:type" content="article">
<meta name="author" content="By Maria Jensen and Tom Okafor">
<script type="application/ld+json">
{{"@context": "https://schema.org", "@type": "NewsArticle",
  "headline": "Harbour bridge reopens after two years of repairs",
  "datePublished": "2024-05-14T08:30:00+02:00",
  "author": [{{"@type": "Person", "name": "Maria Jensen"}},
             {{"@type": "Person", "name": "Tom Okafor"}}]}}
</script>
</head><body>
<header><nav><ul>
  <li><a href="/">Home</a></li><li><a href="/news">News</a></li>
  <li><a href="/sport">Sport</a></li><li><a href="/weather">Weather</a></li>
</ul></nav></header>
<main><article>
<h1>Harbour bridge reopens after two years of repairs</h1>
<p class="byline">By Maria Jensen and Tom Okafor</p>
{_paragraphs(BRIDGE_PARAGRAPHS)}
</article>
<aside><h2>Most read</h2><ul>
  <li><a href="/news/a">Ferry timetable changes for the summer season</a></li>
  <li><a href="/news/b">School roof repairs finished early</a></li>
</ul></aside></main>
<footer><p>Coastal Herald, 12 Quay Street. Sign up for our morning newsletter.</p></footer>
</body></html>"""

HEADLINES = [
    "Ferry timetable changes for the summer season",
    "School roof repairs finished early",
    "Council votes on new cycle lanes",
    "Fishing quota talks stall again",
    "Lighthouse museum opens a new wing",
    "Storm warning for the northern coast",
    "Harbour festival returns in August",
    "New bakery on Market Street wins an award",
    "Rail line to the capital gets faster trains",
    "Library extends its weekend opening hours",
]
LISTING_HTML = (
    """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Local news | Coastal Herald</title><meta property="og:type" content="website">
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "CollectionPage",
 "name": "Local news"}</script></head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<main><h1>Local news</h1><ul>"""
    + "\n".join(
        f'<li><h3><a href="/news/2024/05/story-{i}">{h}</a></h3>'
        f"<p>A short teaser about this story, number {i}.</p></li>"
        for i, h in enumerate(HEADLINES)
    )
    + """</ul></main>
<footer><a href="/about">About us</a> <a href="/contact">Contact</a></footer></body></html>"""
)

NAV_ONLY_HTML = """<html><head><title>Coastal Herald</title></head><body><nav><ul>
<li><a href="/">Home</a></li><li><a href="/news">Local news</a></li>
<li><a href="/sport">Sport results</a></li><li><a href="/weather">Weather forecast</a></li>
<li><a href="/about">About the Herald</a></li></ul></nav></body></html>"""

# No title, no date, no declared type anywhere: only the feed knows them.
BARE_HTML = f"<html><body><div>{_paragraphs(BRIDGE_PARAGRAPHS)}</div></body></html>"

GERMAN_PARAGRAPHS = [
    "Die Brücke über den Hafen ist nach zwei Jahren Bauzeit wieder für den Verkehr geöffnet.",
    "Hunderte Anwohner überquerten sie zu Fuß, bevor die ersten Autos fahren durften, und die "
    "Stadtkapelle spielte dazu von einem Lastkahn unter dem mittleren Bogen.",
    "Die Reparatur kostete deutlich mehr als geplant, weil der Stahl im Ausland gewalzt werden "
    "musste und in Teilen angeliefert wurde.",
    "Künftig wird die Brücke alle sechs Monate geprüft; Sensoren melden die Belastung der "
    "Stützen an das Bauamt der Gemeinde.",
]
GERMAN_HTML = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
    "<title>Hafenbrücke wieder offen – Küstenbote</title></head><body><article>"
    f"<h1>Hafenbrücke wieder offen</h1>{_paragraphs(GERMAN_PARAGRAPHS)}</article></body></html>"
)


# --- the article page ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def article() -> Extraction:
    return extract_page(ARTICLE_HTML, ARTICLE_URL)


def test_article_title_and_text(article: Extraction) -> None:
    assert article.title == "Harbour bridge reopens after two years of repairs"
    lines = article.text.split("\n")
    assert lines[0].startswith("The harbour bridge in Port Aldwin reopened")  # headline dropped
    assert lines[-1].endswith("until the final load test is finished in the spring.")
    assert len(lines) == len(BRIDGE_PARAGRAPHS)
    for boilerplate in ("Weather", "Most read", "Ferry timetable", "newsletter", "Quay Street"):
        assert boilerplate not in article.text


def test_article_metadata(article: Extraction) -> None:
    assert article.authors == ["Maria Jensen", "Tom Okafor"]
    assert article.published_at == datetime(2024, 5, 14, 6, 30, tzinfo=UTC)
    # the offset the page declares is kept: the publication day is the outlet's
    assert article.published_at is not None
    assert article.published_at.utcoffset() == timedelta(hours=2)
    assert article.published_date == date(2024, 5, 14)
    assert article.language == "en"
    # relative canonical resolved against the page URL, tracking parameters gone with it
    assert (
        article.canonical_url
        == "https://coastal-herald.example/news/2024/05/harbour-bridge-reopens"
    )
    assert article.is_article is True
    assert "declared article" in article.article_reason
    assert article.extractor.startswith("trafilatura/2.") and article.extractor.endswith(
        f"+newsflow/{NEWSFLOW_EXTRACTION_REVISION}"
    )


def test_extraction_is_frozen(article: Extraction) -> None:
    with pytest.raises(ValueError):
        article.title = "changed"  # type: ignore[misc]


def test_bytes_input_gives_the_same_result(article: Extraction) -> None:
    assert extract_page(ARTICLE_HTML.encode("utf-8"), ARTICLE_URL) == article


# --- pages that are not articles ----------------------------------------------------------


def test_listing_page_is_not_an_article() -> None:
    listing = extract_page(LISTING_HTML, "https://coastal-herald.example/news")
    assert listing.is_article is False
    assert listing.title == "Local news"
    assert listing.text


def test_nav_only_page_is_not_an_article() -> None:
    nav = extract_page(NAV_ONLY_HTML, "https://coastal-herald.example/")
    assert nav.is_article is False
    assert "too little text" in nav.article_reason
    assert nav.language is None  # too little text to tell


def test_undeclared_long_text_at_an_article_url_is_an_article() -> None:
    long_html = f"<html><body><article>{_paragraphs(BRIDGE_PARAGRAPHS * 2)}</article></body></html>"
    at_article_url = extract_page(
        long_html, "https://herald.example/harbour-bridge-reopens-at-last"
    )
    assert at_article_url.is_article is True
    at_section_url = extract_page(long_html, "https://herald.example/about")
    assert at_section_url.is_article is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.example/2024/05/14/bridge", True),
        ("https://x.example/news/harbour-bridge-reopens-after-repairs.html", True),
        ("https://x.example/news/", False),
        ("https://x.example/", False),
        (None, None),
    ],
)
def test_article_like_url(url: str | None, expected: bool | None) -> None:
    assert article_like_url(url) is expected


# --- feed hints ---------------------------------------------------------------------------


def test_feed_hints_fill_gaps() -> None:
    page = extract_page(
        BARE_HTML,
        "https://coastal-herald.example/news/2024/05/harbour-bridge-reopens",
        feed_title="  Harbour bridge reopens  ",
        feed_published_at=datetime(2024, 5, 14, 6, 30),  # naive: taken as UTC
    )
    assert page.title == "Harbour bridge reopens"
    assert page.published_at == datetime(2024, 5, 14, 6, 30, tzinfo=UTC)
    assert page.text.startswith("The harbour bridge in Port Aldwin")


def test_page_values_win_over_feed_hints(article: Extraction) -> None:
    hinted = extract_page(
        ARTICLE_HTML,
        ARTICLE_URL,
        feed_title="Feed title",
        feed_published_at=datetime(2024, 5, 20, tzinfo=UTC),
    )
    assert hinted.title == article.title
    assert hinted.published_at == article.published_at


def test_feed_time_refines_a_bare_page_date() -> None:
    html = ARTICLE_HTML.replace("2024-05-14T08:30:00+02:00", "2024-05-14")
    feed_time = datetime(2024, 5, 14, 9, 15, tzinfo=timezone(timedelta(hours=2)))
    assert extract_page(html, ARTICLE_URL).published_at == datetime(2024, 5, 14, tzinfo=UTC)
    refined = extract_page(html, ARTICLE_URL, feed_published_at=feed_time)
    assert refined.published_at == datetime(2024, 5, 14, 7, 15, tzinfo=UTC)
    far = extract_page(html, ARTICLE_URL, feed_published_at=datetime(2024, 6, 1, tzinfo=UTC))
    assert far.published_at == datetime(2024, 5, 14, tzinfo=UTC)


def test_naive_page_date_is_utc() -> None:
    html = ARTICLE_HTML.replace("2024-05-14T08:30:00+02:00", "2024-05-14T08:30:00")
    assert extract_page(html, ARTICLE_URL).published_at == datetime(2024, 5, 14, 8, 30, tzinfo=UTC)


def test_future_page_date_is_ignored() -> None:
    html = ARTICLE_HTML.replace("2024-05-14T08:30:00+02:00", "2999-01-01T00:00:00Z")
    published = extract_page(html, ARTICLE_URL).published_at
    assert published is None or published <= datetime.now(UTC) + timedelta(days=1)


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    ["", "   \n ", b"", b"\x00\x01\x02\x03\xff" * 40, "just some words, no markup at all"],
)
def test_unparseable_input(html: str | bytes) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_page(html)
    assert caught.value.reason == "unparseable_html"
    assert caught.value.detail


@pytest.mark.parametrize(
    "html",
    [
        "<html><body></body></html>",
        "<!DOCTYPE html><html><head><title>Nothing here</title>"
        "<script>var page = {};</script><style>p { color: red }</style></head>"
        "<body>  <div> </div> <img src='/x.png'></body></html>",
    ],
)
def test_page_without_text(html: str) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_page(html, "https://coastal-herald.example/empty")
    assert caught.value.reason == "empty_text"
    assert str(caught.value).startswith("empty_text")


# --- encodings ----------------------------------------------------------------------------


def test_bytes_in_declared_legacy_charset() -> None:
    # Declared iso-8859-1, written as windows-1252 (the en dash is 0x96), as servers do; browsers
    # read the label as windows-1252, and so does the decoder.
    data = GERMAN_HTML.encode("cp1252")
    assert b"\xfc" in data and b"\x96" in data  # "ü" and "–": invalid as UTF-8
    page = extract_page(data, "https://kuestenbote.example/lokales/hafenbruecke-wieder-offen")
    assert page.title is not None and page.title.startswith("Hafenbrücke wieder offen")
    assert "Hafenbrücke wieder offen – Küstenbote" in decode_html(data)
    assert "Die Brücke über den Hafen" in page.text
    assert "\ufffd" not in page.text
    assert page.language == "de"


def test_bytes_with_bom_and_without_declaration() -> None:
    utf16 = ("\ufeff" + BARE_HTML.replace("harbour", "hårbour")).encode("utf-16-le")
    assert "hårbour" in extract_page(utf16).text
    undeclared = BARE_HTML.replace("harbour", "hårbour").encode("utf-8")
    assert "hårbour" in extract_page(undeclared).text


def test_decode_html_precedence_and_replacement() -> None:
    latin = '<meta charset="windows-1252"><p>caf\xe9 \x93quoted\x94</p>'.encode("latin-1")
    assert sniff_encoding(latin) == "cp1252"
    assert "café “quoted”" in decode_html(latin)
    assert "café" in decode_html("<p>café</p>".encode("cp1252"), declared="iso-8859-1")
    # the HTTP header's charset wins over <meta>, a BOM over both
    assert "café" in decode_html('<meta charset="utf-8"><p>caf\xe9</p>'.encode("latin-1"), "latin1")
    assert decode_html(b"\xef\xbb\xbf<p>x</p>", declared="latin1") == "<p>x</p>"
    # unknown label, invalid bytes: UTF-8 with replacement characters, never an error
    broken = decode_html(b'<meta charset="no-such-charset"><p>ok \xff\xfe</p>')
    assert "ok \ufffd\ufffd" in broken


# --- field helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("By Maria Jensen and Tom Okafor", ["Maria Jensen", "Tom Okafor"]),
        ("Maria Jensen, Tom Okafor", ["Maria Jensen", "Tom Okafor"]),
        ("Maria Jensen; Tom Okafor & Li Wei", ["Maria Jensen", "Tom Okafor", "Li Wei"]),
        ("BY  maria jensen", ["maria jensen"]),
        ("Byron Lake", ["Byron Lake"]),
        ("Maria Jensen, Staff Writer", ["Maria Jensen"]),
        ("Ole Brandt, Harbour Expert, Home", ["Ole Brandt"]),
        ("Ole Brandt; On May 9", ["Ole Brandt"]),
        ("Herald Staff", ["Herald Staff"]),  # a byline that is only a role is kept
        ("Maria Jensen and maria jensen", ["Maria Jensen"]),
        ("https://herald.example/authors/mj", []),
        ("", []),
        (None, []),
    ],
)
def test_split_authors(raw: str | None, expected: list[str]) -> None:
    assert split_authors(raw) == expected


@pytest.mark.parametrize(
    ("title", "headings", "site", "url", "expected"),
    [
        ("Bridge reopens | Coastal Herald", (), "Coastal Herald", None, "Bridge reopens"),
        ("Coastal Herald | Bridge reopens", (), "Coastal Herald", None, "Bridge reopens"),
        ("Bridge reopens – Herald", (), None, "https://www.herald.example/a", "Bridge reopens"),
        (
            "Bridge reopens - Local - Herald",
            (),
            None,
            "https://herald.example/a",
            ("Bridge reopens - Local"),
        ),
        (
            "Bridge reopens: what next? - News",
            ("Bridge reopens: what next?",),
            None,
            None,
            ("Bridge reopens: what next?"),
        ),
        (
            "Bridge reopens - at last",
            (),
            "Coastal Herald",
            "https://herald.example/a",
            ("Bridge reopens - at last"),
        ),
        ("Opinion | Bridge reopens", ("Bridge reopens",), None, None, "Bridge reopens"),
        # a logo or section <h1> is not the headline
        (
            "Fire | Coastal Herald",
            ("Coastal Herald",),
            None,
            "https://coastal-herald.example/f",
            ("Fire"),
        ),
        (
            "Bridge reopens after two years | News",
            ("News",),
            None,
            None,
            ("Bridge reopens after two years | News"),
        ),
        ("Must-have tools for 2026", (), "Coastal Herald", None, "Must-have tools for 2026"),
        ("Bridge reopens for cars", ("Bridge reopens",), None, None, "Bridge reopens for cars"),
        # branding glued on with a bare hyphen goes only when it ends with the site's name
        ("Bridge reopens-Politicsㅣ코스탈헤럴드", (), "코스탈헤럴드", None, "Bridge reopens"),
        (
            "Best Cross-Country Movers",
            (),
            None,
            "https://movers.example/best",
            "Best Cross-Country Movers",
        ),
        # the host name set before the headline, without a separator
        ("herald.example Bridge reopens", (), None, "https://herald.example/a", "Bridge reopens"),
        ("herald.example: Bridges", (), None, "https://herald.example/", "herald.example: Bridges"),
        # a blog's "Name: Headline", when the name is the logo heading or the declared site
        (
            "Harbour Notes: Bridge reopens after repairs",
            ("Harbour Notes",),
            None,
            "https://notes.example/2024/05/bridge.html",
            "Bridge reopens after repairs",
        ),
        (
            "Harbour Notes: Bridge reopens again | Harbour Notes",
            (),
            "Harbour Notes",
            "https://notes.example/bridge",
            "Bridge reopens again",
        ),
        # a front page's "Brand: tagline" is its title
        (
            "Harbour Notes: News from the quay",
            (),
            "Harbour Notes",
            "https://notes.example/",
            "Harbour Notes: News from the quay",
        ),
        (
            "Brexit: What happens next",
            (),
            "Harbour Notes",
            "https://notes.example/b",
            "Brexit: What happens next",
        ),
        (None, (), None, None, None),
    ],
)
def test_refine_title(
    title: str | None,
    headings: tuple[str, ...],
    site: str | None,
    url: str | None,
    expected: str | None,
) -> None:
    assert refine_title(title, headings, [site], url) == expected


@pytest.mark.parametrize(
    ("value", "expected", "has_time"),
    [
        ("2024-05-14T08:30:00+02:00", datetime(2024, 5, 14, 6, 30, tzinfo=UTC), True),
        ("2024-05-14T08:30:00Z", datetime(2024, 5, 14, 8, 30, tzinfo=UTC), True),
        ("2024-05-14 08:30", datetime(2024, 5, 14, 8, 30, tzinfo=UTC), True),
        ("2024-05-14", datetime(2024, 5, 14, tzinfo=UTC), False),
        ("Tue, 14 May 2024 08:30:00 +0000", datetime(2024, 5, 14, 8, 30, tzinfo=UTC), True),
        # a day written out, as some templates fill <meta> and JSON-LD date fields
        ("July 17, 2025", datetime(2025, 7, 17, tzinfo=UTC), False),
        ("Jan 17, 2025", datetime(2025, 1, 17, tzinfo=UTC), False),
        ("17 July 2025", datetime(2025, 7, 17, tzinfo=UTC), False),
    ],
)
def test_parse_datetime(value: str, expected: datetime, has_time: bool) -> None:
    parsed = parse_datetime(value)
    assert parsed is not None
    assert parsed[0] == expected and parsed[0].tzinfo is not None
    assert parsed[1] is has_time


def test_parse_datetime_rejects_garbage() -> None:
    assert parse_datetime("last Tuesday") is None
    assert parse_datetime("") is None


def test_language_needs_enough_text() -> None:
    assert detect_language("Harbour bridge reopens") is None
    assert detect_language(" ".join(BRIDGE_PARAGRAPHS)) == "en"
    assert detect_language(" ".join(GERMAN_PARAGRAPHS)) == "de"


def test_import_is_light() -> None:
    """Importing the module loads neither trafilatura nor the language model."""
    code = (
        "import sys, enrich.extract, enrich.extract_cli; "
        "heavy = ('trafilatura', 'py3langid', 'htmldate', 'numpy'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# --- quality floor on real pages ----------------------------------------------------------

ZYTE_PAGES = 40
# Measured on this 40-page subset: P 0.938, R 0.959, F1 0.948 (0.947 on all 181 pages, where
# trafilatura's published score is 0.958). A drop below the floor is a regression.
ZYTE_MIN_F1 = 0.935


def _shingles(text: str) -> Counter[tuple[str, ...]]:
    words = text.lower().split()
    return Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))


def test_zyte_body_quality_floor() -> None:
    zyte = CORPUS / "zyte"
    if not (zyte / "ground-truth.json").is_file():
        pytest.skip(f"the zyte corpus is not at {zyte} (it sits beside the repository)")
    truth = json.loads((zyte / "ground-truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)[:: max(1, len(truth) // ZYTE_PAGES)][:ZYTE_PAGES]
    precisions, recalls = [], []
    started = time.perf_counter()
    for page_id in ids:
        html = gzip.decompress((zyte / "html" / f"{page_id}.html.gz").read_bytes())
        try:
            text = extract_page(html, truth[page_id]["url"]).text
        except ExtractionError:
            text = ""
        predicted, expected = _shingles(text), _shingles(truth[page_id]["articleBody"])
        matched = sum((predicted & expected).values())
        precisions.append(matched / sum(predicted.values()) if predicted else float(not expected))
        recalls.append(matched / sum(expected.values()) if expected else 1.0)
    elapsed = time.perf_counter() - started
    precision, recall = sum(precisions) / len(ids), sum(recalls) / len(ids)
    f1 = 2 * precision * recall / (precision + recall)
    print(f"zyte {len(ids)} pages: P={precision:.3f} R={recall:.3f} F1={f1:.3f}, {elapsed:.1f}s")
    assert f1 >= ZYTE_MIN_F1, f"F1 {f1:.3f} (P {precision:.3f}, R {recall:.3f}) < {ZYTE_MIN_F1}"


# --- the cascade seam ---------------------------------------------------------------------


class _Broken:
    name = "broken/0"

    def extract(self, tree: object, url: str | None) -> str | None:
        raise RuntimeError("bug in a backend")


class _Fixed:
    name = "fixed/1"

    def extract(self, tree: object, url: str | None) -> str | None:
        return "  First paragraph.  \n\n\n  Second   paragraph.  "


def test_cascade_falls_through_failing_backends() -> None:
    page = extract_page(ARTICLE_HTML, ARTICLE_URL, cascade=(_Broken(), _Fixed()))
    assert page.text == "First paragraph.\nSecond paragraph."
    assert page.extractor == f"fixed/1+newsflow/{NEWSFLOW_EXTRACTION_REVISION}"
    assert page.title == "Harbour bridge reopens after two years of repairs"  # metadata still
    with pytest.raises(ExtractionError) as caught:
        extract_page(ARTICLE_HTML, ARTICLE_URL, cascade=(_Broken(),))
    assert caught.value.reason == "empty_text"


def test_xml_declaration_encoding() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><html><p>café</p></html>'.encode("latin-1")
    assert sniff_encoding(data) == "cp1252"
    assert "café" in decode_html(data)


def test_valid_utf8_wins_over_a_stale_legacy_label() -> None:
    # Converted to UTF-8 by the CMS, still labelled iso-8859-1 (in <meta> or by the server)
    page = '<meta charset="iso-8859-1"><h1>Größe für 5,99 €</h1>'.encode()
    assert is_utf8_text(page)
    assert "Größe für 5,99 €" in decode_html(page)
    assert "Größe für 5,99 €" in decode_html(page, declared="iso-8859-1")
    gbk = '<meta charset="gb2312"><p>中国航天</p>'.encode()
    assert "中国航天" in decode_html(gbk)
    # real legacy bytes are not valid UTF-8, and plain ASCII says nothing either way
    assert not is_utf8_text("Größe".encode("cp1252"))
    assert not is_utf8_text(b"<p>plain</p>")


def test_text_encoded_twice_by_the_page_is_repaired_in_titles() -> None:
    # The page's own bytes: UTF-8 that was read as Latin-1 and saved again as UTF-8
    twice = "A DIY Investor’s Guide — 2025".encode().decode("latin-1")
    assert repair_double_encoding(twice) == "A DIY Investor’s Guide — 2025"
    page = ARTICLE_HTML.replace("Harbour bridge reopens after two years of repairs", twice)
    assert extract_page(page.encode(), ARTICLE_URL).title == "A DIY Investor’s Guide — 2025"
    # without a C1 control character nothing is touched: "Ã©" may be what the page says
    assert repair_double_encoding("CafÃ© and Ã‰") == "CafÃ© and Ã‰"


def test_text_fields_are_composed_nfc() -> None:
    decomposed = "gepru\u0308ft"
    paragraphs = "".join(
        f"<p>Der Bericht wurde {decomposed} und die Ergebnisse sind da, sagte die Sprecherin "
        f"am Montag in der Stadt vor vielen Leuten. Absatz {i}.</p>"
        for i in range(6)
    )
    html = (
        f"<html><head><title>Alles {decomposed}</title></head><body><article>"
        f"<h1>Alles {decomposed}</h1><p class='byline'>Von Jo\u0308rg Mu\u0308ller</p>"
        f"{paragraphs}</article></body></html>"
    )
    got = extract_page(html, ARTICLE_URL)
    for text in (got.title or "", got.text, *got.authors):
        assert unicodedata.is_normalized("NFC", text)
    assert "geprüft" in got.text and got.title == "Alles geprüft"
