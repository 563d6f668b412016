"""Author names from a byline or a declared author: split, cleaned of what is not a name.

``"By Ann Lee and Bo Chan, Staff Writers · Updated May 3"`` -> ``["Ann Lee", "Bo Chan"]``.
"""

from __future__ import annotations

import html
import re

from enrich.dates import MONTH_NAME
from enrich.pagemeta import normalize_space

_AUTHOR_SPLIT = re.compile(r"\s*(?:;|,|\||&|\b(?:and|und|og|och|en)\b)\s*", re.IGNORECASE)
_CREDIT = re.compile(r"\s+[·•∙]\s*|\s*[·•∙]\s+")
_BYLINE_PREFIX = re.compile(
    r"^(?:(?:written|posted|published|reviewed|text|article|story|words|reporting)\s+)?"
    r"(?:by|von|authored\s+by|authors?|autor(?:in|en)?)\b\s*:?\s*",
    re.IGNORECASE,
)
# "This post was written by Ann Lee", "capital von Ann Lee": the names follow a "by" that
# comes after a few words of lead-in.
_INNER_BY = re.compile(r"^(?:\S+\s+){1,5}?(?:by|von|par|por|door)\s*:?\s+(?=\S)", re.IGNORECASE)
# Credits for what others did to an article, not its writing ("Reviewed by Bo Chan"): a
# lead-in "by" after one is not the author's, and the credit ends a byline.
OTHER_CREDIT = (
    r"(?:medically\s+)?(?:reviewed|researched|edited|fact[- ]checked|photos?|photographed"
    r"|illustrat\w+|sponsored)"
)
_OTHER_CREDIT_BY = re.compile(rf"\b{OTHER_CREDIT}\s+by\b", re.I)
_MONTH = rf"{MONTH_NAME}[a-zä]*\.?"
_WEEKDAY = (
    r"(?:mon|tue|wed|thu|fri|sat|sun|dienstag|mittwoch|donnerstag|freitag|samstag)[a-z]*\.?,?"
)
# A date that opens a byline line: "Nov 25, 2025 Ann Lee", "Sat, 20 Dec, 2025 - 06:36".
_BYLINE_HEAD_DATE = re.compile(
    rf"^(?:{_WEEKDAY}\s+)?(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}\.?\s+{_MONTH},?\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}})\S*\s*[-–—|:]?\s*",
    re.IGNORECASE,
)
# What follows the names in a byline line: its date, time, "Updated ...", reading time.
_BYLINE_TAIL = re.compile(
    rf"\s*(?:\b(?:on|at)\s+)?\b(?:{_WEEKDAY}\s+)?{_MONTH},?\s+\d.*$"
    rf"|\s*\b(?:{_WEEKDAY}\s+)?\d{{1,2}}\.?\s+{_MONTH},?\s+\d{{4}}.*$"
    r"|\s*\b(?:(?:last|page|article|post|story)\s+)?"
    r"(?:updated|published|posted|modified|stand|aktualisiert)\b.*$"
    rf"|\s+{OTHER_CREDIT}\s+by\b.*$"
    r"|\s*\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?:\b|T).*$"
    r"|\s*\b\d+\s+min(?:ute)?s?\b.*$"
    r"|\s+on\s+behalf\s+of\b.*$"
    # "Ann Lee, in Politics, Economy": the sections it is filed in
    r"|,\s*in\s+(?-i:[A-Z]).*$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\S+@\S+\.\w+")
# Share buttons whose labels run into the name ("Ann Leefacebooktwitterwhatsapp"): matched
# in lower case only, and a short label ("mail", "x") only after a network's name.
_NETWORK = r"facebook|twitter|flipboard|whatsapp|linkedin|pinterest|reddit|telegram|xing"
_GLUED_SHARE = re.compile(rf"(?<=[^\W\d_])(?:{_NETWORK})(?:{_NETWORK}|email|mail|print|copy|x)*$")
# A date's lead-in left behind when the date was cut: "Ann Lee am" (... 3. März), "Ann Lee on".
_TRAILING_LEAD_IN = re.compile(r"\s+(?:am|um|on|at|le|el|il|op|den|vom|em|du|de|o)$")
# Degrees and post-nominals a semicolon sets apart from the name, as if they were another
# person ("Grant Tinsley; PhD"). After a comma they stay: "Ann Lee, MD" is how the page
# credits her, and annotators keep it.
_DEGREES = (
    r"ph\.?\s?d|m\.?d|mba|msc?|ma|bsc?|rdn?|ldn?|cscs|mph|dds|dvm|jd|rn|np|cpt|cssd|facs"
    r"|pharmd|psyd|lcsw|cpa|cfa|esq|fand|mfa|d\.?o"
)
_SEMICOLON_DEGREES = re.compile(rf"(?:\s*;\s*(?:{_DEGREES})\.?(?![\w.]))+", re.IGNORECASE)
# Lower-case words a name may hold ("Ann van Lee", "Bo de la Cruz"); another lower-case word
# makes a part of a byline a phrase, not a person ("Fuchsy designed").
_PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "du", "la", "le", "del", "della", "dos"}
    | {"das", "do", "bin", "ibn", "al", "el", "ter", "ten", "zu", "y", "e", "af", "av"}
    | {"of", "for", "the"}  # a credit's title: "Director of Operations"
)

# Editor's short sign in parentheses after a name: "Elena Oberholzer (obe)".
_SIGN = re.compile(r"\s*\([a-zäöü]{2,4}\.?\)$")
# Affiliation marks after a scientist's name: "Ann Lee 1", "Ann Lee 2,3*".
_FOOTNOTE = re.compile(r"(?<=[^\W\d])\s+\d{1,2}(?:\s*,\s*\d{1,2})*\*?$")
# "Ann Lee/Bo Chan" is two names; "AFP/Reuters", "srf/abc" and "Ann / Herald" stay as written.
_TWO_NAMES_SLASH = re.compile(r"(\b\w+\s+\w+)\s*/\s*(\w+\s+\w+\b)")
_NOT_A_NAME = re.compile(r"https?://|www\.|@|\d|%")
_WORD = re.compile(r"\w+")
_MAX_AUTHOR_WORDS = 5
# Page furniture that byline heuristics pick up: never a name.
_JUNK_WORDS = frozenset(
    {
        "by",
        "home",
        "menu",
        "updated",
        "published",
        "posted",
        "subscribe",
        "image",
        "images",
        "read",
        "share",
        "follow",
        "learn",
        "more",
        "written",
        "article",
        "articles",
        "profile",
        "view",
        "posts",
        "folgen",
        "quelle",
        "author",
        "twitter",
        "facebook",
        "linkedin",
        "instagram",
        "email",
        "print",
        "comments",
        "sign",
        "join",
        "login",
        "register",
    }
)
# Job titles: dropped when they follow a name ("Ann Lee, Staff Writer"), kept when they are
# the whole byline ("Herald Staff").
_ROLE_WORDS = frozenset(
    {
        "attorney",
        "columnist",
        "contributor",
        "correspondent",
        "editor",
        "expert",
        "reporter",
        "staff",
        "writer",
    }
)
# Role words that end a name when they trail it: "Rasmus Barslund Founder", "Ann Lee Tech
# Reporter" ("Herald staff" is a whole byline, so "staff" is not one of them).
_TRAILING_ROLES = frozenset(
    {
        "founder",
        "co-founder",
        "ceo",
        "cto",
        "director",
        "manager",
        "former",
        "senior",
        "head",
        "chief",
        "lead",
        "associate",
        "assistant",
        "managing",
        "executive",
        "coordinator",
        "consultant",
        "specialist",
        "analyst",
        "strategist",
        "producer",
        "journalist",
        "photographer",
        "president",
        "officer",
        "partner",
        "owner",
        "certified",
        "content",
        "tech",
        "technology",
        "science",
        "health",
        "sports",
        "business",
        "political",
        "politics",
        "news",
    }
    | (_ROLE_WORDS - {"staff"})
)
# Dropped beside names: "Ann Lee, Bo Chan, Guest Columnists".
_ROLE_NOUNS = _ROLE_WORDS | {f"{word}s" for word in _ROLE_WORDS - {"staff"}}
_ROLE_PART = _ROLE_WORDS | (_TRAILING_ROLES - {"content", "tech", "technology", "news"})


def _byline_core(raw: str) -> str:
    """The part of a byline line that holds the names: without prefix, dates and credits."""
    raw = _EMAIL.sub(" ", normalize_space(html.unescape(raw))).strip()
    # "Ann Lee · Kestrel Wire", "Ann Lee • March 3": what follows a middle dot is a credit;
    # "Dec 19, 2025 · Ann Lee": a segment that is only a date is skipped
    for segment in _CREDIT.split(raw):
        segment = _BYLINE_HEAD_DATE.sub("", segment.strip())
        without_prefix = _BYLINE_PREFIX.sub("", segment)
        if without_prefix != segment:
            segment = without_prefix
        elif (lead_in := _INNER_BY.match(segment)) and not _OTHER_CREDIT_BY.search(lead_in.group()):
            segment = segment[lead_in.end() :]
        segment = _BYLINE_TAIL.sub("", segment).strip(" ,.:;-–—|")
        if any(c.isalpha() for c in segment):
            return segment
    return ""


def _is_role(words: list[str]) -> bool:
    return bool(words) and (words[0] in _ROLE_PART or bool(_ROLE_WORDS.intersection(words)))


def _is_phrase(tokens: list[str]) -> bool:
    """Words with a lower-case one that no name holds ("Fuchsy designed"); a lone lower-case
    word is an agency's or an editor's sign ("dpa", "kesm"), and stays."""
    return len(tokens) > 1 and any(
        token[:1].islower() and token.casefold() not in _PARTICLES for token in tokens
    )


def split_authors(raw: str | None) -> list[str]:
    """``"By Ann Lee and Bo Chan"`` -> ``["Ann Lee", "Bo Chan"]``; drops non-names, dedupes.

    A byline's date, "Updated ...", e-mail and credits are cut first; a role that trails a
    name ("Ann Lee Tech Reporter") is dropped from it, and what follows a role ("Ann Lee,
    Trial Attorney at Lee & Lee") is the role's, not another name.
    """
    if not raw:
        return []
    names: list[str] = []
    seen: set[str] = set()
    core = _SEMICOLON_DEGREES.sub("", _byline_core(raw))
    for part in _AUTHOR_SPLIT.split(_TWO_NAMES_SLASH.sub(r"\1; \2", core)):
        name = part.strip(" .:-–—·•")
        while (stripped := _BYLINE_PREFIX.sub("", name).strip()) != name:
            name = stripped
        name = _FOOTNOTE.sub("", _SIGN.sub("", name))
        name = _TRAILING_LEAD_IN.sub("", _GLUED_SHARE.sub("", name))
        tokens = name.split()
        if len(tokens) > 2 and tokens[0] == "".join(t[0] for t in tokens[1:]).upper():
            tokens = tokens[1:]  # an avatar's initials: "AL Ann Lee"
        words = [t.casefold() for t in tokens]
        if names and _is_role(words):
            break  # "Ann Lee, Head of Sales and Marketing"
        if names and _is_phrase(tokens):
            continue
        cut = next((i for i, w in enumerate(words) if i >= 2 and w in _TRAILING_ROLES), None)
        if cut is not None:
            tokens, words = tokens[:cut], words[:cut]
        name = " ".join(tokens)
        if not words or len(words) > _MAX_AUTHOR_WORDS or _NOT_A_NAME.search(name):
            continue
        if _JUNK_WORDS.intersection(_WORD.findall(name.casefold())) or name.casefold() in seen:
            continue
        if name.isupper() and len(name) > 3 and " " in name:
            name = name.title()  # "ANN LEE" -> "Ann Lee"
        seen.add(name.casefold())
        names.append(name)
    people = [name for name in names if not _ROLE_NOUNS.intersection(name.casefold().split())]
    return people or names


def look_like_people(names: list[str]) -> bool:
    """Names of people: two to four words, each capitalized ("Ann Lee", "Ann van Lee").

    Asked of a byline that would replace a declared author that is the site's own name,
    where a wrong pick ("Folgen", "View all posts") costs a right one.
    """
    if not names:
        return False
    for name in names:
        words = name.split()
        if not 2 <= len(words) <= 4 or not words[0][:1].isupper() or not words[-1][:1].isupper():
            return False
    return True
