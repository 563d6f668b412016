"""Story scoring through the parts table decides exactly what scoring each candidate's parts
one by one decides: same candidates, same scores to the last bit, same stories joined."""

from __future__ import annotations

import random

import numpy as np
import pytest

from enrich.dedup.cluster import ClusterConfig, Story, StoryClusterer
from enrich.dedup.parts import PartsTable, QueryTerms

WORDS = [f"word{i}" for i in range(160)]
NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
NAMES += ["Donald Knuth", "Frances Allen", "John Backus", "Niklaus Wirth", "Radia Perlman"]


def _plain_score(vec: dict[int, float], story: Story) -> float:
    """The best cosine over the story's parts, each summed term by term in its own order."""
    best = 0.0
    for part in story.parts():
        total = 0.0
        for term, weight in zip(part.ids.tolist(), part.w.tolist(), strict=True):
            if term in vec:
                total += vec[term] * weight
        best = max(best, total)
    return best


def _plain_matches(
    clusterer: StoryClusterer, vec: dict[int, float], now: int, outlet: str, facts: np.ndarray
) -> list[tuple[float, str]]:
    """What the clusterer decided before the parts table: every active candidate scored."""
    c = clusterer.config
    top = sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))[: c.query_terms]
    found: set[str] = set()
    for term, _ in top:
        found.update(clusterer.postings.get(term, ()))
    out = []
    for sid in sorted(found):
        story = clusterer.stories[sid]
        if story.last_seen < now - c.window_seconds:
            continue
        score = _plain_score(vec, story)
        entities = {t for p in story.parts() for t in p.ids.tolist() if t & 1 and t in vec}
        close = score >= c.threshold or (
            score >= c.entity_threshold and len(entities) >= c.min_entities
        )
        if close and not clusterer._other_edition(story, outlet, facts):
            out.append((score, sid))
    return out


def _article(rng: random.Random, topic: list[str], names: list[str]) -> tuple[str, str]:
    title = rng.sample(topic, 3) + rng.sample(WORDS, 3)
    title.insert(1, rng.choice(names))
    lead = rng.sample(topic, rng.randint(2, 8)) + rng.choices(WORDS, k=rng.randint(5, 60))
    rng.shuffle(lead)
    for name in rng.sample(names, rng.randint(0, len(names))):
        lead.insert(rng.randrange(len(lead) + 1), name)
    if rng.random() < 0.3:
        lead.append(f"{rng.randint(1, 40)} {rng.choice(['points', 'votes', 'km'])}")
    return " ".join(title).capitalize(), " ".join(lead)


@pytest.mark.parametrize("seed", range(4))
def test_the_parts_table_decides_as_scoring_every_part_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    # A small vocabulary, so that articles share terms with many stories and scores fall on
    # both sides of the thresholds; a short window, so that stories expire between evictions.
    config = ClusterConfig(window_seconds=6 * 3600, members=rng.choice([2, 4]))
    clusterer = StoryClusterer(config)
    topics = [(rng.sample(WORDS, 10), rng.sample(NAMES, 3)) for _ in range(40)]
    now = 1_700_000_000
    joined = merged = checked = 0
    truth: dict[str, list[tuple[list[int], list[float]]]] = {}  # parts as assign made them
    for i in range(700):
        now += rng.randint(0, 900)
        topic, names = rng.choice(topics)
        title, text = _article(rng, topic, names)
        outlet = f"outlet-{rng.randrange(6)}"
        tf = clusterer.terms(title, text)
        vec, facts = clusterer.vector(tf), clusterer.facts(title, text, tf)
        expected = _plain_matches(clusterer, vec, now, outlet, facts)
        found = clusterer.matches(vec, now, outlet, facts)
        assert sorted((score, s.story_id) for score, s in found) == sorted(expected)
        checked += len(expected)
        placed = clusterer.assign(str(i), title, text, outlet, now)
        truth[placed.story.story_id] = [
            (p.ids.tolist(), p.w.tolist()) for p in placed.story.parts()
        ]
        joined += not placed.is_new
        merged += len(placed.merged_from)
        if i % 97 == 96:
            clusterer.evict(now - config.window_seconds)
        if i == 350:  # restored state: the table is rebuilt from the stories
            clusterer = StoryClusterer.load(clusterer.dump(), config)
    assert checked > 100 and joined > 100 and merged > 0  # the comparison saw real decisions
    # The parts now view the table's one copy of the terms, which was moved many times.
    clusterer.prepare()
    for sid, story in clusterer.stories.items():
        assert [(p.ids.tolist(), p.w.tolist()) for p in story.parts()] == truth[sid]
        assert np.shares_memory(story.centroid.ids, clusterer.table.ids)


def test_every_candidate_scores_as_its_parts_one_by_one() -> None:
    rng = random.Random(11)
    clusterer = StoryClusterer()
    for i in range(300):
        topic = rng.sample(WORDS, 10)
        title, text = _article(rng, topic, rng.sample(NAMES, 2))
        clusterer.assign(str(i), title, text, "outlet", 1_700_000_000 + i)
    for _ in range(50):
        title, text = _article(rng, rng.sample(WORDS, 10), rng.sample(NAMES, 2))
        vec = clusterer.vector(clusterer.terms(title, text))
        story_ids = clusterer.candidates(vec)
        best, _ = clusterer.scores(vec, story_ids)
        plain = [_plain_score(vec, clusterer.stories[sid]) for sid in story_ids]
        assert best.tolist() == plain


def test_the_query_hash_finds_exactly_its_terms() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 70, 600):
        ids = np.unique(rng.integers(0, 2**63, size=size, dtype=np.uint64))
        weights = rng.random(ids.size)
        query = QueryTerms(ids, weights)
        others = rng.integers(0, 2**63, size=5000, dtype=np.uint64)
        probe = np.concatenate([others, ids, np.zeros(1, dtype=np.uint64)])
        hit, weight = query.find(probe)
        known = dict(zip(ids.tolist(), weights.tolist(), strict=True))
        assert hit.tolist() == [t in known for t in probe.tolist()]
        assert weight[hit].tolist() == [known[t] for t in probe[hit].tolist()]


def test_the_parts_table_keeps_only_live_stories_when_it_grows() -> None:
    table = PartsTable()
    rng = np.random.default_rng(5)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    written = 0
    for round_ in range(60):
        for sid in (f"s{rng.integers(40)}" for _ in range(20)):
            size = int(rng.integers(0, 90))
            ids = np.sort(rng.integers(0, 2**63, size=size, dtype=np.uint64))
            parts[sid] = [(ids[: size // 2], rng.random(size // 2).astype(np.float32))]
            parts[sid].append((ids[size // 2 :], rng.random(size - size // 2).astype(np.float32)))
            table.stale.add(sid)
            written += size
        if round_ % 7 == 6:
            gone = f"s{rng.integers(40)}"
            parts.pop(gone, None)
            table.stale.add(gone)
        table.refresh(parts.get)
        assert table.live == sum(a.size for p in parts.values() for a, _ in p)
        for sid, story in parts.items():
            start, length = table.start[table.slot[sid]], table.length[table.slot[sid]]
            assert table.ids[start : start + length].tolist() == [
                t for a, _ in story for t in a.tolist()
            ]
        assert set(table.slot) == set(parts)
    assert table.used < written  # the space of replaced and dropped stories was reused
