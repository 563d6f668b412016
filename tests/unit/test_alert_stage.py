"""Once per story: the alert stage's decisions with an in-memory ledger and watch list."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from kafka import TopicPartition

from alert.matcher import CompiledWatch, InProcessMatcher, WatchCache, compile_watch
from alert.planner import new_story_intents, update_intents
from alert.stage import AlertStage
from alert.store import Claim, Outcome
from alert.webhook import (
    REPLAY_WINDOW_SECONDS,
    BlockedWebhookError,
    WebhookSender,
    WebhookStage,
    check_webhook_url,
    sign,
    verify,
)
from newsflow.contracts import Alert, DedupedArticle, DedupReason, StorySummary, Watch
from newsflow.errors import PermanentError, RetryableError
from newsflow.pinning import ADDRESS_EXTENSION
from newsflow.runtime import Done, Failed, Inbound
from newsflow.urls import url_id

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FLOOD = Watch(id="w-" + "a" * 16, name="floods", query="flood gates")
STORM = Watch(id="w-" + "b" * 16, name="storms", query="storm")
TOPIC = "deduped"


def article(n: int, story: str, size: int, text: str, outlet: str = "riverside") -> DedupedArticle:
    url = f"http://{outlet}.example/{story}/{n}"
    aid = url_id(url)
    return DedupedArticle(
        id=aid,
        url=url,
        outlet=outlet,
        title=f"Article {n}",
        text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        fetched_at=T0 + timedelta(minutes=n),
        extractor="test",
        story_id=story,
        dedup_reason=DedupReason.NEW,
        story=StorySummary(
            story_id=story,
            first_seen=T0,
            last_seen=T0 + timedelta(minutes=n),
            representative=aid,
            title="A story",
            articles=size,
            outlets=[outlet],
        ),
    )


class FakeLedger:
    """The ledger's contract in memory: create-if-absent, claimed → sent."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, object]] = {}
        self.claims = 0

    def claim(self, claims: Sequence[Claim]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for c in claims:
            self.claims += 1
            record = self.records.get(c.key)
            if record is None:
                self.records[c.key] = {
                    "state": "claimed",
                    "article_id": c.article_id,
                    "story_articles": c.story_articles,
                    "watch_id": c.watch_id,
                    "story_id": c.story_id,
                    "kind": c.kind,
                }
                outcomes.append("claimed")
            elif record["state"] == "claimed" and record["article_id"] == c.article_id:
                outcomes.append("reclaimed")
            else:
                outcomes.append("taken")
        return outcomes

    def mark_sent(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.records[key]["state"] = "sent"

    def new_story_sizes(self, story_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for r in self.records.values():
            if r["kind"] == "new_story" and r["story_id"] in story_ids:
                found.setdefault(str(r["story_id"]), {})[str(r["watch_id"])] = int(
                    str(r["story_articles"])
                )
        return found

    def refresh(self) -> None:
        pass


class FixedWatches(WatchCache):
    def __init__(self, watches: list[Watch]) -> None:
        self.fixed = [c for c in (compile_watch(w) for w in watches) if c is not None]

    def current(self) -> list[CompiledWatch]:
        return self.fixed

    def get(self, watch_id: str) -> Watch | None:
        return next((c.watch for c in self.fixed if c.watch.id == watch_id), None)


def make_stage(ledger: FakeLedger, watches: list[Watch], update_size: int = 4) -> AlertStage:
    return AlertStage(
        watches=FixedWatches(watches),
        matcher=InProcessMatcher(),
        ledger=ledger,  # type: ignore[arg-type]
        output_topic="alerts",
        update_size=update_size,
    )


class Feed:
    """Offsets for a stream of articles, and committing like the runner does."""

    def __init__(self, stage: AlertStage) -> None:
        self.stage = stage
        self.offset = 0

    def run(self, articles: Sequence[DedupedArticle], *, commit: bool = True) -> list[Alert]:
        batch = [Inbound(TOPIC, 0, self.offset + i, a.id, None, a) for i, a in enumerate(articles)]
        results = self.stage.process(batch)
        alerts: list[Alert] = []
        for result in results:
            assert isinstance(result, Done)
            alerts.extend(out.message for out in result.outputs)  # type: ignore[misc]
        if commit:
            self.offset += len(articles)
            self.stage.after_commit({TopicPartition(TOPIC, 0): self.offset})
        return alerts


FLOOD_TEXT = "The flood gates at Marlow opened on Tuesday."
OTHER_TEXT = "The county libraries open on Sundays."


def test_one_alert_per_story_across_copies_and_later_articles() -> None:
    ledger = FakeLedger()
    feed = Feed(make_stage(ledger, [FLOOD, STORM]))
    first = feed.run([article(1, "s1", 1, FLOOD_TEXT), article(2, "s2", 1, OTHER_TEXT)])
    assert [(a.watch_id, a.story_id, a.kind) for a in first] == [(FLOOD.id, "s1", "new_story")]
    assert first[0].id == f"{FLOOD.id}:s1:new_story"
    assert first[0].arrived_at == T0 + timedelta(minutes=1)
    # Copies in one batch and in later batches, the other story growing: nothing new.
    copies = [article(3, "s1", 2, FLOOD_TEXT, "valley"), article(4, "s1", 3, FLOOD_TEXT)]
    assert feed.run(copies) == []
    assert feed.run([article(5, "s2", 2, OTHER_TEXT)]) == []
    # Once recorded, a later copy does not even ask the ledger.
    claims = ledger.claims
    assert feed.run([article(6, "s1", 3, FLOOD_TEXT, "county")]) == []
    assert ledger.claims == claims


def test_one_update_when_the_story_reaches_the_size_never_more() -> None:
    ledger = FakeLedger()
    feed = Feed(make_stage(ledger, [FLOOD, STORM], update_size=4))
    assert len(feed.run([article(1, "s1", 1, FLOOD_TEXT)])) == 1
    # The article that makes it grow need not match the watch itself.
    update = feed.run([article(2, "s1", 4, OTHER_TEXT)])
    assert [(a.kind, a.story_articles) for a in update] == [("story_update", 4)]
    assert feed.run([article(3, "s1", 5, FLOOD_TEXT), article(4, "s1", 9, FLOOD_TEXT)]) == []
    # A fresh worker (restart) with the same ledger: still nothing.
    assert (
        Feed(make_stage(ledger, [FLOOD, STORM], update_size=4)).run(
            [article(5, "s1", 10, FLOOD_TEXT)]
        )
        == []
    )


def test_new_story_and_update_in_one_batch() -> None:
    ledger = FakeLedger()
    feed = Feed(make_stage(ledger, [FLOOD], update_size=3))
    alerts = feed.run([article(1, "s1", 1, FLOOD_TEXT), article(2, "s1", 3, FLOOD_TEXT)])
    assert [a.kind for a in alerts] == ["new_story", "story_update"]


def test_an_established_story_never_alerts_as_new() -> None:
    ledger = FakeLedger()
    feed = Feed(make_stage(ledger, [FLOOD], update_size=4))
    assert feed.run([article(1, "s1", 4, FLOOD_TEXT), article(2, "s1", 7, FLOOD_TEXT)]) == []


def test_redelivery_after_a_crash_before_commit_sends_again_with_the_same_id() -> None:
    ledger = FakeLedger()
    stage = make_stage(ledger, [FLOOD])
    lost = Feed(stage).run([article(1, "s1", 1, FLOOD_TEXT)], commit=False)  # crash: no ack
    again = Feed(make_stage(ledger, [FLOOD])).run([article(1, "s1", 1, FLOOD_TEXT)])
    assert [a.id for a in again] == [a.id for a in lost]
    assert ledger.records[again[0].id]["state"] == "sent"
    # After it was sent, a replay of the same article sends nothing.
    assert Feed(make_stage(ledger, [FLOOD])).run([article(1, "s1", 1, FLOOD_TEXT)]) == []


def test_another_articles_claim_is_left_to_it() -> None:
    ledger = FakeLedger()
    Feed(make_stage(ledger, [FLOOD])).run([article(1, "s1", 1, FLOOD_TEXT)], commit=False)
    other = Feed(make_stage(ledger, [FLOOD])).run([article(2, "s1", 2, FLOOD_TEXT, "valley")])
    assert other == []  # the first article's redelivery will send it


def test_articles_without_a_story_raise_nothing() -> None:
    # A copy that arrived after its story left dedup's clustering window.
    late = DedupedArticle.model_validate(
        {**dict(article(1, "s1", 1, FLOOD_TEXT)), "dedup_reason": DedupReason.EXACT, "story": None}
    )
    assert new_story_intents(late, [FLOOD], update_size=5) == []
    assert update_intents(late, {FLOOD.id: 1}, {FLOOD.id: FLOOD}, update_size=5) == []
    # A page that is not an article, passed through by dedup undecided.
    page = DedupedArticle.model_validate(
        {**dict(late), "is_article": False, "story_id": None, "dedup_reason": None}
    )
    assert new_story_intents(page, [FLOOD], update_size=5) == []
    ledger = FakeLedger()
    assert Feed(make_stage(ledger, [FLOOD], update_size=1)).run([late, page]) == []
    assert ledger.claims == 0
    grown = article(2, "s1", 5, FLOOD_TEXT)
    assert update_intents(grown, {FLOOD.id: 1}, {}, update_size=5) == []  # watch deleted
    assert len(update_intents(grown, {FLOOD.id: 1}, {FLOOD.id: FLOOD}, update_size=5)) == 1


# --- webhooks -----------------------------------------------------------------------------


NOW = 1_800_000_000


def test_signature_round_trip() -> None:
    body = b'{"id": "x"}'
    signature = sign(b"secret", NOW, body)
    assert signature.startswith("sha256=")
    assert verify(b"secret", body, signature, str(NOW), now=NOW)
    assert not verify(b"other", body, signature, str(NOW), now=NOW)
    assert not verify(b"secret", body + b" ", signature, str(NOW), now=NOW)


def test_signature_covers_the_timestamp_and_expires() -> None:
    body = b'{"id": "x"}'
    signature = sign(b"secret", NOW, body)
    # A captured delivery replayed later, or with its timestamp moved forward, fails.
    assert not verify(b"secret", body, signature, str(NOW + 1), now=NOW + 1)
    assert verify(b"secret", body, signature, str(NOW), now=NOW + REPLAY_WINDOW_SECONDS)
    assert not verify(b"secret", body, signature, str(NOW), now=NOW + REPLAY_WINDOW_SECONDS + 1)
    assert not verify(b"secret", body, signature, str(NOW), now=NOW - REPLAY_WINDOW_SECONDS - 1)
    assert not verify(b"secret", body, signature, "", now=NOW)
    assert not verify(b"secret", body, signature, "-5", now=NOW)
    # The old scheme (HMAC of the body alone) no longer verifies.
    legacy = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert not verify(b"secret", body, legacy, str(NOW), now=NOW)


@pytest.mark.parametrize(
    ("url", "addresses", "allow_private", "blocked"),
    [
        ("https://hooks.example/x", ["93.184.216.34"], False, False),
        ("http://127.0.0.1:9/hook", [], False, True),
        ("http://127.0.0.1:9/hook", [], True, False),
        ("http://hooks.example/x", ["10.0.0.5"], False, True),
        ("http://hooks.example/x", ["169.254.169.254"], True, True),  # metadata: never
        ("http://user:pw@hooks.example/x", ["93.184.216.34"], False, True),
        ("ftp://hooks.example/x", ["93.184.216.34"], False, True),
    ],
)
def test_webhook_address_guard(
    url: str, addresses: list[str], allow_private: bool, blocked: bool
) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return addresses

    if blocked:
        with pytest.raises(BlockedWebhookError):
            check_webhook_url(url, allow_private=allow_private, resolver=resolver)
    else:
        check_webhook_url(url, allow_private=allow_private, resolver=resolver)


def _alert() -> Alert:
    feed = Feed(make_stage(FakeLedger(), [FLOOD]))
    [alert] = feed.run([article(1, "s1", 1, FLOOD_TEXT)])
    return alert


@pytest.mark.parametrize(
    ("status", "error"),
    [(200, None), (204, None), (500, RetryableError), (429, RetryableError), (404, PermanentError)],
)
def test_webhook_status_decides_retry(status: int, error: type[Exception] | None) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    sender = WebhookSender(
        timeout=1,
        allow_private=False,
        user_agent="test",
        resolver=lambda host, port: ["93.184.216.34"],
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
    )
    alert = _alert()
    if error is None:
        assert sender.send("https://hooks.example/in", alert, b"k") == status
    else:
        with pytest.raises(error):
            sender.send("https://hooks.example/in", alert, b"k")
    [request] = seen
    assert request.extensions[ADDRESS_EXTENSION] == "93.184.216.34"  # the checked address
    assert request.url.host == request.headers["host"] == "hooks.example"
    assert request.headers["x-newsflow-delivery"] == alert.id
    assert request.headers["x-newsflow-timestamp"] == str(NOW)
    assert verify(
        b"k",
        request.content,
        request.headers["x-newsflow-signature"],
        request.headers["x-newsflow-timestamp"],
        now=NOW,
    )


class RecordedAlerts:
    """The ledger's ``recorded`` from a dict: the alert records the alert stage wrote."""

    def __init__(self, records: dict[str, dict[str, object]]) -> None:
        self.records = records

    def recorded(self, keys: Sequence[str]) -> dict[str, dict[str, object]]:
        return {k: self.records[k] for k in keys if k in self.records}


def _webhook_stage(
    watches: list[Watch], records: dict[str, dict[str, object]], seen: list[httpx.Request]
) -> WebhookStage:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender = WebhookSender(
        timeout=1,
        allow_private=False,
        user_agent="test",
        fallback_secret=b"global",
        resolver=lambda host, port: ["93.184.216.34"],
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
    )
    return WebhookStage(FixedWatches(watches), sender, RecordedAlerts(records))  # type: ignore[arg-type]


def _record(alert: Alert) -> dict[str, object]:
    return {"watch_id": alert.watch_id, "article_id": alert.article.id, "state": "sent"}


def test_webhooks_are_signed_with_the_watch_s_own_secret() -> None:
    hooked = FLOOD.model_copy(
        update={"webhook_url": "https://hooks.example/in", "webhook_secret": "whsec_flood"}
    )
    alert = _alert()
    seen: list[httpx.Request] = []
    stage = _webhook_stage([hooked], {alert.id: _record(alert)}, seen)
    [result] = stage.process([Inbound("alerts", 0, 0, alert.watch_id, None, alert)])
    assert isinstance(result, Done)
    [request] = seen
    signature, stamp = request.headers["x-newsflow-signature"], str(NOW)
    assert verify(b"whsec_flood", request.content, signature, stamp, now=NOW)
    assert not verify(b"global", request.content, signature, stamp, now=NOW)


def test_a_watch_stored_without_a_secret_is_signed_with_the_fallback() -> None:
    hooked = FLOOD.model_copy(update={"webhook_url": "https://hooks.example/in"})
    alert = _alert()
    seen: list[httpx.Request] = []
    stage = _webhook_stage([hooked], {alert.id: _record(alert)}, seen)
    [result] = stage.process([Inbound("alerts", 0, 0, alert.watch_id, None, alert)])
    assert isinstance(result, Done)
    [request] = seen
    signature = request.headers["x-newsflow-signature"]
    assert verify(b"global", request.content, signature, str(NOW), now=NOW)


def test_an_alert_the_alert_stage_did_not_raise_is_not_signed() -> None:
    """Someone who can write to the alerts topic forges an alert for an existing watch."""
    hooked = FLOOD.model_copy(
        update={"webhook_url": "https://hooks.example/in", "webhook_secret": "whsec_flood"}
    )
    real = _alert()
    other_article = real.model_copy(
        update={"article": real.article.model_copy(update={"id": "0" * 40})}
    )
    seen: list[httpx.Request] = []
    stage = _webhook_stage([hooked], {real.id: _record(real)}, seen)
    unrecorded = real.model_copy(update={"id": f"{FLOOD.id}:never:new_story"})
    batch = [
        Inbound("alerts", 0, i, a.watch_id, None, a)
        for i, a in enumerate([unrecorded, other_article])
    ]
    results = stage.process(batch)
    assert seen == []
    for result in results:
        assert isinstance(result, Failed) and result.error.reason == "alert_not_recorded"
