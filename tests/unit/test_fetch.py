"""The fetcher, against httpx.MockTransport: no sockets, no DNS."""

from __future__ import annotations

import gzip
import socket
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from ingest.fetch import Fetcher, FetchPolicy, decode_html
from newsflow.netguard import check_address
from newsflow.outlets import Outlet
from newsflow.pinning import ADDRESS_EXTENSION
from newsflow.settings import Settings

PUBLIC_IP = "93.184.216.34"  # never contacted: every test uses a MockTransport
HTML = b"<!DOCTYPE html><html><head><title>t</title></head><body><p>Hello</p></body></html>"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def resolver(table: dict[str, list[str]] | None = None) -> Callable[[str, int], list[str]]:
    table = {"news.example": [PUBLIC_IP], "www.news.example": [PUBLIC_IP], **(table or {})}

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(-2, "Name or service not known")
        return table[host]

    return resolve


def make_fetcher(
    handler: Handler,
    *,
    table: dict[str, list[str]] | None = None,
    clock: FakeClock | None = None,
) -> Fetcher:
    clock = clock or FakeClock()
    return Fetcher(
        Settings(),
        transport=httpx.MockTransport(handler),
        resolver=resolver(table),
        sleep=clock.sleep,
        clock=clock,
    )


def policy(**overrides: object) -> FetchPolicy:
    values: dict[str, object] = {
        "user_agent": "TestBot/1 (+https://t.example)",
        "politeness_delay": 0.0,
    }
    values.update(overrides)
    return FetchPolicy(**values)  # type: ignore[arg-type]


def html_response(
    body: bytes = HTML,
    content_type: str = "text/html; charset=utf-8",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"content-type": content_type, **(headers or {})}
    return httpx.Response(status, headers=all_headers, content=body)


def host_of(request: httpx.Request) -> str:
    return request.headers["host"]


# --------------------------------------------------------------------------- happy path


def test_fetches_html_with_user_agent_and_pinned_address() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return html_response()

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/story?id=1", policy())
    assert result.reason == "fetched" and result.ok
    assert result.status == 200
    assert result.text is not None and "Hello" in result.text
    assert result.content_type == "text/html"
    assert result.bytes == len(HTML)
    assert result.final_url == result.url == "https://news.example/story?id=1"
    assert result.elapsed_ms >= 0
    [request] = seen
    assert request.headers["user-agent"] == "TestBot/1 (+https://t.example)"
    assert request.headers["host"] == "news.example"
    assert request.headers["accept-encoding"] == "gzip, deflate"
    # The connection goes to the address that was checked, not to a second DNS answer; the
    # URL keeps the host name, for SNI, the certificate check and the connection pool.
    assert request.extensions[ADDRESS_EXTENSION] == PUBLIC_IP
    assert request.url.host == "news.example"
    assert request.url.path == "/story" and request.url.query == b"id=1"


def test_policy_from_settings_and_outlet() -> None:
    settings = Settings(fetch_timeout_seconds=12, max_page_bytes=1234)
    outlet = Outlet(
        name="local",
        display_name="Local",
        homepage="http://127.0.0.1:8765/local/",
        feeds=["http://127.0.0.1:8765/local/rss.xml"],
        allow_private_network=True,
    )
    p = FetchPolicy.for_outlet(outlet, settings)
    assert p.user_agent == settings.http_user_agent
    assert p.deadline == 12 and p.max_bytes == 1234 and p.max_redirects == 5
    assert p.private_ok("127.0.0.1") and not p.private_ok("127.0.0.2")
    assert p.onsite is not None and p.onsite("http://127.0.0.1:8765/local/a")
    public = FetchPolicy.for_outlet(outlet.model_copy(update={"allow_private_network": False}))
    assert not public.private_ok("127.0.0.1")


def test_documents_return_bytes_of_any_type_and_any_domain() -> None:
    feed = b"<rss><channel/></rss>"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/rss+xml"}, content=feed)

    with make_fetcher(handler, table={"feeds.elsewhere.example": [PUBLIC_IP]}) as fetcher:
        result = fetcher.fetch_document(
            "https://feeds.elsewhere.example/rss",
            policy(onsite=lambda url: url.startswith("https://news.example/")),
        )
    assert result.reason == "fetched"
    assert result.body == feed and result.text is None


# --------------------------------------------------------------------------- content checks


def test_non_html_is_skipped_without_reading_the_body() -> None:
    pulled: list[bytes] = []

    def body() -> Iterator[bytes]:
        pulled.append(b"%PDF")
        yield b"%PDF-1.4"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/pdf"}, stream=_Stream(body())
        )

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/file.pdf", policy())
    assert result.reason == "not_html"
    assert result.status == 200 and result.text is None
    assert "application/pdf" in result.detail
    assert pulled == []  # the body was never read


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_missing_content_type_is_sniffed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = HTML if request.url.path == "/page" else b"\x89PNG\r\n\x1a\n...."
        return httpx.Response(200, content=body)

    with make_fetcher(handler) as fetcher:
        assert fetcher.fetch_page("https://news.example/page", policy()).reason == "fetched"
        assert fetcher.fetch_page("https://news.example/img", policy()).reason == "not_html"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            "Caf\xe9 \u2013 \u00a34".encode("cp1252"),
            "text/html; charset=windows-1252",
            "Caf\xe9 \u2013 \u00a34",
        ),
        ("Caf\xe9".encode("cp1252"), "text/html; charset=iso-8859-1", "Caf\xe9"),
        ("Caf\xe9".encode("cp1252"), "text/html; charset=utf-8", "Caf\xe9"),  # wrong label
        ("Caf\xe9".encode(), "text/html; charset=no-such-charset", "Caf\xe9"),
        (b'<meta charset="koi8-r">' + "Привет".encode("koi8-r"), "text/html", "Привет"),
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
            + "日本".encode("shift_jis"),
            "text/html",
            "日本",
        ),
        ("\ufeffCaf\xe9".encode("utf-16-le"), "text/html", "Caf\xe9"),  # BOM wins
    ],
)
def test_charset_decoding_with_fallbacks(body: bytes, content_type: str, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return html_response(body, content_type)

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy())
    assert result.reason == "fetched"
    assert result.text is not None and expected in result.text


def test_binary_masquerading_as_html_is_bad_encoding() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return html_response(b"<html>\x00\x01\x02\x00 binary", "text/html; charset=utf-8")

    with make_fetcher(handler) as fetcher:
        assert fetcher.fetch_page("https://news.example/a", policy()).reason == "bad_encoding"
    with pytest.raises(UnicodeError):
        decode_html(b"\x00\x00")


# --------------------------------------------------------------------------- size caps


def test_content_length_over_the_cap_is_too_large() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return html_response(b"x" * 2000)

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy(max_bytes=1000))
    assert result.reason == "too_large"


def test_streamed_body_over_the_cap_is_cut_off() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"<p>" + b"x" * 1021

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/html"}, stream=_Stream(chunks()))

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy(max_bytes=10_000))
    assert result.reason == "too_large"
    assert len(pulled) < 20  # stopped early, did not drain the stream


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(encoding: str) -> None:
    if encoding == "gzip":
        data = gzip.compress(HTML)
    elif encoding == "deflate":
        data = zlib.compress(HTML)
    else:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = compressor.compress(HTML) + compressor.flush()

    def handler(request: httpx.Request) -> httpx.Response:
        header = "deflate" if encoding == "raw-deflate" else encoding
        return html_response(data, headers={"content-encoding": header})

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy())
    assert result.reason == "fetched"
    assert result.text == HTML.decode()
    assert result.bytes == len(HTML)


def test_decompression_bomb_is_too_large() -> None:
    bomb = gzip.compress(b"<html>" + b" " * (20 * 1024 * 1024))
    assert len(bomb) < 50_000

    def handler(request: httpx.Request) -> httpx.Response:
        return html_response(bomb, headers={"content-encoding": "gzip"})

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy(max_bytes=1_000_000))
    assert result.reason == "too_large"
    assert result.bytes <= 1_000_000


def test_unsupported_or_corrupt_encodings_are_parse_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/br":
            return html_response(b"\x0b\x02\x80", headers={"content-encoding": "br"})
        return httpx.Response(
            200,
            headers={"content-type": "text/html", "content-encoding": "gzip"},
            stream=_Stream(iter([b"definitely not gzip"])),
        )

    with make_fetcher(handler) as fetcher:
        assert fetcher.fetch_page("https://news.example/br", policy()).reason == "parse_error"
        assert fetcher.fetch_page("https://news.example/gz", policy()).reason == "parse_error"


# --------------------------------------------------------------------------- redirects


def redirecting(hops: dict[str, str], final: httpx.Response | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{host_of(request)}{request.url.path}"
        if key in hops:
            return httpx.Response(301, headers={"location": hops[key]})
        return final or html_response()

    return handler


def test_follows_up_to_five_redirects() -> None:
    hops = {f"news.example/{i}": f"/{i + 1}" for i in range(5)}
    with make_fetcher(redirecting(hops)) as fetcher:
        result = fetcher.fetch_page("https://news.example/0", policy())
    assert result.reason == "fetched"
    assert result.final_url == "https://news.example/5"
    assert result.redirects == 5


def test_six_redirects_are_too_many() -> None:
    hops = {f"news.example/{i}": f"/{i + 1}" for i in range(6)}
    with make_fetcher(redirecting(hops)) as fetcher:
        result = fetcher.fetch_page("https://news.example/0", policy())
    assert result.reason == "too_many_redirects"
    assert result.status == 301


def test_redirect_loop_is_too_many_redirects() -> None:
    hops = {"news.example/a": "/b", "news.example/b": "/a"}
    with make_fetcher(redirecting(hops)) as fetcher:
        assert fetcher.fetch_page("https://news.example/a", policy()).reason == "too_many_redirects"


def test_redirect_targets_are_rechecked() -> None:
    hops = {
        "news.example/ftp": "ftp://news.example/file",
        "news.example/away": "https://elsewhere.example/story",
        "news.example/private": "http://intranet.example/admin",
        "news.example/meta": "http://169.254.169.254/latest/meta-data/",
        "news.example/garbage": "http://[::1/broken",
    }
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(host_of(request))
        return redirecting(hops)(request)

    table = {"elsewhere.example": [PUBLIC_IP], "intranet.example": ["10.1.2.3"]}
    onsite = policy(onsite=lambda url: httpx.URL(url).host == "news.example")
    with make_fetcher(handler, table=table) as fetcher:
        assert fetcher.fetch_page("https://news.example/ftp", onsite).reason == "blocked_address"
        away = fetcher.fetch_page("https://news.example/away", onsite)
        assert away.reason == "offsite" and away.final_url == "https://elsewhere.example/story"
        assert fetcher.fetch_document("https://news.example/away", onsite).reason == "fetched"
        assert fetcher.fetch_page("https://news.example/private", policy()).reason == (
            "blocked_address"
        )
        garbage = fetcher.fetch_page("https://news.example/garbage", policy())
        assert garbage.reason == "http_error"  # httpx: RemoteProtocolError, no exception
        assert "location" in garbage.detail.lower()
        meta = fetcher.fetch_page("https://news.example/meta", policy())
        assert meta.reason == "blocked_address" and "metadata" in meta.detail
    assert "intranet.example" not in requested
    assert "169.254.169.254" not in requested


# --------------------------------------------------------------------------- address guard


@pytest.mark.parametrize(
    ("address", "private_ok", "allowed"),
    [
        (PUBLIC_IP, False, True),
        ("2606:4700:4700::1111", False, True),
        ("127.0.0.1", False, False),
        ("127.0.0.1", True, True),
        ("10.0.0.8", False, False),
        ("192.168.1.20", True, True),
        ("::1", False, False),
        ("::ffff:127.0.0.1", False, False),  # IPv4-mapped loopback
        ("169.254.169.254", True, False),  # metadata: never
        ("169.254.10.10", True, False),  # link-local: never
        ("fe80::1", True, False),
        ("fd00:ec2::254", True, False),
        ("100.100.100.200", True, False),
        ("0.0.0.0", True, False),
        ("224.0.0.1", True, False),
        ("240.0.0.1", True, False),
        ("not-an-ip", True, False),
        # IPv4 inside IPv6: what the packet would reach is what is checked
        ("2002:7f00:1::", False, False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", True, False),  # 6to4 of the metadata address
        ("2002:a00:1::", False, False),  # 6to4 of 10.0.0.1
        ("2002:808:808::1", False, True),  # 6to4 of a public address
        ("2001:0:4136:e378:8000:63bf:80ff:fefe", False, False),  # Teredo client 127.0.1.1
        ("2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2", True, False),  # Teredo server: metadata
        ("::169.254.169.254", True, False),  # IPv4-compatible
        ("::ffff:169.254.169.254", True, False),
        ("64:ff9b::7f00:1", True, False),  # NAT64 of loopback
        ("64:ff9b::a9fe:a9fe", True, False),
        ("64:ff9b:1::808:808", True, False),  # local-use NAT64
        ("fec0::1", False, False),  # site-local
        ("fec0::1", True, False),
    ],
)
def test_check_address(address: str, private_ok: bool, allowed: bool) -> None:
    assert (check_address(address, private_ok=private_ok) is None) is allowed


def test_every_resolved_address_is_checked() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return html_response()

    table = {"mixed.example": [PUBLIC_IP, "127.0.0.1"], "v6.example": ["::1"]}
    with make_fetcher(handler, table=table) as fetcher:
        mixed = fetcher.fetch_page("http://mixed.example/", policy())
        v6 = fetcher.fetch_page("http://v6.example/", policy())
        literal = fetcher.fetch_page("http://127.0.0.1:8080/", policy())
    assert mixed.reason == v6.reason == literal.reason == "blocked_address"
    assert "127.0.0.1" in mixed.detail
    assert calls == []


def test_private_network_only_for_the_outlets_own_hosts() -> None:
    hops = {
        "127.0.0.1:8765/go": "http://127.0.0.2:8765/other",
        "127.0.0.1:8765/localhost": "http://localhost:8765/x",
    }
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(host_of(request))
        return redirecting(hops)(request)

    allowed = policy(allow_private_network=True, private_hosts=frozenset({"127.0.0.1"}))
    with make_fetcher(handler, table={"localhost": ["127.0.0.1"]}) as fetcher:
        assert fetcher.fetch_page("http://127.0.0.1:8765/ok", allowed).reason == "fetched"
        other = fetcher.fetch_page("http://127.0.0.1:8765/go", allowed)
        by_name = fetcher.fetch_page("http://127.0.0.1:8765/localhost", allowed)
    assert other.reason == "blocked_address" and "127.0.0.2" in other.detail
    assert by_name.reason == "blocked_address"
    assert requested == ["127.0.0.1:8765"] * 3


# --------------------------------------------------------------------------- failures


def test_http_errors_and_not_modified() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        code = int(request.url.path.strip("/"))
        return html_response(b"", status=code, headers={"etag": '"abc"'})

    with make_fetcher(handler) as fetcher:
        for code in (404, 410, 500, 503):
            result = fetcher.fetch_page(f"https://news.example/{code}", policy())
            assert (result.reason, result.status) == ("http_error", code)
        not_modified = fetcher.fetch_page(
            "https://news.example/304", policy(extra_headers={"If-None-Match": '"abc"'})
        )
    assert not_modified.reason == "not_modified" and not_modified.status == 304
    assert not_modified.headers["etag"] == '"abc"'


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "http_error"),
        (httpx.RemoteProtocolError("peer closed connection"), "http_error"),
    ],
)
def test_network_errors_become_reasons(error: Exception, reason: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy())
    assert result.reason == reason
    assert result.status is None


def test_total_deadline_while_reading() -> None:
    clock = FakeClock()

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            clock.now += 1.0  # each chunk takes a second
            yield b"<html>" + b"x" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/html"}, stream=_Stream(chunks()))

    with make_fetcher(handler, clock=clock) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy(deadline=5.0))
    assert result.reason == "timeout"
    assert 5000 <= result.elapsed_ms <= 7000


def test_bad_urls_and_dns_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return html_response()

    with make_fetcher(handler) as fetcher:
        assert fetcher.fetch_page("file:///etc/passwd", policy()).reason == "blocked_address"
        assert fetcher.fetch_page("http://[broken/", policy()).reason == "parse_error"
        assert fetcher.fetch_page("http://exa mple.example/", policy()).reason == "parse_error"
        assert fetcher.fetch_page("http://news.example:99999/", policy()).reason == "parse_error"
        assert fetcher.fetch_page("http://user:pw@news.example/", policy()).reason == (
            "blocked_address"
        )
        unknown = fetcher.fetch_page("https://unknown.example/", policy())
    assert unknown.reason == "http_error" and "cannot resolve" in unknown.detail


def test_politeness_delay_between_requests_to_the_same_host() -> None:
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 0.05  # the request itself takes 50 ms
        return html_response()

    polite = policy(politeness_delay=0.2)
    with make_fetcher(handler, clock=clock, table={"other.example": [PUBLIC_IP]}) as fetcher:
        fetcher.fetch_page("https://news.example/1", polite)
        fetcher.fetch_page("https://other.example/1", polite)
        fetcher.fetch_page("https://news.example/2", polite)
        second = fetcher.fetch_page("https://news.example/3", polite)
    assert clock.sleeps == [0.1, 0.15]
    assert second.elapsed_ms == pytest.approx(50, abs=1)  # waiting is not fetch time


def test_utf8_body_with_a_stale_legacy_label_is_read_as_utf8() -> None:
    body = '<meta charset="iso-8859-15"><p>sanción, für</p>'.encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return html_response(body, "text/html; charset=iso-8859-1")

    with make_fetcher(handler) as fetcher:
        result = fetcher.fetch_page("https://news.example/a", policy())
    assert result.text is not None and "sanción, für" in result.text
