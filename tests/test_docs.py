"""The README and docs/: every relative link resolves, anchors name a heading, the README image is small."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_IMAGE = ROOT / "docs" / "images" / "report.png"
MAX_IMAGE_BYTES = 300 * 1024

# [text](target) and ![alt](target), with an optional "title"; fenced code blocks and inline code are removed first.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")  # an image inside a link's text, [![alt](src)](href)
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    heading = heading.strip().lower().replace("`", "")
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    targets = list(dict.fromkeys(LINK.findall(text) + IMAGE.findall(text)))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]  # no http:, mailto:


def shown(file: Path) -> str:
    return file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)


def test_the_docs_exist():
    names = {path.name for path in DOCS}
    assert {"README.md", "architecture.md", "measurements.md", "design-notes.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path):
    problems = []
    links = relative_links(doc)
    for link in links:
        target, _, anchor = link.partition("#")
        file = (doc.parent / unquote(target)).resolve() if target else doc
        if not file.exists():
            problems.append(f"{link}: {shown(file)} not found")
            continue
        if not file.resolve().is_relative_to(ROOT):
            problems.append(f"{link}: leads outside the repository")
        if anchor and file.suffix == ".md" and unquote(anchor) not in anchors(file):
            problems.append(f"{link}: no heading #{anchor} in {shown(file)}")
    assert not problems, f"{doc.name}: " + "; ".join(problems)


def test_the_readme_links_the_docs_and_shows_its_image():
    links = {link.partition("#")[0] for link in relative_links(ROOT / "README.md")}
    assert {"docs/architecture.md", "docs/measurements.md", "docs/design-notes.md", "docs/images/report.png"} <= links


def test_the_readme_image_is_small():
    assert README_IMAGE.is_file(), "docs/images/report.png is missing: run scripts/screenshot.py"
    size = README_IMAGE.stat().st_size
    assert size < MAX_IMAGE_BYTES, f"docs/images/report.png is {size / 1024:.0f} KB (limit 300 KB)"
    assert README_IMAGE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_link_checker_sees_links():
    """The checker itself: links in code are ignored, others are found, anchors follow GitHub's slugs."""
    text = "See [a](x.md#b) and ![i](img/p.png \"t\").\n```\n[no](code.md)\n```\n`[no](inline.md)` [w](https://e.org)"
    assert LINK.findall(prose(text)) == ["x.md#b", "img/p.png", "https://e.org"]
    assert IMAGE.findall("[![alt](in.png)](out.png)") == ["in.png"]
    assert slug("Config reference (`reportgen.toml`)") == "config-reference-reportgentoml"
    assert slug("The `feature_vis` settings") == "the-feature_vis-settings"
