from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from newsflow.contracts import Article, ContractError, RawPage, decode, encode
from newsflow.urls import url_id

URL = "https://news.example/politics/story"


def test_raw_page_round_trips_as_json() -> None:
    page = RawPage(
        id=url_id(URL), url=URL, fetched_url=URL, outlet="example", http_status=200, html="<p>é</p>"
    )
    assert decode(RawPage, encode(page)) == page


def test_unknown_fields_are_ignored_other_versions_rejected() -> None:
    page = RawPage(id=url_id(URL), url=URL, fetched_url=URL, outlet="x", http_status=200, html="")
    payload = page.model_dump(mode="json")
    assert decode(RawPage, json.dumps({**payload, "unexpected": 1})) == page
    with pytest.raises(ContractError, match="schema_version"):
        decode(RawPage, json.dumps({**payload, "schema_version": 2}))


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
