"""``/v1/watches``: register (admin), list (read) and delete (admin) watches.

Mounted by ``pipeline.api.create_app``; kept here so the alert feature lives in one package.
Webhook URLs are write-only: a listing says whether a watch has one, never the URL (it may
carry a token of the receiver's). A watch's webhook secret is shown once, in the answer to its
creation or to a rotation (``POST /v1/watches/{id}/rotate-secret``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from elasticsearch import NotFoundError
from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from alert.store import WatchStore
from alert.watches import InvalidWatchError, build_watch
from newsflow.api_auth import Principal, Scope, require
from newsflow.api_errors import ApiError, ErrorResponse
from newsflow.contracts import Watch
from newsflow.query import QueryTooComplexError, describe, parse
from newsflow.settings import Settings

WATCH_ID_PATTERN = r"^w-[0-9a-f]{16}$"
_NO_INDEX = "the watches index does not exist: run `newsflow init`"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid watch."},
    401: {"model": ErrorResponse, "description": "No API key, or an unknown one."},
    403: {"model": ErrorResponse, "description": "The API key lacks the scope."},
    413: {"model": ErrorResponse, "description": "The request body is too large."},
    503: {"model": ErrorResponse, "description": "Elasticsearch is unavailable."},
}


class WatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Shown in alerts.")
    query: str = Field(min_length=1, description="Search-box syntax, as `q` in /v1/search.")
    webhook_url: str | None = Field(
        default=None,
        description="POST each alert here, signed (X-Newsflow-Signature, X-Newsflow-Timestamp).",
    )


class WatchInfo(BaseModel):
    id: str
    name: str
    query: str
    understood: str = Field(description="The query as parsed, in canonical form.")
    webhook: bool = Field(description="Whether alerts are also POSTed to a webhook.")
    created_at: datetime
    created_by: str | None = Field(
        description="The creating key's id, or `cli`; shown to admin keys only."
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Verifies this watch's webhooks: only in the answer to create and rotate.",
    )


class WatchList(BaseModel):
    watches: list[WatchInfo]


def watch_info(watch: Watch, *, show_creator: bool) -> WatchInfo:
    try:
        understood = describe(parse(watch.query))
    except QueryTooComplexError:
        understood = ""
    return WatchInfo(
        id=watch.id,
        name=watch.name,
        query=watch.query,
        understood=understood,
        webhook=watch.webhook_url is not None,
        created_at=watch.created_at,
        created_by=watch.created_by if show_creator else None,
    )


def _store(request: Request) -> WatchStore:
    settings: Settings = request.app.state.settings
    return WatchStore(request.app.state.search.es, settings.index_prefix)


watch_router = APIRouter(prefix="/v1/watches", tags=["watches"])


async def _watch_request(request: Request) -> WatchRequest:
    """The body, parsed only now: after the key was checked (a body parameter would be read
    and parsed before any dependency, so before authentication)."""
    raw = await request.body()
    try:
        return WatchRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        raise RequestValidationError(errors) from None


@watch_router.post(
    "",
    status_code=201,
    response_model=WatchInfo,
    responses=ERRORS,
    dependencies=[Depends(require(Scope.ADMIN))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WatchRequest.model_json_schema()}},
        }
    },
)
async def create_watch(request: Request) -> WatchInfo:
    """Register a watch: each new story matching `query` raises one alert."""
    body = await _watch_request(request)
    return await run_in_threadpool(_register, request, body)


def _register(request: Request, body: WatchRequest) -> WatchInfo:
    """Validation may resolve the webhook's host and storing waits for a refresh: blocking
    work, run off the event loop."""
    principal: Principal = request.state.principal
    try:
        watch, _ = build_watch(
            body.name,
            body.query,
            request.app.state.settings,
            webhook_url=body.webhook_url,
            created_by=principal.name,
        )
    except InvalidWatchError as exc:
        raise ApiError(
            400, exc.code, str(exc), details=[{"field": exc.field, "message": str(exc)}]
        ) from None
    try:
        _store(request).add(watch)
    except NotFoundError:
        raise ApiError(503, "index_missing", _NO_INDEX) from None
    return watch_info(watch, show_creator=True).model_copy(
        update={"webhook_secret": watch.webhook_secret}
    )


@watch_router.post(
    "/{watch_id}/rotate-secret",
    response_model=WatchInfo,
    responses={**ERRORS, 404: {"model": ErrorResponse, "description": "No such watch."}},
    dependencies=[Depends(require(Scope.ADMIN))],
)
def rotate_watch_secret(
    request: Request, watch_id: Annotated[str, PathParam(pattern=WATCH_ID_PATTERN)]
) -> WatchInfo:
    """A new webhook secret for the watch (the old one stops verifying at once)."""
    rotated = _store(request).rotate_webhook_secret(watch_id)
    if rotated is None:
        raise ApiError(404, "not_found", f"no watch {watch_id} with a webhook")
    watch, secret = rotated
    return watch_info(watch, show_creator=True).model_copy(update={"webhook_secret": secret})


@watch_router.get(
    "", response_model=WatchList, responses=ERRORS, dependencies=[Depends(require(Scope.READ))]
)
def list_watches(request: Request) -> WatchList:
    """Every watch, oldest first (webhook URLs are not shown; creators only to admin keys)."""
    principal: Principal = request.state.principal
    show_creator = Scope.ADMIN in principal.scopes
    try:
        watches = _store(request).list()
    except NotFoundError:
        raise ApiError(503, "index_missing", _NO_INDEX) from None
    return WatchList(watches=[watch_info(w, show_creator=show_creator) for w in watches])


@watch_router.delete(
    "/{watch_id}",
    status_code=204,
    response_class=Response,
    responses={**ERRORS, 404: {"model": ErrorResponse, "description": "No such watch."}},
    dependencies=[Depends(require(Scope.ADMIN))],
)
def delete_watch(
    request: Request, watch_id: Annotated[str, PathParam(pattern=WATCH_ID_PATTERN)]
) -> Response:
    """Delete a watch; it raises no more alerts."""
    if not _store(request).delete(watch_id):
        raise ApiError(404, "not_found", f"no watch {watch_id}")
    return Response(status_code=204)
