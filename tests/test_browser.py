"""The built site in a real browser: headless Chromium on 127.0.0.1.

Every image loads, no console error, nothing requested from another host,
every internal link resolves. Select with `pytest -m browser`.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_PAGES = 25  # index, model page, layer and unit pages: enough to cover every template

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(quick_mnist_site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(quick_mnist_site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's package)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_pages_load_completely_and_only_from_this_server(browser, server):
    page = browser.new_page()
    errors, foreign = [], []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    page.on("request", lambda r: foreign.append(r.url) if urlparse(r.url).hostname != "127.0.0.1" else None)

    queue, seen, links = [server + "index.html"], set(), set()
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        broken = page.evaluate("""async () => {
            const images = [...document.images];
            images.forEach(img => { img.loading = "eager"; });
            await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
                img.addEventListener("load", done); img.addEventListener("error", done); })));
            return images.filter(img => !(img.naturalWidth > 0)).map(img => img.getAttribute("src"));
        }""")
        assert broken == [], f"{url}: images that did not load: {broken}"
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            target = urldefrag(urljoin(url, href))[0]
            if urlparse(target).hostname == "127.0.0.1":
                links.add(target)
                if target.endswith(".html"):
                    queue.append(target)
    assert len(seen) >= 4  # index, model page, a layer page, a unit page at least
    assert errors == []
    assert foreign == []
    for link in sorted(links):
        with urllib.request.urlopen(link) as response:
            assert response.status == 200, link
