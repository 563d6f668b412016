"""``newsflow crawl --feed URL --stdout`` against a local feed server (127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from newsflow.settings import get_settings
from pipeline.cli import app


@pytest.fixture
def feed_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            base = f"http://{self.headers['Host']}"
            if self.path == "/feed.xml":
                body = (
                    f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                    f"<item><title>One</title><link>{base}/a/1</link></item>"
                    f"<item><title>Gone</title><link>{base}/a/gone</link></item>"
                    "</channel></rss>"
                ).encode()
                ctype = "application/rss+xml"
                status = 200
            elif self.path == "/a/1":
                body, ctype, status = b"<html><body><p>One</p></body></html>", "text/html", 200
            else:
                body, ctype, status = b"missing", "text/plain", 404
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_crawl_feed_stdout_prints_json_lines(
    feed_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSFLOW_STATE_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("NEWSFLOW_HOST_MIN_INTERVAL_SECONDS", "0")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["crawl", "--feed", feed_server + "/feed.xml", "--stdout", "--allow-private"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_url = {line["url"]: line for line in lines if "url" in line}
    feed = by_url[feed_server + "/feed.xml"]
    assert feed["kind"] == "feed" and feed["reason"] == "fetched" and feed["status"] == 200
    assert by_url[feed_server + "/a/1"]["reason"] == "fetched"
    assert by_url[feed_server + "/a/gone"]["reason"] == "http_error"
    assert by_url[feed_server + "/a/gone"]["status"] == 404
    for line in by_url.values():
        assert {"url", "status", "reason", "bytes", "elapsed_ms"} <= set(line)


def test_crawl_needs_an_outlet_or_a_source() -> None:
    result = CliRunner().invoke(app, ["crawl"])
    assert result.exit_code == 2
