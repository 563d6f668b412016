"""Story clustering: distinct articles about one event share a story, in any arrival order;
others do not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from devstack.samples.content import Article, load_outlets
from enrich.dedup import (
    ClusterConfig,
    DedupConfig,
    DedupDecision,
    DedupEngine,
    DedupInput,
    StoryClusterer,
)

PHILLIPS = {
    "kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion",
    "northern-ledger/jess-phillips-defies-pressure-to-quit-after-gaza-vote",
    "harbour-gazette/birmingham-mp-refuses-to-step-down-over-gaza-vote",
    "daily-klaxon/jess-phillips-thousands-of-emails-gaza-vote",
    "backbench-notes/what-the-gaza-ceasefire-rebellion-tells-us-about-the-whip",
    "backbench-notes/a-morning-at-a-yardley-constituency-surgery-after-the-gaza-vote",
}
STORM = {
    "northern-ledger/storm-imogen-gusts-rail-disruption-north",
    "kestrel-wire/storm-imogen-power-cuts-rail-cancellations",
}
COPPER = {
    "kestrel-wire/copper-climbs-to-six-month-high-on-smelter-outages",
    "northern-ledger/copper-price-six-month-high-smelter-shutdowns",
}


def _articles() -> list[Article]:
    every = [a for o in load_outlets(include_upcoming=True).values() for a in o.articles]
    return sorted(every, key=lambda a: (a.published, a.outlet, a.slug))


def _input(
    article: Article, shift: timedelta = timedelta(0), *, standfirst: bool = False
) -> DedupInput:
    """As the pipeline sees it; ``standfirst``: the extracted text starts with it, as on pages
    that print one above the body."""
    lines = [b.text for b in article.blocks]
    if standfirst and article.standfirst:
        lines.insert(0, article.standfirst)
    return DedupInput(
        id=f"{article.outlet}/{article.slug}",
        url=f"https://{article.outlet}.example/{article.slug}",
        outlet=article.outlet,
        title=article.headline,
        text="\n".join(lines),
        published_at=article.published + shift,
    )


def _orders() -> dict[str, list[Article]]:
    """Registry order (outlet by outlet, as a crawl produces), its reverse, publication
    order, its reverse, and 50 seeded shuffles."""
    outlets = load_outlets(include_upcoming=True)
    registry = ["northern-ledger", "harbour-gazette", "kestrel-wire", "daily-klaxon"]
    registry.append("backbench-notes")
    crawl = [a for name in registry for a in outlets[name].articles]
    by_time = _articles()
    orders = {"registry": crawl, "registry-reversed": crawl[::-1]}
    orders |= {"published": by_time, "published-reversed": by_time[::-1]}
    for seed in range(50):
        shuffled = list(by_time)
        random.Random(seed).shuffle(shuffled)
        orders[f"shuffle-{seed}"] = shuffled
    return orders


@pytest.mark.parametrize("standfirst", [False, True], ids=["body", "standfirst+body"])
def test_events_are_one_story_each_in_every_arrival_order(standfirst: bool) -> None:
    """Every sample article, the held-back ones too: each event ends as exactly one story
    (merges resolved) holding exactly its articles, whatever the order of arrival."""
    failures = []
    for name, order in _orders().items():
        engine = DedupEngine()
        decisions: dict[str, DedupDecision] = {}
        for article in order:
            decision = engine.observe(_input(article, standfirst=standfirst))
            decisions[decision.id] = decision
        final = {key: engine.clusterer.resolve(d.story_id) for key, d in decisions.items()}
        for event in (PHILLIPS, STORM, COPPER):
            stories = {final[key] for key in event}
            members = {key for key, story in final.items() if story in stories}
            if len(stories) != 1 or members != event:
                failures.append((name, sorted(event)[0], len(stories), sorted(members - event)))
        # The survivor is live and counts every article of its event.
        story = engine.clusterer.stories[final[next(iter(PHILLIPS))]]
        assert story.articles == len(PHILLIPS), name
        assert set(story.outlets) == {key.split("/")[0] for key in PHILLIPS}, name
    assert not failures, failures


def _words(seed: str, count: int) -> list[str]:
    """Distinct pseudo-words per seed (vocabulary no other seed shares)."""
    rng = random.Random(seed)
    return [
        "".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou") for _ in range(4))
        for _ in range(count)
    ]


LEFT, RIGHT = _words("left", 40), _words("right", 40)


def test_an_article_that_bridges_two_stories_merges_them_into_the_older() -> None:
    """Two stories with nothing in common, then an article matching both: one story."""
    clusterer = StoryClusterer()
    t = 1_800_000_000
    a = clusterer.assign("a", " ".join(LEFT[:6]), " ".join(LEFT), "o1", t)
    b = clusterer.assign("b", " ".join(RIGHT[:6]), " ".join(RIGHT), "o2", t + 60)
    assert a.is_new and b.is_new
    both = " ".join(w for pair in zip(LEFT, RIGHT, strict=True) for w in pair)
    c = clusterer.assign("c", " ".join(LEFT[:3] + RIGHT[:3]), both, "o3", t + 120)
    assert (c.story.story_id, c.is_new, c.merged_from) == ("a", False, ("b",))
    assert set(clusterer.stories) == {"a"} and clusterer.resolve("b") == "a"
    assert (c.story.articles, c.story.outlets, c.story.first_seen) == (3, ["o1", "o2", "o3"], t)
    assert not any("b" in posting for posting in clusterer.postings.values())
    # A later copy of the absorbed story's article lands in the survivor.
    copy = clusterer.add_copy("b", "o4", t + 180)
    assert copy is c.story and copy.articles == 4
    # The alias outlives the clustering window (the article window still names "b")…
    assert clusterer.evict(t + 10**6, alias_cutoff=t) == 1
    assert clusterer.resolve("b") == "a"
    # …and leaves with the article window.
    clusterer.evict(t + 10**6, alias_cutoff=t + 121)
    assert clusterer.resolve("b") == "b"
    # Dumped and loaded, merges included.
    assert StoryClusterer.load(clusterer.dump()).dump() == clusterer.dump()


def test_a_merge_is_reported_and_copies_of_absorbed_articles_follow() -> None:
    """Through the engine: the decision names the absorbed story; copies resolve to it."""
    engine = DedupEngine()
    t0 = _articles()[0].published

    def item(key: str, words: list[str], minutes: int) -> DedupInput:
        text = "\n".join(" ".join(words[i : i + 10]) + "." for i in range(0, len(words), 10))
        return DedupInput(
            id=key,
            url=f"https://x.example/{key}",
            outlet=key,
            title=" ".join(words[:6]),
            text=text,
            published_at=t0 + timedelta(minutes=minutes),
        )

    first = engine.observe(item("left", LEFT, 0))
    second = engine.observe(item("right", RIGHT, 1))
    both = [w for pair in zip(LEFT, RIGHT, strict=True) for w in pair]
    bridge = engine.observe(item("bridge", both, 2))
    assert first.story_id == "left" and second.story_id == "right"
    assert bridge.story is not None and bridge.story.merged_from == ["right"]
    assert bridge.story_id == "left" and bridge.story.articles == 3
    copy = engine.observe(item("right", RIGHT, 3).model_copy(update={"id": "copy"}))
    assert (copy.duplicate_of, copy.story_id) == ("right", "left")
    assert copy.story is not None and copy.story.merged_from == [] and copy.story.articles == 4


def _merge_item(key: str, words: list[str], when: datetime) -> DedupInput:
    text = "\n".join(" ".join(words[i : i + 10]) + "." for i in range(0, len(words), 10))
    return DedupInput(
        id=key,
        url=f"https://x.example/{key}",
        outlet=key,
        title=" ".join(words[:6]),
        text=text,
        published_at=when,
    )


def test_a_merge_alias_lasts_as_long_as_an_article_may_name_the_absorbed_story() -> None:
    """A bridging article with an old date (a page whose date is weeks behind) merged two
    stories. The alias is timed when the merge happened, on the arrival clock, not by that
    date: it outlives every article that names the absorbed story, so a late copy of one
    still lands in the survivor (whose document exists), never in the absorbed story."""
    day = timedelta(days=1)
    engine = DedupEngine(DedupConfig(window_seconds=10 * 86400, segment_rows=8, evict_every=1))
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    both = [w for pair in zip(LEFT, RIGHT, strict=True) for w in pair]
    engine.observe(_merge_item("left", LEFT, t0))
    engine.observe(_merge_item("right", RIGHT, t0 + timedelta(minutes=1)))
    bridge = engine.observe(_merge_item("bridge", both, t0 - 8 * day))
    assert bridge.story is not None and bridge.story.merged_from == ["right"]
    for i, days in enumerate((3, 6, 9)):  # the clock moves on; eviction runs every time
        engine.observe(_merge_item(f"filler{i}", _words(f"filler{i}", 40), t0 + days * day))
    assert engine.clusterer.resolve("right") == "left"
    late = engine.observe(_merge_item("right", RIGHT, t0 + 9 * day).model_copy(update={"id": "c"}))
    assert (late.duplicate_of, late.story_id) == ("right", "left")
    # Once "right" (the last article naming the absorbed story) has left the article window,
    # so has the alias. Copies decided since name the survivor: "c" still leads a copy there.
    later = t0 + 10 * day + timedelta(minutes=2)
    engine.observe(_merge_item("filler", _words("filler", 40), later))
    assert engine.clusterer.resolve("right") == "right"
    again = engine.observe(_merge_item("right", RIGHT, later).model_copy(update={"id": "d"}))
    assert (again.duplicate_of, again.story_id) == ("right", "left")


def test_a_merge_remembers_the_article_that_made_it() -> None:
    clusterer = StoryClusterer()
    t = 1_800_000_000
    clusterer.assign("a", " ".join(LEFT[:6]), " ".join(LEFT), "o1", t)
    clusterer.assign("b", " ".join(RIGHT[:6]), " ".join(RIGHT), "o2", t + 60)
    both = " ".join(w for pair in zip(LEFT, RIGHT, strict=True) for w in pair)
    clusterer.assign("c", " ".join(LEFT[:3] + RIGHT[:3]), both, "o3", t - 86400, arrival=t + 60)
    assert clusterer.aliases == {"b": ("a", t + 60, "c")}
    assert (clusterer.merged_by("c"), clusterer.merged_by("a")) == (("b",), ())
    assert StoryClusterer.load(clusterer.dump()).aliases == clusterer.aliases
    # A dump from before the merging article was recorded still loads.
    legacy = clusterer.dump() | {"aliases": [["b", "a", t + 60]]}
    assert StoryClusterer.load(legacy).aliases == {"b": ("a", t + 60, "")}


def test_sample_outlets_events_are_one_story_each_and_nothing_else_joins() -> None:
    engine = DedupEngine()
    decisions = {d.id: d for d in (engine.observe(_input(a)) for a in _articles())}
    for event in (PHILLIPS, STORM, COPPER):
        stories = {decisions[key].story_id for key in event}
        assert len(stories) == 1, event
        [story] = stories
        members = {key for key, d in decisions.items() if d.story_id == story}
        assert members == event
    # The new Phillips articles are distinct articles (clustered), not copies.
    new = PHILLIPS - {
        "kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion",
        "northern-ledger/jess-phillips-defies-pressure-to-quit-after-gaza-vote",
        "harbour-gazette/birmingham-mp-refuses-to-step-down-over-gaza-vote",
    }
    assert all(decisions[key].duplicate_of is None for key in new)
    copies = PHILLIPS - new - {"kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion"}
    assert all(decisions[key].duplicate_of is not None for key in copies)


def test_story_keeps_first_seen_articles_outlets_and_a_representative() -> None:
    engine = DedupEngine()
    last = None
    for article in _articles():
        decision = engine.observe(_input(article))
        if decision.id in PHILLIPS:
            last = decision
    assert last is not None and last.story is not None
    story = last.story
    assert story.story_id == "kestrel-wire/phillips-will-not-quit-after-gaza-ceasefire-rebellion"
    assert story.articles == 6
    assert set(story.outlets) == {a.split("/")[0] for a in PHILLIPS}
    assert story.representative in PHILLIPS
    assert story.first_seen.isoformat() == "2026-11-18T14:05:00+00:00"


def test_an_article_after_the_window_starts_a_new_story() -> None:
    config = ClusterConfig(window_seconds=86400)
    clusterer = StoryClusterer(config)
    wire = next(a for a in _articles() if a.slug.startswith("phillips-will-not-quit"))
    klaxon = next(a for a in _articles() if a.slug.startswith("jess-phillips-thousands"))
    t = int(wire.published.timestamp())
    body = "\n".join(wire.paragraphs)
    clusterer.assign("w", wire.headline, body, "kestrel-wire", t)
    same = clusterer.assign(
        "k", klaxon.headline, "\n".join(klaxon.paragraphs), "daily-klaxon", t + 3600
    )
    assert (same.story.story_id, same.is_new) == ("w", False)
    later = clusterer.assign("late", wire.headline, body, "x", t + 3 * 86400)
    assert (later.story.story_id, later.is_new) == ("late", True)
    assert clusterer.evict(t + 3 * 86400 - 86400) == 1
    assert set(clusterer.stories) == {"late"}


def test_clusterer_state_round_trips() -> None:
    clusterer = StoryClusterer()
    for i, article in enumerate(_articles()):
        clusterer.assign(
            str(i),
            article.headline,
            "\n".join(article.paragraphs),
            article.outlet,
            int(article.published.timestamp()),
        )
    copy = StoryClusterer.load(clusterer.dump())
    assert copy.dump() == clusterer.dump()
    assert copy.postings == clusterer.postings


def _tide_notice(rng: random.Random, day: int) -> tuple[str, str]:
    """One outlet's daily template: the same words every day, other figures and names."""
    port, pier = rng.sample(["Saltmouth", "Gull Point", "Harrowby", "Kestrel Bay", "Linmouth"], 2)
    return f"Tides and shipping for day {day + 1}", "\n".join(
        [
            f"High water at {port} is at {rng.randint(1, 12)}:{rng.randint(10, 59)} with a "
            f"height of {rng.uniform(3, 7):.2f} metres, low water {rng.uniform(0.2, 2):.2f} "
            f"metres at {rng.randint(1, 12)}:{rng.randint(10, 59)}.",
            f"The ferry from {pier} runs {rng.randint(4, 14)} sailings; swell of "
            f"{rng.uniform(0.5, 3):.1f} metres and winds of {rng.randint(8, 40)} knots.",
            f"Sea temperature {rng.uniform(8, 17):.1f}C, visibility {rng.randint(2, 20)} miles.",
        ]
    )


def test_an_outlets_daily_templated_report_is_a_new_story_every_day() -> None:
    engine = DedupEngine()
    rng = random.Random(5)
    decisions = []
    for day in range(40):
        title, text = _tide_notice(rng, day)
        at = datetime(2026, 11, 1, 7, tzinfo=UTC) + timedelta(days=day, minutes=rng.randint(0, 90))
        decisions.append(
            engine.observe(
                DedupInput(
                    id=f"tides-{day}",
                    url=f"https://harbour-gazette.example/tides-{day}",
                    outlet="harbour-gazette",
                    title=title,
                    text=text,
                    published_at=at,
                )
            )
        )
    assert all(d.duplicate_of is None and d.is_new_story for d in decisions)


def test_a_follow_up_by_the_same_outlet_that_repeats_the_facts_joins_the_story() -> None:
    clusterer = StoryClusterer()
    t = int(datetime(2026, 11, 1, 9, tzinfo=UTC).timestamp())
    first = clusterer.assign(
        "a",
        "Ferry Saltmouth Queen runs aground off Gull Point with 212 passengers",
        "The Saltmouth Queen ran aground at 6.40am off Gull Point with 212 passengers and 14 "
        "crew on board, the Harbour Master Jane Ellery said. Lifeboats from Kestrel Bay "
        "reached the ferry within 25 minutes.",
        "harbour-gazette",
        t,
    )
    later = clusterer.assign(
        "b",
        "All 212 passengers taken off stranded Saltmouth Queen",
        "All 212 passengers and 14 crew were taken off the Saltmouth Queen by lunchtime, Jane "
        "Ellery said; the ferry ran aground off Gull Point at 6.40am and will be refloated "
        "on the evening tide, with Kestrel Bay lifeboats standing by.",
        "harbour-gazette",
        t + 5 * 3600,
    )
    assert (later.story.story_id, later.is_new) == (first.story.story_id, False)


def test_a_story_does_not_drift_article_by_article_onto_another_event() -> None:
    """Its first articles give a story its subject: many later articles half about something
    else join it, but do not pull it onto that other subject."""
    clusterer = StoryClusterer()
    first, other = _words("subject", 12), _words("elsewhere", 12)
    t = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    story = clusterer.assign("s0", " ".join(first[:4]), " ".join(first), "o0", t).story
    for i in range(1, 60):
        words = first if i < 12 else first[i % 2 :: 2] + other[i % 2 :: 2]
        placed = clusterer.assign(f"s{i}", " ".join(words[:4]), " ".join(words), f"o{i}", t + i)
        assert clusterer.resolve(placed.story.story_id) == story.story_id, i
    elsewhere = clusterer.assign("e", " ".join(other[:4]), " ".join(other), "o99", t + 99)
    assert elsewhere.is_new


def test_one_outlets_briefs_under_its_long_footer_are_stories_of_their_own() -> None:
    footer = [
        f"The Harbour Gazette newsroom line {i}: subscribe for daily local news, share our "
        f"stories with friends, send tips and corrections, and read our community guidelines."
        for i in range(8)
    ]
    events = [a for a in _articles() if not {f"{a.outlet}/{a.slug}"} & (PHILLIPS | STORM | COPPER)]
    engine = DedupEngine()
    t = datetime(2026, 11, 1, 8, tzinfo=UTC)
    decisions = []
    for i, article in enumerate(events):
        brief = " ".join(" ".join(article.paragraphs).split()[:45])
        decisions.append(
            engine.observe(
                DedupInput(
                    id=f"brief-{i}",
                    url=f"https://harbour-gazette.example/brief-{i}",
                    outlet="harbour-gazette",
                    title=article.headline,
                    text="\n".join([brief, *footer]),
                    published_at=t + timedelta(hours=3 * i),
                )
            )
        )
    assert all(d.duplicate_of is None for d in decisions)
    assert len({d.story_id for d in decisions}) == len(events)
