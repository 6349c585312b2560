"""What in an output folder reportgen wrote, so that a build only ever replaces its own files.

A site carries a `.reportgen-site` marker; each model folder a `.reportgen-files` manifest of every file
reportgen put there. Before anything is built, `check_site` refuses a non-empty folder that is not a site
and a model folder holding a file that is not in its manifest (a user's notes, say): moving the folder
aside or choosing another `--out` is the user's call, never ours.
"""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.util.errors import ReportgenError

SITE_MARKER = ".reportgen-site"
MANIFEST = ".reportgen-files"
FRONT_PAGES = ("index.html", "index.md", "style.css", ".nojekyll", SITE_MARKER)
PLACEHOLDERS = (".gitkeep", ".keep", ".gitignore")  # what keeps an empty folder in git: not content


def check_site(out: Path, model_slugs: list[str]) -> None:
    """Raise ReportgenError unless every file the build will replace in `out` is reportgen's.

    Args:
        out: the site folder (it may not exist yet).
        model_slugs: the folders of the models about to be built.

    Raises:
        ReportgenError: `out` is a file, a non-empty folder that is not a reportgen site, or a model
            folder there holds a file reportgen did not write.
    """
    if out.exists() and not out.is_dir():
        raise ReportgenError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or all(entry.name in PLACEHOLDERS for entry in out.iterdir()):
        return
    if not is_site(out):
        raise ReportgenError(f"{out} is not empty and is not a reportgen site (it has no {SITE_MARKER}); "
                             "choose an empty or new folder for --out")
    for slug in model_slugs:
        foreign = foreign_files(out / slug)
        if foreign:
            others = f" (and {len(foreign) - 1} other files)" if len(foreign) > 1 else ""
            raise ReportgenError(f"{out / slug / foreign[0]}{others} was not written by reportgen, and a build "
                                 f"replaces {out / slug}; move it elsewhere first")

def is_site(out: Path) -> bool:
    """A folder reportgen made: its marker, or (sites from before the marker) front pages and model reports."""
    if (out / SITE_MARKER).is_file():
        return True
    return (out / "index.html").is_file() and (out / ".nojekyll").is_file() and any(out.glob("*/report.json"))


def foreign_files(folder: Path) -> list[str]:
    """The files in a model folder (relative paths, sorted) that its manifest does not list. A folder
    without a manifest is reportgen's only if it is empty or was built before manifests (a report.json
    with an inputs fingerprint)."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        return ["."]
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            written = set(json.loads(manifest.read_text(encoding="utf-8"))["files"])
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            written = set()
        return [p for p in present if p not in written and p != MANIFEST]
    if _is_old_build(folder):
        return []
    return present


def _is_old_build(folder: Path) -> bool:
    try:
        return "inputs_fingerprint" in json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def mark_model_folder(folder: Path) -> None:
    """Write the manifest of every file now in `folder` (call it last, on the staging folder)."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    (folder / MANIFEST).write_text(json.dumps({"written_by": "reportgen", "files": files}, indent=0),
                                   encoding="utf-8")


def mark_site(out: Path) -> None:
    (out / SITE_MARKER).write_text("This folder is a site written by reportgen; it replaces only its own files.\n",
                                   encoding="utf-8")
