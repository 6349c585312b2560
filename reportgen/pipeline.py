"""One model's report, top-down: data, model, predictions, every section, files."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from . import __version__, progress
from .config import BuildOptions, ModelSpec
from .context import ModelContext
from .data import Dataset, fit_to_model, load_dataset
from .errors import ReportgenError
from .fingerprint import file_digest, inputs_fingerprint
from .layers import class_probabilities, output_is_probability
from .render import render_model_pages
from .report import Section, jsonable
from .sections import SECTION_BUILDERS
from .sections.changes import compare_reports
from .training import TrainedModel, load_model_file, load_or_train


def build_model_report(spec: ModelSpec, options: BuildOptions, folder: Path,
                       earlier: list[dict[str, Any]] | None = None,
                       site_models: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Train or load the model, run every section and write its pages into `folder`.

    `earlier` holds the previous builds' report.json records, newest first: the
    newest one with other weights is what the "changes" section compares with.
    """
    start = time.perf_counter()
    with progress.step("loading data and model"):
        trained, data = load_model_and_data(spec, options)
    with progress.step(f"predicting {len(data.x_test):,} test images"):
        probabilities = predict_probabilities(trained, data)
    ctx = ModelContext(spec=spec, model=trained.model, data=data, out_dir=folder, probabilities=probabilities,
                       history=trained.history, seed=options.seed, quick=options.quick)
    sections = run_sections(ctx)
    report = assemble_report(ctx, trained, sections, options, time.perf_counter() - start)
    baseline = next((r for r in earlier or [] if r["model"].get("weights_sha256") != report["model"]["weights_sha256"]),
                    None)
    if baseline is not None:
        changes = compare_reports(baseline, report)
        sections.insert(0, changes)
        report["sections"].insert(0, changes.to_json())
    (folder / "report.json").write_text(json.dumps(jsonable(report), indent=1), encoding="utf-8")
    with progress.step("rendering pages"):
        render_model_pages(folder, report, sections, site_models or [(spec.name, spec.slug)])
    return report


def load_model_and_data(spec: ModelSpec, options: BuildOptions) -> tuple[TrainedModel, Dataset]:
    """A user's model file decides the image size of folder datasets; zoo models are trained on the data."""
    if spec.model_file:
        trained = load_model_file(Path(spec.model_file))
        shape = tuple(trained.model.input_shape) if not isinstance(trained.model.input_shape, list) else ()
        if len(shape) != 4:
            raise ReportgenError(f"{spec.model_file}: input shape {shape} is not an image (expected (batch, H, W, C))")
        data = load_dataset(spec.dataset, image_size=shape[1:3] if None not in shape[1:3] else None)
        data.x_train = fit_to_model(data.x_train, shape)
        data.x_test = fit_to_model(data.x_test, shape)
        return trained, data
    data = load_dataset(spec.dataset)
    return load_or_train(spec, data, options.cache_dir, options.seed, options.quick, options.retrain), data


def predict_probabilities(trained: TrainedModel, data: Dataset) -> np.ndarray:
    probabilities = class_probabilities(trained.model, data.x_test, progress_label="test-set predictions")
    if not output_is_probability(trained.model) and probabilities.shape[1] > 1:
        shifted = probabilities - probabilities.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if probabilities.shape[1] != data.num_classes:
        raise ReportgenError(
            f"the model has {probabilities.shape[1]} outputs but dataset {data.name!r} has {data.num_classes} classes"
        )
    return probabilities


def run_sections(ctx: ModelContext) -> list[Section]:
    tf.get_logger().setLevel("ERROR")  # each section builds its own small extractor models; retracing is expected
    sections = []
    for name, builder in SECTION_BUILDERS:
        with progress.step(name):
            section = builder(ctx)
        if section is not None:
            sections.append(section)
    return sections


def assemble_report(ctx: ModelContext, trained: TrainedModel, sections: list[Section], options: BuildOptions,
                    seconds: float) -> dict[str, Any]:
    """The machine-readable record of one model's report (report.json)."""
    y, p = ctx.data.y_test, ctx.probabilities
    p_true = np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)
    spec, model = ctx.spec, ctx.model
    weights = file_digest(trained.path)
    return {
        "reportgen_version": __version__,
        "inputs_fingerprint": inputs_fingerprint(spec, options.seed, options.quick, weights),
        "model": {
            "name": spec.name, "slug": spec.slug, "description": spec.description, "dataset": spec.dataset,
            "architecture": spec.architecture, "source": trained.source,
            "model_file": Path(spec.model_file).name if spec.model_file else None,
            "input_shape": list(model.input_shape[1:]), "class_names": ctx.data.class_names,
            "params": model.count_params(), "layers": len(model.layers), "weights_sha256": weights,
        },
        "metrics": {
            "test_accuracy": float(np.mean(ctx.predictions == y)),
            "test_loss": float(-np.mean(np.log(p_true))),
            "test_images": len(y),
        },
        "training": {
            "epochs": len(trained.history.get("loss", [])),
            "seconds": trained.seconds,
            "final": {k: v[-1] for k, v in trained.history.items() if v},
        },
        "build": {"seed": options.seed, "quick": options.quick, "seconds": seconds,
                  "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "thumbnail": next((s.figures[0].path for s in sections if s.id == "class-maps" and s.figures), None),
        "sections": [s.to_json() for s in sections],
    }

