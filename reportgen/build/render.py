"""Jinja rendering of the HTML and Markdown pages. All markup lives in reportgen/templates/.

A user's template folder (`[build] templates`, or templates/ beside reportgen.toml; see
`fingerprint.using_templates`) comes first on the search path, so its files replace the package's file by file,
as MkDocs' `custom_dir` does; `reportgen/NAME` always names the package's own file, so an override of
base.html can extend "reportgen/base.html" and replace only its blocks.
"""

from __future__ import annotations

import json
import re
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from reportgen import __version__
from reportgen.build.fingerprint import STATIC, TEMPLATES_DIR, user_templates
from reportgen.sections.report import Page, Section
from reportgen.util import progress
from reportgen.util.errors import ReportgenError

PACKAGE_PREFIX = "reportgen"  # "reportgen/base.html": the package's base.html, even when the user overrides it
TEMPLATE_SUFFIXES = (".html", ".md")

STYLESHEET = "style.css"
COMPARE = "compare"  # the site's folder of compare pages (build/compare.py)

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


def environment(markdown: bool) -> jinja2.Environment:
    """The Jinja environment of HTML (autoescaped) or Markdown pages, with the user's templates in use now."""
    return _environment(markdown, user_templates())


def search_path(folder: Path | None) -> jinja2.BaseLoader:
    """The user's folder (if any), then the package's templates, then the package's under `reportgen/`."""
    package = jinja2.FileSystemLoader(TEMPLATES_DIR)
    own = [jinja2.FileSystemLoader(folder)] if folder is not None else []
    return jinja2.ChoiceLoader([*own, package, jinja2.PrefixLoader({PACKAGE_PREFIX: package})])


@cache
def _environment(markdown: bool, folder: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=search_path(folder),
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
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise template_error(exc, template) from None
    path.write_text(text, encoding="utf-8")


def template_exists(name: str) -> bool:
    return template_file(name) is not None


def template_file(name: str) -> Path | None:
    """The file `name` comes from: the user's override, else the package's (None: neither has it)."""
    folder = user_templates()
    for root in ([folder] if folder is not None else []) + [TEMPLATES_DIR]:
        if (root / name).is_file():
            return root / name
    return None


def check_templates() -> None:
    """Compile every template of the user's folder, so a syntax error stops the build before any work starts."""
    folder = user_templates()
    if folder is None:
        return
    if not folder.is_dir():
        raise ReportgenError(f"templates folder not found: {folder}")
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and path.suffix in TEMPLATE_SUFFIXES and not name.startswith(f"{STATIC}/"):
            try:
                environment(markdown=path.suffix == ".md").get_template(name)
            except jinja2.TemplateError as exc:
                raise template_error(exc, name) from None


def template_error(exc: jinja2.TemplateError, template: str) -> ReportgenError:
    """One line naming the template file and line where Jinja failed (syntax, undefined variable, missing file)."""
    message = " ".join(str(exc.message if exc.message is not None else exc).split())
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.lineno:
        return ReportgenError(f"template {exc.filename or exc.name}, line {exc.lineno}: {message}")
    if isinstance(exc, jinja2.TemplateNotFound):
        return ReportgenError(f"template {_where(exc) or template}: template not found: {message}")
    return ReportgenError(f"template {_where(exc) or template}: {message}")


def _where(exc: BaseException) -> str | None:
    """"FILE, line N" of the innermost template frame of a rendering error (Jinja maps its frames to the template's
    file and line), or None."""
    folders = [folder for folder in (user_templates(), TEMPLATES_DIR) if folder is not None]
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename.endswith(TEMPLATE_SUFFIXES)
              and any(Path(frame.filename).resolve().is_relative_to(folder) for folder in folders)]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else None


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


def compare_records(out: Path) -> list[dict[str, Any]]:
    """Every compare page of the site (build/compare.py): its href from the site's root and both sides' records."""
    records = []
    for path in sorted((out / COMPARE).glob("*/compare.json")):
        if path.parent.name.startswith("."):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        records.append({"href": f"{COMPARE}/{path.parent.name}/index.html", "a": record["a"], "b": record["b"]})
    return records


def render_index(out: Path, reports: list[dict[str, Any]], tmp_suffix: str) -> list[tuple[Path, Path]]:
    """Render the site's front pages (linking the models and the compare pages) and stylesheet next to their final
    names; returns (temporary, final) pairs for the caller to swap in."""
    context = {"reports": reports, "site_root": "", "model_root": None, "compares": compare_records(out)}
    pairs = []
    for name in ("index.html", "index.md"):
        tmp = out / f"{name}{tmp_suffix}"
        try:
            render(name, tmp, **context)
        except ReportgenError:  # a broken template: no temporary file is left behind
            for written, _ in pairs:
                written.unlink(missing_ok=True)
            raise
        pairs.append((tmp, out / name))
    css = out / f"{STYLESHEET}{tmp_suffix}"
    css.write_text(template_file(STYLESHEET).read_text(encoding="utf-8"), encoding="utf-8")  # the user's, if any
    pairs.append((css, out / STYLESHEET))
    return pairs

