"""Registering a watch: one validation for the API and the CLI, so both refuse the same."""

from __future__ import annotations

from alert.store import new_watch_id, new_webhook_secret
from alert.webhook import BlockedWebhookError, check_webhook_url
from newsflow.contracts import Watch
from newsflow.query import MatchAll, QueryTooComplexError, describe, parse
from newsflow.settings import Settings


class InvalidWatchError(ValueError):
    """Why a watch cannot be registered; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def build_watch(
    name: str,
    query: str,
    settings: Settings,
    *,
    webhook_url: str | None = None,
    created_by: str | None = None,
) -> tuple[Watch, str]:
    """A new watch and how its query was understood; raises ``InvalidWatchError``.

    A watch with a webhook gets a secret of its own, for its creator to give the receiver."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidWatchError("invalid_parameter", "name must be 1 to 200 characters", "name")
    if len(query) > settings.api_max_query_length:
        raise InvalidWatchError(
            "query_too_long",
            f"the query is {len(query)} characters; at most {settings.api_max_query_length}",
            "query",
        )
    try:
        tree = parse(query)
    except QueryTooComplexError as exc:
        raise InvalidWatchError("query_too_complex", str(exc), "query") from None
    if isinstance(tree, MatchAll):
        raise InvalidWatchError(
            "invalid_parameter", "the query has no terms: it would match every story", "query"
        )
    if webhook_url is not None:
        if len(webhook_url) > 2048:
            raise InvalidWatchError("invalid_parameter", "webhook_url is too long", "webhook_url")
        try:
            check_webhook_url(
                webhook_url, allow_private=settings.alert_webhook_allow_private_network
            )
        except BlockedWebhookError as exc:
            raise InvalidWatchError("invalid_webhook_url", str(exc), "webhook_url") from None
    watch = Watch(
        id=new_watch_id(),
        name=name,
        query=query,
        webhook_url=webhook_url,
        created_by=created_by,
        webhook_secret=new_webhook_secret() if webhook_url is not None else None,
    )
    return watch, describe(tree)
