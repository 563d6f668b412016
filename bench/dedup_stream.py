"""Labelled streams for the dedup benchmark, built from real article bodies.

``dedup_stream`` turns the corpus' article bodies (WCXB-dev article pages, fundus
fixtures) into an arrival-ordered stream with gold duplicate groups: originals (some with
their outlet's footer left by extraction), syndicated copies at other outlets with other
boilerplate, trimmed endings, inserted promos and light wording edits, same-outlet AMP
copies, re-fetched versions, and hard negatives that must stay apart (short briefs under
one outlet's long footer, a daily report template filled with different facts, a footer
shared by a network of outlets). ``story_stream`` is the sample outlets' articles (several
distinct articles per event) among corpus articles as distractors, with gold events.
``hard_stream`` has two parts, ``tune`` and ``held-out``, on disjoint halves of the corpus
with their own seeds, notes and templates: same-outlet reposts, briefs under one outlet's
long footer and daily templated reports over 40 days, among originals and their copies,
and long reads with their print copies (the outlet's footer past the fingerprinted words).
Everything is seeded: the same corpus gives the same stream.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.samples.content import load_outlets
from newsflow.settings import PROJECT_ROOT

CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Base:
    key: str
    title: str
    paragraphs: list[str]
    url: str = ""
    html_path: Path | None = None


@dataclass
class Item:
    """One stream line plus its gold labels (``group``: duplicate group, ``event``)."""

    id: str
    url: str
    outlet: str
    title: str
    text: str
    published_at: str
    group: str
    event: str = ""
    kind: str = "original"
    labels: dict[str, Any] = field(default_factory=dict)

    def as_input(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "outlet": self.outlet,
            "title": self.title,
            "text": self.text,
            "published_at": self.published_at,
        }


def _words(paragraphs: list[str]) -> int:
    return sum(len(p.split()) for p in paragraphs)


def wcxb_articles(corpus: Path = CORPUS) -> list[Base]:
    """WCXB-dev article pages with a main content, split into paragraphs."""
    root = corpus / "wcxb-dev"
    meta = json.loads((root / "metadata.json").read_text(encoding="utf-8"))["files"]
    out: list[Base] = []
    for key, info in sorted(meta.items()):
        if info["page_type"] != "article":
            continue
        gt_file = root / "ground-truth" / f"{key}.json"
        if not gt_file.exists():
            continue
        gt = json.loads(gt_file.read_text(encoding="utf-8"))
        truth = gt.get("ground_truth") or {}
        body = truth.get("main_content")
        if not body:
            continue
        paragraphs = [" ".join(p.split()) for p in body.split("\n") if p.strip()]
        if _words(paragraphs) < 120:
            continue
        out.append(
            Base(
                f"wcxb-{key}",
                truth.get("title") or paragraphs[0][:80],
                paragraphs,
                gt.get("url", ""),
                root / "html" / f"{key}.html.gz",
            )
        )
    return out


def fundus_articles(corpus: Path = CORPUS) -> list[Base]:
    """Fundus fixture bodies (summary and section paragraphs), all languages."""
    out: list[Base] = []
    for expected in sorted((corpus / "fundus-fixtures" / "test_data").glob("*/*.json")):
        data = json.loads(expected.read_text(encoding="utf-8"))
        for version, fields in data.items():
            body = fields.get("body") or {}
            paragraphs = list(body.get("summary") or [])
            for section in body.get("sections") or []:
                paragraphs.extend(section.get("headline") or [])
                paragraphs.extend(section.get("paragraphs") or [])
            paragraphs = [" ".join(p.split()) for p in paragraphs if p.strip()]
            if _words(paragraphs) < 120:
                continue
            title = fields.get("title") or paragraphs[0][:80]
            key = f"fundus-{expected.parent.name}-{expected.stem}-{version}"
            out.append(Base(key, str(title), paragraphs))
    return out


def _shingle_set(base: Base) -> set[str]:
    words = " ".join(base.paragraphs).lower().split()
    return {" ".join(words[i : i + 4]) for i in range(max(1, len(words) - 3))}


def distinct(bases: list[Base]) -> list[Base]:
    """Drop bodies the corpus holds twice (one page under two parser versions, one page
    crawled twice): they would be unlabelled duplicates. Checked by the true Jaccard of
    word 4-shingles (>= 0.2) against every body with the same first letter (or fundus file)."""
    groups: dict[str, list[tuple[Base, set[str]]]] = {}
    out = []
    for base in bases:
        shingles = _shingle_set(base)
        first = " ".join(base.paragraphs)[:1].lower()
        family = base.key.rsplit("-", 1)[0] if base.key.startswith("fundus") else first
        peers = groups.setdefault(family, [])
        if any(len(shingles & s) / len(shingles | s) >= 0.2 for _, s in peers):
            continue
        peers.append((base, shingles))
        out.append(base)
    return out


# --- perturbations ------------------------------------------------------------------------

_FILLER = [
    "our",
    "journalism",
    "relies",
    "on",
    "readers",
    "like",
    "you",
    "and",
    "every",
    "contribution",
    "big",
    "or",
    "small",
    "helps",
    "keep",
    "independent",
    "reporting",
    "free",
    "for",
    "everyone",
    "to",
    "read",
    "wherever",
    "they",
    "live",
    "support",
    "us",
    "today",
    "subscribe",
    "to",
    "the",
    "newsletter",
    "for",
    "the",
    "best",
    "stories",
    "delivered",
    "to",
    "your",
    "inbox",
    "each",
    "morning",
    "follow",
    "us",
    "on",
    "social",
    "media",
    "for",
    "breaking",
    "updates",
    "and",
    "join",
    "the",
    "conversation",
    "in",
    "the",
    "comments",
    "below",
    "where",
    "our",
    "community",
    "guidelines",
    "apply",
    "at",
    "all",
    "times",
    "copyright",
    "all",
    "rights",
    "reserved",
    "reproduction",
    "without",
    "permission",
    "is",
    "prohibited",
    "contact",
    "the",
    "newsroom",
    "with",
    "tips",
    "corrections",
    "or",
    "complaints",
    "using",
    "the",
    "form",
    "on",
    "our",
    "website",
]


def _footer(rng: random.Random, name: str, words: int) -> list[str]:
    lines: list[str] = []
    total = 0
    while total < words:
        n = rng.randint(12, 30)
        start = rng.randrange(len(_FILLER))
        chunk = [_FILLER[(start + j) % len(_FILLER)] for j in range(n)]
        lines.append(f"{name.title()}: " + " ".join(chunk).capitalize() + ".")
        total += n
    return lines


_SWAPS = {
    "said": "stated",
    "says": "states",
    "big": "large",
    "about": "around",
    "also": "as well",
    "but": "however",
    "many": "numerous",
    "show": "indicate",
    "help": "assist",
    "start": "begin",
    "people": "residents",
    "buy": "purchase",
}


def _light_edits(rng: random.Random, paragraphs: list[str], rate: float) -> list[str]:
    out = []
    for p in paragraphs:
        words = p.split()
        for i, w in enumerate(words):
            if rng.random() < rate:
                bare = w.lower().strip(".,;:")
                words[i] = _SWAPS.get(bare, "" if rng.random() < 0.5 else w + "s")
        out.append(" ".join(x for x in words if x))
    return out


def _trim(rng: random.Random, paragraphs: list[str]) -> list[str]:
    total = _words(paragraphs)
    keep_words = total * rng.uniform(0.55, 0.85)
    out: list[str] = []
    count = 0
    for p in paragraphs:
        if count >= keep_words and out:
            break
        out.append(p)
        count += len(p.split())
    return out


def _edit_headline(rng: random.Random, title: str) -> str:
    prefix = rng.choice(["UPDATED: ", "Watch: ", "Explainer: ", "", "Analysis - "])
    return prefix + title.rstrip(".") + rng.choice(["", " - report", " | Live"])


@dataclass
class Outlet:
    name: str
    footer: list[str]
    promos: list[str]
    leaves_footer: bool


def dedup_stream(seed: int = 7, corpus: Path = CORPUS) -> tuple[list[Item], list[Base]]:
    """The labelled near-duplicate stream (arrival order) and the bases it used."""
    rng = random.Random(seed)
    bases = distinct(wcxb_articles(corpus) + fundus_articles(corpus))
    rng.shuffle(bases)
    briefs_pool, bases = bases[:60], bases[60:]
    outlets = [
        Outlet(
            f"outlet-{i:02d}",
            _footer(rng, f"outlet {i:02d}", rng.choice([40, 120, 250])),
            [f"READ MORE: {b.title}" for b in rng.sample(bases, 6)],
            leaves_footer=rng.random() < 0.7,
        )
        for i in range(24)
    ]
    network = _footer(rng, "network media group", 160)
    for outlet in outlets[:4]:  # four sites on one CMS: the same footer, different articles
        outlet.footer = network
        outlet.leaves_footer = True
    items: list[tuple[float, Item]] = []
    counter = 0

    def emit(at: float, **kw: Any) -> Item:
        nonlocal counter
        counter += 1
        kw.setdefault("id", f"a{counter:06d}")
        kw.setdefault("url", f"https://{kw['outlet']}.example/{kw['id']}")
        kw["published_at"] = (T0 + timedelta(seconds=at)).isoformat()
        item = Item(**kw)
        items.append((at, item))
        return item

    def body(outlet: Outlet, paragraphs: list[str], promos: bool = False) -> str:
        lines = list(paragraphs)
        if promos and len(lines) > 2:
            lines.insert(len(lines) // 2, rng.choice(outlet.promos))
            lines.insert(1, rng.choice(outlet.promos))
        if outlet.leaves_footer:
            lines += outlet.footer
        return "\n".join(lines)

    for i, base in enumerate(bases):
        at = i * 900.0
        home = rng.choice(outlets)
        original = emit(
            at,
            outlet=home.name,
            title=base.title,
            text=body(home, base.paragraphs),
            group=base.key,
            kind="original",
        )
        if rng.random() < 0.1:  # a re-fetch after an edit: same id, new version
            edited = [*base.paragraphs[:-1], base.paragraphs[-1] + " (This story was updated.)"]
            emit(
                at + rng.uniform(600, 20000),
                id=original.id,
                url=original.url,
                outlet=home.name,
                title=base.title,
                text=body(home, edited),
                group=base.key,
                kind="version",
            )
        if rng.random() < 0.05:  # AMP copy at the same outlet, another URL
            emit(
                at + rng.uniform(10, 600),
                outlet=home.name,
                title=base.title,
                text=body(home, base.paragraphs),
                group=base.key,
                kind="amp",
            )
        if rng.random() < 0.45:
            for other in rng.sample([o for o in outlets if o is not home], rng.randint(1, 4)):
                paragraphs = list(base.paragraphs)
                tweaks = []
                if rng.random() < 0.4:
                    paragraphs = _trim(rng, paragraphs)
                    tweaks.append("trim")
                if rng.random() < 0.5:
                    paragraphs = _light_edits(rng, paragraphs, rng.uniform(0.01, 0.04))
                    tweaks.append("edits")
                promos = rng.random() < 0.4
                if promos:
                    tweaks.append("promos")
                title = _edit_headline(rng, base.title) if rng.random() < 0.5 else base.title
                emit(
                    at + rng.uniform(30, 48 * 3600),
                    outlet=other.name,
                    title=title,
                    text=body(other, paragraphs, promos),
                    group=base.key,
                    kind="copy+" + "+".join(tweaks),
                )
    span = len(bases) * 900.0
    # Hard negative: short briefs under one outlet's long footer.
    long_footer = [o for o in outlets[4:] if len(" ".join(o.footer).split()) > 200]
    for j, base in enumerate(briefs_pool):
        outlet = long_footer[j % len(long_footer)]
        words = " ".join(base.paragraphs).split()[: rng.randint(35, 70)]
        emit(
            rng.uniform(0, span),
            outlet=outlet.name,
            title=base.title,
            text="\n".join([" ".join(words), *outlet.footer]),
            group=f"brief-{base.key}",
            kind="brief",
        )
    # Hard negative: a daily report template filled with different facts.
    for day in range(45):
        emit(
            day * 86400.0 + 3600 * 17,
            outlet="markets-desk",
            title=f"Market close, day {day}",
            text=_market_report(rng),
            group=f"report-{day}",
            kind="report",
        )
        emit(
            day * 86400.0 + 3600 * 6,
            outlet="weather-desk",
            title=f"Weather, day {day}",
            text=_weather_report(rng),
            group=f"weather-{day}",
            kind="report",
        )
    items.sort(key=lambda pair: pair[0])
    return [item for _, item in items], bases


_COMPANIES = [
    "Aldermoor",
    "Brightwater",
    "Castlegate",
    "Dunmore",
    "Everleigh",
    "Fernhill",
    "Glenrock",
    "Harrowden",
    "Ironbridge",
    "Juniper",
    "Kingsmead",
    "Larchfield",
    "Marlowe",
    "Northcote",
]
_SECTORS = ["miners", "banks", "housebuilders", "retailers", "utilities", "drugmakers"]
_REGIONS = ["north-west", "south-east", "Midlands", "Scotland", "Wales", "east coast"]


def _market_report(rng: random.Random) -> str:
    up, down = rng.sample(_COMPANIES, 2)
    pick = rng.choice
    why = pick(["cut its guidance", "lost a contract", "missed forecasts", "announced job cuts"])
    news = pick(["inflation data", "a speech by the governor", "US jobs figures", "retail sales"])
    return "\n".join(
        [
            f"The FTSE 100 closed {pick(['up', 'down'])} {rng.uniform(0.1, 2):.1f}% at "
            f"{rng.randint(7000, 8500)} on the day, with {pick(_SECTORS)} leading the moves "
            f"after {pick(['strong', 'weak', 'mixed'])} results from {up}.",
            f"{up} rose {rng.uniform(1, 9):.1f}% to {rng.randint(100, 900)}p while {down} fell "
            f"{rng.uniform(1, 9):.1f}% after it {why}.",
            f"Sterling traded at {rng.uniform(1.1, 1.4):.4f} against the dollar and "
            f"{rng.uniform(1.1, 1.2):.4f} against the euro; Brent crude was "
            f"{pick(['higher', 'lower', 'flat'])} at ${rng.uniform(60, 95):.2f} a barrel.",
            f"Gilt yields {pick(['rose', 'fell', 'edged up', 'slipped'])} to "
            f"{rng.uniform(3, 5):.2f}% as traders weighed {news}.",
        ]
    )


def _weather_report(rng: random.Random) -> str:
    region, other = rng.sample(_REGIONS, 2)
    pick = rng.choice
    sky = pick(["showers", "sunny spells", "drizzle", "fog patches"])
    night = pick(["frost in rural areas", "clear skies", "rain spreading east", "mist forming"])
    return "\n".join(
        [
            f"Today will be {pick(['cloudy', 'bright', 'wet', 'windy', 'cold'])} in the "
            f"{region} with highs of {rng.randint(2, 22)}C and {sky} by the afternoon.",
            f"Winds from the {pick(['north', 'south', 'west', 'east'])} will reach "
            f"{rng.randint(10, 60)}mph on exposed coasts of the {other}, easing after "
            f"{rng.randint(1, 11)}pm.",
            f"Tonight lows of {rng.randint(-4, 10)}C, with {night}; tomorrow "
            f"{pick(['brighter', 'wetter', 'milder', 'colder'])} with a "
            f"{rng.randint(10, 90)}% chance of rain.",
        ]
    )


# --- story clustering stream ------------------------------------------------------------

SAMPLE_EVENTS = {
    "kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion": "phillips-gaza-vote",
    "northern-ledger/jess-phillips-defies-pressure-to-quit-after-gaza-vote": ("phillips-gaza-vote"),
    "harbour-gazette/birmingham-mp-refuses-to-step-down-over-gaza-vote": "phillips-gaza-vote",
    "daily-klaxon/jess-phillips-thousands-of-emails-gaza-vote": "phillips-gaza-vote",
    "backbench-notes/what-the-gaza-ceasefire-rebellion-tells-us-about-the-whip": (
        "phillips-gaza-vote"
    ),
    "backbench-notes/a-morning-at-a-yardley-constituency-surgery-after-the-gaza-vote": (
        "phillips-gaza-vote"
    ),
    "northern-ledger/storm-imogen-gusts-rail-disruption-north": "storm-imogen",
    "kestrel-wire/storm-imogen-power-cuts-rail-cancellations": "storm-imogen",
    "kestrel-wire/copper-climbs-to-six-month-high-on-smelter-outages": "copper-high",
    "northern-ledger/copper-price-six-month-high-smelter-shutdowns": "copper-high",
}


def story_stream(seed: int = 11, distractors: int = 300, corpus: Path = CORPUS) -> list[Item]:
    """Sample outlets' articles among corpus distractors over the same days; gold events."""
    rng = random.Random(seed)
    items: list[Item] = []
    for outlet in load_outlets(include_upcoming=True).values():
        for article in outlet.articles:
            key = f"{outlet.slug}/{article.slug}"
            lines = [b.text for b in article.blocks]
            original = article.syndicated_from or key
            items.append(
                Item(
                    id=key,
                    url=f"https://{outlet.slug}.example/{article.path}",
                    outlet=outlet.slug,
                    title=article.headline,
                    text="\n".join(lines),
                    published_at=article.published.isoformat(),
                    group=original,
                    event=SAMPLE_EVENTS.get(key, SAMPLE_EVENTS.get(original, key)),
                    kind="sample",
                )
            )
    bases = distinct(wcxb_articles(corpus) + fundus_articles(corpus))
    start = datetime(2026, 11, 10, tzinfo=UTC)
    for base in rng.sample(bases, min(distractors, len(bases))):
        at = start + timedelta(seconds=rng.uniform(0, 11 * 86400))
        items.append(
            Item(
                id=base.key,
                url=base.url or f"https://corpus.example/{base.key}",
                outlet=f"corpus-{rng.randrange(30)}",
                title=base.title,
                text="\n".join(base.paragraphs),
                published_at=at.isoformat(),
                group=base.key,
                event=base.key,
                kind="distractor",
            )
        )
    items.sort(key=lambda it: (it.published_at, it.id))
    return items


# --- hard cases: reposts, briefs under one footer, templated daily reports ---------------

PARTS = ("tune", "held-out")


@dataclass(frozen=True)
class _Part:
    """What one part of the hard-case stream is made of. The parts share no corpus body,
    no template, no update note or added sentence, and no seed: rules are tuned on
    ``tune`` only and ``held-out`` shows whether they hold on texts they never saw."""

    seed: int
    notes: tuple[str, ...]  # what an outlet puts above a reposted article
    added: tuple[str, ...]  # a sentence an update adds
    reports: tuple[tuple[str, str], ...]  # (outlet, template) of the daily reports


_PARTS = {
    "tune": _Part(
        seed=101,
        notes=("Updated with new details.", "This article has been updated.", "UPDATE 1-"),
        added=(
            "Officials did not immediately respond to a request for comment on Monday.",
            "The company said it would publish a fuller statement later in the week.",
            "Police said inquiries were continuing and appealed for witnesses to come forward.",
        ),
        reports=(("markets-desk", "markets"), ("weather-desk", "weather")),
    ),
    "held-out": _Part(
        seed=202,
        notes=("Editor's note: this story was revised.", "UPDATE 2-", "Corrected version."),
        added=(
            "A spokeswoman for the council declined to say when the review would conclude.",
            "Further details are expected to be released at a briefing on Thursday morning.",
            "Representatives for the group did not answer emails sent over the weekend.",
        ),
        reports=(("travel-desk", "travel"), ("energy-desk", "energy")),
    ),
}


def _part_of(key: str) -> str:
    """Which part a corpus body belongs to: a stable half of the corpus each."""
    return PARTS[hashlib.blake2b(key.encode("utf-8"), digest_size=1).digest()[0] & 1]


def hard_stream(part: str, corpus: Path = CORPUS) -> list[Item]:
    """Reposts by the same outlet, syndicated copies, briefs under one outlet's long footer
    and two outlets' daily templated reports over 40 days, with gold groups and events.

    ``group`` is the duplicate group and ``event`` the story; a repost and a copy share
    their original's. ``labels["day"]`` numbers a report's day.
    """
    spec = _PARTS[part]
    rng = random.Random(spec.seed)
    bases = distinct(wcxb_articles(corpus) + fundus_articles(corpus))
    bases = [b for b in bases if _part_of(b.key) == part]
    rng.shuffle(bases)
    briefs_pool, bases, unused = bases[:28], bases[28:260], bases[260:]
    outlets = [
        Outlet(
            f"{part}-outlet-{i:02d}",
            _footer(rng, f"{part} outlet {i:02d}", rng.choice([40, 120, 250])),
            [f"READ MORE: {b.title}" for b in rng.sample(bases, 6)],
            leaves_footer=rng.random() < 0.8,
        )
        for i in range(16)
    ]
    network = _footer(rng, f"{part} network group", 160)
    for outlet in outlets[:3]:
        outlet.footer, outlet.leaves_footer = network, True
    brief_desk = outlets[15]
    brief_desk.footer, brief_desk.leaves_footer = _footer(rng, f"{part} editorial", 260), True
    days = 40
    span = days * 86400.0
    items: list[tuple[float, Item]] = []
    counter = 0

    def emit(at: float, **kw: Any) -> None:
        nonlocal counter
        counter += 1
        kw.setdefault("id", f"{part}-{counter:06d}")
        kw.setdefault("url", f"https://{kw['outlet']}.example/{kw['id']}")
        kw["published_at"] = (T0 + timedelta(seconds=at)).isoformat()
        kw.setdefault("event", kw["group"])
        items.append((at, Item(**kw)))

    def body(outlet: Outlet, paragraphs: list[str], promos: bool = False) -> str:
        lines = list(paragraphs)
        if promos and len(lines) > 2:
            lines.insert(len(lines) // 2, rng.choice(outlet.promos))
        return "\n".join(lines + (outlet.footer if outlet.leaves_footer else []))

    for i, base in enumerate(bases):
        at = i * span / len(bases)
        home = rng.choice(outlets)
        promos = rng.random() < 0.3
        emit(
            at,
            outlet=home.name,
            title=base.title,
            text=body(home, base.paragraphs, promos),
            group=base.key,
            kind="original",
        )
        if rng.random() < 0.35:
            for variant in rng.sample(_REPOSTS, rng.randint(1, 2)):
                title, paragraphs, bare = _repost(rng, spec, variant, base)
                text = "\n".join(paragraphs) if bare else body(home, paragraphs, promos)
                emit(
                    at + rng.uniform(300, 12 * 3600),
                    outlet=home.name,
                    title=title,
                    text=text,
                    group=base.key,
                    kind=f"repost+{variant}",
                )
        if rng.random() < 0.4:
            for other in rng.sample([o for o in outlets if o is not home], rng.randint(1, 3)):
                paragraphs = list(base.paragraphs)
                if rng.random() < 0.4:
                    paragraphs = _trim(rng, paragraphs)
                if rng.random() < 0.5:
                    paragraphs = _light_edits(rng, paragraphs, rng.uniform(0.01, 0.03))
                title = _edit_headline(rng, base.title) if rng.random() < 0.5 else base.title
                emit(
                    at + rng.uniform(60, 36 * 3600),
                    outlet=other.name,
                    title=title,
                    text=body(other, paragraphs, rng.random() < 0.4),
                    group=base.key,
                    kind="copy",
                )
    for j, base in enumerate(briefs_pool):  # a fortnight of briefs, a few a day
        words = " ".join(base.paragraphs).split()[: rng.randint(30, 60)]
        emit(
            j * 14 * 86400.0 / len(briefs_pool) + rng.uniform(0, 3600),
            outlet=brief_desk.name,
            title=base.title,
            text="\n".join([" ".join(words), *brief_desk.footer]),
            group=f"brief-{base.key}",
            kind="brief",
        )
    for desk, template in spec.reports:
        hour = rng.uniform(5, 19) * 3600
        for day in range(days):
            title, text = _TEMPLATES[template](rng, day)
            emit(
                day * 86400.0 + hour + rng.uniform(0, 1800),
                outlet=desk,
                title=title,
                text=text,
                group=f"{template}-{day}",
                kind="report",
                labels={"day": day},
            )
    # Long reads (added later, with their own seed, so that the rest stays as it was): the
    # outlet's footer falls past the fingerprinted words of an article, inside its print copy.
    long_rng = random.Random(spec.seed + 1)
    long_reads = [b for b in unused if _words(b.paragraphs) > 1100][:24]
    longform_desks = [
        Outlet(f"{part}-longform-{i}", _footer(long_rng, f"{part} longform {i}", 120), [], True)
        for i in range(3)
    ]
    for j, base in enumerate(long_reads):
        longform = longform_desks[j % len(longform_desks)]
        at = j * span / len(long_reads) + long_rng.uniform(0, 3600)
        emit(
            at,
            outlet=longform.name,
            title=base.title,
            text=body(longform, base.paragraphs),
            group=base.key,
            kind="original",
        )
        keep = max(2, round(len(base.paragraphs) * long_rng.uniform(0.6, 0.9)))
        emit(
            at + long_rng.uniform(600, 6 * 3600),
            outlet=longform.name,
            title=base.title,
            text=body(longform, base.paragraphs[:keep]),
            group=base.key,
            kind="repost+long-print",
        )
    items.sort(key=lambda pair: (pair[0], pair[1].id))
    return [item for _, item in items]


_REPOSTS = ("note", "inline", "headline", "amp", "update-edits", "print")


def _repost(
    rng: random.Random, spec: _Part, variant: str, base: Base
) -> tuple[str, list[str], bool]:
    """(title, paragraphs, without the outlet's footer) of the same outlet's repost."""
    paragraphs = list(base.paragraphs)
    note, added = rng.choice(spec.notes), rng.choice(spec.added)
    if variant == "note":  # a note line above, a sentence below
        return base.title, [note, *paragraphs, added], False
    if variant == "inline":  # the note starts the first paragraph, the sentence ends the last
        paragraphs[0] = f"{note} {paragraphs[0]}"
        paragraphs[-1] = f"{paragraphs[-1]} {added}"
        return base.title, paragraphs, False
    if variant == "headline":  # a new headline and slug, the text as it was plus a line
        return _edit_headline(rng, base.title), [*paragraphs, added], False
    if variant == "amp":  # the mobile page: no footer, no promos
        return base.title, paragraphs, True
    if variant == "update-edits":  # "UPDATE 1-" with a few words changed and one added line
        edited = _light_edits(rng, paragraphs, 0.015)
        return f"{note} {base.title}", [f"{note} {edited[0]}", *edited[1:], added], False
    # the print edition: the last paragraphs cut
    keep = max(2, round(len(paragraphs) * rng.uniform(0.75, 0.9)))
    return base.title, paragraphs[:keep], False


def _markets(rng: random.Random, day: int) -> tuple[str, str]:
    return "Markets report", f"Markets report for day {day + 1}.\n" + _market_report(rng)


def _weather(rng: random.Random, day: int) -> tuple[str, str]:
    date = (T0 + timedelta(days=day)).strftime("%A %d %B")
    return f"Weather for {date}", _weather_report(rng)


_ROADS = ["M62", "A1(M)", "M6", "A14", "M25", "A303", "M4", "A66", "M8", "A9"]
_LINES = ["Northern", "TransPennine", "Avanti", "ScotRail", "Southern", "Greater Anglia"]


def _travel(rng: random.Random, day: int) -> tuple[str, str]:
    road, other = rng.sample(_ROADS, 2)
    line = rng.choice(_LINES)
    date = (T0 + timedelta(days=day)).strftime("%d %B")
    return f"Travel update, {date}", "\n".join(
        [
            f"Drivers on the {road} face delays of up to {rng.randint(10, 90)} minutes between "
            f"junctions {rng.randint(1, 20)} and {rng.randint(21, 40)} after "
            f"{rng.choice(['a crash', 'a broken-down lorry', 'roadworks', 'flooding'])}.",
            f"The {other} is closed {rng.choice(['northbound', 'southbound', 'eastbound'])} "
            f"until {rng.randint(1, 11)}pm; diversions add about {rng.randint(5, 40)} minutes.",
            f"{line} services are running with {rng.randint(2, 30)} cancellations and an "
            f"average delay of {rng.randint(3, 25)} minutes because of "
            f"{rng.choice(['a signal fault', 'staff shortages', 'a points failure'])}.",
        ]
    )


def _energy(rng: random.Random, day: int) -> tuple[str, str]:
    wind = rng.uniform(5, 55)
    gas = rng.uniform(15, 50)
    return "Energy today", "\n".join(
        [
            f"Wind turbines supplied {wind:.1f}% of the grid's power on day {day + 1}, gas "
            f"{gas:.1f}% and nuclear {rng.uniform(8, 18):.1f}%, with demand peaking at "
            f"{rng.uniform(28, 45):.1f}GW at {rng.randint(4, 7)}pm.",
            f"The day-ahead wholesale price settled at £{rng.uniform(40, 140):.2f} per "
            f"megawatt-hour, {rng.choice(['up', 'down'])} {rng.uniform(1, 20):.1f}% on the day.",
            f"Interconnectors {rng.choice(['imported', 'exported'])} "
            f"{rng.uniform(1, 7):.1f}GW, and carbon intensity averaged "
            f"{rng.randint(60, 260)}g of CO2 per kilowatt-hour.",
        ]
    )


_TEMPLATES = {"markets": _markets, "weather": _weather, "travel": _travel, "energy": _energy}
