"""Watches and alert records in Elasticsearch.

``{prefix}-watches`` holds one document per watch. ``{prefix}-alerts`` holds one record per
alert ever raised, with ``_id = {watch_id}:{story_id}:{kind}``: creating it with
``op_type=create`` is the atomic check-and-insert that makes an alert once per story, across
restarts, redeliveries and concurrent alert workers (the second creator gets a 409).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from newsflow.contracts import AlertKind, Watch
from newsflow.errors import TransientError
from newsflow.es import is_transient
from newsflow.settings import Settings

log = logging.getLogger(__name__)

MAX_WATCHES = 10_000

WATCHES_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "keyword"},
        "name": {"type": "keyword"},
        "query": {"type": "keyword", "index": False, "doc_values": False},
        "webhook_url": {"type": "keyword", "index": False, "doc_values": False},
        "created_at": {"type": "date"},
        "created_by": {"type": "keyword"},
        "webhook_secret": {"type": "keyword", "index": False, "doc_values": False},
    },
}
ALERTS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "watch_id": {"type": "keyword"},
        "story_id": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "state": {"type": "keyword"},  # claimed, then sent once the alert is on Kafka
        "article_id": {"type": "keyword"},  # the article whose processing claimed it
        "story_articles": {"type": "integer"},  # the story's size when it was claimed
        "claimed_at": {"type": "date"},
        "sent_at": {"type": "date"},
    },
}
INDEX_SETTINGS = {"number_of_shards": 1}


def watches_index(prefix: str) -> str:
    return f"{prefix}-watches"


def alerts_index(prefix: str) -> str:
    return f"{prefix}-alerts"


def alert_key(watch_id: str, story_id: str, kind: AlertKind) -> str:
    return f"{watch_id}:{story_id}:{kind}"


def new_watch_id() -> str:
    return f"w-{uuid.uuid4().hex[:16]}"


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def stored_watch(watch: Watch) -> dict[str, Any]:
    """The watch's document, secret included (``model_dump`` leaves the secret out)."""
    document = watch.model_dump(mode="json")
    if watch.webhook_secret is not None:
        document["webhook_secret"] = watch.webhook_secret
    return document


def ensure_alert_indices(es: Elasticsearch, settings: Settings) -> list[str]:
    """Create the watches and alerts indices if missing (mappings only grow); return created."""
    created: list[str] = []
    for name, mapping in (
        (watches_index(settings.index_prefix), WATCHES_MAPPING),
        (alerts_index(settings.index_prefix), ALERTS_MAPPING),
    ):
        if es.indices.exists(index=name):
            es.indices.put_mapping(index=name, properties=mapping["properties"])
            continue
        try:
            es.indices.create(
                index=name,
                mappings=mapping,
                settings={**INDEX_SETTINGS, "number_of_replicas": settings.es_replicas},
            )
            created.append(name)
        except ApiError as exc:  # created concurrently by another init
            if exc.status_code != 400 or "already_exists" not in str(exc):
                raise
    return created


class WatchStore:
    """CRUD for watches (the API and CLI write; the stages read through ``WatchCache``)."""

    def __init__(self, es: Elasticsearch, prefix: str) -> None:
        self.es = es
        self.index = watches_index(prefix)

    def add(self, watch: Watch) -> Watch:
        # wait_for: the caller's next list (and the workers' next refresh) sees the watch.
        self.es.index(
            index=self.index,
            id=watch.id,
            document=stored_watch(watch),
            op_type="create",
            refresh="wait_for",
        )
        return watch

    def get(self, watch_id: str) -> Watch | None:
        try:
            found = self.es.get(index=self.index, id=watch_id)
        except NotFoundError:
            return None
        return Watch.model_validate(found["_source"])

    def list(self) -> list[Watch]:
        response = self.es.search(
            index=self.index,
            size=MAX_WATCHES,
            query={"match_all": {}},
            sort=[{"created_at": "asc"}, {"id": "asc"}],
        )
        return [Watch.model_validate(hit["_source"]) for hit in response["hits"]["hits"]]

    def rotate_webhook_secret(self, watch_id: str) -> tuple[Watch, str] | None:
        """A new webhook secret for the watch: the watch and the secret, or None when there
        is no such watch or it has no webhook."""
        watch = self.get(watch_id)
        if watch is None or watch.webhook_url is None:
            return None
        secret = new_webhook_secret()
        if not self.set_webhook_secret(watch_id, secret):
            return None
        return watch, secret

    def set_webhook_secret(self, watch_id: str, secret: str) -> bool:
        """Replace the watch's webhook secret (rotation); False when there is no such watch."""
        try:
            self.es.update(
                index=self.index,
                id=watch_id,
                doc={"webhook_secret": secret},
                refresh="wait_for",
            )
        except NotFoundError:
            return False
        return True

    def delete(self, watch_id: str) -> bool:
        try:
            self.es.delete(index=self.index, id=watch_id, refresh="wait_for")
        except NotFoundError:
            return False
        return True


@dataclass(frozen=True)
class Claim:
    """An alert to raise for ``article_id``; ``story_articles``: the story's size then."""

    watch_id: str
    story_id: str
    kind: AlertKind
    article_id: str
    story_articles: int

    @property
    def key(self) -> str:
        return alert_key(self.watch_id, self.story_id, self.kind)


Outcome = Literal["claimed", "reclaimed", "taken"]


class AlertLedger:
    """The once-per-story records: claim before producing, mark sent after the broker acks.

    ``claim`` returns, per claim: ``claimed`` (ours, new: produce it), ``reclaimed`` (we
    claimed it for this very article earlier and it may not have reached Kafka: a
    redelivery, produce it again) or ``taken`` (already sent, or another article's claim).
    """

    def __init__(self, es: Elasticsearch, prefix: str) -> None:
        self.es = es
        self.index = alerts_index(prefix)

    def claim(self, claims: Sequence[Claim]) -> list[Outcome]:
        if not claims:
            return []
        now = datetime.now(UTC).isoformat()
        operations: list[dict[str, Any]] = []
        for c in claims:
            operations.append({"create": {"_index": self.index, "_id": c.key}})
            operations.append(
                {
                    "watch_id": c.watch_id,
                    "story_id": c.story_id,
                    "kind": c.kind,
                    "state": "claimed",
                    "article_id": c.article_id,
                    "story_articles": c.story_articles,
                    "claimed_at": now,
                }
            )
        try:
            response = self.es.bulk(operations=operations, refresh=False)
        except Exception as exc:
            if is_transient(exc):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        outcomes: list[Outcome] = []
        conflicts: list[int] = []
        for i, entry in enumerate(response["items"]):
            status = int(entry["create"].get("status", 500))
            if status < 300:
                outcomes.append("claimed")
                continue
            if status == 409:
                outcomes.append("taken")
                conflicts.append(i)
                continue
            error = entry["create"].get("error") or {}
            detail = f"{status} {error.get('type', 'error')}: {error.get('reason', '')}"
            if status == 429 or status >= 500:
                raise TransientError("alert_record_rejected", detail)
            raise RuntimeError(f"alert record refused: {detail}")  # our bug: a bad document
        if conflicts:
            existing = self._get_many([claims[i].key for i in conflicts])
            for i in conflicts:
                record = existing.get(claims[i].key) or {}
                if record.get("state") == "claimed" and record.get("article_id") == (
                    claims[i].article_id
                ):
                    outcomes[i] = "reclaimed"
        return outcomes

    def mark_sent(self, keys: Iterable[str]) -> None:
        """Best effort: a record left ``claimed`` only means a redelivery re-sends it."""
        operations: list[dict[str, Any]] = []
        now = datetime.now(UTC).isoformat()
        for key in keys:
            operations.append({"update": {"_index": self.index, "_id": key}})
            operations.append({"doc": {"state": "sent", "sent_at": now}})
        if not operations:
            return
        try:
            response = self.es.bulk(operations=operations, refresh=False)
            if response.get("errors"):
                log.warning("alert: some records were not marked sent: %s", response["items"])
        except Exception as exc:
            log.warning("alert: could not mark records sent: %s", exc)

    def new_story_sizes(self, story_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """story → watch → the story's size when its new-story alert was claimed."""
        if not story_ids:
            return {}
        try:
            response = self.es.search(
                index=self.index,
                size=MAX_WATCHES,
                query={
                    "bool": {
                        "filter": [
                            {"terms": {"story_id": list(story_ids)}},
                            {"term": {"kind": "new_story"}},
                        ]
                    }
                },
                source_includes=["watch_id", "story_id", "story_articles"],
            )
        except Exception as exc:
            if is_transient(exc):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        found: dict[str, dict[str, int]] = {}
        for hit in response["hits"]["hits"]:
            src = hit["_source"]
            found.setdefault(src["story_id"], {})[src["watch_id"]] = int(src["story_articles"])
        return found

    def refresh(self) -> None:
        """Make every record searchable (``new_story_sizes`` searches; records are near-real-
        time): called when a worker starts, so a restart sees what its predecessor wrote."""
        self.es.indices.refresh(index=self.index)

    def _get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        try:
            response = self.es.mget(index=self.index, ids=list(keys))  # real-time
        except Exception as exc:
            if is_transient(exc):
                raise TransientError("elasticsearch_unavailable", str(exc)) from exc
            raise
        return {doc["_id"]: doc["_source"] for doc in response["docs"] if doc.get("found")}

    def recorded(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records of these alert ids that exist (real-time): an alert the alert stage
        raised has one, written before the alert reached Kafka."""
        return self._get_many(keys) if keys else {}
