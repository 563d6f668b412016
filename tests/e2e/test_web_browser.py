"""The search page in a real headless browser (Debian's chromium), served by a real uvicorn.

Skipped only where chromium is missing and CI is not set; under CI a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from index.indices import ensure_indices
from newsflow.es import IndexNames, make_client
from newsflow.settings import Settings
from pipeline.api import create_app
from tests.integration.test_api import (
    corpus,
    drop_indices,
    index_articles,
    make_article,
    summary_of,
)

pytestmark = pytest.mark.integration

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    candidates = [os.environ.get("NEWSFLOW_CHROMIUM", ""), *CHROMIUM_CANDIDATES]
    found = next((p for p in candidates if p and Path(p).is_file()), None)
    found = found or shutil.which("chromium")
    if found:
        return found
    reason = "chromium is not installed (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def site(infra: None) -> Iterator[tuple[str, Settings]]:
    """The API and page on a loopback port, over an index prefix of this module's own."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(index_prefix=tag, api_auth="off")
    es = make_client(settings)
    ensure_indices(es, settings)
    index_articles(es, IndexNames(tag), corpus())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, es=es), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        drop_indices(es, tag)
        es.close()


def test_search_page_in_chromium(site: tuple[str, Settings]) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium_path()
    base_url, settings = site
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"{base_url}/?poll=700")

            # The first load lists the newest stories and fills the filters from the facets.
            expect(page.locator("#results li.story").first).to_be_visible()
            expect(page.locator("#outlet option[value='riverside']")).to_have_count(1)
            expect(page.locator("#new-stories li").first).to_be_visible()

            # A query: one story for three articles, highlighted.
            page.fill("#q", "weir gates")
            page.press("#q", "Enter")
            stories = page.locator("#results li.story")
            expect(stories).to_have_count(1)
            story = stories.first
            expect(story).to_have_attribute("data-story-id", "s-flood")
            expect(story.locator(".count")).to_have_text("3 articles · 3 outlets")
            expect(story.locator("mark").first).to_be_visible()
            # Highlighted words keep the spaces around them ("the <mark>weir</mark> gates").
            glued = story.evaluate(
                """(node) => [...node.querySelectorAll("mark")].filter(
                    (m) => m.nextSibling && /^\\w/.test(m.nextSibling.textContent)
                ).length"""
            )
            assert glued == 0, story.inner_text()

            # Open the story: its three articles.
            story.locator("button.expand").click()
            expect(story.locator(".articles li")).to_have_count(3)

            # A filter narrows the results.
            page.fill("#q", "budget")
            page.press("#q", "Enter")
            expect(stories.first).to_be_visible()
            with page.expect_response(lambda r: "outlet=county" in r.url):
                page.select_option("#outlet", "county")
            page.wait_for_function(
                """() => {
                  const metas = [...document.querySelectorAll('#results .story .meta')];
                  return metas.length > 0 && metas.every(m => m.textContent.startsWith('county'));
                }"""
            )
            expect(page.locator("#facet-outlets li.active")).to_have_attribute("data-key", "county")

            # "More stories" pages on with the resume token, without repeating a story.
            with page.expect_response(lambda r: "outlet=" not in r.url and "q=budget" in r.url):
                page.select_option("#outlet", "")
            expect(stories).to_have_count(10)
            expect(page.locator("#more")).to_be_visible()
            page.click("#more")
            expect(stories).to_have_count(14)
            ids = stories.evaluate_all("els => els.map(e => e.dataset.storyId)")
            assert len(ids) == len(set(ids)) == 14
            expect(page.locator("#more")).to_be_hidden()

            # A story indexed now shows up in the live list, marked as new.
            fresh = make_article(
                "riverside",
                "bridge",
                "New footbridge opens over the river",
                "The new footbridge over the river opened to walkers on Saturday.",
                published=datetime.now(UTC),
                story_id="s-bridge",
            )
            es = make_client(settings)
            try:
                index_articles(
                    es,
                    IndexNames(settings.index_prefix),
                    [fresh.model_copy(update={"story": summary_of([fresh])})],
                )
            finally:
                es.close()
            item = page.locator("#new-stories li.fresh[data-story-id='s-bridge']")
            expect(item).to_be_visible(timeout=10_000)
            expect(item).to_contain_text("New footbridge opens over the river")
        finally:
            browser.close()
    assert not problems, problems
