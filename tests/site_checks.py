"""Checks a built site the way a browser and GitHub would read it: every image
and link resolves inside the site, nothing comes from the network."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) is not None:
                self.refs.append((tag, attrs[key], attrs))


def html_problems(site: Path) -> list[str]:
    """Broken local references, external references and images without alt text."""
    problems = []
    for page in site.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, ref, attrs in parser.refs:
            problems += _ref_problems(site, page, ref)
            if tag == "img" and not attrs.get("alt"):
                problems.append(f"{page}: <img src={ref}> has no alt text")
    return problems


def markdown_problems(site: Path) -> list[str]:
    """Image and link targets of every Markdown page, parsed as CommonMark."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    problems = []
    for page in site.rglob("*.md"):
        for token in md.parse(page.read_text(encoding="utf-8")):
            for child in token.children or []:
                ref = child.attrs.get("src") or child.attrs.get("href")
                if ref is not None:
                    problems += _ref_problems(site, page, str(ref))
    return problems


def _ref_problems(site: Path, page: Path, ref: str) -> list[str]:
    url = urlparse(ref)
    if url.scheme == "data":  # inline, fetches nothing
        return []
    if url.scheme or url.netloc or ref.startswith("/"):
        return [f"{page}: non-relative reference {ref}"]
    path, _ = urldefrag(ref)
    if not path:
        return []
    target = (page.parent / path).resolve()
    if not target.is_relative_to(site.resolve()):
        return [f"{page}: {ref} leaves the site"]
    if not target.exists():
        return [f"{page}: {ref} does not exist"]
    return []
