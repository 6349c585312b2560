"""The built site in a real browser: headless Chromium on 127.0.0.1.

Static checks (site_checks.py) read the HTML; only a browser shows what a
visitor gets: every image decodes, no console error, nothing requested from
another host, every internal link resolves. Select with `pytest -m browser`.
Playwright drives Debian's chromium (`executable_path`), so nothing is
downloaded at run time; without chromium the test is skipped.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_PAGES = 200  # a --quick site has about 30 pages; the bound keeps a bigger site from running for minutes

# Every <img> made eager (the site lazy-loads), then awaited; returns the ones that did not decode.
BROKEN_IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = "eager"; });
    await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
        img.addEventListener("load", done); img.addEventListener("error", done); })));
    return images.filter(img => !(img.naturalWidth > 0)).map(img => img.getAttribute("src"));
}"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's package)"),
]


class _QuietServer(http.server.ThreadingHTTPServer):
    """Chromium drops idle keep-alive and preconnect sockets: not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e .[test]")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(browser, quick_mnist_site: Path) -> Iterator[str]:
    """The site on 127.0.0.1 at a free port (after `browser`, so no build happens when the test skips)."""
    httpd = _QuietServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(quick_mnist_site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "data" or parsed.hostname == "127.0.0.1"


def test_pages_load_completely_and_only_from_this_server(browser, server, quick_mnist_site: Path):
    page = browser.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    page.on("request", lambda r: None if _is_local(r.url) else foreign.append(r.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    # Crawl from the front page; then visit any page on disk that no link reached.
    on_disk = [server + p.relative_to(quick_mnist_site).as_posix() for p in sorted(quick_mnist_site.rglob("*.html"))]
    queue, seen, links, broken = [server + "index.html"], [], set(), {}
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.append(url)
        response = page.goto(url)
        assert response is not None and response.status == 200, f"{url} answered {response and response.status}"
        bad = page.evaluate(BROKEN_IMAGES_JS)
        if bad:
            broken[url] = bad
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            target = urldefrag(urljoin(url, href))[0]
            if urlparse(target).hostname == "127.0.0.1":
                links.add(target)
                if target.endswith((".html", "/")):
                    queue.append(target)
        if not queue:
            queue = [u for u in on_disk if u not in seen]
    page.close()

    assert server + "index.html" in seen and server + "mnist-3conv/index.html" in seen
    assert len(seen) >= min(len(on_disk), MAX_PAGES), "pages left unvisited"
    assert broken == {}, f"images that did not load: {broken}"
    assert errors == [], "console errors"
    assert foreign == [], "requests to other hosts"
    assert failed == [], "HTTP errors while loading pages"
    dead = []
    for link in sorted(links):
        try:
            with urllib.request.urlopen(link, timeout=10) as response:
                if response.status != 200:
                    dead.append(f"{response.status} {link}")
        except urllib.error.HTTPError as exc:
            dead.append(f"{exc.code} {link}")
    assert dead == [], "internal links that do not resolve"


def test_section_links_land_below_the_sticky_bar(browser, server):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(server + "mnist-3conv/index.html")
    for section in page.eval_on_selector_all("section[id]", "sections => sections.map(s => s.id)")[1:]:
        page.click(f'.subnav a[href="#{section}"]')
        bar_bottom = page.eval_on_selector(".topbar", "bar => bar.getBoundingClientRect().bottom")
        heading_top = page.eval_on_selector(f"#{section} h2", "h => h.getBoundingClientRect().top")
        assert heading_top >= bar_bottom - 1, f"#{section}: heading at {heading_top}px, bar ends at {bar_bottom}px"
    page.close()
