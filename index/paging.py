"""Resume tokens: opaque, signed, tied to one query, expiring with their snapshot.

A token carries the point-in-time id and the sort values of the last hit handed out, so the
next page continues exactly there. It is HMAC-signed (a client cannot forge a cursor or point
it at another query) and its fingerprint must match the request it comes back with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_VERSION = 1
MAX_TOKEN_LENGTH = 4096
_SIGNATURE_BYTES = 16


class TokenError(ValueError):
    """A token the API refuses; ``code`` is the stable error code, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class ResumeState:
    fingerprint: str
    pit_id: str | None
    after: list[Any]
    page: int  # the page the token leads to (2 for the first token)
    expires_at: float  # unix time


def fingerprint(request: Mapping[str, Any]) -> str:
    """A stable digest of what defines a result list (query, filters, sort, grouping)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def dump(self, state: ResumeState) -> str:
        payload = json.dumps(
            {
                "v": TOKEN_VERSION,
                "f": state.fingerprint,
                "p": state.pit_id,
                "a": state.after,
                "n": state.page,
                "e": int(state.expires_at),
            },
            separators=(",", ":"),
        ).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def load(
        self, token: str, *, expected_fingerprint: str, now: float | None = None
    ) -> ResumeState:
        """The state in ``token``; raises ``TokenError`` for a forged, foreign or old token."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise TokenError("invalid_token", "the resume token is malformed")
        body, signature = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(signature)
        except (ValueError, TypeError):
            raise TokenError("invalid_token", "the resume token is malformed") from None
        if not hmac.compare_digest(self._sign(payload), given):
            raise TokenError("invalid_token", "the resume token is not valid")
        try:
            data = json.loads(payload)
            state = ResumeState(
                fingerprint=str(data["f"]),
                pit_id=data["p"] if data["p"] is None else str(data["p"]),
                after=list(data["a"]),
                page=int(data["n"]),
                expires_at=float(data["e"]),
            )
            version = int(data["v"])
        except (ValueError, KeyError, TypeError):
            raise TokenError("invalid_token", "the resume token is malformed") from None
        if version != TOKEN_VERSION:
            raise TokenError("invalid_token", "the resume token is from another API version")
        if not hmac.compare_digest(state.fingerprint, expected_fingerprint):
            raise TokenError(
                "token_mismatch",
                "the resume token belongs to another query: send the same q, filters and sort",
            )
        if state.expires_at < (time.time() if now is None else now):
            raise TokenError(
                "token_expired", "the resume token has expired: run the search again", 410
            )
        return state
