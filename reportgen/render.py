"""Jinja rendering of the HTML and Markdown pages. All markup lives in reportgen/templates/."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from . import __version__, progress
from .fingerprint import TEMPLATES_DIR
from .report import Page, Section

STYLESHEET = "style.css"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(value: Any) -> str:
    """Text safe inside Markdown (tables included) that GitHub will not read as HTML."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def number(value: Any, digits: int = 4) -> str:
    """A number for a caption or table: ints as is, floats to `digits` significant figures."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


@cache
def environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["number"] = number
    env.globals["version"] = __version__
    return env


def render(template: str, path: Path, **context: Any) -> None:
    """Render `template` (.html or .md) to `path`."""
    env = environment(markdown=template.endswith(".md"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template(template).render(**context), encoding="utf-8")


def template_exists(name: str) -> bool:
    return (TEMPLATES_DIR / name).is_file()


def render_model_pages(folder: Path, report: dict[str, Any], sections: list[Section],
                       site_models: list[tuple[str, str]]) -> None:
    """The model's index.html / index.md and every extra page its sections asked for.
    `site_models` ((name, slug) pairs) are the navigation bar's model links."""
    context = {"report": report, "sections": sections, "site_root": "../", "model_root": "",
               "site_models": site_models}
    with progress.bar(1 + sum(len(section.pages) for section in sections), "pages", unit="page") as pages:
        render("model.html", folder / "index.html", **context)
        render("model.md", folder / "index.md", **context)
        pages.update()
        for section in sections:
            for page in section.pages:
                render_page(folder, report, section, page)
                pages.update()


def render_page(folder: Path, report: dict[str, Any], section: Section, page: Page) -> None:
    depth = page.path.count("/")
    context = {"report": report, "section": section, "page": page, "title": page.title,
               "site_root": "../" * (depth + 1), "model_root": "../" * depth, **page.context}
    render(page.template, folder / page.path, **context)
    twin = page.template.rsplit(".", 1)[0] + ".md"
    if template_exists(twin):
        render(twin, folder / (page.path.rsplit(".", 1)[0] + ".md"), **context)


def render_index(out: Path, reports: list[dict[str, Any]], tmp_suffix: str) -> list[tuple[Path, Path]]:
    """Render the site's front pages and stylesheet next to their final names;
    returns (temporary, final) pairs for the caller to swap in."""
    context = {"reports": reports, "site_root": "", "model_root": None}
    pairs = []
    for name in ("index.html", "index.md"):
        tmp = out / f"{name}{tmp_suffix}"
        render(name, tmp, **context)
        pairs.append((tmp, out / name))
    css = out / f"{STYLESHEET}{tmp_suffix}"
    css.write_text((TEMPLATES_DIR / STYLESHEET).read_text(encoding="utf-8"), encoding="utf-8")
    pairs.append((css, out / STYLESHEET))
    return pairs

