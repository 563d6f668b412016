"""TLS to pinned addresses: every host name gets its own connection, SNI and certificate check,
even when two names resolve to one address (a shared host, a CDN). A local CA and certificates
made here; a.test and b.test resolved by the resolver hook to loopback, nothing else reached."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alert.webhook import WebhookSender
from ingest.fetch import Fetcher, FetchPolicy
from newsflow.contracts import Alert, AlertArticle
from newsflow.errors import RetryableError
from newsflow.settings import Settings

HTML = b"<html><head><title>t</title></head><body>hello</body></html>"
ARTICLE_ID = "a" * 40


@dataclass
class Pki:
    ca_file: Path
    certs: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("newsflow test CA"))
        .issuer_name(_name("newsflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(root / "ca.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for host in ("a.test", "b.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_file, key_file = root / f"{host}.pem", root / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_file)
        pki.certs[host] = (cert_file, key_file)
    return pki


class TlsServer:
    """HTTPS with keep-alive on 127.0.0.1; presents a certificate by SNI, among ``hosts``."""

    def __init__(self, pki: Pki, hosts: list[str]) -> None:
        self.sni: list[str | None] = []  # one entry per TLS handshake
        self.requests: list[str] = []
        contexts = {}
        for host in hosts:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*pki.certs[host])
            contexts[host] = context
        default = contexts[hosts[0]]

        def pick(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            self.sni.append(name)
            if name in contexts:
                sock.context = contexts[name]

        default.sni_callback = pick
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length:
                    self.rfile.read(length)
                server.requests.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(HTML)))
                self.end_headers()
                self.wfile.write(HTML)

            do_GET = _answer  # noqa: N815 - http.server's names
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = default.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], TlsServer]]:
    # The test CA is what verifies, through the same seam as the public CAs.
    monkeypatch.setattr(certifi, "where", lambda: str(pki.ca_file))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    made: list[TlsServer] = []

    def make(hosts: list[str]) -> TlsServer:
        made.append(TlsServer(pki, hosts))
        return made[-1]

    yield make
    for server in made:
        server.close()


def one_address(host: str, port: int) -> list[str]:
    """a.test and b.test on one machine; nothing else resolves."""
    if host in ("a.test", "b.test"):
        return ["127.0.0.1"]
    raise OSError(f"unknown host {host}")


def fetch_policy() -> FetchPolicy:
    return FetchPolicy(
        user_agent="TlsTest/1",
        politeness_delay=0,
        deadline=10,
        allow_private_network=True,
        private_hosts=frozenset({"a.test", "b.test"}),
    )


def test_a_second_host_on_the_same_address_gets_its_certificate_checked(
    serve: Callable[[list[str]], TlsServer],
) -> None:
    """The reviewer's case: a.test then b.test, and only a.test has a certificate there."""
    server = serve(["a.test"])
    with Fetcher(Settings(), resolver=one_address) as fetcher:
        first = fetcher.fetch_page(f"https://a.test:{server.port}/", fetch_policy())
        assert first.ok, first.detail
        second = fetcher.fetch_page(f"https://b.test:{server.port}/", fetch_policy())
    assert not second.ok
    assert "certificate" in second.detail.lower() or "hostname" in second.detail.lower()
    assert server.requests == [f"a.test:{server.port}"]


def test_each_host_gets_its_own_connection_and_sni(
    serve: Callable[[list[str]], TlsServer],
) -> None:
    server = serve(["a.test", "b.test"])
    with Fetcher(Settings(), resolver=one_address) as fetcher:
        for url in ("https://a.test:{}/1", "https://b.test:{}/1", "https://a.test:{}/2"):
            result = fetcher.fetch_page(url.format(server.port), fetch_policy())
            assert result.ok, result.detail
    assert server.sni == ["a.test", "b.test"]  # a.test's second request reused its connection
    assert server.requests == [f"{h}:{server.port}" for h in ("a.test", "b.test", "a.test")]


def _alert() -> Alert:
    return Alert(
        id="w-0123456789abcdef:s1:new_story",
        kind="new_story",
        watch_id="w-0123456789abcdef",
        watch_name="tls",
        story_id="s1",
        story_articles=1,
        article=AlertArticle(id=ARTICLE_ID, url="http://news.test/1", outlet="news"),
        arrived_at=dt.datetime.now(dt.UTC),
    )


def test_the_webhook_sender_checks_each_receiver_s_certificate(
    serve: Callable[[list[str]], TlsServer],
) -> None:
    server = serve(["a.test"])
    sender = WebhookSender(
        timeout=5, allow_private=True, user_agent="TlsTest/1", resolver=one_address
    )
    try:
        assert sender.send(f"https://a.test:{server.port}/hook", _alert(), b"k") == 200
        with pytest.raises(RetryableError, match=r"(?i)certificate|hostname"):
            sender.send(f"https://b.test:{server.port}/hook", _alert(), b"k")
    finally:
        sender.close()
    assert server.requests == [f"a.test:{server.port}"]


def test_a_proxy_in_the_environment_does_not_bypass_the_pin(
    serve: Callable[[list[str]], TlsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would resolve the host name again, after the address guard."""
    server = serve(["a.test"])
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    sender = WebhookSender(
        timeout=5, allow_private=True, user_agent="TlsTest/1", resolver=one_address
    )
    try:
        assert sender.send(f"https://a.test:{server.port}/hook", _alert(), b"k") == 200
    finally:
        sender.close()
    with Fetcher(Settings(), resolver=one_address) as fetcher:
        result = fetcher.fetch_page(f"https://a.test:{server.port}/", fetch_policy())
    assert result.ok, result.detail
