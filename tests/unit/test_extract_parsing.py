"""The shortcuts in decoding and parsing give exactly what the plain way gives."""

from __future__ import annotations

import codecs
import random
import re

import pytest
from lxml import etree
from lxml import html as lxml_html

import enrich.metadata as metadata_module
from enrich.extract import HEAD_CHARS, ExtractionError, parse_html, parse_page
from enrich.pagemeta import normalize_space, page_elements
from newsflow.decoding import decode_html, decoded_as_utf8, encoding_candidates

PAGE = "<html><head><title>Café</title></head><body><p>Brücke – {}</p></body></html>"

# (bytes, the charset an HTTP header declared)
ENCODED: list[tuple[bytes, str | None]] = [
    (PAGE.format("ascii").encode("ascii", errors="xmlcharrefreplace"), None),
    (b"<html><body><p>plain ascii</p></body></html>", None),
    (b"<html><body><p>plain ascii</p></body></html>", "iso-8859-2"),
    (b"<html><body><p>plain ascii</p></body></html>", "utf-16"),
    (b"<html><body><p>plain ascii</p></body></html>", "utf-16-le"),
    (b'<meta charset="shift_jis"><p>ascii under a multi-byte label</p>', None),
    (b'<meta charset="utf-7"><p>ascii +AGEA- under UTF-7</p>', None),
    (b'<meta charset="no-such-charset"><p>ascii</p>', None),
    (PAGE.format("utf-8").encode("utf-8"), None),
    (PAGE.format("utf-8 under a stale label").encode("utf-8"), "iso-8859-1"),
    (codecs.BOM_UTF8 + PAGE.format("utf-8 with a BOM").encode("utf-8"), None),
    (codecs.BOM_UTF8 + b"<p>BOM, then bad bytes \xff</p>", None),
    (codecs.BOM_UTF16_LE + PAGE.format("utf-16").encode("utf-16-le"), None),
    (PAGE.format("cp1252").encode("cp1252"), None),
    (PAGE.format("cp1252").encode("cp1252"), "windows-1252"),
    (b'<meta charset="koi8-r"><p>\xf0\xd2\xc9\xd7\xc5\xd4</p>', None),
    (b"<p>bad utf-8 \xc3\x28 and \xff</p>", None),
    (b"", None),
    (b"   \n", None),
    (b"\x00\x01\x02\x03\xff" * 40, None),
]


def _random_pages(count: int) -> list[tuple[bytes, str | None]]:
    rng = random.Random(15)
    alphabet = [b"<p>", b"</p>", b" ", b"a", b"\xc3\xa9", b"\xf0\x9f\x93\xb0", b"\xe9", b"\xff"]
    labels = [None, "utf-8", "latin1", "cp1251", "gbk", "utf-16"]
    pages = []
    for _ in range(count):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        pages.append((b"<html><body>" + body, rng.choice(labels)))
    return pages


@pytest.mark.parametrize(("data", "declared"), ENCODED + _random_pages(200))
def test_decode_html_reads_the_first_candidate_encoding(data: bytes, declared: str | None) -> None:
    skip, candidates = encoding_candidates(data, declared)
    assert decode_html(data, declared) == data[skip:].decode(candidates[0], errors="replace")


@pytest.mark.parametrize(("data", "declared"), ENCODED + _random_pages(200))
def test_bytes_kept_as_they_came_are_the_decoded_text_in_utf8(
    data: bytes, declared: str | None
) -> None:
    kept = decoded_as_utf8(data, declared)
    if kept is not None:
        assert kept == decode_html(data, declared).encode("utf-8")


def test_utf8_and_ascii_pages_are_kept_as_they_came() -> None:
    utf8 = PAGE.format("utf-8").encode("utf-8")
    assert decoded_as_utf8(utf8) is utf8
    assert decoded_as_utf8(utf8, "iso-8859-1") is utf8
    assert decoded_as_utf8(codecs.BOM_UTF8 + utf8) == utf8
    ascii_page = b'<meta charset="iso-8859-1"><p>plain</p>'
    assert decoded_as_utf8(ascii_page) is ascii_page
    assert decoded_as_utf8(PAGE.format("x").encode("cp1252")) is None


def _outcome(parse: object) -> tuple[str, str]:
    """The parsed document as markup, or the error it raised."""
    try:
        tree = parse()  # type: ignore[operator]
    except ExtractionError as exc:
        return exc.reason, exc.detail
    return "ok", etree.tostring(tree, encoding="unicode")


WIDE = "\U0001f4f0"  # four bytes in UTF-8
PARSED = [
    *(data for data, _ in ENCODED),
    b"no markup in the first characters " * 200 + b"<p>then some</p>",
    b" " * (HEAD_CHARS * 2) + b"<p>markup after a long run of spaces</p>",
    (WIDE * (HEAD_CHARS - 1) + "<p>x</p>").encode("utf-8"),
    (WIDE * HEAD_CHARS + "<p>x</p>").encode("utf-8"),
    ("<p>" + WIDE * HEAD_CHARS + "</p>").encode("utf-8"),
    ("<p>" + "\x01" * 200 + "</p>").encode("utf-8"),
    ("<p>" + "é" * 50 + "\x01" * 60 + "</p>").encode("utf-8"),
    ("<p>" + "é" * 3000 + "\x01" * 60 + "</p>").encode("utf-8"),  # past byte 4096, not char
    b"\x01" * 60 + b"<p>x</p>",
    b"<p>x</p>" + b"\x01" * HEAD_CHARS,
]


@pytest.mark.parametrize("data", PARSED)
def test_parse_page_of_bytes_is_parse_html_of_the_decoded_text(data: bytes) -> None:
    assert _outcome(lambda: parse_page(data)) == _outcome(lambda: parse_html(decode_html(data)))


def test_element_classes_are_lxml_html_parsers() -> None:
    page = (
        "<html><head><title>t</title></head><body><form><label>l</label><input name=a>"
        "<select><option>o</option></select><textarea>t</textarea></form><p>x<br>y</p>"
        "<svg><circle/></svg><my-widget>w</my-widget></body></html>"
    )
    ours = parse_html(page)
    theirs = lxml_html.document_fromstring(page, parser=lxml_html.HTMLParser())
    assert [type(e) for e in ours.iter()] == [type(e) for e in theirs.iter()]
    special = lxml_html.HtmlElementClassLookup._default_element_classes
    assert {type(ours.find(f".//{tag}")) for tag in special} == set(special.values())


# --- page signals: one walk instead of an XPath search per kind of element --------------------

SIGNALS_PAGE = """<html><head><base href="/news/"><title>One</title><meta name="a" content="1">
<meta property="b"><link rel="canonical" href="/x"><link rel="alternate">
<script type="application/ld+json">{}</script><script>var x;</script><a href="/in-head">h</a>
</head><body><h1>Headline</h1><div><base href="/not-in-head"><title>Two</title>
<a href="/a">A</a><a name="no-href">B</a><time datetime="2024-05-01" pubdate>May</time>
<time datetime="2024-05-02" itemprop="datePublished">May</time><time datetime="x">no</time>
<h1>Second</h1><meta itemprop="c" content="3"></div></body></html>"""


def _body_after_body() -> etree._Element:
    """A tree no parser makes but a selector's edits can: elements after ``<body>``, a
    second ``<body>``."""
    tree = parse_html(SIGNALS_PAGE)
    after = etree.SubElement(tree, "div")
    etree.SubElement(after, "h1").text = "outside"
    etree.SubElement(after, "a", href="/outside").text = "outside"
    second = etree.SubElement(tree, "body")
    etree.SubElement(second, "h1").text = "second body"
    etree.SubElement(second, "a", href="/second").text = "second body"
    return tree


SIGNAL_XPATHS = {
    "bases": "//head/base[@href]",
    "scripts": "//script[@type]",
    "metas": "//meta[@content]",
    "titles": "//head/title|//title",
    "links": "//link[@rel][@href]",
    "times": "//time[@datetime][@itemprop='datePublished' or @pubdate]",
    "h1s": "//body//h1",
    "anchors": "//body//a[@href]",
}


@pytest.mark.parametrize(
    "tree",
    [parse_html(SIGNALS_PAGE), _body_after_body(), parse_html("<p>only a paragraph</p>")],
)
def test_page_elements_are_what_the_xpath_searches_select(tree: etree._Element) -> None:
    found = page_elements(tree)
    for name, xpath in SIGNAL_XPATHS.items():
        assert getattr(found, name) == tree.xpath(xpath), name
    inner = tree.find(".//div")
    if inner is not None:  # from any element of the page, the whole document
        assert page_elements(inner) == found


BYLINE_PAGE = """<html><body><h1>Headline</h1>
<p class="byline">By <a rel="author" href="/people/ann">Ann Lee</a></p>
<span itemprop="author"><span itemprop="name">Bo Chan</span></span>
<a href="/author/cy">Cy</a><div id="post-author">Di</div><div id="bylines">Ed</div>
<div class="AuthorBox">Fay</div><span rel="author">not a link</span>
<div itemprop="authors">no</div><div class="other" id="x">no</div></body></html>"""


def test_byline_searches_find_the_elements_the_predicates_find() -> None:
    tree = parse_html(BYLINE_PAGE)
    every = tree.xpath(
        "//*[@itemprop='author' or @rel='author' or @href[contains(.,'/author')]"
        " or @class[contains(.,'uthor') or contains(.,'yline')]"
        " or @id[contains(.,'author') or contains(.,'byline')]]"
    )
    marked = tree.xpath("//*[@itemprop='author'] | //a[@rel='author' or contains(@href,'/author')]")
    assert len(every) == 8 and len(marked) == 3
    assert metadata_module._BYLINE(tree) == every
    assert metadata_module._MARKED_AUTHOR(tree) == marked


@pytest.mark.parametrize(
    "text",
    ["", "  a  b\t\nc ", "a\x1cb\x1dc\x1ed\x1ff", "a\x85b\u2028c\u2029d", "a\xa0b\u3000c\u200bd"],
)
def test_normalize_space_collapses_what_the_regular_expression_did(text: str) -> None:
    assert normalize_space(text) == re.sub(r"\s+", " ", text).strip()
