from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from index.worker import article_document
from newsflow.contracts import (
    Alert,
    AlertArticle,
    Article,
    ContractError,
    DedupedArticle,
    DedupReason,
    Provenance,
    RawPage,
    StorySummary,
    decode,
    encode,
)
from newsflow.urls import url_id

URL = "https://news.example/politics/story"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ORIGINAL = "b" * 40

# Two messages of the deduplicated topic as the model before DedupedArticle wrote them: a
# near-duplicate with its story, and a page that is not an article, passed through by dedup.
STORED_COPY: dict[str, Any] = {
    "schema_version": 1,
    "id": "a" * 40,
    "url": URL,
    "canonical_url": None,
    "outlet": "example",
    "title": "Gates open",
    "text": "The gates opened.",
    "authors": [],
    "published_at": None,
    "language": None,
    "is_article": True,
    "content_hash": "c" * 64,
    "fetched_at": "2026-11-20T09:00:00Z",
    "extracted_at": "2026-11-20T09:00:00Z",
    "extractor": "test",
    "provenance": {
        "body": "test",
        "title": "h1",
        "published_at": None,
        "authors": None,
        "is_article": None,
    },
    "version": 1,
    "duplicate_of": ORIGINAL,
    "story_id": ORIGINAL,
    "dedup_reason": "near",
    "story": {
        "story_id": ORIGINAL,
        "first_seen": "2026-11-20T09:00:00Z",
        "last_seen": "2026-11-20T09:00:00Z",
        "representative": ORIGINAL,
        "title": "Gates open",
        "articles": 2,
        "outlets": ["example", "other"],
    },
}
STORED_PAGE: dict[str, Any] = {
    **STORED_COPY,
    "id": "d" * 40,
    "is_article": False,
    "provenance": None,
    "duplicate_of": None,
    "story_id": None,
    "dedup_reason": None,
    "story": None,
}
DEDUP_FIELDS = {"duplicate_of", "story_id", "dedup_reason", "story"}


def wire(payload: dict[str, Any]) -> bytes:
    """JSON as ``encode`` writes it (pydantic's compact separators)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def article(**changes: Any) -> Article:
    fields: dict[str, Any] = {
        "id": url_id(URL),
        "url": URL,
        "outlet": "example",
        "text": "The gates opened.",
        "content_hash": "c" * 64,
        "fetched_at": T0,
        "extractor": "test",
        "provenance": Provenance(body="test"),
    }
    return Article(**{**fields, **changes})


def story(**changes: Any) -> StorySummary:
    fields: dict[str, Any] = {
        "story_id": ORIGINAL,
        "first_seen": T0,
        "last_seen": T0,
        "representative": ORIGINAL,
        "title": "Gates open",
        "articles": 2,
    }
    return StorySummary(**{**fields, **changes})


def deduped(**changes: Any) -> DedupedArticle:
    fields: dict[str, Any] = {
        **dict(article()),
        "duplicate_of": ORIGINAL,
        "story_id": ORIGINAL,
        "dedup_reason": DedupReason.NEAR,
        "story": story(),
    }
    return DedupedArticle(**{**fields, **changes})


def test_raw_page_round_trips_as_json() -> None:
    page = RawPage(
        id=url_id(URL), url=URL, fetched_url=URL, outlet="example", http_status=200, html="<p>é</p>"
    )
    assert decode(RawPage, encode(page)) == page


def test_decode_ignores_unknown_fields_at_every_level() -> None:
    message = deduped()
    payload = json.loads(encode(message))
    payload["added_later"] = {"any": "shape"}
    payload["provenance"]["summary"] = "lede"
    payload["story"]["trend"] = 0.5
    assert decode(DedupedArticle, json.dumps(payload)) == message
    alert = Alert(
        id=f"w-{'a' * 16}:s1:new_story",
        kind="new_story",
        watch_id=f"w-{'a' * 16}",
        watch_name="floods",
        story_id="s1",
        story_articles=1,
        article=AlertArticle(id=url_id(URL), url=URL, outlet="example"),
        arrived_at=T0,
    )
    newer = json.loads(encode(alert))
    newer["article"]["image"] = "https://news.example/gates.jpg"
    assert decode(Alert, json.dumps(newer)) == alert


def test_decode_still_rejects_wrong_types_missing_fields_and_other_versions() -> None:
    page = RawPage(id=url_id(URL), url=URL, fetched_url=URL, outlet="x", http_status=200, html="")
    payload = page.model_dump(mode="json")
    with pytest.raises(ContractError, match="http_status"):
        decode(RawPage, json.dumps({**payload, "http_status": "fine"}))
    with pytest.raises(ContractError, match="html: Field required"):
        decode(RawPage, json.dumps({k: v for k, v in payload.items() if k != "html"}))
    for version in (2, 99):
        with pytest.raises(ContractError, match="schema_version"):
            decode(RawPage, json.dumps({**payload, "schema_version": version}))
    nested = json.loads(encode(deduped()))
    nested["story"]["articles"] = "two"
    with pytest.raises(ContractError, match=r"story\.articles"):
        decode(DedupedArticle, json.dumps(nested))


def test_unknown_fields_are_refused_when_building_and_encoding() -> None:
    with pytest.raises(ValidationError, match="added_later"):
        article(added_later=1)
    with pytest.raises(ValidationError, match="summary"):
        Provenance(body="test", summary="lede")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="trend"):
        story(trend=0.5)
    fields = dict(deduped())
    slipped = DedupedArticle.model_construct(
        **{**fields, "provenance": {"body": "test", "summary": "lede"}}
    )
    with pytest.raises(ContractError, match=r"provenance\.summary: Extra inputs"):
        encode(slipped)
    slipped = DedupedArticle.model_construct(
        **{**fields, "story": {**story().model_dump(), "trend": 0.5}}
    )
    with pytest.raises(ContractError, match=r"story\.trend: Extra inputs"):
        encode(slipped)


def test_an_enrich_stage_article_has_no_dedup_fields_on_the_wire() -> None:
    assert not DEDUP_FIELDS & set(json.loads(encode(article())))
    with pytest.raises(ValidationError, match="story_id"):
        article(story_id=ORIGINAL)
    # Stored before the split, with the dedup fields null: still read, the fields ignored.
    stored = {k: v for k, v in STORED_COPY.items() if k not in DEDUP_FIELDS}
    read = decode(Article, wire({**stored, **dict.fromkeys(DEDUP_FIELDS)}))
    assert encode(read) == wire(stored)


def test_deduplicated_messages_keep_their_json() -> None:
    for stored in (STORED_COPY, STORED_PAGE):
        message = decode(DedupedArticle, wire(stored))
        assert encode(message) == wire(stored)  # same fields, same order, same values
    copy = decode(DedupedArticle, wire(STORED_COPY))
    assert copy.dedup_reason is DedupReason.NEAR and copy.story == story(
        outlets=["example", "other"]
    )
    assert list(json.loads(encode(deduped()))) == list(STORED_COPY)


def test_the_index_documents_of_deduplicated_messages_are_unchanged() -> None:
    copy = decode(DedupedArticle, wire(STORED_COPY))
    assert article_document(copy) == {k: v for k, v in STORED_COPY.items() if k != "story"}
    page = decode(DedupedArticle, wire(STORED_PAGE))
    expected = {k: v for k, v in STORED_PAGE.items() if k != "story"}
    # A page that is not an article belongs to no story: stored without a story id, so every
    # story id in the index has a story document.
    assert article_document(page) == expected and expected["story_id"] is None


def test_a_deduplicated_message_needs_its_story_and_decision() -> None:
    for missing in ("story", "story_id", "dedup_reason"):
        payload = {k: v for k, v in STORED_COPY.items() if k != missing}
        with pytest.raises(ContractError, match=f"{missing}: Field required"):
            decode(DedupedArticle, wire(payload))
    with pytest.raises(ValidationError, match="story"):
        DedupedArticle(**{**dict(article()), "story_id": ORIGINAL, "dedup_reason": "new"})
    with pytest.raises(ContractError, match="needs its story_id and dedup_reason"):
        decode(DedupedArticle, wire({**STORED_COPY, "story_id": None}))
    with pytest.raises(ContractError, match="not the article's story_id"):
        decode(DedupedArticle, wire({**STORED_COPY, "story_id": "another"}))
    with pytest.raises(ContractError, match="not an article has no dedup fields"):
        decode(DedupedArticle, wire({**STORED_COPY, "is_article": False}))
    with pytest.raises(ContractError, match="dedup_reason: Input should be"):
        decode(DedupedArticle, wire({**STORED_COPY, "dedup_reason": "similar"}))
    # The summary is None only when the story left dedup's clustering window before a copy.
    late = decode(DedupedArticle, wire({**STORED_COPY, "story": None}))
    assert (late.story_id, late.story) == (ORIGINAL, None)


def test_encode_validates_messages_built_without_validation() -> None:
    bogus = Article.model_construct(id="nothex", url=URL)  # type: ignore[call-arg]
    with pytest.raises(ContractError, match="Article"):
        encode(bogus)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        RawPage(
            id=url_id(URL),
            url=URL,
            fetched_url=URL,
            outlet="x",
            http_status=200,
            html="",
            fetched_at=datetime(2026, 1, 1),
        )
    RawPage(
        id=url_id(URL),
        url=URL,
        fetched_url=URL,
        outlet="x",
        http_status=200,
        html="",
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
