"""Writing the site safely and incrementally.

Each model is built in a staging folder and swapped in whole, so a failure or
Ctrl-C mid-build leaves the previous site as it was. A model whose inputs
(config entry, weights, seed, reportgen version, templates) have not changed
since its last build is skipped without loading TensorFlow. Every replaced
report.json is kept in the model's history/ folder for later comparison. Only
files reportgen wrote are ever replaced (see ownership).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen.build.executor import Executor, LocalExecutor, Resources, check_executor, open_executor
from reportgen.build.fingerprint import STATIC, user_templates, using_templates
from reportgen.build.ownership import check_site, mark_model_folder, mark_site
from reportgen.build.render import check_templates, render_index
from reportgen.build.status import is_up_to_date, read_report
from reportgen.inputs.config import BuildOptions, ModelSpec
from reportgen.sections.changes import PICTURES_KEY
from reportgen.util import progress
from reportgen.util.errors import ReportgenError

STAGING_PREFIX = ".staging-"
HISTORY = "history"


def build_site(specs: list[ModelSpec], options: BuildOptions) -> list[dict[str, Any]]:
    """Build every model that needs it into `options.out`, then the front pages.

    Returns the report of every model in `specs`, rebuilt or not. With `options.templates`, the pages are
    rendered with the user's templates (and its static/ folder copied to the site's static/)."""
    with using_templates(options.templates):
        check_templates()
        return _build_site(specs, options)


def _build_site(specs: list[ModelSpec], options: BuildOptions) -> list[dict[str, Any]]:
    out = options.out
    check_executor(options.executor)
    pending = [spec for spec in specs if not is_up_to_date(spec, options)]
    check_inputs(pending)
    static = user_static()
    if static is not None and (STATIC in [spec.slug for spec in specs] or (out / STATIC / "report.json").exists()):
        raise ReportgenError(f"a model's folder would be {out / STATIC}, where the static files of {static} go: "
                             "rename the model")
    check_site(out, [spec.slug for spec in specs] + ([STATIC] if static is not None else []))
    executor = open_executor(options.executor, options.ray_address) if pending else None  # reached before writing
    try:
        return _write_site(specs, options, executor)
    finally:
        if executor is not None:
            executor.close()


def _write_site(specs: list[ModelSpec], options: BuildOptions, executor: Executor | None) -> list[dict[str, Any]]:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    mark_site(out)
    site_models = navigation_models(specs, out)
    copy_static(out)
    reports: dict[str, dict[str, Any]] = {}
    jobs = []
    for number, spec in enumerate(specs, start=1):
        if is_up_to_date(spec, options):
            progress.log(f"[{number}/{len(specs)}] {spec.name}: up to date, skipped")
            reports[spec.slug] = read_report(out, spec)
        else:
            jobs.append(ModelJob(spec, options, str(staging_folder(options.out, spec)),
                                 earlier_reports(out / spec.slug), site_models, f"[{number}/{len(specs)}] {spec.name}"))
    for job, report in build_models(jobs, options, executor):
        reports[job.spec.slug] = report
        write_front_pages(out)  # each finished model is on the index, styled, while the next one builds
    if options.compares:
        from reportgen.build.compare import build_compares

        build_compares(out, specs, options)
    write_front_pages(out)
    (out / ".nojekyll").touch()
    return [reports[spec.slug] for spec in specs]


@dataclass(frozen=True)
class ModelJob:
    """One model's build, as any executor's worker gets it: paths, specs and numbers only."""

    spec: ModelSpec
    options: BuildOptions
    staging: str  # the folder the worker writes the model's report into
    earlier: list[dict[str, Any]]  # the model's earlier report.json records, newest first
    site_models: list[tuple[str, str]]
    label: str  # "[2/5] name", for progress and errors
    cwd: str = field(default_factory=os.getcwd)  # what relative paths in the spec are relative to


def build_models(jobs: list[ModelJob], options: BuildOptions,
                 executor: Executor | None = None) -> Iterator[tuple[ModelJob, dict[str, Any]]]:
    """Build every job on `executor` (default: the one `options` names, opened and closed here) and swap each
    model in as it finishes. Only this process (the driver) swaps: a job that fails for good leaves that model's
    previous folder as it was, and no staging folder behind."""
    if not jobs:
        return
    from reportgen.build.compare import link_from_model_page  # compare builds on this module

    own = executor is None
    executor = executor or open_executor(options.executor, options.ray_address)
    try:
        executor.check_storage(options.out, shared_paths(jobs, options))
        resources = Resources(options.cpus_per_model, options.gpus_per_model)
        if options.granularity == "chunk" and executor.name == "ray":  # models here, their chunks on Ray actors
            run = LocalExecutor().run(build_model_job, jobs, lambda job: job.label, resources)
        else:
            run = executor.run(build_model_job, jobs, lambda job: job.label, resources, expected_work)
        for job, report in run:
            staging, final = Path(job.staging), options.out / job.spec.slug
            keep_history(final, staging)
            mark_model_folder(staging)
            swap_in(staging, final)
            link_from_model_page(options.out, job.spec.slug)  # the compare pages of this model, if the site has any
            yield job, report
    finally:
        if own:
            executor.close()
        for job in jobs:
            shutil.rmtree(job.staging, ignore_errors=True)


def build_model_job(job: ModelJob) -> dict[str, Any]:
    """Build one model into its staging folder, wherever this runs; returns its report. A job run again after
    its worker was lost starts from an empty folder."""
    from reportgen.build.pipeline import build_model_report  # TensorFlow is imported only when a model is built

    staging = Path(job.staging)
    shutil.rmtree(staging, ignore_errors=True)
    if job.options.executor == "ray" and job.options.granularity == "chunk":  # this is the driver
        from reportgen.build.executor import RayChunkPool, Resources, chunk_workers
        from reportgen.methods.featvis import run_chunks_with

        resources = Resources(job.options.cpus_per_model, job.options.gpus_per_model)
        pool = RayChunkPool(job, chunk_workers(resources), resources)
        try:
            with run_chunks_with(pool.run):
                return build_model_report(job.spec, job.options, staging, job.earlier, job.site_models)
        finally:
            pool.close()
    if job.options.executor != "local":
        from reportgen.build.executor import prepare_worker

        progress.set_quiet(True)  # only the driver prints
        prepare_worker(job.options.cpus_per_model)
        os.chdir(job.cwd)  # a worker reads the model file, data and imports where the driver would
    return build_model_report(job.spec, job.options, staging, job.earlier, job.site_models)


def shared_paths(jobs: list[ModelJob], options: BuildOptions) -> list[str]:
    """What every worker must find: each model file, file dataset, photo and import file, and the cache's folder."""
    paths = [str(options.cache_dir.parent)]
    for spec in (job.spec for job in jobs):
        paths += [spec.model_file or "", spec.dream_image or "",
                  *(spec.dataset.split(":", 1)[1:] if spec.dataset.startswith(("npz:", "folder:")) else []),
                  *(item for item in spec.imports if item.endswith(".py"))]
    return sorted({path for path in paths if path})


def expected_work(job: ModelJob) -> float:
    """A model build's expected work, for the ETA, before TensorFlow is loaded: its file's megabytes (weights
    dominate what a report computes), 10 for a model reportgen trains."""
    if job.spec.model_file:
        path = Path(job.cwd) / job.spec.model_file
        return max(1.0, path.stat().st_size / 1e6) if path.is_file() else 1.0
    return 10.0


def staging_folder(out: Path, spec: ModelSpec) -> Path:
    """Where a model is built before it is swapped in (named after the driver, which alone swaps)."""
    return out / f"{STAGING_PREFIX}{spec.slug}-{os.getpid()}"


def check_inputs(specs: list[ModelSpec]) -> None:
    """Cheap checks before any work starts, so bad input never half-builds a site."""
    if not specs:
        return
    from reportgen.inputs.data import check_spec
    from reportgen.inputs.zoo import ARCHITECTURES

    for spec in specs:
        check_spec(spec.dataset)
        if spec.architecture and spec.architecture not in ARCHITECTURES:
            raise ReportgenError(f"unknown architecture {spec.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        if spec.model_file:
            from reportgen.model.files import load_model_file

            # fails fast on missing, corrupt or non-Keras files
            load_model_file(Path(spec.model_file), spec.imports, spec.trust_model_code)
        if spec.dream_image and not Path(spec.dream_image).is_file():
            raise ReportgenError(f"dream image not found: {spec.dream_image}")


def navigation_models(specs: list[ModelSpec], out: Path) -> list[tuple[str, str]]:
    """(name, slug) of every model the navigation bar links to: those being built, then those already in `out`."""
    models = [(spec.name, spec.slug) for spec in specs]
    slugs = {slug for _, slug in models}
    for report in built_reports(out):
        if report["model"]["slug"] not in slugs:
            models.append((report["model"]["name"], report["model"]["slug"]))
    return models


def build_into_place(spec: ModelSpec, options: BuildOptions,
                     site_models: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Build one model on the executor `options` names and swap it into the site."""
    job = ModelJob(spec, options, str(staging_folder(options.out, spec)), earlier_reports(options.out / spec.slug),
                   site_models or [(spec.name, spec.slug)], spec.name)
    return next(report for _, report in build_models([job], options))


def earlier_reports(folder: Path) -> list[dict[str, Any]]:
    """The model's previous report.json and its history, newest first. Each record whose pictures the new build
    will have under history/ (see keep_history) names that folder, relative to the model's, in its
    PICTURES_KEY (in memory only)."""
    paths = [folder / "report.json", *sorted((folder / HISTORY).glob("*.json"), reverse=True)]
    reports = []
    for path in paths:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        kept = f"{HISTORY}/{history_stem(report)}"
        if path.parent == folder or (folder / kept).is_dir():
            report[PICTURES_KEY] = f"{kept}/"
        reports.append(report)
    return reports


def history_stem(report: dict[str, Any]) -> str:
    """The name an earlier build's report.json (with .json) and its pictures' folder take under history/."""
    stamp = str(report.get("build", {}).get("built_at", "unknown")).replace(":", "").replace("-", "")
    return f"{stamp}-{report.get('inputs_fingerprint', 'x')}"


def history_pictures(report: dict[str, Any]) -> list[str]:
    """The pictures of a report that a later build compares with (history_pictures is what keep_history keeps):
    the class images and every shown filter's feature visualization, as paths relative to the model's folder."""
    featvis = next((s.get("data", {}) for s in report.get("sections", []) if s.get("id") == "feature-vis"), {})
    paths = [c["image"] for c in featvis.get("classes", []) if c.get("image")]
    for layer in featvis.get("layers", {}).values():
        paths += [f["images"]["feature_vis"] for f in layer.get("filters", [])
                  if f.get("images", {}).get("feature_vis")]
    return [p for p in paths if isinstance(p, str) and ".." not in Path(p).parts and not Path(p).is_absolute()]


def keep_history(old: Path, new: Path) -> None:
    """Carry the old build's history into the new one, adding the old report.json and, in a folder of the same
    name, the pictures a comparison with it shows (history_pictures)."""
    if (old / HISTORY).is_dir():
        shutil.copytree(old / HISTORY, new / HISTORY, dirs_exist_ok=True)
    previous = old / "report.json"
    if previous.is_file():
        report = json.loads(previous.read_text(encoding="utf-8"))
        stem = history_stem(report)
        (new / HISTORY).mkdir(exist_ok=True)
        shutil.copy2(previous, new / HISTORY / f"{stem}.json")
        for rel in history_pictures(report):
            if (old / rel).is_file():
                target = new / HISTORY / stem / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(old / rel, target)


def swap_in(new: Path, final: Path) -> None:
    """Replace `final` by `new` with two renames; the old folder is deleted only afterwards."""
    old = final.with_name(f"{STAGING_PREFIX}old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def built_reports(out: Path) -> list[dict[str, Any]]:
    """Every model report present in the site, in folder order."""
    reports = []
    for path in sorted(out.glob("*/report.json")):
        if not path.parent.name.startswith("."):
            reports.append(json.loads(path.read_text(encoding="utf-8")))
    return reports


def user_static() -> Path | None:
    """The static/ folder of the user's templates in use (a logo, a stylesheet the templates link), or None."""
    folder = user_templates()
    return folder / STATIC if folder is not None and (folder / STATIC).is_dir() else None


def copy_static(out: Path) -> None:
    """Copy the user's templates/static/ to `out`/static/, swapped in whole; check_site has made sure every
    file there is one an earlier build copied (its manifest)."""
    static = user_static()
    if static is None:
        return
    staging = out / f"{STAGING_PREFIX}{STATIC}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(static, staging)
        mark_model_folder(staging)
        swap_in(staging, out / STATIC)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
