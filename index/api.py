"""The search routes of the HTTP API (``newsflow api``) and the web page they serve.

Routes under ``/v1`` need an API key (``newsflow/api_auth.py``) unless auth is explicitly off;
the page (``/``, ``/static``) is public. Every error is ``{"error": {"code", "message",
"details"?}}`` with a 4xx for what the client can fix. The app itself (error handlers,
metrics, health, the watch routes beside these) is assembled in ``pipeline/api.py``.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any

from elasticsearch import Elasticsearch, NotFoundError
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from index.paging import ResumeState, TokenError, TokenSigner
from index.search import (
    ArticleHit,
    BadSearchRequestError,
    Facets,
    Interval,
    SearchFilters,
    SearchHit,
    SortBy,
    StoryInfo,
    StoryQuery,
    StorySearch,
    default_sort,
    pick_interval,
)
from newsflow.api_auth import ApiKeys, Principal, Scope, require
from newsflow.api_errors import ApiError, ErrorResponse
from newsflow.es import IndexNames, detect_capabilities
from newsflow.query import QueryTooComplexError, describe, parse
from newsflow.settings import Settings

log = logging.getLogger("newsflow.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_FILTER_VALUES = 20
STORY_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameters or resume token."},
    401: {"model": ErrorResponse, "description": "No API key, or an unknown one."},
    403: {"model": ErrorResponse, "description": "The API key lacks the scope."},
    503: {"model": ErrorResponse, "description": "Elasticsearch is unavailable."},
}


# --- response models ----------------------------------------------------------------------


class QueryEcho(BaseModel):
    q: str
    understood: str = Field(description="The query as parsed, in canonical form.")
    sort: SortBy
    group: bool


class SearchResponse(BaseModel):
    query: QueryEcho
    page: int
    size: int
    hits: list[SearchHit]
    next_token: str | None = Field(
        description="Pass as `token` (with the same q, filters and sort) for the next page; "
        "null on the last page. Expires after the configured keep-alive."
    )
    articles_total: int = Field(description="Matching articles (counted up to 10,000).")
    articles_total_exact: bool
    facets: Facets | None = None
    took_ms: int


class StoryResponse(BaseModel):
    story: StoryInfo
    articles: list[ArticleHit]


class NewStoriesResponse(BaseModel):
    stories: list[StoryInfo]
    now: datetime


class IndexStat(BaseModel):
    name: str
    docs: int


class StatsResponse(BaseModel):
    cluster_status: str
    articles_alias: str
    articles_indices: list[IndexStat]
    stories_index: str
    stories: int
    modules: list[str]


class WhoAmI(BaseModel):
    principal: str
    scopes: list[str]
    auth: bool


class Health(BaseModel):
    status: str
    elasticsearch: str


# --- helpers ------------------------------------------------------------------------------


def _bound(value: str | None, name: str, *, end: bool) -> datetime | None:
    """A date or datetime bound; a bare date ``to`` means the end of that day; naive = UTC."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, dtime.max if end else dtime.min, tzinfo=UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "invalid_parameter",
            f"`{name}` must be a date (2026-11-19) or an ISO 8601 datetime",
            details=[{"field": name, "message": "not a date"}],
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _values(values: list[str], name: str, pattern: str | None = None) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(cleaned) > MAX_FILTER_VALUES:
        raise ApiError(
            400, "invalid_parameter", f"at most {MAX_FILTER_VALUES} `{name}` values are allowed"
        )
    for value in cleaned:
        if len(value) > 200 or (pattern and not re.fullmatch(pattern, value)):
            raise ApiError(
                400,
                "invalid_parameter",
                f"`{name}` value {value[:40]!r} is not valid",
                details=[{"field": name, "message": "invalid value"}],
            )
    return cleaned


def _service(request: Request) -> StorySearch:
    service: StorySearch = request.app.state.search
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# --- routes -------------------------------------------------------------------------------

read_router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require(Scope.READ))])
admin_router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require(Scope.ADMIN))]
)


@read_router.get("/search", response_model=SearchResponse, responses=ERRORS)
def search(
    request: Request,
    background: BackgroundTasks,
    q: Annotated[
        str,
        Query(
            description='Words, "phrases", AND/OR/NOT, -word, (groups), title:/outlet:/'
            "author:/lang: prefixes. Empty: every article.",
        ),
    ] = "",
    outlet: Annotated[list[str], Query(description="Only these outlets (repeatable).")] = [],  # noqa: B006
    lang: Annotated[list[str], Query(description="Only these languages, ISO 639-1.")] = [],  # noqa: B006
    from_: Annotated[
        str | None, Query(alias="from", description="Published at or after (date or datetime).")
    ] = None,
    to: Annotated[
        str | None, Query(description="Published at or before; a bare date includes the day.")
    ] = None,
    story: Annotated[str | None, Query(description="Only this story's articles.")] = None,
    sort: Annotated[
        SortBy | None, Query(description="Default: relevance with a query, date without.")
    ] = None,
    group: Annotated[bool, Query(description="One hit per story (default).")] = True,
    size: Annotated[int, Query(ge=1, description="Hits per page (server maximum applies).")] = 10,
    token: Annotated[
        str | None, Query(max_length=4096, description="Resume token from `next_token`.")
    ] = None,
    facets: Annotated[bool, Query(description="Facets (first page only).")] = True,
    interval: Annotated[Interval, Query(description="Date histogram bucket.")] = "auto",
    highlight: Annotated[bool, Query()] = True,
) -> SearchResponse:
    """Full-text search over articles, one hit per story, with facets and deep paging."""
    started = time.perf_counter()
    settings = _settings(request)
    service = _service(request)
    if len(q) > settings.api_max_query_length:
        raise ApiError(
            400,
            "query_too_long",
            f"the query is {len(q)} characters; at most {settings.api_max_query_length}",
        )
    if size > settings.api_max_page_size:
        raise ApiError(
            400,
            "invalid_parameter",
            f"size must be at most {settings.api_max_page_size}",
            details=[{"field": "size", "message": "too large"}],
        )
    if story is not None and not _matches(STORY_ID_PATTERN, story):
        raise ApiError(400, "invalid_parameter", "`story` is not a story id")
    filters = SearchFilters(
        outlets=_values(outlet, "outlet"),
        languages=_values(lang, "lang", r"[a-z]{2}"),
        published_from=_bound(from_, "from", end=False),
        published_to=_bound(to, "to", end=True),
        story_id=story,
    )
    if (
        filters.published_from
        and filters.published_to
        and filters.published_from > filters.published_to
    ):
        raise ApiError(400, "invalid_parameter", "`from` is after `to`")
    try:
        tree = parse(q)
        if facets and not token:
            interval = pick_interval(filters, interval)  # refuse before touching Elasticsearch
    except QueryTooComplexError as exc:
        raise ApiError(400, "query_too_complex", str(exc)) from None
    except BadSearchRequestError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    query = StoryQuery(text=q, filters=filters, sort=sort or default_sort(q), group=group)
    keep_alive = settings.api_page_keep_alive_seconds
    signer: TokenSigner = request.app.state.signer
    page_no, after, pit_id = 1, None, None
    if token:
        try:
            state = signer.load(token, expected_fingerprint=query.fingerprint())
        except TokenError as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        page_no, after, pit_id = state.page, state.after, state.pit_id
    try:
        if pit_id is None:
            pit_id = service.open_snapshot(keep_alive)
        result = service.page(
            query,
            size=size,
            after=after,
            pit_id=pit_id,
            keep_alive_seconds=keep_alive,
            facets=facets and token is None,
            interval=interval,
            highlight=highlight,
        )
    except NotFoundError:
        if token:  # the token's snapshot (point in time) is gone: expired or closed
            raise ApiError(
                410, "token_expired", "the result snapshot has expired: run the search again"
            ) from None
        raise ApiError(
            503, "index_missing", "the articles index does not exist: run `newsflow init`"
        ) from None
    next_token = None
    if result.next_after is not None:
        next_token = signer.dump(
            ResumeState(
                fingerprint=query.fingerprint(),
                pit_id=pit_id,
                after=result.next_after,
                page=page_no + 1,
                expires_at=time.time() + keep_alive,
            )
        )
    else:
        background.add_task(service.close_snapshot, pit_id)
    return SearchResponse(
        query=QueryEcho(q=q, understood=describe(tree), sort=query.sort, group=query.group),
        page=page_no,
        size=size,
        hits=result.hits,
        next_token=next_token,
        articles_total=result.articles_total,
        articles_total_exact=result.articles_total_exact,
        facets=result.facets,
        took_ms=round((time.perf_counter() - started) * 1000),
    )


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


@read_router.get("/stories/new", response_model=NewStoriesResponse, responses=ERRORS)
def new_stories(
    request: Request,
    since: Annotated[
        str | None, Query(description="Only stories first seen after this time.")
    ] = None,
    size: Annotated[int, Query(ge=1, le=50)] = 10,
) -> NewStoriesResponse:
    """The most recently first-seen stories: what the page's live list polls."""
    stories = _service(request).new_stories(since=_bound(since, "since", end=False), size=size)
    return NewStoriesResponse(stories=stories, now=datetime.now(UTC))


@read_router.get("/stories/{story_id}", response_model=StoryResponse, responses=ERRORS)
def story(
    request: Request,
    story_id: Annotated[str, PathParam(pattern=STORY_ID_PATTERN)],
    size: Annotated[int, Query(ge=1, le=100, description="Articles to return.")] = 50,
) -> StoryResponse:
    """A story with its articles, oldest first."""
    found = _service(request).story(story_id, size=size)
    if found is None:
        raise ApiError(404, "not_found", f"no story {story_id}")
    info, articles = found
    return StoryResponse(story=info, articles=articles)


@read_router.get("/me", response_model=WhoAmI, responses=ERRORS)
def whoami(request: Request) -> WhoAmI:
    """Who the key is and what it may do (the page uses it to ask for a key)."""
    keys: ApiKeys = request.app.state.api_keys
    principal: Principal = request.state.principal
    return WhoAmI(
        principal=principal.name,
        scopes=sorted(s.value for s in principal.scopes),
        auth=keys.enabled,
    )


@admin_router.get("/stats", response_model=StatsResponse, responses=ERRORS)
def stats(request: Request) -> StatsResponse:
    """Which indices the aliases point at and how many documents they hold."""
    service = _service(request)
    es, names = service.es, service.names
    health = es.cluster.health()
    aliases = es.indices.get_alias(name=names.articles)
    indices = []
    for name in sorted(aliases):
        indices.append(IndexStat(name=name, docs=int(es.count(index=name)["count"])))
    # Absorbed stories stay as redirects to the survivor: not stories of their own.
    not_redirect = {"bool": {"must_not": [{"exists": {"field": "merged_into"}}]}}
    stories = int(es.count(index=names.stories, query=not_redirect)["count"])
    return StatsResponse(
        cluster_status=str(health["status"]),
        articles_alias=names.articles,
        articles_indices=indices,
        stories_index=names.stories,
        stories=stories,
        modules=sorted(detect_capabilities(es).modules),
    )


# --- mounting -----------------------------------------------------------------------------


def mount_search(app: FastAPI, settings: Settings, es: Elasticsearch) -> None:
    """Add the search routes, their state and the web page to ``app`` (the API is assembled
    by the wiring package; this stage owns only what it serves)."""
    app.state.search = StorySearch(es, IndexNames(settings.index_prefix))
    secret = settings.api_token_secret
    app.state.signer = TokenSigner(secret.get_secret_value().encode() if secret else None)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(read_router)
    app.include_router(admin_router)
