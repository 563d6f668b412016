"""The HTTP API (``newsflow api``): one app that mounts the search routes (``index.api``) and
the watch routes (``alert.api``), with what every route shares: API keys, the error shape,
security headers, request metrics and the health check.

``/healthz``, ``/metrics`` and ``/openapi.json`` are public; every error is
``{"error": {"code", "message", "details"?}}``. Before any route runs, ``RequestGuard`` refuses
bodies over ``NEWSFLOW_API_MAX_BODY_BYTES`` (413) and, with auth off, requests whose ``Host`` is
not a loopback name (421: a DNS-rebinding page cannot reach a keyless API).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from elasticsearch import ApiError as ESApiError
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout
from elasticsearch import Elasticsearch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alert.api import watch_router
from index.api import mount_search
from newsflow.api_auth import ApiKeys, check_token_secret, is_loopback_host
from newsflow.api_errors import ApiError, ErrorResponse
from newsflow.es import is_transient, make_client
from newsflow.observability import ApiMetrics
from newsflow.settings import Settings

log = logging.getLogger("newsflow.api")

API_VERSION = "1.0"
# The page loads nothing from elsewhere and runs no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Health(BaseModel):
    status: str
    elasticsearch: str


class _BodyTooLargeError(Exception):
    """Raised from ``receive`` once a streamed body passes the cap."""


class RequestGuard:
    """Plain ASGI, outside routing: what it refuses costs no parsing and no body read.

    A declared ``Content-Length`` over the cap is refused at once; a body streamed without
    one stops being read as soon as it passes the cap (the route reading it fails, and the
    client gets the 413)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, loopback_only: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.loopback_only and not is_loopback_host(headers.get("host")):
            message = (
                "with API auth off, only loopback host names (localhost, 127.0.0.1) are served"
            )
            await _refuse(send, ApiError(421, "invalid_host", message))
            return
        declared = headers.get("content-length")
        # (a malformed Content-Length never gets here: the server refuses it)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, self._too_large())
            return
        received = 0
        responded = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLargeError
            return message

        async def watched_send(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except _BodyTooLargeError:
            if not responded:
                await _refuse(send, self._too_large())

    def _too_large(self) -> ApiError:
        return ApiError(
            413, "request_too_large", f"the request body exceeds {self.max_body_bytes} bytes"
        )


async def _refuse(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings, es: Elasticsearch | None = None) -> FastAPI:
    """The API for one deployment; ``es`` is owned (and closed) by the caller when given."""
    # Both raise AuthConfigError before anything starts.
    check_token_secret(settings)
    keys = ApiKeys.from_settings(settings)
    own_client = es is None
    client = es if es is not None else make_client(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if own_client:
            client.close()

    app = FastAPI(
        title="Newsflow search API",
        version=API_VERSION,
        description="Full-text search over the news articles, one hit per story. "
        "Send an API key in the `X-API-Key` header.",
        docs_url=None,  # Swagger UI would load from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = keys
    # The first middleware added is the innermost: its refusals are still counted and get
    # the security headers, and it still runs before routing.
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.api_max_body_bytes,
        loopback_only=settings.api_auth == "off",
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p not in ("query", "path")),
                "message": str(err["msg"]),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(d["field"] for d in details)
        error = ApiError(
            400, "invalid_parameter", f"invalid parameter(s): {fields}", details=details
        )
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        error = ApiError(exc.status_code, code, str(exc.detail))
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(ESConnectionError)
    @app.exception_handler(ESConnectionTimeout)
    async def es_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Elasticsearch unavailable: %s", exc)
        error = ApiError(503, "search_unavailable", "Elasticsearch is not answering; retry later")
        return JSONResponse(error.body(), status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(ESApiError)
    async def es_error(request: Request, exc: ESApiError) -> JSONResponse:
        # Our queries are built, not passed through: an Elasticsearch 4xx here is our bug.
        log.error("Elasticsearch refused a request: %s", exc)
        status = 503 if is_transient(exc) else 502
        error = ApiError(status, "search_failed", "the search backend failed to answer")
        return JSONResponse(error.body(), status_code=status)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    metrics = ApiMetrics()
    app.state.metrics = metrics

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # the route's template, not the raw path: bounded label values
        template = str(getattr(route, "path", "")) or "unmatched"
        metrics.observe(template, response.status_code, time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Request counts and latencies for Prometheus (no content, so no key needed)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    unavailable = {"model": ErrorResponse, "description": "Elasticsearch is unavailable."}

    @app.get("/healthz", response_model=Health, tags=["ops"], responses={503: unavailable})
    def healthz() -> Health | JSONResponse:
        """Liveness and Elasticsearch reachability (what the stack and compose probe)."""
        try:
            status = str(client.cluster.health(timeout="2s")["status"])
        except (ESConnectionError, ESConnectionTimeout, ESApiError):
            error = ApiError(503, "search_unavailable", "Elasticsearch is not answering")
            return JSONResponse(error.body(), status_code=503)
        return Health(status="ok", elasticsearch=status)

    mount_search(app, settings, client)  # /v1/search, /v1/stories, /v1/admin, the page
    app.include_router(watch_router)  # /v1/watches: alerts on new stories
    return app
