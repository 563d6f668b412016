"""HTTP connections that go to an address checked beforehand, with TLS still for the host name.

The address guard (:mod:`newsflow.netguard`) resolves a host once and checks every address; the
connection must then go to that address, not to whatever DNS answers a moment later. Rewriting
the URL's host to the address did that, but it also keyed the connection pool by address: two
host names on one address shared a connection, and the second was served over the first one's
TLS session, its certificate never checked against the second name. Here the URL keeps its
host name, so the pool, the SNI and the certificate check are per host name, and only the TCP
connect is redirected to the checked address (a request extension carries it).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from contextvars import ContextVar

import httpcore
import httpx

__all__ = ["ADDRESS_EXTENSION", "PinnedTransport"]

#: ``request.extensions[ADDRESS_EXTENSION]``: the checked address to connect to.
ADDRESS_EXTENSION = "newsflow.address"

_pinned: ContextVar[tuple[str, str] | None] = ContextVar("newsflow_pinned", default=None)


class _PinnedBackend(httpcore.SyncBackend):
    def __init__(self, *, require_pin: bool) -> None:
        self.require_pin = require_pin

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        pin = _pinned.get()
        if pin is None:
            if self.require_pin:
                raise httpcore.ConnectError(f"{host}: no checked address to connect to")
            address = host
        elif pin[0].lower() != host.lower():
            raise httpcore.ConnectError(f"{host}: the checked address is for {pin[0]}")
        else:
            address = pin[1]
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


class PinnedTransport(httpx.HTTPTransport):
    """An ``HTTPTransport`` whose new connections go to the request's checked address.

    ``require_pin``: refuse a request that carries no address (the guard was skipped) instead
    of resolving its host again.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        trust_env: bool = True,
        require_pin: bool = True,
    ) -> None:
        context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
        super().__init__(verify=context, trust_env=trust_env)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(require_pin=require_pin),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        address = request.extensions.get(ADDRESS_EXTENSION)
        pin = (request.url.raw_host.decode("ascii"), str(address)) if address else None
        token = _pinned.set(pin)
        try:
            return super().handle_request(request)
        finally:
            _pinned.reset(token)
