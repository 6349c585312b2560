"""One model's report, top-down: data, model, predictions, every section, files."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from . import __version__, progress
from .config import ModelSpec
from .context import ModelContext
from .data import Dataset, fit_to_model, load_dataset
from .errors import ReportgenError
from .layers import class_probabilities, output_is_probability
from .render import TEMPLATES_DIR, render_model_pages
from .report import Section, jsonable
from .sections import SECTION_BUILDERS
from .training import TrainedModel, load_model_file, load_or_train


@dataclass
class BuildOptions:
    out: Path
    cache_dir: Path
    seed: int = 0
    quick: bool = False
    retrain: bool = False


def build_model_report(spec: ModelSpec, options: BuildOptions, folder: Path) -> dict[str, Any]:
    """Train or load the model, run every section and write its pages into `folder`."""
    start = time.perf_counter()
    with progress.step("loading data and model"):
        trained, data = load_model_and_data(spec, options)
    with progress.step(f"predicting {len(data.x_test):,} test images"):
        probabilities = predict_probabilities(trained, data)
    ctx = ModelContext(spec=spec, model=trained.model, data=data, out_dir=folder, probabilities=probabilities,
                       history=trained.history, seed=options.seed, quick=options.quick)
    sections = run_sections(ctx)
    report = assemble_report(ctx, trained, sections, options, time.perf_counter() - start)
    (folder / "report.json").write_text(json.dumps(jsonable(report), indent=1), encoding="utf-8")
    with progress.step("rendering pages"):
        render_model_pages(folder, report, sections)
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
    probabilities = class_probabilities(trained.model, data.x_test)
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
    return {
        "reportgen_version": __version__,
        "inputs_fingerprint": inputs_fingerprint(spec, options, trained.path),
        "model": {
            "name": spec.name, "slug": spec.slug, "description": spec.description, "dataset": spec.dataset,
            "architecture": spec.architecture, "model_file": spec.model_file, "source": trained.source,
            "input_shape": list(model.input_shape[1:]), "class_names": ctx.data.class_names,
            "params": model.count_params(), "layers": len(model.layers),
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
        "build": {"seed": options.seed, "quick": options.quick, "seconds": seconds},
        "thumbnail": next((s.figures[0].path for s in sections if s.id == "class-maps" and s.figures), None),
        "sections": [s.to_json() for s in sections],
    }


def inputs_fingerprint(spec: ModelSpec, options: BuildOptions, weights: Path | None) -> str:
    """A hash of everything a model's pages depend on: spec, seed, quick mode,
    weights, reportgen's version and the templates."""
    digest = hashlib.sha256()
    digest.update(json.dumps([vars(spec), options.seed, options.quick, __version__], sort_keys=True).encode())
    for path in [*(sorted(TEMPLATES_DIR.rglob("*")) if TEMPLATES_DIR.is_dir() else []), weights]:
        if path is not None and Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
