"""The webhook stage: alerts in, a signed POST to the watch's URL (``newsflow worker webhook``).

A stage of its own (consumer group ``newsflow-webhook``), so a slow or failing receiver
delays webhooks only, never matching or the alerts topic. Each POST carries:

- ``X-Newsflow-Timestamp: <unix seconds>`` when it was signed (every attempt is signed anew);
- ``X-Newsflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the watch's
  own secret (generated when the watch was created, shown once, rotatable): the receiver
  checks it came from us, unaltered, and refuses a timestamp more than
  ``REPLAY_WINDOW_SECONDS`` away from its clock (see :func:`verify`); watches stored before
  secrets were per watch are signed with ``NEWSFLOW_ALERT_WEBHOOK_SECRET``;
- ``X-Newsflow-Delivery: <alert id>``: the same on every retry and redelivery, so the
  receiver can drop duplicates (delivery is at least once);
- ``X-Newsflow-Event: new_story | story_update``.
The delivery id and the event are also the body's ``id`` and ``kind``, so they are signed.

Only alerts the alert stage raised are signed: the watch must exist (its stored URL is the
target, never anything on the topic) and the alert's once-per-story record must exist for that
watch and article, so a client that can only write to Kafka cannot have a forged alert signed.

2xx is done; 408/425/429/5xx and network errors are retried by the runner with backoff
(``NEWSFLOW_WORKER_MAX_RETRIES``), then dead-lettered (``retries_exhausted``,
``webhook_failed``); other answers, redirects included, are dead-lettered at once
(``webhook_rejected``). The receiver's address is checked like ingest checks pages (no
loopback, private, link-local or metadata addresses unless
``NEWSFLOW_ALERT_WEBHOOK_ALLOW_PRIVATE_NETWORK``) and the connection goes to the checked
address, so DNS cannot swap it afterwards; TLS checks the receiver's certificate against its
host name on every connection.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from alert.matcher import WatchCache
from alert.store import AlertLedger
from newsflow.contracts import Alert, Watch, encode
from newsflow.errors import PermanentError, RetryableError, StageError
from newsflow.netguard import Resolver, check_address, resolve_addresses, system_resolver
from newsflow.pinning import ADDRESS_EXTENSION, PinnedTransport
from newsflow.runtime import Done, Failed, Inbound, Result, Stage
from newsflow.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Newsflow-Signature"
TIMESTAMP_HEADER = "X-Newsflow-Timestamp"
DELIVERY_HEADER = "X-Newsflow-Delivery"
EVENT_HEADER = "X-Newsflow-Event"
RETRY_STATUSES = frozenset({408, 425, 429})
#: How far a receiver lets a signature's timestamp be from its own clock, either way.
REPLAY_WINDOW_SECONDS = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp``: HMAC-SHA256 of ``"<ts>.<body>"``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    now: float | None = None,
    window: float = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant-time).

    A captured delivery cannot be replayed after ``window`` seconds; within it, the receiver
    drops repeats by ``X-Newsflow-Delivery``."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    sent = int(timestamp)
    if abs((time.time() if now is None else now) - sent) > window:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


class BlockedWebhookError(ValueError):
    """The URL may not receive webhooks (scheme, credentials, or where it resolves to)."""


def check_webhook_url(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and its checked addresses; raises ``BlockedWebhookError``."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise BlockedWebhookError(f"not a valid URL: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise BlockedWebhookError("the URL must be http(s)://host/...")
    if target.userinfo:
        raise BlockedWebhookError("credentials in the URL are not allowed")
    try:
        host, addresses = resolve_addresses(target, resolver)
    except LookupError as exc:
        raise BlockedWebhookError(str(exc)) from None
    for address in addresses:
        problem = check_address(address, private_ok=allow_private)
        if problem is not None:
            raise BlockedWebhookError(f"{host}: {problem}")
    return target, addresses


class WebhookSender:
    """One signed POST per call, to the checked address; raises a ``StageError`` on failure.

    ``fallback_secret`` signs for watches stored before each watch had its own secret."""

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        user_agent: str,
        fallback_secret: bytes | None = None,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fallback_secret = fallback_secret
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.resolver = resolver
        self.clock = clock
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport or PinnedTransport(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        fallback = settings.alert_webhook_secret
        fallback_value = fallback.get_secret_value() if fallback else ""
        return cls(
            fallback_secret=fallback_value.encode() if fallback_value else None,  # "": unset
            timeout=settings.alert_webhook_timeout_seconds,
            allow_private=settings.alert_webhook_allow_private_network,
            user_agent=settings.http_user_agent,
        )

    def secret_for(self, watch: Watch) -> bytes:
        if watch.webhook_secret is not None:
            return watch.webhook_secret.encode()
        if self.fallback_secret is not None:
            return self.fallback_secret
        raise PermanentError(
            "webhook_secret_missing",
            f"watch {watch.id} has no webhook secret: rotate it (newsflow watch rotate-secret)"
            " or set NEWSFLOW_ALERT_WEBHOOK_SECRET",
        )

    def send(self, url: str, alert: Alert, secret: bytes) -> int:
        try:
            target, addresses = check_webhook_url(
                url, allow_private=self.allow_private, resolver=self.resolver
            )
        except BlockedWebhookError as exc:
            if "cannot resolve" in str(exc):
                raise RetryableError("webhook_unreachable", str(exc)) from None
            raise PermanentError("webhook_blocked_address", str(exc)) from None
        body = encode(alert)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: alert.id,
            EVENT_HEADER: alert.kind,
        }
        extensions = {ADDRESS_EXTENSION: addresses[0]}  # connect where we checked
        try:
            response = self.client.post(
                target, content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise RetryableError("webhook_failed", f"{target.host}: {detail}") from None
        status = response.status_code
        if 200 <= status < 300:
            return status
        if status >= 500 or status in RETRY_STATUSES:
            raise RetryableError("webhook_failed", f"{target.host}: HTTP {status}")
        raise PermanentError("webhook_rejected", f"{target.host}: HTTP {status}")

    def close(self) -> None:
        self.client.close()


class WebhookStage(Stage[Alert]):
    name = "webhook"
    input_model = Alert

    def __init__(self, watches: WatchCache, sender: WebhookSender, ledger: AlertLedger) -> None:
        self.watches = watches
        self.sender = sender
        self.ledger = ledger

    def process(self, batch: Sequence[Inbound[Alert]]) -> Sequence[Result]:
        wanted: dict[int, Watch] = {}
        for i, item in enumerate(batch):
            watch = self.watches.get(item.message.watch_id)
            if watch is not None and watch.webhook_url is not None:
                wanted[i] = watch  # else deleted since, or no webhook: the topic is enough
        records = self.ledger.recorded(sorted({batch[i].message.id for i in wanted}))
        results: list[Result] = []
        for i, item in enumerate(batch):
            alert = item.message
            watch = wanted.get(i)
            if watch is None or watch.webhook_url is None:
                results.append(Done())
                continue
            try:
                _check_raised(alert, records.get(alert.id))
                status = self.sender.send(watch.webhook_url, alert, self.sender.secret_for(watch))
            except StageError as exc:
                log.warning("webhook %s for %s: %s", alert.id, watch.id, exc)
                results.append(Failed(exc))
                continue
            log.info("webhook %s delivered to watch %s: HTTP %d", alert.id, watch.id, status)
            results.append(Done())
        return results

    def close(self) -> None:
        self.sender.close()


def _check_raised(alert: Alert, record: Mapping[str, Any] | None) -> None:
    """Refuse an alert the alert stage did not raise (written to Kafka by someone else)."""
    if (
        record is None
        or record.get("watch_id") != alert.watch_id
        or record.get("article_id") != alert.article.id
    ):
        raise PermanentError(
            "alert_not_recorded",
            f"no alert record {alert.id} for this watch and article: not signing it",
        )
