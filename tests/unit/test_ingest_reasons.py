"""The ingest reason codes: what each one means, pinned, and every emitted code a member."""

from __future__ import annotations

import json
from typing import get_type_hints

import pytest

from ingest.crawl import CrawlOutcome, OutcomeKind, summarize
from ingest.discovery import SitemapFailure
from ingest.fetch import FetchResult
from ingest.reasons import Disposition, Reason

FETCHED, SKIPPED, FAILED = Disposition.FETCHED, Disposition.SKIPPED, Disposition.FAILED

#: code -> (disposition, retry_later, poll_ok, routine). Changing a row changes what the crawl
#: records, retries, counts as feed health and logs: do it on purpose.
MAPPING = {
    "fetched": (FETCHED, False, True, True),
    "not_modified": (SKIPPED, False, True, True),
    "unchanged": (SKIPPED, False, True, True),
    "seen": (SKIPPED, False, False, True),
    "over_limit": (SKIPPED, False, False, True),
    "not_due": (SKIPPED, False, False, False),
    "duplicate": (SKIPPED, False, False, False),
    "not_html": (SKIPPED, False, False, False),
    "offsite": (SKIPPED, False, False, False),
    "too_large": (SKIPPED, False, False, False),
    "blocked_address": (SKIPPED, False, False, False),
    "robots_disallowed": (SKIPPED, False, False, False),
    "rate_limited": (SKIPPED, True, False, False),
    "timeout": (FAILED, True, False, False),
    "too_many_redirects": (FAILED, False, False, False),
    "bad_encoding": (FAILED, False, False, False),
    "http_error": (FAILED, False, False, False),
    "parse_error": (FAILED, False, False, False),
    "too_deep": (FAILED, False, False, False),
}

FETCHER_CODES = {
    "fetched",
    "not_modified",
    "timeout",
    "too_large",
    "too_many_redirects",
    "blocked_address",
    "not_html",
    "bad_encoding",
    "http_error",
    "offsite",
    "parse_error",
    "robots_disallowed",
    "rate_limited",
}
CRAWL_CODES = {"unchanged", "seen", "over_limit", "not_due", "duplicate"}
SITEMAP_WALK_CODES = {"parse_error", "too_deep", "offsite"}


def test_every_code_has_its_pinned_meaning() -> None:
    actual = {
        str(reason): (reason.disposition, reason.retry_later, reason.poll_ok, reason.routine)
        for reason in Reason
    }
    assert actual == MAPPING


def test_every_code_the_fetcher_and_the_crawl_emit_is_a_member() -> None:
    assert {str(r) for r in Reason} == FETCHER_CODES | CRAWL_CODES | SITEMAP_WALK_CODES
    # Everything emitted goes through these fields, so mypy holds the code to members.
    for carrier in (FetchResult, CrawlOutcome, SitemapFailure):
        assert get_type_hints(carrier)["reason"] is Reason


def test_members_are_their_codes_on_the_wire() -> None:
    code: str = Reason.NOT_MODIFIED
    assert code == "not_modified" and hash(code) == hash("not_modified")
    assert type(str(Reason.NOT_MODIFIED)) is str and str(Reason.NOT_MODIFIED) == "not_modified"
    assert f"{Reason.OVER_LIMIT}" == "over_limit"
    assert json.dumps({Reason.SEEN: Reason.SEEN}) == '{"seen": "seen"}'


def test_the_derived_decisions_give_the_former_answers() -> None:
    """The sets the crawl and publish used before the enum, each decision for every code."""
    skipped = {
        "seen",
        "over_limit",
        "not_modified",
        "unchanged",
        "not_due",
        "not_html",
        "offsite",
        "too_large",
        "blocked_address",
        "robots_disallowed",
        "rate_limited",
        "duplicate",
    }
    poll_ok = {"fetched", "not_modified", "unchanged"}
    retry_later = {"timeout", "rate_limited"}
    logged_at_info = {"fetched", "seen", "over_limit", "not_modified", "unchanged"}
    for reason in Reason:
        assert (reason.disposition is Disposition.SKIPPED) == (reason in skipped), reason
        assert reason.poll_ok == (reason in poll_ok), reason
        assert reason.retry_later == (reason in retry_later), reason
        assert reason.routine == (reason in logged_at_info), reason


@pytest.mark.parametrize(
    ("reason", "status", "retried"),
    [
        (Reason.TIMEOUT, None, True),
        (Reason.RATE_LIMITED, 429, True),
        (Reason.HTTP_ERROR, 503, True),
        (Reason.HTTP_ERROR, 500, True),
        (Reason.HTTP_ERROR, None, True),  # no response: DNS, connection reset
        (Reason.HTTP_ERROR, 404, False),
        (Reason.HTTP_ERROR, 410, False),
        (Reason.NOT_HTML, 200, False),
        (Reason.TOO_MANY_REDIRECTS, 302, False),
        (Reason.FETCHED, 200, False),
    ],
)
def test_articles_retried_next_run(reason: Reason, status: int | None, retried: bool) -> None:
    assert reason.retried_next_run(status) is retried


def _outcome(
    reason: Reason, kind: OutcomeKind = "article", url: str = "https://n.example/a"
) -> CrawlOutcome:
    return CrawlOutcome(url, None, reason, 0, 0.0, kind=kind)


def test_summary_buckets_follow_the_dispositions() -> None:
    summary = summarize(
        [
            _outcome(Reason.FETCHED, url="https://n.example/1"),
            _outcome(Reason.RATE_LIMITED, url="https://n.example/2"),
            _outcome(Reason.TIMEOUT, url="https://n.example/3"),
            _outcome(Reason.FETCHED, "feed"),
            _outcome(Reason.NOT_DUE, "feed"),
            _outcome(Reason.UNCHANGED, "sitemap"),
            _outcome(Reason.OVER_LIMIT, "sitemap"),
            _outcome(Reason.ROBOTS_DISALLOWED, "feed"),
        ]
    )
    assert summary["fetched"] == 1
    assert summary["skipped"] == {"rate_limited": 1}
    assert summary["failed"] == {"timeout": 1}
    assert summary["sources"] == {"ok": 3, "failed": {"over_limit": 1, "robots_disallowed": 1}}
    keys = [*summary["skipped"], *summary["failed"], *summary["sources"]["failed"]]
    assert all(type(key) is str for key in keys)  # plain strings in logs and task results
