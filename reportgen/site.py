"""Writing the site safely: each model is built in a staging folder and swapped
in whole, so a failure or Ctrl-C mid-build leaves the previous site as it was."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import progress
from .config import ModelSpec
from .pipeline import BuildOptions, build_model_report
from .render import render_index

STAGING_PREFIX = ".staging-"


def build_site(specs: list[ModelSpec], options: BuildOptions) -> list[dict[str, Any]]:
    """Build every model's report into `options.out`, then the front pages."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for number, spec in enumerate(specs, start=1):
        progress.log(f"[{number}/{len(specs)}] {spec.name}")
        reports.append(build_into_place(spec, options))
    write_front_pages(out)
    (out / ".nojekyll").touch()
    return reports


def build_into_place(spec: ModelSpec, options: BuildOptions) -> dict[str, Any]:
    staging = options.out / f"{STAGING_PREFIX}{spec.slug}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        report = build_model_report(spec, options, staging)
        swap_in(staging, options.out / spec.slug)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def swap_in(new: Path, final: Path) -> None:
    """Replace `final` by `new` with two renames; the old folder is deleted only afterwards."""
    old = final.with_name(f"{STAGING_PREFIX}old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def built_reports(out: Path) -> list[dict[str, Any]]:
    """Every model report present in the site, in name order."""
    reports = []
    for path in sorted(out.glob("*/report.json")):
        if not path.parent.name.startswith("."):
            reports.append(json.loads(path.read_text(encoding="utf-8")))
    return reports


def write_front_pages(out: Path) -> None:
    """index.html, index.md and the stylesheet, each replaced atomically."""
    suffix = f".tmp-{os.getpid()}"
    pairs = render_index(out, built_reports(out), suffix)
    try:
        for tmp, final in pairs:
            os.replace(tmp, final)
    finally:
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)
