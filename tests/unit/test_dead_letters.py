"""Dead letters sized to fit their topic: what is cut, and what the letter says about it."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from newsflow.contracts import DeadLetter, decode, encode
from newsflow.dlq import (
    DETAIL_MAX_CHARS,
    KEY_MAX_CHARS,
    LETTER_MAX_BYTES,
    fit_letter,
    letter_size,
    replay_target_problem,
)
from newsflow.kafka_io import MAX_MESSAGE_BYTES
from newsflow.settings import Settings


def letter(value: str, *, key: str | None = "k", detail: str = "no text") -> DeadLetter:
    return DeadLetter(
        stage="enrich",
        source_topic="raw.v1",
        partition=2,
        offset=41,
        key=key,
        value=value,
        url="https://example.org/a",
        error_kind="permanent",
        reason="empty_text",
        detail=detail,
    )


def test_a_letter_that_fits_is_unchanged_and_its_json_has_no_new_fields() -> None:
    small = letter('{"html": "<p>x</p>"}')
    assert fit_letter(small, small.value.encode(), max_bytes=10_000) == small
    assert set(json.loads(encode(small))).isdisjoint({"value_truncated", "value_bytes"})


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii markup <div>" * 5000,
        '"quoted" \\ and \n control \x00 characters ' * 3000,  # 2 to 6 bytes each in JSON
        "accents é, and CJK 中文 and emoji 📰 " * 3000,
    ],
)
def test_a_letter_over_the_limit_keeps_a_prefix_and_names_its_original(text: str) -> None:
    original = text.encode("utf-8")
    big = letter(text)
    assert letter_size(big) > 20_000
    cut = fit_letter(big, original, max_bytes=20_000)
    assert letter_size(cut) <= 20_000
    assert letter_size(cut) > 15_000, "the prefix uses most of the room"
    assert cut.value and text.startswith(cut.value)
    assert cut.value_truncated is True
    assert cut.value_bytes == len(original)
    assert cut.value_sha256 == hashlib.sha256(original).hexdigest()
    assert (cut.source_topic, cut.partition, cut.offset, cut.key) == ("raw.v1", 2, 41, "k")
    assert decode(DeadLetter, encode(cut)) == cut  # valid on the wire, read back the same


def test_a_nine_megabyte_page_fits_under_the_topic_limit() -> None:
    html = '<div class="empty" data-x="1"></div>' * 260_000  # ~9.4 MB, every quote escaped twice
    page_json = json.dumps({"html": html}).encode()
    big = letter(page_json.decode())
    assert letter_size(big) > MAX_MESSAGE_BYTES
    cut = fit_letter(big, page_json)
    assert LETTER_MAX_BYTES - 100_000 < letter_size(cut) <= LETTER_MAX_BYTES < MAX_MESSAGE_BYTES
    assert cut.value_bytes == len(page_json)


def test_no_room_for_the_value_leaves_a_reference_only() -> None:
    big = letter("x" * 1000)
    reference = fit_letter(big, b"x" * 1000, max_bytes=0)
    assert reference.value == ""
    assert (reference.value_truncated, reference.value_bytes) == (True, 1000)
    assert reference.value_sha256 == hashlib.sha256(b"x" * 1000).hexdigest()


def test_a_huge_key_is_cut_and_the_letter_refers_to_the_original() -> None:
    huge = letter("{}", key="k" * 100_000)
    cut = fit_letter(huge, b"{}")
    assert cut.key == "k" * KEY_MAX_CHARS
    assert cut.value_truncated is True


def test_detail_is_capped() -> None:
    fitted = fit_letter(letter("{}", detail="why " * 10_000), b"{}")
    assert len(fitted.detail) == DETAIL_MAX_CHARS
    assert fitted.detail.endswith("…")
    assert fitted.value_truncated is False


def test_a_truncated_letter_must_name_its_original() -> None:
    with pytest.raises(ValidationError, match="value_bytes and value_sha256"):
        DeadLetter(**letter("").model_dump(exclude={"value_truncated"}), value_truncated=True)


@pytest.mark.parametrize(
    ("stage", "source_topic", "allowed"),
    [
        ("enrich", "raw-pages", True),
        ("webhook", "alerts", True),
        ("a-stage-of-a-test", "articles", True),  # unnamed stages: any input topic
        ("enrich", "articles", False),  # a known stage's letter goes back to its own input
        ("index", "dead-letters", False),  # never into the dead letters themselves
        ("a-stage-of-a-test", "some-other-team.payments", False),
        ("a-stage-of-a-test", "__consumer_offsets", False),
    ],
)
def test_replay_only_to_the_topology_s_input_topics(
    stage: str, source_topic: str, allowed: bool
) -> None:
    settings = Settings(
        topic_raw_pages="raw-pages",
        topic_articles="articles",
        topic_deduped_articles="deduped",
        topic_dead_letters="dead-letters",
        topic_alerts="alerts",
    )
    forged = letter("{}").model_copy(update={"stage": stage, "source_topic": source_topic})
    problem = replay_target_problem(forged, settings)
    assert (problem is None) == allowed, problem
