"""API keys with scopes, as a FastAPI dependency any router can reuse.

``Depends(require(Scope.READ))`` on a route (or router) gives it the caller's ``Principal``;
an admin key also has the read scope. No key or an unknown key is 401 (with
``WWW-Authenticate``), a valid key without the scope is 403. Keys are compared in constant
time, and only a key id is ever shown (logs, ``Principal.name``): an HMAC of the key under the
server's token secret (a random one per process without it), so it cannot be checked offline.
With auth on, the API refuses to start on a key or token secret shorter than
``MIN_SECRET_LENGTH`` or that looks like a placeholder (``change-me``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
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
    name: str  # "read:1a2b3c4d" (scope and key id) or "anonymous" with auth off
    scopes: frozenset[Scope]


ANONYMOUS = Principal("anonymous", frozenset(Scope))


class AuthConfigError(RuntimeError):
    """Auth is on but its keys would not protect anything: none, short ones or placeholders."""


MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 8
# Folded to lower-case letters and digits: what example configurations put in a secret's place.
_PLACEHOLDERS = ("changeme", "replaceme", "placeholder", "example", "dummy", "xxxxxxxx")


def secret_problem(value: str) -> str | None:
    """Why ``value`` is no secret (too short, a placeholder), or ``None``."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is {len(value)} characters; at least {MIN_SECRET_LENGTH} are required"
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    if any(word in folded for word in _PLACEHOLDERS) or len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return "looks like a placeholder, not a random secret"
    return None


def check_token_secret(settings: Settings) -> None:
    """With auth on, a resume-token secret that is set must be a real one: whoever knows it
    can forge tokens (cursors) that the API hands to Elasticsearch."""
    secret = settings.api_token_secret
    if settings.api_auth != "on" or secret is None:
        return
    problem = secret_problem(secret.get_secret_value())
    if problem is not None:
        raise AuthConfigError(f"NEWSFLOW_API_TOKEN_SECRET {problem}")


def is_loopback_host(host_header: str | None) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost`` (or ``*.localhost``), a
    127/8 address or ``[::1]``, with or without a port. A DNS-rebinding page's requests carry
    its own host name, so an API without keys serves only these."""
    if host_header is None:
        return True  # HTTP/1.0 without Host: not a browser, and no name to rebind
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _split(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


class ApiKeys:
    def __init__(
        self,
        read: Iterable[str],
        admin: Iterable[str],
        *,
        enabled: bool = True,
        id_secret: bytes | None = None,
    ) -> None:
        """``id_secret`` keys the HMAC that names keys (stable across restarts and replicas
        when it is the deployment's token secret)."""
        self.enabled = enabled
        id_key = id_secret or secrets.token_bytes(32)
        self._keys: list[tuple[bytes, Principal]] = []
        for scope, keys in ((Scope.ADMIN, admin), (Scope.READ, read)):
            scopes = frozenset(Scope) if scope is Scope.ADMIN else frozenset({Scope.READ})
            for number, key in enumerate(keys, 1):
                problem = secret_problem(key) if enabled else None
                if problem is not None:
                    raise AuthConfigError(f"{scope} API key #{number} {problem}")
                named = b"newsflow api key id\0" + key.encode("utf-8")  # not a token's MAC
                key_id = hmac.new(id_key, named, hashlib.sha256).hexdigest()[:8]
                self._keys.append((_digest(key), Principal(f"{scope}:{key_id}", scopes)))
        if enabled and not self._keys:
            raise AuthConfigError(
                "API auth is on but no key is set: set NEWSFLOW_API_READ_KEYS / "
                "NEWSFLOW_API_ADMIN_KEYS, or NEWSFLOW_API_AUTH=off for local use"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        read = settings.api_read_keys.get_secret_value() if settings.api_read_keys else ""
        admin = settings.api_admin_keys.get_secret_value() if settings.api_admin_keys else ""
        token_secret = settings.api_token_secret
        return cls(
            _split(read),
            _split(admin),
            enabled=settings.api_auth == "on",
            id_secret=token_secret.get_secret_value().encode("utf-8") if token_secret else None,
        )

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
