"""The API without Elasticsearch: resume tokens, API keys and scopes, parameter validation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from index.paging import ResumeState, TokenError, TokenSigner, fingerprint
from index.search import BadSearchRequestError, SearchFilters, StoryQuery, pick_interval
from newsflow.api_auth import ApiKeys, AuthConfigError, Scope
from newsflow.settings import Settings
from pipeline.api import create_app

READ_KEY = "read-key-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN_KEY = "admin-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = "other-key-0123456789-abcdefghijklmnopqrstuvwxyz"


# --- resume tokens ------------------------------------------------------------------------


def _state(**changes: object) -> ResumeState:
    values: dict[str, object] = {
        "fingerprint": "f" * 24,
        "pit_id": "pit-1",
        "after": [1.5, "abc", 7],
        "page": 2,
        "expires_at": time.time() + 60,
    }
    values.update(changes)
    return ResumeState(**values)  # type: ignore[arg-type]


def test_token_round_trip() -> None:
    signer = TokenSigner(b"secret")
    state = _state()
    loaded = signer.load(signer.dump(state), expected_fingerprint=state.fingerprint)
    assert loaded.after == [1.5, "abc", 7]
    assert loaded.pit_id == "pit-1"
    assert loaded.page == 2


def test_token_is_url_safe() -> None:
    token = TokenSigner(b"secret").dump(_state(after=[b"\xff".hex(), "é/+?&="]))
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "x" + t,  # payload changed
        lambda t: t.replace(".", ""),  # no signature
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "a" * 5000,
        lambda t: "!!!.???",
    ],
)
def test_tampered_tokens_are_refused(mangle: object) -> None:
    signer = TokenSigner(b"secret")
    token = signer.dump(_state())
    with pytest.raises(TokenError) as err:
        signer.load(mangle(token), expected_fingerprint="f" * 24)  # type: ignore[operator]
    assert err.value.code == "invalid_token"
    assert err.value.status == 400


def test_token_from_another_server_secret_is_refused() -> None:
    token = TokenSigner(b"one").dump(_state())
    with pytest.raises(TokenError, match="not valid"):
        TokenSigner(b"two").load(token, expected_fingerprint="f" * 24)


def test_token_of_another_query_is_refused() -> None:
    signer = TokenSigner(b"secret")
    with pytest.raises(TokenError) as err:
        signer.load(signer.dump(_state()), expected_fingerprint="g" * 24)
    assert err.value.code == "token_mismatch"


def test_expired_token_is_gone() -> None:
    signer = TokenSigner(b"secret")
    token = signer.dump(_state(expires_at=time.time() - 1))
    with pytest.raises(TokenError) as err:
        signer.load(token, expected_fingerprint="f" * 24)
    assert (err.value.code, err.value.status) == ("token_expired", 410)


def test_fingerprint_covers_what_defines_the_results() -> None:
    base = StoryQuery(text="flood", filters=SearchFilters(outlets=("a",)), sort="date")
    assert base.fingerprint() == StoryQuery.model_validate(base.model_dump()).fingerprint()
    assert base.fingerprint() != base.model_copy(update={"text": "floods"}).fingerprint()
    assert base.fingerprint() != base.model_copy(update={"sort": "relevance"}).fingerprint()
    assert base.fingerprint() != base.model_copy(update={"group": False}).fingerprint()
    other = base.model_copy(update={"filters": SearchFilters(outlets=("b",))})
    assert base.fingerprint() != other.fingerprint()
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})


def test_histogram_interval() -> None:
    day = SearchFilters(
        published_from=datetime(2026, 1, 1, tzinfo=UTC),
        published_to=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert pick_interval(day, "auto") == "hour"
    assert pick_interval(SearchFilters(), "auto") == "day"
    assert pick_interval(SearchFilters(), "week") == "week"
    with pytest.raises(BadSearchRequestError):
        pick_interval(SearchFilters(), "hour")


# --- API keys -----------------------------------------------------------------------------


def test_keys_and_scopes() -> None:
    keys = ApiKeys([READ_KEY], [ADMIN_KEY])
    read = keys.authenticate(READ_KEY)
    admin = keys.authenticate(ADMIN_KEY)
    assert read is not None and read.scopes == {Scope.READ}
    assert admin is not None and admin.scopes == {Scope.READ, Scope.ADMIN}
    assert keys.authenticate("nope") is None
    assert keys.authenticate(None) is None
    assert READ_KEY not in read.name  # only a fingerprint


def test_auth_on_without_keys_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError):
        ApiKeys([], [], enabled=True)
    with pytest.raises(AuthConfigError):
        create_app(Settings(api_auth="on"), es=Elasticsearch("http://127.0.0.1:9"))


def test_keys_from_settings_are_comma_separated_secrets() -> None:
    settings = Settings(api_read_keys=SecretStr(f" {READ_KEY} , {OTHER_KEY} "), api_admin_keys=None)
    keys = ApiKeys.from_settings(settings)
    assert keys.authenticate(OTHER_KEY) is not None
    assert READ_KEY not in repr(settings)


@pytest.mark.parametrize(
    "key",
    [
        "change-me",
        "change-me-too",
        "short-but-random-4f9a2c",
        "change-me-change-me-change-me-change-me",
        "CHANGEME_" + "0123456789abcdef" * 2,
        "your-example-api-key-goes-right-here-1234",
        "a" * 40,
        "abababab" * 5,
    ],
)
def test_short_or_placeholder_keys_refuse_to_start(key: str) -> None:
    with pytest.raises(AuthConfigError):
        ApiKeys([key], [ADMIN_KEY])
    with pytest.raises(AuthConfigError):
        create_app(Settings(api_admin_keys=SecretStr(key)), es=Elasticsearch("http://127.0.0.1:9"))
    assert ApiKeys([key], [], enabled=False).enabled is False  # auth off: keys are not used


def test_placeholder_token_secret_refuses_to_start() -> None:
    """Whoever knows the token secret forges cursors that reach Elasticsearch."""
    es = Elasticsearch("http://127.0.0.1:9")
    for secret in ("change-me", "change-me" * 4, "too-short-7f3a"):
        settings = Settings(api_admin_keys=SecretStr(ADMIN_KEY), api_token_secret=SecretStr(secret))
        with pytest.raises(AuthConfigError, match="TOKEN_SECRET"):
            create_app(settings, es=es)
    good = Settings(api_admin_keys=SecretStr(ADMIN_KEY), api_token_secret=SecretStr(OTHER_KEY))
    create_app(good, es=es)
    create_app(Settings(api_auth="off", api_token_secret=SecretStr("change-me")), es=es)


def test_key_ids_are_keyed_not_plain_hashes() -> None:
    """A read key sees key ids (watch creators, /v1/me): a plain SHA-256 prefix of an admin
    key could be checked offline against guesses."""
    plain = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:8]
    one = ApiKeys([], [ADMIN_KEY], id_secret=b"deployment-secret").authenticate(ADMIN_KEY)
    again = ApiKeys([], [ADMIN_KEY], id_secret=b"deployment-secret").authenticate(ADMIN_KEY)
    other = ApiKeys([], [ADMIN_KEY], id_secret=b"another-secret").authenticate(ADMIN_KEY)
    random = ApiKeys([], [ADMIN_KEY]).authenticate(ADMIN_KEY)
    assert one is not None and again is not None and other is not None and random is not None
    assert one.name.startswith("admin:") and plain not in one.name
    assert one.name == again.name != other.name  # stable for one secret (restarts, replicas)
    assert plain not in random.name


def test_auth_off_admits_everyone() -> None:
    keys = ApiKeys([], [], enabled=False)
    principal = keys.authenticate(None)
    assert principal is not None and Scope.ADMIN in principal.scopes


# --- HTTP, before Elasticsearch is ever asked ----------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    es = Elasticsearch("http://127.0.0.1:9")  # nothing listens: these requests must not reach it
    settings = Settings(
        api_read_keys=SecretStr(READ_KEY),
        api_admin_keys=SecretStr(ADMIN_KEY),
        api_max_page_size=20,
        api_max_query_length=200,
    )
    with TestClient(create_app(settings, es=es)) as test_client:
        yield test_client
    es.close()


def _error(response: object) -> tuple[int, str]:
    status = response.status_code  # type: ignore[attr-defined]
    return status, response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_no_key_is_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/v1/search", params={"q": "x"})
    assert _error(response) == (401, "unauthorized")
    assert "X-API-Key" in response.headers["WWW-Authenticate"]


def test_wrong_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/search", headers={"X-API-Key": "wrong"})
    assert _error(response) == (401, "unauthorized")
    assert "not valid" in response.json()["error"]["message"]


def test_read_key_on_admin_route_is_403(client: TestClient) -> None:
    response = client.get("/v1/admin/stats", headers={"X-API-Key": READ_KEY})
    assert _error(response) == (403, "forbidden")


def test_bearer_works_too(client: TestClient) -> None:
    response = client.get("/v1/me", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200
    assert response.json()["scopes"] == ["admin", "read"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"size": 0}, "invalid_parameter"),
        ({"size": 21}, "invalid_parameter"),
        ({"size": "ten"}, "invalid_parameter"),
        ({"sort": "popularity"}, "invalid_parameter"),
        ({"q": "x" * 201}, "query_too_long"),
        ({"q": " ".join(["w"] * 40)}, "query_too_complex"),
        ({"q": "".join(f"-(w{i} " for i in range(8))}, "query_too_complex"),
        ({"q": " ".join(f"author:a{i}" for i in range(5))}, "query_too_complex"),
        ({"lang": "english"}, "invalid_parameter"),
        ({"from": "yesterday"}, "invalid_parameter"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "invalid_parameter"),
        ({"story": "bad id!"}, "invalid_parameter"),
        ({"interval": "hour"}, "invalid_parameter"),
        ({"token": "not-a-token"}, "invalid_token"),
        ({"outlet": [f"o{i}" for i in range(21)]}, "invalid_parameter"),
    ],
)
def test_invalid_parameters_are_clear_400s(
    client: TestClient, params: dict[str, object], code: str
) -> None:
    headers = {"X-API-Key": READ_KEY}
    response = client.get("/v1/search", params=params, headers=headers)
    assert _error(response) == (400, code), response.json()
    assert response.json()["error"]["message"]


def test_validation_error_names_the_field(client: TestClient) -> None:
    response = client.get("/v1/search", params={"size": "ten"}, headers={"X-API-Key": READ_KEY})
    assert response.json()["error"]["details"][0]["field"] == "size"


def test_story_path_is_validated(client: TestClient) -> None:
    response = client.get("/v1/stories/bad%20id", headers={"X-API-Key": READ_KEY})
    assert _error(response) == (400, "invalid_parameter")


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert _error(client.get("/v1/nope", headers={"X-API-Key": READ_KEY})) == (404, "not_found")


def test_page_and_schema_are_public_with_a_strict_csp(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/search" in schema["paths"]
    assert schema["components"]["securitySchemes"]


def test_healthz_is_503_without_elasticsearch(client: TestClient) -> None:
    assert _error(client.get("/healthz")) == (503, "search_unavailable")


# --- request guard: the key before the body, capped bodies, loopback hosts with auth off ----


@pytest.fixture
def guarded_app() -> Iterator[FastAPI]:
    es = Elasticsearch("http://127.0.0.1:9")
    settings = Settings(
        api_read_keys=SecretStr(READ_KEY),
        api_admin_keys=SecretStr(ADMIN_KEY),
        api_max_body_bytes=16 * 1024,
        api_max_query_length=200,
    )
    yield create_app(settings, es=es)
    es.close()


def _post_chunks(
    app: FastAPI, path: str, chunks: int, *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], int]:
    """POST a streamed body of ``chunks`` 4 kB chunks straight into the ASGI app (TestClient
    would buffer it): the status, the JSON answer and how many chunks the app pulled."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"x" * 4096, "more_body": pulled < chunks}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(b"host", b"api.example"), (b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


def test_watch_key_is_checked_before_the_body_is_read(guarded_app: FastAPI) -> None:
    # A 40 MB body without a key: 401 without reading it (it was read and parsed first).
    status, body, pulled = _post_chunks(guarded_app, "/v1/watches", 10_000)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert pulled == 0
    with TestClient(guarded_app) as client:
        bad_json = client.post("/v1/watches", content=b"{not json")
        assert _error(bad_json) == (401, "unauthorized")  # was 400: parsed before the key
        read_key = client.post("/v1/watches", content=b"{not json", headers={"X-API-Key": READ_KEY})
        assert _error(read_key) == (403, "forbidden")


def test_request_bodies_are_capped(guarded_app: FastAPI) -> None:
    admin = {"X-API-Key": ADMIN_KEY}
    status, body, pulled = _post_chunks(guarded_app, "/v1/watches", 10_000, headers=admin)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert pulled <= 16 * 1024 // 4096 + 1  # stopped reading at the cap
    declared = {**admin, "Content-Length": str(10**9)}
    status, body, pulled = _post_chunks(guarded_app, "/v1/watches", 1, headers=declared)
    assert (status, pulled) == (413, 0)
    # Every route: the cap runs before routing.
    status, _, pulled = _post_chunks(guarded_app, "/v1/search", 1, headers=declared)
    assert (status, pulled) == (413, 0)


def test_watch_body_errors_keep_their_shape(guarded_app: FastAPI) -> None:
    admin = {"X-API-Key": ADMIN_KEY}
    with TestClient(guarded_app) as client:
        bad_json = client.post("/v1/watches", content=b"{not json", headers=admin)
        assert _error(bad_json) == (400, "invalid_parameter")
        unknown = client.post("/v1/watches", json={"name": "x", "q": "y"}, headers=admin)
        assert _error(unknown) == (400, "invalid_parameter")
        assert "body.q" in {d["field"] for d in unknown.json()["error"]["details"]}
        too_long = client.post(
            "/v1/watches", json={"name": "x", "query": "flood " * 40}, headers=admin
        )
        assert _error(too_long) == (400, "query_too_long")
        schema = client.get("/openapi.json").json()
    request_body = schema["paths"]["/v1/watches"]["post"]["requestBody"]
    properties = request_body["content"]["application/json"]["schema"]["properties"]
    assert set(properties) == {"name", "query", "webhook_url"}


def _auth_off_client() -> TestClient:
    settings = Settings(api_auth="off")
    return TestClient(create_app(settings, es=Elasticsearch("http://127.0.0.1:9")))


@pytest.mark.parametrize(
    "host", ["rebind.attacker.example", "rebind.attacker.example:8000", "10.0.0.5", "0.0.0.0"]
)
def test_auth_off_serves_only_loopback_host_names(host: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: refused before any route."""
    with _auth_off_client() as client:
        created = client.post(
            "/v1/watches", json={"name": "x", "query": "y"}, headers={"Host": host}
        )
        assert _error(created) == (421, "invalid_host")
        assert created.headers["X-Content-Type-Options"] == "nosniff"
        assert _error(client.get("/v1/me", headers={"Host": host})) == (421, "invalid_host")


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_auth_off_serves_loopback_host_names(host: str) -> None:
    with _auth_off_client() as client:
        me = client.get("/v1/me", headers={"Host": host})
        assert me.status_code == 200 and me.json()["auth"] is False


def test_auth_on_serves_any_host_name(client: TestClient) -> None:
    me = client.get("/v1/me", headers={"Host": "api.example.org", "X-API-Key": READ_KEY})
    assert me.status_code == 200
