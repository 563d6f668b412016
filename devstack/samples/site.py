"""A local web server for the sample outlets (development, demo and tests).

Run it::

    python -m devstack.samples.site --host 127.0.0.1 --port 8765

or in-process (tests)::

    with start_server() as site:          # a free port on 127.0.0.1
        registry = load_registry(OUTLETS_FILE, base_url=site.base_url)

Routes: ``/`` lists the outlets; ``/<slug>/`` is an outlet's homepage; its feeds, sitemaps
and articles live below that prefix (see ``samples/outlets/<slug>/outlet.yaml``). Error
routes for tests, never linked from a feed (except one deliberately missing Harbour Gazette
item that 404s): ``/<slug>/broken.html`` (500), ``/<slug>/media/fact-sheet.pdf`` (not HTML),
``/_test/redirect?to=URL`` (302), ``/_test/status/<code>``, ``/_test/slow?seconds=N`` (N ≤ 10)
and ``/_test/big?bytes=N``.

Responses carry ``ETag`` (and honour ``If-None-Match`` with 304) and are gzipped when the
client accepts it, so the crawler's conditional-GET and decompression paths get exercised.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import re
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.samples.content import (
    FEED_TYPES,
    SAMPLES_DIR,
    Outlet,
    load_outlets,
    render_article,
    render_home,
    render_index,
)

__all__ = [
    "DEFAULT_PORT",
    "OUTLETS_FILE",
    "Response",
    "RunningSite",
    "SampleSite",
    "main",
    "start_server",
]

log = logging.getLogger("devstack.samples.site")

DEFAULT_PORT = 8765
OUTLETS_FILE = SAMPLES_DIR / "outlets.yaml"  # the registry for these outlets (port 8765)
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_MAX_SLOW_SECONDS = 10.0
_MAX_BIG_BYTES = 64 * 1024 * 1024
_PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (slow route)
    cacheable: bool = True  # ETag / gzip apply


def _html(status: int, text: str, charset: str = "utf-8") -> Response:
    body = text.encode(charset, errors="xmlcharrefreplace")
    return Response(status, f"text/html; charset={charset}", body)


def _not_found(path: str) -> Response:
    return _html(
        404,
        "<!DOCTYPE html><html><head><title>Page not found</title></head><body>"
        f"<h1>404</h1><p>Nothing at {path.replace('<', '&lt;')}</p></body></html>",
    )


class SampleSite:
    """Routing over the loaded sample content; pure (``route`` returns a Response)."""

    def __init__(self, outlets: Mapping[str, Outlet] | None = None) -> None:
        self.outlets = dict(outlets if outlets is not None else load_outlets())

    def route(self, raw_path: str, base_url: str) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path or "/"
        if path == "/":
            return _html(200, render_index(self.outlets, base_url))
        if path == "/robots.txt":
            return Response(200, "text/plain; charset=utf-8", b"User-agent: *\nDisallow: /_test/\n")
        if path.startswith("/_test/"):
            return self._test_route(path, parse_qs(parts.query))
        slug, _, rest = path.lstrip("/").partition("/")
        outlet = self.outlets.get(slug)
        if outlet is None:
            return _not_found(path)
        if not rest and not path.endswith("/"):
            return Response(301, "text/plain", b"", {"Location": f"/{slug}/"})
        return self._outlet_route(outlet, rest, base_url, path)

    def _outlet_route(self, outlet: Outlet, rest: str, base_url: str, path: str) -> Response:
        if rest in ("", "index.html"):
            return _html(200, render_home(outlet, base_url), outlet.charset)
        for spec in outlet.feeds:
            if rest == spec.path:
                content_type, render = FEED_TYPES[spec.format]
                return Response(200, content_type, render(outlet, spec, base_url).encode())
        if rest == "broken.html":
            return _html(500, "<html><body><h1>Internal Server Error</h1></body></html>")
        if rest == "media/fact-sheet.pdf":
            return Response(200, "application/pdf", _PDF)
        for article in outlet.articles:
            if rest == article.path:
                return _html(200, render_article(outlet, article, base_url), outlet.charset)
            # Blogs answer the slash-less spelling with a permanent redirect.
            if article.path.endswith("/") and rest == article.path.rstrip("/"):
                location = f"/{outlet.slug}/{article.path}"
                return Response(301, "text/plain", b"", {"Location": location})
        return _not_found(path)

    def _test_route(self, path: str, query: dict[str, list[str]]) -> Response:
        name, _, arg = path[len("/_test/") :].partition("/")
        if name == "redirect":
            target = (query.get("to") or ["/"])[0]
            code = int((query.get("code") or ["302"])[0])
            if code not in (301, 302, 303, 307, 308):
                code = 302
            return Response(code, "text/plain", b"", {"Location": target}, cacheable=False)
        if name == "status" and arg.isdigit() and 200 <= int(arg) <= 599:
            status = int(arg)
            return _html(status, f"<html><body><h1>{status}</h1></body></html>")
        if name == "slow":
            seconds = min(float((query.get("seconds") or ["1"])[0]), _MAX_SLOW_SECONDS)
            return Response(
                200,
                "text/html; charset=utf-8",
                b"<html><body>slow</body></html>",
                delay=max(seconds, 0.0),
                cacheable=False,
            )
        if name == "big":
            size = min(int((query.get("bytes") or ["1048576"])[0]), _MAX_BIG_BYTES)
            body = b"<html><body>" + b"x" * max(size, 0) + b"</body></html>"
            return Response(200, "text/html; charset=utf-8", body, cacheable=False)
        return _not_found(path)


class _Handler(BaseHTTPRequestHandler):
    server: _SampleServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "NewsflowSamples/0.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _base_url(self) -> str:
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.match(host):
            host = self.server.netloc
        return f"http://{host}"

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        try:
            response = self.server.site.route(self.path, self._base_url())
        except Exception:  # a bug in the samples: answer 500, keep serving
            log.exception("error rendering %s", self.path)
            response = _html(500, "<html><body><h1>500</h1></body></html>")
        if response.delay:
            time.sleep(response.delay)
        body = response.body
        headers = dict(response.headers)
        if response.cacheable and response.status == 200:
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            headers["ETag"] = etag
            headers["Cache-Control"] = "max-age=60"
            if etag in self.headers.get("If-None-Match", ""):
                self._send(304, None, b"", headers, head=True)
                return
            accepts = self.headers.get("Accept-Encoding", "").lower()
            if "gzip" in accepts and len(body) >= 512:
                body = gzip.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
                headers["Vary"] = "Accept-Encoding"
        self._send(response.status, response.content_type, body, headers, head=head)

    def _send(
        self,
        status: int,
        content_type: str | None,
        body: bytes,
        headers: Mapping[str, str],
        *,
        head: bool,
    ) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _SampleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], site: SampleSite) -> None:
        self.site = site
        super().__init__(address, _Handler)

    @property
    def netloc(self) -> str:
        """``host:port`` as bound (IPv6 in brackets)."""
        host, port = self.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


@dataclass
class RunningSite:
    """A sample server running in a background thread. Use as a context manager."""

    base_url: str
    server: _SampleServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_server(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, site: SampleSite | None = None
) -> _SampleServer:
    return _SampleServer((host, port), site or SampleSite())


def start_server(
    host: str = "127.0.0.1", port: int = 0, site: SampleSite | None = None
) -> RunningSite:
    """Start the sample site in a daemon thread (``port=0``: a free port); returns at once."""
    server = make_server(host, port, site)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"sample-site-{server.netloc}",
        daemon=True,
    )
    thread.start()
    return RunningSite(f"http://{server.netloc}", server, thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.samples.site",
        description="Serve the Newsflow sample news outlets.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        running = start_server(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving %d sample outlets on %s/", len(running.server.site.outlets), running.base_url)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
