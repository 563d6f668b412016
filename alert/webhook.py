"""The webhook stage: alerts in, a signed POST to the watch's URL (``newsflow worker webhook``).

A stage of its own (consumer group ``newsflow-webhook``), so a slow or failing receiver
delays webhooks only, never matching or the alerts topic. Each POST carries:

- ``X-Newsflow-Signature: sha256=<hex HMAC-SHA256 of the body>`` with
  ``NEWSFLOW_ALERT_WEBHOOK_SECRET``: the receiver checks it came from us, unaltered;
- ``X-Newsflow-Delivery: <alert id>``: the same on every retry and redelivery, so the
  receiver can drop duplicates (delivery is at least once);
- ``X-Newsflow-Event: new_story | story_update``.

2xx is done; 408/425/429/5xx and network errors are retried by the runner with backoff
(``NEWSFLOW_WORKER_MAX_RETRIES``), then dead-lettered (``retries_exhausted``,
``webhook_failed``); other answers, redirects included, are dead-lettered at once
(``webhook_rejected``). The receiver's address is checked like ingest checks pages (no
loopback, private, link-local or metadata addresses unless
``NEWSFLOW_ALERT_WEBHOOK_ALLOW_PRIVATE_NETWORK``) and the connection goes to the checked
address, so DNS cannot swap it afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence

import httpx

from alert.matcher import WatchCache
from newsflow.contracts import Alert, encode
from newsflow.errors import PermanentError, RetryableError, StageError
from newsflow.netguard import Resolver, check_address, resolve_addresses, system_resolver
from newsflow.runtime import Done, Failed, Inbound, Result, Stage
from newsflow.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Newsflow-Signature"
DELIVERY_HEADER = "X-Newsflow-Delivery"
EVENT_HEADER = "X-Newsflow-Event"
RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, body), signature)


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
    """One signed POST per call, to the checked address; raises a ``StageError`` on failure."""

    def __init__(
        self,
        *,
        secret: bytes,
        timeout: float,
        allow_private: bool,
        user_agent: str,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.secret = secret
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.resolver = resolver
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender | None:
        if settings.alert_webhook_secret is None:
            return None
        return cls(
            secret=settings.alert_webhook_secret.get_secret_value().encode(),
            timeout=settings.alert_webhook_timeout_seconds,
            allow_private=settings.alert_webhook_allow_private_network,
            user_agent=settings.http_user_agent,
        )

    def send(self, url: str, alert: Alert) -> int:
        try:
            target, addresses = check_webhook_url(
                url, allow_private=self.allow_private, resolver=self.resolver
            )
        except BlockedWebhookError as exc:
            if "cannot resolve" in str(exc):
                raise RetryableError("webhook_unreachable", str(exc)) from None
            raise PermanentError("webhook_blocked_address", str(exc)) from None
        body = encode(alert)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            SIGNATURE_HEADER: sign(self.secret, body),
            DELIVERY_HEADER: alert.id,
            EVENT_HEADER: alert.kind,
            "Host": target.netloc.decode("ascii"),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        pinned = target.copy_with(host=addresses[0])  # connect where we checked
        try:
            response = self.client.post(
                pinned, content=body, headers=headers, extensions=extensions
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

    def __init__(self, watches: WatchCache, sender: WebhookSender | None) -> None:
        self.watches = watches
        self.sender = sender

    def process(self, batch: Sequence[Inbound[Alert]]) -> Sequence[Result]:
        results: list[Result] = []
        for item in batch:
            alert = item.message
            watch = self.watches.get(alert.watch_id)
            if watch is None or watch.webhook_url is None:
                results.append(Done())  # deleted since, or no webhook: the topic is enough
                continue
            if self.sender is None:
                results.append(
                    Failed(
                        PermanentError(
                            "webhook_secret_missing",
                            "set NEWSFLOW_ALERT_WEBHOOK_SECRET to sign webhooks",
                        )
                    )
                )
                continue
            try:
                status = self.sender.send(watch.webhook_url, alert)
            except StageError as exc:
                log.warning("webhook %s for %s: %s", alert.id, watch.id, exc)
                results.append(Failed(exc))
                continue
            log.info("webhook %s delivered to watch %s: HTTP %d", alert.id, watch.id, status)
            results.append(Done())
        return results

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
