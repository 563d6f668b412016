"""API keys with scopes, as a FastAPI dependency any router can reuse.

``Depends(require(Scope.READ))`` on a route (or router) gives it the caller's ``Principal``;
an admin key also has the read scope. No key or an unknown key is 401 (with
``WWW-Authenticate``), a valid key without the scope is 403. Keys are compared in constant
time, and only a short fingerprint of a key is ever shown (logs, ``Principal.name``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from newsflow.api_errors import ApiError
from newsflow.settings import Settings


class Scope(StrEnum):
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    name: str  # "read:1a2b3c4d" (scope and key fingerprint) or "anonymous" with auth off
    scopes: frozenset[Scope]


ANONYMOUS = Principal("anonymous", frozenset(Scope))


class AuthConfigError(RuntimeError):
    """Auth is on but no key is configured: the API would refuse everyone."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _split(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


class ApiKeys:
    def __init__(self, read: Iterable[str], admin: Iterable[str], *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._keys: list[tuple[bytes, Principal]] = []
        for scope, keys in ((Scope.ADMIN, admin), (Scope.READ, read)):
            scopes = frozenset(Scope) if scope is Scope.ADMIN else frozenset({Scope.READ})
            for key in keys:
                digest = _digest(key)
                self._keys.append((digest, Principal(f"{scope}:{digest.hex()[:8]}", scopes)))
        if enabled and not self._keys:
            raise AuthConfigError(
                "API auth is on but no key is set: set NEWSFLOW_API_READ_KEYS / "
                "NEWSFLOW_API_ADMIN_KEYS, or NEWSFLOW_API_AUTH=off for local use"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        read = settings.api_read_keys.get_secret_value() if settings.api_read_keys else ""
        admin = settings.api_admin_keys.get_secret_value() if settings.api_admin_keys else ""
        return cls(_split(read), _split(admin), enabled=settings.api_auth == "on")

    def authenticate(self, presented: str | None) -> Principal | None:
        """The key's principal, or None; every configured key is compared (constant time)."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            return None
        given = _digest(presented)
        found: Principal | None = None
        for digest, principal in self._keys:
            if hmac.compare_digest(digest, given) and found is None:
                found = principal
        return found


_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (read or admin scope)."
)
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding ``scope``."""

    async def dependency(
        request: Request,
        api_key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> Principal:
        keys: ApiKeys = request.app.state.api_keys
        presented = api_key or (bearer.credentials if bearer else None)
        principal = keys.authenticate(presented)
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required (X-API-Key header)"
                if not presented
                else "the API key is not valid",
                headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'},
            )
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the {scope} scope")
        request.state.principal = principal
        return principal

    return dependency
