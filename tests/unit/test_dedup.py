"""Dedup layers, boilerplate hard negatives, versions, window, persistence and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import typer
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndTimestamp
from typer.testing import CliRunner

from devstack.samples.content import load_outlets
from enrich.dedup import DedupConfig, DedupDecision, DedupEngine, DedupInput
from enrich.dedup.cli import dedup_command
from enrich.dedup.engine import SnapshotFormatError
from enrich.dedup.minhash import MinHasher
from enrich.dedup.stage import (
    DedupStage,
    rebuild_gap,
    snapshot_offsets,
    snapshot_path,
    write_snapshot,
)
from enrich.dedup.text import features
from enrich.worker import content_hash
from index.worker import article_document
from newsflow.contracts import Article, DedupedArticle, DedupReason, decode, encode
from newsflow.observability import StageMetrics
from newsflow.runtime import Done, Inbound, Result

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
SMALL = DedupConfig(boilerplate_bits=20, segment_rows=64)


def _bodies() -> list[tuple[str, str]]:
    """(title, body) of every distinct sample article: real prose, offline."""
    seen: set[str] = set()
    out = []
    for outlet in load_outlets(include_upcoming=True).values():
        for article in outlet.articles:
            body = "\n".join(article.paragraphs)
            if body not in seen:
                seen.add(body)
                out.append((article.headline, body))
    return out


BODIES = _bodies()
FOOTER = [
    "Subscribe to the Harbour Post newsletter for the best local stories delivered to your "
    "inbox every morning, and follow us on social media for breaking news as it happens.",
    "Our journalism relies on readers like you. Every contribution, big or small, keeps "
    "independent local reporting free for everyone who lives, works and studies here.",
    "Copyright 2026 Harbour Post Media. All rights reserved. Reproduction of any part of "
    "this article without permission is prohibited. Contact the newsroom with tips.",
    "Comments are moderated according to our community guidelines, which ask readers to be "
    "civil, stay on topic and avoid sharing personal information about anyone else online.",
]


class Stream:
    """An engine plus an arrival clock, to write tests as a sequence of articles."""

    def __init__(self, config: DedupConfig = SMALL):
        self.engine = DedupEngine(config)
        self.clock = T0
        self.n = 0

    def add(self, text: str, outlet: str = "o1", **kw: Any) -> DedupDecision:
        self.n += 1
        self.clock += timedelta(minutes=10)
        data: dict[str, Any] = {
            "id": f"a{self.n}",
            "url": f"https://{outlet}.example/{self.n}",
            "outlet": outlet,
            "title": "",
            "text": text,
            "published_at": self.clock,
        }
        data.update(kw)
        return self.engine.observe(DedupInput(**data))


def _edit(text: str, rate: float, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = []
    for line in text.split("\n"):
        words = [w if rng.random() > rate else w.upper() + "s" for w in line.split()]
        lines.append(" ".join(words))
    return "\n".join(lines)


def _decided(d: DedupDecision) -> tuple[object, ...]:
    return (d.id, d.reason, d.duplicate_of, d.story_id, d.version, d.is_new_story)


def _state(engine: DedupEngine) -> dict[str, bytes]:
    """The snapshot's contents (its bytes also hold the zip members' write times)."""

    def parts(blob: bytes) -> dict[str, bytes]:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {k: z[k].tobytes() for k in z.files}

    snapshot = parts(engine.snapshot())
    return snapshot | {f"store/{k}": v for k, v in parts(snapshot.pop("store")).items()}


def test_an_article_seen_again_gets_its_first_decision_and_changes_nothing() -> None:
    s = Stream()
    first = s.add(BODIES[0][1], id="x")
    state = _state(s.engine)
    again = s.add(BODIES[0][1], id="x")
    assert first.reason == "new" and first.is_new_story and not first.repeated
    assert _decided(again) == _decided(first) and again.repeated
    assert len(s.engine.store) == 1 and s.engine.observed == 1
    assert _state(s.engine) == state


def test_copies_seen_again_keep_the_layer_that_found_their_original() -> None:
    s = Stream()
    s.add(BODIES[0][1], id="main", url="https://o1.example/story")
    for _, body in BODIES[5:9]:  # the outlet learns its footer
        s.add(body + "\n" + "\n".join(FOOTER), outlet="post")
    copies = [
        s.add(
            "AMP text",
            id="amp",
            url="https://o1.example/amp",
            canonical_url="https://o1.example/story",
        ),
        s.add(BODIES[0][1].upper(), id="exact", outlet="o2"),
        s.add(BODIES[0][1] + "\n" + "\n".join(FOOTER), id="near", outlet="post"),
    ]
    assert [c.reason for c in copies] == ["url", "exact", "near"]
    texts = {"amp": "AMP text", "exact": BODIES[0][1].upper()}
    texts["near"] = BODIES[0][1] + "\n" + "\n".join(FOOTER)
    for copy in copies:
        again = s.add(texts[copy.id], id=copy.id, outlet="post")
        assert _decided(again) == _decided(copy) and again.repeated, copy.id


def test_same_normalized_url_or_canonical_is_the_same_article() -> None:
    s = Stream()
    s.add(BODIES[0][1], id="main", url="https://o1.example/story?utm_source=x")
    amp = s.add(
        "AMP page text",
        id="amp",
        url="https://o1.example/amp/story",
        canonical_url="https://O1.example/story/",
    )
    assert (amp.duplicate_of, amp.reason) == ("main", "url")


def test_exact_copy_ignores_case_spacing_and_punctuation() -> None:
    s = Stream()
    s.add(BODIES[1][1], outlet="o1")
    copy = s.add("  " + BODIES[1][1].upper().replace(",", " ,") + "  ", outlet="o2")
    assert (copy.duplicate_of, copy.reason) == ("a1", "exact")


def test_syndicated_copies_with_boilerplate_trims_promos_and_edits_are_duplicates() -> None:
    s = Stream()
    for title, body in BODIES[5:9]:  # teach each outlet its footer first
        s.add(body + "\n" + "\n".join(FOOTER), outlet="post", title=title)
    original = s.add(BODIES[0][1], outlet="wire", title=BODIES[0][0])
    paragraphs = BODIES[0][1].split("\n")
    variants = {
        "other boilerplate": BODIES[0][1] + "\n" + "\n".join(FOOTER),
        "trimmed": "\n".join(paragraphs[: max(2, int(len(paragraphs) * 0.6))]),
        "promos": "\n".join([paragraphs[0], "READ MORE: Council tax to rise", *paragraphs[1:]]),
        "light edits": _edit(BODIES[0][1], 0.03),
    }
    for name, text in variants.items():
        decision = s.add(text, outlet="post", title="Edited headline " + name)
        assert decision.duplicate_of == original.id, name
        assert decision.story_id == original.story_id, name
        assert decision.reason == "near", name


def _repost_variants(body: str) -> dict[str, str]:
    """The same outlet's own reposts of ``body``: an update note and one more sentence, the
    note on its own line, an "UPDATE 1-" repost with light edits, a print copy cut short."""
    paragraphs = body.split("\n")
    added = "A spokesperson later confirmed the figures to reporters on Tuesday evening."
    return {
        "note and sentence": "Updated with new details. " + body + " " + added,
        "note line": "\n".join(["This story has been updated.", *paragraphs, added]),
        "update edits": "UPDATE 1- " + _edit(body, 0.02) + "\n" + added,
        "print cut": "\n".join(paragraphs[: max(2, len(paragraphs) - 1)]),
    }


@pytest.mark.parametrize("footer_seen", [0, 1, 3], ids=["new-outlet", "footer-once", "footer"])
def test_a_repost_by_the_same_outlet_is_a_duplicate_of_its_first_copy(footer_seen: int) -> None:
    s = Stream()
    footer = "\n".join(FOOTER)
    for title, body in BODIES[5 : 5 + footer_seen]:
        s.add(body + "\n" + footer, outlet="post", title=title)
    first = s.add(BODIES[0][1] + "\n" + footer, outlet="post", title=BODIES[0][0])
    for name, text in _repost_variants(BODIES[0][1]).items():
        repost = s.add(text + "\n" + footer, outlet="post", title="New headline: " + name)
        assert (repost.duplicate_of, repost.reason) == (first.id, "same_outlet_repost"), name
        assert repost.story_id == first.story_id and not repost.is_new_story, name


def test_a_repost_of_a_syndicated_copy_points_to_the_original() -> None:
    s = Stream()
    original = s.add(BODIES[0][1], outlet="wire")
    copy = s.add(BODIES[0][1] + "\n" + "\n".join(FOOTER), outlet="post")
    repost = s.add("Updated with new details.\n" + BODIES[0][1], outlet="post")
    assert copy.duplicate_of == repost.duplicate_of == original.id


def test_an_outlets_footer_seen_once_does_not_make_its_next_brief_a_repost() -> None:
    s = Stream()
    footer = FOOTER * 2  # a long footer under briefs of a fifth of its length
    decisions = [
        s.add(" ".join(body.split()[:50]) + "\n" + "\n".join(footer), outlet="post")
        for _, body in BODIES[:6]
    ]
    assert [d.duplicate_of for d in decisions] == [None] * 6


WIRE_FOOTER = [
    "Distributed by the Coastal Wire agency to its member titles under licence; onward "
    "syndication, archiving or resale of this dispatch requires written consent.",
    "Wire editors can be reached around the clock on the agency desk line for corrections, "
    "clarifications and requests for the photographs that accompany this report.",
]


def test_a_copy_before_either_outlets_footer_is_learned_is_a_duplicate() -> None:
    """Neither outlet has published before: their footers are still text to the filters."""
    s = Stream()
    paragraphs = BODIES[0][1].split("\n")
    original = s.add("\n".join([*paragraphs, *WIRE_FOOTER]), outlet="wire")
    trimmed = paragraphs[: max(2, int(len(paragraphs) * 0.75))]
    copy = s.add("\n".join([*trimmed, *FOOTER]), outlet="post")
    assert (copy.duplicate_of, copy.reason) == (original.id, "near")


def test_another_article_under_the_same_unlearned_footers_is_no_duplicate() -> None:
    s = Stream()
    s.add("\n".join([BODIES[0][1], *FOOTER]), outlet="post")
    s.add("\n".join([BODIES[1][1], *WIRE_FOOTER]), outlet="wire")
    other = s.add("\n".join([BODIES[2][1], *FOOTER]), outlet="wire")
    assert other.duplicate_of is None


def _long_read(first: int) -> list[str]:
    """Paragraphs of one long article (past the fingerprinted words), from sample bodies."""
    return [p for _, body in BODIES[first : first + 6] for p in body.split("\n")]


@pytest.mark.parametrize("earlier", [0, 1], ids=["outlets-first", "after-a-long-read"])
def test_a_long_articles_print_copy_is_a_repost_wherever_its_footer_falls(earlier: int) -> None:
    """The original's footer is past the fingerprinted words, the shorter copy's inside."""
    s = Stream()
    for n in range(earlier):
        s.add("\n".join([*_long_read(12 + n), *FOOTER]), outlet="post")
    paragraphs = _long_read(0)
    assert len(" ".join(paragraphs).split()) > 1100
    original = s.add("\n".join([*paragraphs, *FOOTER]), outlet="post")
    cut = paragraphs[: int(len(paragraphs) * 0.6)]
    copy = s.add("\n".join([*cut, *FOOTER]), outlet="post", title="Print edition")
    assert (copy.duplicate_of, copy.reason) == (original.id, "same_outlet_repost")
    other = s.add("\n".join([*_long_read(6)[:20], *FOOTER]), outlet="post")
    assert other.duplicate_of is None


def test_the_lines_past_the_fingerprinted_words_are_kept_for_learning() -> None:
    paragraphs = _long_read(0)
    whole = features("\n".join([*paragraphs, *FOOTER]))
    short = features("\n".join(FOOTER))
    assert set(short.lines) <= set(whole.lines_after)
    assert not set(whole.lines) & set(whole.lines_after)
    assert short.lines_after == []


def test_features_and_signatures_keep_the_values_snapshots_hold() -> None:
    """Content hashes, line hashes, shingles and signatures are persisted: a faster way to
    compute them must give the same values, or a restored window stops matching."""
    text = (
        "Flood Warning Issued For The River Valley\n\n"
        "The river rose two metres overnight, and it is not the first time.\n"
        "Residents of the valley were told to leave by noon.\n\n"
        "Read more: subscribe to our newsletter\nRead more: subscribe to our newsletter"
    )
    found = features(text, max_words=20)
    assert found.content_hash == 15484998306874251368
    assert found.lines == [2924298241, 1539910778]
    assert found.lines_after == [3004766370, 2329274631]
    assert found.line_of_shingle.tolist() == [0] * 7 + [1] * 8  # "it is not the" dropped
    assert hashlib.sha256(found.shingles.tobytes()).hexdigest() == (
        "ed3f9cabfbd938479622da6921f38f457ad8fb3ed026476e427bec506cbe9c2f"
    )
    signature = MinHasher().views(found.shingles, [None])[0]
    assert signature.size == 15
    assert hashlib.sha256(signature.full.tobytes()).hexdigest() == (
        "38b275e204ba71fa404c1334c758522362ead296c8b50eeb99b15af09d20fee7"
    )
    assert MinHasher().band_keys(signature)[:2].tolist() == [4216384888, 7849473071]


def test_a_copy_of_a_copy_points_to_the_first_original() -> None:
    s = Stream()
    s.add(BODIES[2][1], outlet="o1")
    s.add(_edit(BODIES[2][1], 0.02, seed=2), outlet="o2")
    third = s.add(_edit(BODIES[2][1], 0.02, seed=3), outlet="o3")
    assert third.duplicate_of == "a1"


def test_one_outlets_long_footer_does_not_make_short_briefs_alike() -> None:
    s = Stream()
    briefs = [" ".join(body.split()[:40]) for _, body in BODIES[:8]]
    decisions = [s.add(brief + "\n" + "\n".join(FOOTER), outlet="post") for brief in briefs]
    assert [d.duplicate_of for d in decisions] == [None] * len(briefs)


def test_a_footer_shared_by_a_network_of_outlets_does_not_make_articles_alike() -> None:
    s = Stream()
    decisions = [
        s.add(" ".join(body.split()[:60]) + "\n" + "\n".join(FOOTER), outlet=f"site{i}")
        for i, (_, body) in enumerate(BODIES[:8])
    ]
    assert [d.duplicate_of for d in decisions] == [None] * 8


def _report(rng: random.Random) -> str:
    a, b = rng.sample(["Aldermoor", "Brightwater", "Castlegate", "Dunmore", "Everleigh"], 2)
    return "\n".join(
        [
            f"The index closed {rng.choice(['up', 'down'])} {rng.uniform(0.1, 2):.1f}% at "
            f"{rng.randint(7000, 8500)}, with {a} leading the moves after results.",
            f"{a} rose {rng.uniform(1, 9):.1f}% to {rng.randint(100, 900)}p while {b} fell "
            f"{rng.uniform(1, 9):.1f}% after it {rng.choice(['cut guidance', 'lost a deal'])}.",
            f"Sterling traded at {rng.uniform(1.1, 1.4):.4f} against the dollar; oil was "
            f"{rng.choice(['higher', 'lower'])} at ${rng.uniform(60, 95):.2f} a barrel.",
        ]
    )


def test_a_daily_report_template_with_other_facts_is_not_a_duplicate() -> None:
    s = Stream()
    rng = random.Random(4)
    decisions = [s.add(_report(rng), outlet="markets") for _ in range(30)]
    assert [d.duplicate_of for d in decisions] == [None] * 30


def test_a_changed_refetch_is_a_new_version_of_the_same_article_and_story() -> None:
    s = Stream()
    first = s.add(BODIES[3][1], id="v", outlet="o1")
    copy = s.add(BODIES[3][1] + "\nSyndicated by the Wire.", outlet="o2")
    edited = BODIES[3][1].replace(".", ", officials said.", 1) + "\nUpdate: more to follow."
    second = s.add(edited, id="v", outlet="o1")
    assert (second.reason, second.version, second.story_id) == ("version", 2, first.story_id)
    assert second.duplicate_of is None and copy.duplicate_of == "v"
    again = s.add(edited, id="v", outlet="o1")
    assert _decided(again) == _decided(second) and again.repeated
    # A later copy of the edited text still finds the article.
    assert s.add(_edit(edited, 0.02), outlet="o3").duplicate_of == "v"


def test_the_window_forgets_old_articles_and_bounds_the_state() -> None:
    config = DedupConfig(
        window_seconds=3 * 86400, boilerplate_bits=20, segment_rows=8, evict_every=4
    )
    s = Stream(config)
    s.add(BODIES[0][1], outlet="o1")
    for i in range(40):  # two articles a day for twenty days
        s.clock += timedelta(hours=12)
        s.add(BODIES[1 + i % (len(BODIES) - 1)][1] + f"\nItem {i} of the day.", outlet=f"x{i}")
    assert len(s.engine.store) < 20
    late = s.add(BODIES[0][1], outlet="o2")
    assert late.duplicate_of is None  # its original left the window


def _article(n: int, text: str, fetched_at: datetime, *, is_article: bool = True) -> Article:
    url = f"https://o{n}.example/news/{n}"
    return Article(
        id=f"{n:040x}",
        url=url,
        outlet=f"o{n}",
        text=text,
        is_article=is_article,
        content_hash=content_hash(text),
        fetched_at=fetched_at,
        extractor="test",
    )


def test_the_stage_decides_articles_and_passes_other_pages_through(tmp_path: Path) -> None:
    stage = DedupStage(input_topic="articles", output_topic="deduped", state_dir=tmp_path)
    stage.engine = DedupEngine(DedupConfig(boilerplate_bits=20, evict_every=1))
    later = T0 + timedelta(days=4)  # the first story has left the clustering window (3 days)
    inputs = [
        _article(1, BODIES[0][1], T0),
        _article(2, BODIES[0][1], T0 + timedelta(minutes=5)),
        _article(3, BODIES[1][1], T0, is_article=False),
        _article(4, BODIES[2][1], later),
        _article(5, BODIES[0][1], later + timedelta(minutes=5)),
    ]
    batch = [Inbound("articles", 0, i, a.id, None, a) for i, a in enumerate(inputs)]
    results = stage.process(batch)
    out: list[DedupedArticle] = []
    for result in results:
        assert isinstance(result, Done)
        (output,) = result.outputs
        assert isinstance(output.message, DedupedArticle) and output.topic == "deduped"
        out.append(decode(DedupedArticle, encode(output.message)))
    first, copy, page, other, late = out
    assert (first.dedup_reason, first.story_id, first.duplicate_of) == ("new", first.id, None)
    assert first.story is not None and first.story.articles == 1
    assert (copy.dedup_reason, copy.duplicate_of, copy.story_id) == ("exact", first.id, first.id)
    assert copy.story is not None and copy.story.articles == 2
    assert (page.duplicate_of, page.story_id, page.dedup_reason, page.story) == (None,) * 4
    assert other.dedup_reason is DedupReason.NEW and other.story is not None
    # A copy after its story left the clustering window: decided, without a summary.
    assert (late.dedup_reason, late.duplicate_of, late.story_id) == ("exact", first.id, first.id)
    assert late.story is None
    assert stage.engine.observed == 4  # the page that is not an article is not observed


def _inputs() -> list[DedupInput]:
    items = []
    clock = T0
    for i, (title, body) in enumerate(BODIES * 2):
        clock += timedelta(minutes=7)
        text = body if i < len(BODIES) else _edit(body, 0.02, seed=i)
        items.append(
            DedupInput(
                id=f"i{i}",
                url=f"https://o{i % 5}.example/{i}",
                outlet=f"o{i % 5}",
                title=title,
                text=text + "\n" + FOOTER[i % 4],
                published_at=clock,
            )
        )
    return items


def test_snapshot_restore_and_replay_give_the_same_decisions_as_no_restart() -> None:
    inputs = _inputs()
    reference = DedupEngine(SMALL)
    expected = [reference.observe(x) for x in inputs]
    assert any(d.duplicate_of for d in expected)

    engine = DedupEngine(SMALL)
    cut, crash = len(inputs) // 3, 2 * len(inputs) // 3
    for x in inputs[:cut]:
        engine.observe(x)
    snapshot = engine.snapshot()
    for x in inputs[cut:crash]:  # processed, then lost in a kill -9
        engine.observe(x)
    restored = DedupEngine.restore(snapshot)
    # Restart: replay the changelog since the snapshot, then carry on with the stream.
    replayed = [restored.observe(x) for x in inputs[cut:]]
    assert replayed == expected[cut:]
    # At-least-once delivery: seeing the same inputs again changes nothing, and each gets the
    # decision it got the first time.
    state = _state(restored)
    again = [restored.observe(x) for x in inputs[:crash]]
    assert [_decided(d) for d in again] == [_decided(d) for d in expected[:crash]]
    assert all(d.repeated for d in again)
    assert _state(restored) == state


def test_copies_arriving_together_get_exactly_one_original() -> None:
    s = Stream()
    decisions = [s.add(BODIES[4][1], outlet=f"o{i}") for i in range(6)]
    assert sum(d.duplicate_of is None for d in decisions) == 1
    assert {d.story_id for d in decisions} == {decisions[0].id}


def test_memory_per_article_once_segments_are_sealed() -> None:
    s = Stream(DedupConfig(boilerplate_bits=20, segment_rows=32))
    for i in range(200):
        s.add(BODIES[i % len(BODIES)][1] + f"\nNumber {i}.", outlet=f"o{i}", id=f"{i:064x}")
    sealed = [seg for seg in s.engine.store.segments if seg.sealed is not None]
    assert sealed and len(s.engine.store.segments) < 12  # merged like an LSM tree
    per_article = sum(seg.nbytes() for seg in sealed) / sum(seg.n for seg in sealed)
    assert per_article < 1536


# --- the CLI contract --------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("dedup")(dedup_command)

    @app.command("other")
    def _other() -> None:  # a second command keeps typer from flattening the app
        """Unused."""

    return app


def test_cli_writes_one_line_per_input_in_order() -> None:
    lines = [
        {
            "id": "a",
            "url": "https://o1.example/a",
            "outlet": "o1",
            "title": BODIES[0][0],
            "text": BODIES[0][1],
            "published_at": "2026-11-18T10:00:00+00:00",
        },
        {
            "id": "b",
            "url": "https://o2.example/b",
            "outlet": "o2",
            "title": "Copy",
            "text": BODIES[0][1] + "\n" + FOOTER[0],
            "published_at": "2026-11-18T11:00:00+00:00",
        },
        {
            "id": "c",
            "url": "https://o2.example/c",
            "outlet": "o2",
            "title": BODIES[1][0],
            "text": BODIES[1][1],
            "published_at": None,
        },
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\n"
    result = CliRunner().invoke(_app(), ["dedup"], input=stdin)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [
        {"id": "a", "duplicate_of": None, "story_id": "a"},
        {"id": "b", "duplicate_of": "a", "story_id": "a"},
        {"id": "c", "duplicate_of": None, "story_id": "c"},
    ]


def test_cli_reports_a_bad_line_and_goes_on() -> None:
    stdin = '{"id": "a", "text": "one two three four five"}\nnot json\n{"id": "b"}\n'
    result = CliRunner().invoke(_app(), ["dedup", "--verbose"], input=stdin)
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["id"] == "a" and out[0]["reason"] == "new" and out[0]["version"] == 1
    assert out[1]["id"] is None and out[1]["error"].startswith("invalid_input: line 2")
    assert out[2]["id"] == "b" and "text" in out[2]["error"]


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_lines_are_skipped(bad: str) -> None:
    result = CliRunner().invoke(_app(), ["dedup"], input=bad + "\n")
    assert result.exit_code == 0 and result.stdout == ""


# --- rewinds, older snapshots, and whether the log can rebuild the state ------------------


def _batch(articles: list[Article]) -> list[Inbound[Article]]:
    return [Inbound("articles", 0, i, a.id, None, a) for i, a in enumerate(articles)]


def _outputs(results: Sequence[Result]) -> list[DedupedArticle]:
    out = []
    for result in results:
        assert isinstance(result, Done)
        (output,) = result.outputs
        assert isinstance(output.message, DedupedArticle)
        out.append(output.message)
    return out


def test_a_rewound_batch_gets_the_decisions_it_got_before(tmp_path: Path) -> None:
    """A transient failure after the engine observed a batch: the runner seeks back and the
    stage sees the batch again, its state not restored. Each article gets its decision again,
    and what comes after is decided as if there had been no rewind."""
    inputs = [
        _article(1, BODIES[0][1], T0),
        _article(2, BODIES[0][1] + "\nSyndicated.", T0 + timedelta(minutes=5)),
        _article(3, BODIES[1][1], T0 + timedelta(minutes=6)),
        _article(4, BODIES[1][1], T0 + timedelta(minutes=7), is_article=False),
    ]
    after = [_article(5, BODIES[0][1], T0 + timedelta(minutes=8))]

    def decisions(out: list[DedupedArticle]) -> list[tuple[object, ...]]:
        return [(a.id, a.dedup_reason, a.duplicate_of, a.story_id) for a in out]

    reference = DedupStage(input_topic="articles", output_topic="deduped", state_dir=tmp_path)
    expected = decisions(_outputs(reference.process(_batch(inputs + after))))
    stage = DedupStage(input_topic="articles", output_topic="deduped", state_dir=tmp_path)
    stage.metrics = StageMetrics("dedup")
    first = decisions(_outputs(stage.process(_batch(inputs))))
    again = decisions(_outputs(stage.process(_batch(inputs + after))))
    assert first == expected[: len(inputs)]
    assert again == expected
    assert [d[1] for d in expected] == ["new", "near", "new", None, "exact"]
    counted = {
        sample.labels["outcome"]: sample.value
        for family in stage.metrics.registry.collect()
        if family.name == "newsflow_dedup_outcomes"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {"new": 2, "near": 1, "exact": 1, "replay": 3}


def _as_format_3(snapshot: bytes, number: int = 3) -> bytes:
    """The same state as an engine before snapshot format 4 wrote it (no reasons recorded,
    aliases without their merging article)."""
    with np.load(io.BytesIO(snapshot), allow_pickle=False) as z:
        blobs = {k: z[k].tobytes() for k in z.files}
    meta = json.loads(blobs["meta"])
    blobs["meta"] = json.dumps(meta | {"format": number}).encode()
    clusters = json.loads(blobs["clusters"])
    clusters["aliases"] = [alias[:3] for alias in clusters["aliases"]]
    blobs["clusters"] = json.dumps(clusters).encode()
    with np.load(io.BytesIO(blobs["store"]), allow_pickle=False) as z:
        store = {k: z[k] for k in z.files if not k.endswith(".reason")}
    buf = io.BytesIO()
    np.savez(buf, **store)
    blobs["store"] = buf.getvalue()
    out = io.BytesIO()
    np.savez(out, **{k: np.frombuffer(v, dtype=np.uint8) for k, v in blobs.items()})  # type: ignore[arg-type]
    return out.getvalue()


def test_a_format_3_snapshot_still_restores_with_what_it_recorded() -> None:
    s = Stream()
    original = s.add(BODIES[3][1], id="v")
    copy = s.add(BODIES[3][1].upper(), id="c", outlet="o2")
    version = s.add(BODIES[3][1] + "\nUpdate: more to follow.", id="v")
    assert (original.reason, copy.reason, version.reason) == ("new", "exact", "version")
    engine = DedupEngine.restore(_as_format_3(s.engine.snapshot()))
    replays = {
        "v": engine.observe(DedupInput(id="v", text=BODIES[3][1] + "\nUpdate: more to follow.")),
        "c": engine.observe(DedupInput(id="c", text=BODIES[3][1].upper())),
    }
    # Which layer found the copy's original was not recorded: the copy says "replay".
    assert (replays["v"].reason, replays["v"].version, replays["c"].reason) == (
        "version",
        2,
        "replay",
    )
    assert replays["c"].duplicate_of == "v" and all(d.repeated for d in replays.values())
    with pytest.raises(SnapshotFormatError):
        DedupEngine.restore(_as_format_3(s.engine.snapshot(), number=2))


def test_a_format_4_snapshot_restores_and_decides_as_before() -> None:
    """Format 4 had no same-outlet reposts and no story facts: what it holds still counts."""
    s, again = Stream(), Stream()
    footer = "\n".join(FOOTER)
    for stream in (s, again):
        for title, body in BODIES[5:8]:
            stream.add(body + "\n" + footer, outlet="post", title=title)
        stream.add(BODIES[0][1] + "\n" + footer, outlet="post", title=BODIES[0][0])
    with np.load(io.BytesIO(s.engine.snapshot()), allow_pickle=False) as z:
        blobs = {k: z[k].tobytes() for k in z.files}
    blobs["meta"] = json.dumps(json.loads(blobs["meta"]) | {"format": 4}).encode()
    clusters = json.loads(blobs["clusters"])
    for story in clusters["stories"]:
        del story["facts"]
    blobs["clusters"] = json.dumps(clusters).encode()
    out = io.BytesIO()
    np.savez(out, **{k: np.frombuffer(v, dtype=np.uint8) for k, v in blobs.items()})  # type: ignore[arg-type]
    s.engine = DedupEngine.restore(out.getvalue())
    repost = "Updated with new details.\n" + BODIES[0][1] + "\n" + footer
    decided = [stream.add(repost, outlet="post") for stream in (s, again)]
    assert _decided(decided[0]) == _decided(decided[1])
    assert decided[0].reason == "same_outlet_repost"
    with pytest.raises(SnapshotFormatError):
        DedupEngine.restore(_as_format_3(s.engine.snapshot(), number=6))


@dataclass
class LogConsumer:
    """What ``rebuild_gap`` asks of a consumer: where a partition's log starts and ends, and
    the first offset at or after a time."""

    start: int
    end: int
    first_at_or_after: dict[int, int]  # time (ms) → offset; none: no record that recent

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.start)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.end)

    def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        found: dict[TopicPartition, Any] = {}
        for tp, ms in times.items():
            at = [o for t, o in sorted(self.first_at_or_after.items()) if t >= ms]
            found[tp] = OffsetAndTimestamp(at[0], ms, -1) if at else None
        return found


def test_the_log_can_rebuild_the_state_unless_it_lost_articles_of_the_window() -> None:
    day_ms = 86_400_000
    now = 100 * 86400.0
    window = 30 * 86400

    def gap(consumer: LogConsumer, resume_at: dict[int, int] | None = None) -> str | None:
        return rebuild_gap(
            cast(KafkaConsumer, consumer), "articles", resume_at, window_seconds=window, now=now
        )

    # Never truncated: replayed from offset 0.
    assert gap(LogConsumer(0, 50, {99 * day_ms: 40})) is None
    # Truncated, but the log still holds articles older than the window (what went is older).
    assert gap(LogConsumer(10, 50, {60 * day_ms: 20, 80 * day_ms: 30})) is None
    # Truncated, and the oldest article left is within the window: some of it is gone.
    lost = gap(LogConsumer(10, 50, {75 * day_ms: 10}))
    assert lost is not None and "articles[0] starts at 10" in lost
    assert "dedup window (30 days)" in lost
    # Emptied: how old the deleted articles were cannot be told.
    emptied = gap(LogConsumer(50, 50, {}))
    assert emptied is not None and "cannot be told" in emptied
    # A snapshot needs every article after its offset.
    assert gap(LogConsumer(10, 50, {75 * day_ms: 10}), {0: 12}) is None
    behind = gap(LogConsumer(10, 50, {75 * day_ms: 10}), {0: 4})
    assert behind is not None and "resumes articles[0] at offset 4" in behind


def test_the_snapshots_offsets_are_read_without_the_engine(tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, "articles")
    assert snapshot_offsets(path, "articles") is None
    s = Stream()
    s.add(BODIES[0][1])
    write_snapshot(path, s.engine, "articles", {0: 7})
    assert snapshot_offsets(path, "articles") == {0: 7}
    assert snapshot_offsets(path, "other") is None


def test_a_page_that_is_not_an_article_belongs_to_no_story(tmp_path: Path) -> None:
    """The one rule for non-articles: dedup does not decide them, and the index stores them
    without a story id, so no story id exists without its story document."""
    stage = DedupStage(input_topic="articles", output_topic="deduped", state_dir=tmp_path)
    page = _article(1, BODIES[0][1], T0, is_article=False)
    (out,) = _outputs(stage.process(_batch([page])))
    assert (out.story_id, out.dedup_reason, out.duplicate_of, out.story) == (None,) * 4
    assert article_document(out)["story_id"] is None
    with pytest.raises(ValueError, match="not an article has no dedup fields"):
        DedupedArticle.model_validate({**dict(out), "story_id": "s"})
