"""Alerts on new stories against the real Kafka and Elasticsearch: watches registered through
the API, articles through the real dedup and alert stages, webhooks to a loopback server."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr
from typer.testing import CliRunner

from alert.store import WatchStore, alerts_index
from alert.webhook import verify
from newsflow.contracts import Alert, AlertArticle, Article, decode, encode
from newsflow.dlq import read_letters
from newsflow.es import make_client
from newsflow.kafka_io import make_producer
from newsflow.settings import Settings, get_settings
from newsflow.urls import url_id
from pipeline.api import create_app
from pipeline.cli import app as cli_app
from pipeline.stages import build_runner

pytestmark = pytest.mark.integration

ADMIN_KEY = "alerts-admin-key-0123456789abcdefghij"
READ_KEY = "alerts-read-key-0123456789abcdefghij"
SECRET = "webhook-test-secret"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _words(seed: str, count: int) -> list[str]:
    """Pseudo-words per seed: stories that share no vocabulary never cluster together."""
    words = []
    for i in range(count):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        words.append("".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:7]))
    return words


def story_text(seed: str, keyword: str) -> str:
    words = _words(seed, 90)
    words[5] = keyword
    return "\n\n".join(" ".join(words[i : i + 30]) + "." for i in range(0, 90, 30))


def make_article(outlet: str, slug: str, text: str, title: str, minutes: int) -> Article:
    url = f"http://{outlet}.example/news/{slug}"
    return Article(
        id=url_id(url),
        url=url,
        outlet=outlet,
        title=title,
        text=text,
        published_at=T0 + timedelta(minutes=minutes),
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        fetched_at=datetime.now(UTC),
        extractor="test",
    )


@pytest.fixture
def settings(infra_settings: Settings) -> Iterator[Settings]:
    """Webhooks signed and allowed to loopback (the alerts topic is the test's own)."""
    settings = infra_settings.model_copy(
        update={
            "alert_webhook_secret": SecretStr(SECRET),
            "alert_webhook_allow_private_network": True,
            "alert_update_story_size": 4,
            "alert_watch_refresh_seconds": 0.0,
            "worker_max_retries": 2,
            "worker_metrics_base_port": 0,
            "api_auth": "on",
            "api_admin_keys": SecretStr(ADMIN_KEY),
            "api_read_keys": SecretStr(READ_KEY),
        }
    )
    yield settings


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    es = make_client(settings)
    with TestClient(create_app(settings, es)) as client:
        yield client
    es.close()


def add_watch(api: TestClient, name: str, query: str, webhook: str | None = None) -> str:
    return create_watch(api, name, query, webhook)["id"]


def create_watch(
    api: TestClient, name: str, query: str, webhook: str | None = None
) -> dict[str, str]:
    """The API's answer to the creation: the watch's one chance to show its secret."""
    body: dict[str, Any] = {"name": name, "query": query}
    if webhook:
        body["webhook_url"] = webhook
    response = api.post("/v1/watches", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


def produce(settings: Settings, articles: list[Article]) -> None:
    producer = make_producer(settings)
    for a in articles:
        producer.send(settings.topic_articles, key=a.id.encode(), value=encode(a)).get(30)
    producer.close()


def drain(settings: Settings, stage: Any, expected: int, group: str | None = None) -> None:
    runner = build_runner(stage, settings, group_id=group or f"{settings.index_prefix}-{stage}")
    try:
        runner.run(max_messages=expected, idle_timeout=15)
    finally:
        runner.stage.close()
        runner.consumer.close()
        runner.producer.close()
    assert runner.stats.consumed >= expected, runner.stats


def read_alerts(settings: Settings, *, idle: float = 3.0) -> list[Alert]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = consumer.partitions_for_topic(settings.topic_alerts) or set()
        tps = [TopicPartition(settings.topic_alerts, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        alerts: list[Alert] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle:
            for records in consumer.poll(timeout_ms=300).values():
                alerts.extend(decode(Alert, r.value) for r in records)
                quiet_since = time.monotonic()
        return alerts
    finally:
        consumer.close()


def test_watch_api_validates_and_scopes(api: TestClient) -> None:
    admin, read = {"X-API-Key": ADMIN_KEY}, {"X-API-Key": READ_KEY}
    made = api.post("/v1/watches", json={"name": "floods", "query": "flood -sport"}, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["understood"] == "(flood AND NOT sport)"
    plain = {"name": "x", "query": "y"}
    assert api.post("/v1/watches", json=plain, headers=read).status_code == 403
    assert api.post("/v1/watches", json=plain).status_code == 401
    bad = api.post("/v1/watches", json={"name": "x", "query": "   "}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_parameter"
    huge = " ".join(f"w{i}" for i in range(40))
    too_many = api.post("/v1/watches", json={"name": "x", "query": huge}, headers=admin)
    assert too_many.json()["error"]["code"] == "query_too_complex"
    metadata = api.post(
        "/v1/watches",
        json={"name": "x", "query": "y", "webhook_url": "http://169.254.169.254/latest"},
        headers=admin,
    )
    assert metadata.status_code == 400
    assert metadata.json()["error"]["code"] == "invalid_webhook_url"
    listed = api.get("/v1/watches", headers=read).json()["watches"]
    assert [(w["name"], w["webhook"]) for w in listed] == [("floods", False)]
    # The creator (a key id) is for admins: a read key sees none.
    assert [w["created_by"] for w in listed] == [None]
    [as_admin] = api.get("/v1/watches", headers=admin).json()["watches"]
    assert as_admin["created_by"] == made.json()["created_by"]
    assert as_admin["created_by"].startswith("admin:")
    assert api.delete(f"/v1/watches/{listed[0]['id']}", headers=read).status_code == 403
    assert api.delete(f"/v1/watches/{listed[0]['id']}", headers=admin).status_code == 204
    assert api.delete(f"/v1/watches/{listed[0]['id']}", headers=admin).status_code == 404
    assert api.get("/v1/watches", headers=read).json()["watches"] == []


def test_watch_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_INDEX_PREFIX", settings.index_prefix)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        added = runner.invoke(cli_app, ["watch", "add", "storms", "title:storm OR gale"])
        assert added.exit_code == 0, added.output
        watch = json.loads(added.output)
        assert watch["understood"] == "(title:storm OR gale)"
        listed = runner.invoke(cli_app, ["watch", "list"])
        assert [json.loads(line)["id"] for line in listed.output.splitlines()] == [watch["id"]]
        refused = runner.invoke(cli_app, ["watch", "add", "nothing", '""'])
        assert refused.exit_code == 2
        assert runner.invoke(cli_app, ["watch", "rm", watch["id"]]).exit_code == 0
        assert runner.invoke(cli_app, ["watch", "rm", watch["id"]]).exit_code == 1
        monkeypatch.setenv("NEWSFLOW_ALERT_WEBHOOK_ALLOW_PRIVATE_NETWORK", "true")
        get_settings.cache_clear()
        hooked = runner.invoke(
            cli_app, ["watch", "add", "gales", "gale", "--webhook", "http://127.0.0.1:9/h"]
        )
        assert hooked.exit_code == 0, hooked.output
        secret = json.loads(hooked.output)["webhook_secret"]
        listed = runner.invoke(cli_app, ["watch", "list"])
        assert secret not in listed.output and "webhook_secret" not in listed.output
        hooked_id = json.loads(hooked.output)["id"]
        rotated = runner.invoke(cli_app, ["watch", "rotate-secret", hooked_id])
        assert rotated.exit_code == 0, rotated.output
        assert json.loads(rotated.output)["webhook_secret"] not in ("", secret)
        assert runner.invoke(cli_app, ["watch", "rotate-secret", watch["id"]]).exit_code == 1
    finally:
        get_settings.cache_clear()


def test_one_alert_per_new_story_one_update_nothing_on_replay(
    settings: Settings, api: TestClient
) -> None:
    zeppelin = add_watch(api, "zeppelins", "zeppelin")
    add_watch(api, "never", "title:nothingmatchesthis")
    story_a = story_text("a", "zeppelin")
    story_b = story_text("b", "zeppelin")
    story_c = story_text("c", "walrus")
    articles = [
        make_article("kestrel", "a", story_a, "Zeppelin lands in the park", 0),
        make_article("ledger", "a-copy", story_a, "Zeppelin lands", 1),  # syndicated copies
        make_article("gazette", "a-copy", story_a, "Airship lands", 2),
        make_article("kestrel", "b", story_b, "Second zeppelin story", 3),
        make_article("kestrel", "c", story_c, "Walrus seen at the harbour", 4),
        make_article("klaxon", "a-copy", story_a, "Zeppelin!", 5),  # story A: 4 articles
        make_article("notes", "a-copy", story_a, "Zeppelin, again", 6),  # 5: no second update
    ]
    produce(settings, articles)
    drain(settings, "dedup", expected=len(articles))
    drain(settings, "alert", expected=len(articles))
    alerts = read_alerts(settings)
    # The deduplicated topic has several partitions, so the alert stage may see a story's
    # articles in another order than they arrived: which copy carries the alert may vary,
    # that each story alerts once (and updates once) may not.
    story_a_ids = {a.id for a in articles if a.text == story_a}
    on_a = [a for a in alerts if a.article.id in story_a_ids]
    on_b = [a for a in alerts if a.article.id == articles[3].id]
    assert sorted(a.kind for a in on_a) == ["new_story", "story_update"], alerts
    assert [a.kind for a in on_b] == ["new_story"], alerts
    assert len(alerts) == 3 and len({a.id for a in alerts}) == 3, alerts
    assert {a.watch_id for a in alerts} == {zeppelin}
    assert len({a.story_id for a in on_a}) == 1 and on_a[0].story_id != on_b[0].story_id
    update = next(a for a in on_a if a.kind == "story_update")
    assert update.story_articles >= 4  # the update size
    first = next(a for a in on_a if a.kind == "new_story")
    assert first.watch_name == "zeppelins"
    assert first.article.url in {a.url for a in articles if a.id in story_a_ids}
    assert (first.matched_at - first.arrived_at).total_seconds() < 120

    es = make_client(settings)
    es.indices.refresh(index=alerts_index(settings.index_prefix))
    records = es.search(index=alerts_index(settings.index_prefix), size=10)["hits"]["hits"]
    assert sorted(r["_id"] for r in records) == sorted(a.id for a in alerts)
    assert {r["_source"]["state"] for r in records} == {"sent"}
    es.close()

    # A replay from the start (a new group: a lost offset, a restarted worker) sends nothing.
    drain(settings, "alert", expected=len(articles), group=f"replay-{uuid.uuid4().hex[:6]}")
    assert len(read_alerts(settings, idle=2.0)) == 3


class Receiver:
    """A loopback webhook receiver answering with ``statuses`` in turn (the last repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((dict(self.headers.items()), body))
                index = min(len(receiver.requests), len(statuses)) - 1
                self.send_response(statuses[index])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make  # type: ignore[misc]
    for r in made:
        r.close()


def test_webhook_is_signed_and_failures_are_retried_then_dead_lettered(
    settings: Settings, api: TestClient, receiver: Any
) -> None:
    good = receiver([503, 200])  # one failure, then accepted
    bad = receiver([500])  # always failing
    good_watch = create_watch(api, "good hook", "zeppelin", webhook=good.url)
    good_id, good_secret = good_watch["id"], good_watch["webhook_secret"].encode()
    bad_watch = create_watch(api, "bad hook", "walrus", webhook=bad.url)
    bad_id = bad_watch["id"]
    assert good_secret != bad_watch["webhook_secret"].encode()  # one secret per receiver
    articles = [
        make_article("kestrel", "a", story_text("a", "zeppelin"), "Zeppelin lands", 0),
        make_article("kestrel", "c", story_text("c", "walrus"), "Walrus seen", 1),
    ]
    produce(settings, articles)
    drain(settings, "dedup", expected=2)
    drain(settings, "alert", expected=2)
    drain(settings, "webhook", expected=2)

    assert len(good.requests) == 2  # retried once
    headers, body = good.requests[-1]
    alert = decode(Alert, body)
    assert alert.watch_id == good_id
    assert headers["X-Newsflow-Delivery"] == alert.id
    assert headers["X-Newsflow-Event"] == "new_story"
    signature, stamp = headers["X-Newsflow-Signature"], headers["X-Newsflow-Timestamp"]
    assert verify(good_secret, body, signature, stamp)
    assert not verify(SECRET.encode(), body, signature, stamp)  # not the global secret
    assert not verify(bad_watch["webhook_secret"].encode(), body, signature, stamp)
    assert good.requests[0][1] == body  # a retry sends the same bytes, same delivery id

    assert len(bad.requests) == 1 + settings.worker_max_retries
    [letter] = [s.letter for s in read_letters(settings) if s.letter.stage == "webhook"]
    assert letter.reason == "webhook_failed"
    assert letter.error_kind == "retries_exhausted"
    assert letter.attempts == 1 + settings.worker_max_retries
    assert decode(Alert, letter.value).watch_id == bad_id


def test_an_alert_forged_on_kafka_is_not_signed(
    settings: Settings, api: TestClient, receiver: Any
) -> None:
    """Writing to the alerts topic is not enough to have an alert signed and sent."""
    hook = receiver([200])
    watch_id = add_watch(api, "forged hook", "narwhal", webhook=hook.url)
    real = make_article("kestrel", "f", story_text("f", "narwhal"), "Narwhal", 0)
    forged = Alert(
        id=f"{watch_id}:forged-story:new_story",
        kind="new_story",
        watch_id=watch_id,
        watch_name="forged hook",
        story_id="forged-story",
        story_title="Reset your password here",
        story_articles=1,
        article=AlertArticle(id=real.id, url=real.url, outlet="kestrel"),
        arrived_at=T0,
    )
    producer = make_producer(settings)
    producer.send(settings.topic_alerts, key=watch_id.encode(), value=encode(forged)).get(30)
    producer.close()
    drain(settings, "webhook", expected=1)

    assert hook.requests == []
    [letter] = [s.letter for s in read_letters(settings) if s.letter.stage == "webhook"]
    assert letter.reason == "alert_not_recorded"


def test_webhook_secrets_are_shown_once_and_rotate(settings: Settings, api: TestClient) -> None:
    admin, read = {"X-API-Key": ADMIN_KEY}, {"X-API-Key": READ_KEY}
    created = create_watch(api, "rotating", "ocelot", webhook="http://127.0.0.1:9/hook")
    first = created["webhook_secret"]
    assert first.startswith("whsec_")
    assert create_watch(api, "no hook", "lynx").get("webhook_secret") is None
    listed = api.get("/v1/watches", headers=read).json()["watches"]
    assert all(w.get("webhook_secret") is None for w in listed)
    path = f"/v1/watches/{created['id']}/rotate-secret"
    assert api.post(path, headers=read).status_code == 403
    rotated = api.post(path, headers=admin)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["webhook_secret"]
    assert second.startswith("whsec_") and second != first
    es = make_client(settings)
    try:
        stored = WatchStore(es, settings.index_prefix).get(created["id"])
    finally:
        es.close()
    assert stored is not None and stored.webhook_secret == second
    missing = api.post("/v1/watches/w-0000000000000000/rotate-secret", headers=admin)
    assert missing.status_code == 404
