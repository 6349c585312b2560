"""One model's report, top-down: data, model, the test-set pass, every section, files."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from reportgen import __version__
from reportgen.build.fingerprint import file_digest, inputs_fingerprint
from reportgen.build.render import render_model_pages
from reportgen.inputs.config import BuildOptions, ModelSpec
from reportgen.inputs.data import Dataset, fit_to_model, load_dataset
from reportgen.inputs.training import TrainedModel, checkpoint_snapshots, load_or_train, model_file_record
from reportgen.methods.budget import batch_budget, set_batch_memory_share
from reportgen.model import Network
from reportgen.model.files import choose_output, image_input_size, load_model_file
from reportgen.model.inputs import given_input
from reportgen.sections import SECTION_BUILDERS
from reportgen.sections.changes import compare_reports
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Section, jsonable
from reportgen.util import progress
from reportgen.util.errors import ReportgenError
from reportgen.util.imaging import PngWriter


def build_model_report(spec: ModelSpec, options: BuildOptions, folder: Path,
                       earlier: list[dict[str, Any]] | None = None,
                       site_models: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Train or load the model, run every section and write its pages into `folder`.

    `earlier` holds the previous builds' report.json records, newest first: the
    newest one with other weights is what the "changes" section compares with.
    """
    start = time.perf_counter()
    set_batch_memory_share(options.batch_memory_share)
    with progress.step("loading data and model"):
        trained, network, data = load_model_and_data(spec, options)
    # The judge of the class images is cached with the models reportgen trains; a model file's build writes
    # nothing outside its site.
    with PngWriter(background=True) as writer:  # every picture written before report.json and the pages
        ctx = ModelContext(spec=spec, network=network, data=data, out_dir=folder, history=trained.history,
                           seed=options.seed, quick=options.quick,
                           cache_dir=None if spec.model_file else options.cache_dir, writer=writer,
                           snapshots=trained.snapshots)
        with progress.step(f"predicting {len(data.x_test):,} test images, with every conv channel's statistics"):
            warnings = [warning for warning in [chance_warning(ctx)] if warning]  # the pass every section reads
        for warning in warnings:
            progress.log(f"  warning: {warning}")
        sections = run_sections(ctx)
    report = assemble_report(ctx, trained, sections, options, time.perf_counter() - start, warnings)
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


def load_model_and_data(spec: ModelSpec, options: BuildOptions) -> tuple[TrainedModel, Network, Dataset]:
    """A user's model file decides the image size of folder datasets; zoo models are trained on the data."""
    if spec.model_file:
        trained = load_model_file(Path(spec.model_file), spec.imports, spec.trust_model_code)
        size = image_input_size(trained.model)
        data = load_dataset(spec.dataset, image_size=size if size and None not in size else None)
        trained.model, trained.output = choose_output(trained.model, data.num_classes, spec.output)
        if trained.output:
            progress.log(f"  reporting on the model's output {trained.output!r}")
        network = read_network(trained, spec)
        shape = network.image_shape
        data.x_test = fit_to_model(data.x_test, (None, *shape))  # the training images are not needed
    else:
        data = load_dataset(spec.dataset)
        trained = load_or_train(spec, data, options.cache_dir, options.seed, options.quick, options.retrain)
        network = read_network(trained, spec)
    if spec.checkpoints:  # the user's own snapshots replace any training kept
        trained.snapshots = checkpoint_snapshots(spec.checkpoints)
    check_classes(network, data)
    return trained, network, data


def read_network(trained: TrainedModel, spec: ModelSpec) -> Network:
    """The model read as a flat graph, with the input range the config gives or its layers show."""
    network = Network(trained.model, given_input(spec.input_range, spec.preprocess))
    if len(network.image_shape) != 3:
        where = spec.model_file or spec.name
        raise ReportgenError(f"{where}: input shape {(None, *network.image_shape)} is not an image "
                             "(expected (batch, H, W, C))")
    return network


def check_classes(network: Network, data: Dataset) -> None:
    if network.num_classes != data.num_classes:
        outputs = "1 unit (a binary classifier)" if network.graph[network.graph.output].shape[-1] == 1 else \
            f"{network.num_classes} classes"
        raise ReportgenError(f"the model outputs {outputs} but dataset {data.name!r} has {data.num_classes} classes "
                             f"({', '.join(data.class_names[:12])}{', ...' if data.num_classes > 12 else ''})")


def chance_warning(ctx: ModelContext) -> str | None:
    """A warning when test accuracy is no better than always answering the most common class: the likely
    cause is images fed in another pixel range than the model was trained on."""
    accuracy = float(np.mean(ctx.predictions == ctx.data.y_test))
    chance = chance_accuracy(ctx.data.y_test)
    margin = max(0.01, 3 * np.sqrt(chance * (1 - chance) / len(ctx.data.y_test)))
    if accuracy > chance + margin:
        return None
    fed = ctx.network.input_range.text()
    return (f"test accuracy {accuracy:.4f} is at chance level ({chance:.4f} by always answering the most common "
            f"class). The model was fed pixel values in {fed} ({ctx.network.input_range.source}); if it was "
            "trained on another range, set input_range (e.g. [0, 255] or [-1, 1]) in reportgen.toml or pass "
            "--input-range; if its images went through keras.applications' preprocess_input or a mean and "
            "deviation per channel, set preprocess (\"caffe\", \"tf\", \"torch\" or { mean = [...], std = [...] }) "
            "or pass --preprocess caffe|tf|torch.")


def chance_accuracy(labels: np.ndarray) -> float:
    return float(np.bincount(labels).max() / len(labels))


def run_sections(ctx: ModelContext) -> list[Section]:
    tf.get_logger().setLevel("ERROR")  # each section builds its own small extractor models; retracing is expected
    built: dict[str, Section | None] = {}
    for step in SECTION_BUILDERS:
        with progress.step(step.name):
            built[step.name] = step.run(ctx, built)
    return [section for section in built.values() if section is not None]


def budget_record(ctx: ModelContext) -> dict[str, Any]:
    """Which conv layers and units got galleries, and what the budget left out."""
    plan = ctx.plan
    return {**asdict(plan.budget), "summary": plan.describe(),
            "galleries": {path: [int(i) for i in chosen] for path, chosen in plan.units.items()},
            "left_out_layers": plan.left_out_layers, "units_left_out": plan.units_left_out()}


def assemble_report(ctx: ModelContext, trained: TrainedModel, sections: list[Section], options: BuildOptions,
                    seconds: float, warnings: list[str]) -> dict[str, Any]:
    """The machine-readable record of one model's report (report.json)."""
    y, p = ctx.data.y_test, ctx.probabilities
    p_true = np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)
    spec, model, network = ctx.spec, ctx.model, ctx.network
    weights = file_digest(trained.path)
    return {
        "reportgen_version": __version__,
        "inputs_fingerprint": inputs_fingerprint(spec, options.seed, options.quick, weights),
        "model": {
            "name": spec.name, "slug": spec.slug, "description": spec.description, "dataset": ctx.data.name,
            "architecture": spec.architecture, "source": trained.source,
            "model_file": Path(spec.model_file).name if spec.model_file else None,
            "input_shape": list(network.image_shape), "class_names": ctx.data.class_names,
            "params": model.count_params(), "layers": len(network.graph.nodes), "weights_sha256": weights,
            "input_range": [network.input_range.low, network.input_range.high],
            "input_range_source": network.input_range.source, "output": network.output_kind,
            **model_file_record(trained),
            **({"preprocess": network.input_range.preprocess_record()} if network.input_range.mode else {}),
        },
        "metrics": {
            "test_accuracy": float(np.mean(ctx.predictions == y)),
            "test_loss": float(-np.mean(np.log(p_true))),
            "test_images": len(y),
            "chance_accuracy": chance_accuracy(y),
        },
        "warnings": warnings,
        "budget": budget_record(ctx),
        "training": {
            "epochs": len(trained.history.get("loss", [])),
            "seconds": trained.seconds,
            "final": {k: v[-1] for k, v in trained.history.items() if v},
        },
        "build": {"seed": options.seed, "quick": options.quick, "seconds": seconds,
                  "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "executor": options.executor, "host": platform.node(), "batch": batch_budget().record(),
                  **({"granularity": options.granularity} if options.executor == "ray" else {})},
        "thumbnail": next((s.figures[0].path for s in sections if s.id == "class-maps" and s.figures), None),
        "sections": [s.to_json() for s in sections],
    }

