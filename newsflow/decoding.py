"""Turn the bytes of a fetched page into text, the way a browser would (simplified).

Order of precedence: a byte-order mark, then an encoding the caller got from the HTTP
``Content-Type`` header, then an XML declaration or a ``<meta charset>`` (or ``http-equiv``)
declaration in the first bytes of the document, then UTF-8; but bytes that are valid UTF-8
with multi-byte sequences are read as UTF-8 whatever the label says (:func:`is_utf8_text`).
Undecodable bytes become U+FFFD rather than failing: a page with a few broken characters is
still worth extracting.
"""

from __future__ import annotations

import codecs
import re

# How far into the document a <meta charset> declaration is looked for (browsers use 1024 bytes;
# real pages put scripts and comments first often enough that a little more pays off).
_SNIFF_BYTES = 4096

_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE
)

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels whose bytes are, in practice, another (superset) encoding: the WHATWG Encoding
# Standard maps them so, and so do browsers. A declared UTF-16/32 in an ASCII-readable <meta>
# cannot be true, so it is read as UTF-8.
_ALIASES = {
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
    "utf-32": "utf-8",
    "unicode": "utf-8",
}


def normalize_encoding(label: str | None) -> str | None:
    """The Python codec for an encoding label, or ``None`` when the label is unknown."""
    if not label:
        return None
    cleaned = label.strip().strip("\"'").lower()
    cleaned = _ALIASES.get(cleaned, cleaned)
    try:
        return codecs.lookup(cleaned).name
    except LookupError:
        return None


def sniff_encoding(data: bytes) -> str | None:
    """The encoding declared by a BOM or a ``<meta>`` tag near the start of ``data``."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    match = _XML_ENCODING.match(data[:200]) or _META_CHARSET.search(data[:_SNIFF_BYTES])
    if match is None:
        return None
    return normalize_encoding(match.group(1).decode("ascii", "replace"))


def is_utf8_text(data: bytes) -> bool:
    """Non-ASCII bytes that decode strictly as UTF-8: then the page is UTF-8, whatever its
    label says.

    Text in a legacy encoding (windows-1252, GBK, Shift_JIS...) almost never forms valid
    UTF-8 sequences by chance, while pages converted to UTF-8 by a CMS, a proxy or an archive
    often keep their old ``<meta charset>``, and servers often send a default ``iso-8859-1``.
    Reading those by the label turns every accented letter into mojibake ("fÃ¼r").
    """
    return not data.isascii() and _is_valid_utf8(data)


def encoding_candidates(data: bytes, declared: str | None = None) -> tuple[int, list[str]]:
    """The length of ``data``'s byte-order mark and the encodings to try, best first: the
    BOM's; else UTF-8 when the bytes are valid UTF-8 (:func:`is_utf8_text`), then
    ``declared`` (HTTP header), the document's own declaration, and UTF-8."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return len(bom), [name]
    candidates = ["utf-8"] if is_utf8_text(data) else []
    for encoding in (normalize_encoding(declared), sniff_encoding(data), "utf-8"):
        if encoding and encoding not in candidates:
            candidates.append(encoding)
    return 0, candidates


def decode_html(data: bytes, declared: str | None = None) -> str:
    """Decode a page: BOM, then ``declared`` (HTTP header), then ``<meta>``, then UTF-8;
    valid UTF-8 bytes are UTF-8 whatever the label.

    Never raises on bad bytes: they become U+FFFD. The first choice of
    :func:`encoding_candidates`, with the strict UTF-8 check's text kept rather than decoded
    a second time.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(name, errors="replace")
    if not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return data.decode(_declared_encoding(data, declared), errors="replace")


def _declared_encoding(data: bytes, declared: str | None) -> str:
    return normalize_encoding(declared) or sniff_encoding(data) or "utf-8"


# Codecs that read every ASCII byte as that ASCII character.
_ASCII_COMPATIBLE = re.compile(r"utf-8|cp125[0-8]|iso8859-(?:[1-9]|1[0-6])")


def decoded_as_utf8(data: bytes, declared: str | None = None) -> bytes | None:
    """``decode_html(data, declared).encode("utf-8")`` when that is ``data`` itself (or
    ``data`` without its UTF-8 BOM), else ``None``.

    Valid UTF-8 and ASCII pages (nearly all) can go to a UTF-8 parser as they came, instead
    of being decoded and encoded again.
    """
    if data.startswith(codecs.BOM_UTF8):
        rest = data[len(codecs.BOM_UTF8) :]
        return rest if _is_valid_utf8(rest) else None
    if any(data.startswith(bom) for bom, _ in _BOMS):
        return None
    if data.isascii():
        encoding = _declared_encoding(data, declared)
        return data if _ASCII_COMPATIBLE.fullmatch(encoding) else None
    return data if _is_valid_utf8(data) else None


def _is_valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# UTF-8 bytes that were read as Latin-1 once before the page was saved: "Investorâ\x80\x99s".
# Only runs holding a C1 control character (U+0080 to U+009F), which no real text uses, are
# repaired: curly quotes, dashes and ellipses, the usual victims.
_DOUBLE_ENCODED = re.compile("[\u00c2-\u00f4][\u0080-\u00bf]{1,3}")
_C1 = re.compile("[\u0080-\u009f]")


def repair_double_encoding(text: str) -> str:
    """``"Investorâ\\x80\\x99s"`` -> ``"Investor’s"``; any other text is returned as it is."""
    if not _C1.search(text):
        return text

    def repaired(match: re.Match[str]) -> str:
        run = match.group()
        if not _C1.search(run):
            return run
        try:
            return run.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return run

    return _DOUBLE_ENCODED.sub(repaired, text)
