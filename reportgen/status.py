"""Where each configured model stands: trained, built, stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Config, ModelSpec
from .pipeline import BuildOptions, inputs_fingerprint
from .training import cache_folder


def model_status(spec: ModelSpec, config: Config, out: Path) -> dict[str, Any]:
    report_path = out / spec.slug / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    quick = bool(report and report["build"]["quick"])
    options = BuildOptions(out=out, cache_dir=config.resolve(config.cache_dir), seed=config.seed, quick=quick)
    weights = (Path(spec.model_file) if spec.model_file
               else cache_folder(spec, options.cache_dir, options.seed, quick) / "model.keras")
    return {
        "name": spec.name,
        "dataset": spec.dataset,
        "trained": weights.is_file(),
        "built": report is not None,
        "stale": None if report is None
        else report.get("inputs_fingerprint") != inputs_fingerprint(spec, options, weights),
        "accuracy": report["metrics"]["test_accuracy"] if report else None,
    }
