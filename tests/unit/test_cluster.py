"""Story clustering: distinct articles about one event share a story; others do not."""

from __future__ import annotations

from datetime import timedelta

from enrich.dedup import ClusterConfig, DedupEngine, DedupInput, StoryClusterer
from samples.content import Article, load_outlets

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


def _input(article: Article, shift: timedelta = timedelta(0)) -> DedupInput:
    return DedupInput(
        id=f"{article.outlet}/{article.slug}",
        url=f"https://{article.outlet}.example/{article.slug}",
        outlet=article.outlet,
        title=article.headline,
        text="\n".join(b.text for b in article.blocks),
        published_at=article.published + shift,
    )


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
    same, is_new, _ = clusterer.assign(
        "k", klaxon.headline, "\n".join(klaxon.paragraphs), "daily-klaxon", t + 3600
    )
    assert (same.story_id, is_new) == ("w", False)
    later, is_new, _ = clusterer.assign("late", wire.headline, body, "x", t + 3 * 86400)
    assert (later.story_id, is_new) == ("late", True)
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
