"""Where each configured model stands: trained, built, up to date. Never imports TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reportgen.build.fingerprint import file_digest, inputs_fingerprint, weights_path
from reportgen.inputs.config import BuildOptions, ModelSpec


def read_report(out: Path, spec: ModelSpec) -> dict[str, Any] | None:
    path = out / spec.slug / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def expected_fingerprint(spec: ModelSpec, options: BuildOptions) -> str | None:
    """The inputs fingerprint a build would record now, or None when the weights do not exist yet."""
    digest = file_digest(weights_path(spec, options.cache_dir, options.seed, options.quick))
    return None if digest is None else inputs_fingerprint(spec, options.seed, options.quick, digest)


def is_up_to_date(spec: ModelSpec, options: BuildOptions) -> bool:
    """True when the built pages already reflect this spec, seed, weights, version and templates."""
    if options.retrain or options.force:
        return False
    report = read_report(options.out, spec)
    return report is not None and report.get("inputs_fingerprint") == expected_fingerprint(spec, options)


def model_status(spec: ModelSpec, options: BuildOptions) -> dict[str, Any]:
    report = read_report(options.out, spec)
    quick = bool(report and report["build"]["quick"])
    options = BuildOptions(out=options.out, cache_dir=options.cache_dir, seed=options.seed, quick=quick)
    return {
        "name": spec.name,
        "dataset": spec.dataset,
        "trained": weights_path(spec, options.cache_dir, options.seed, quick).is_file(),
        "built": report is not None,
        "stale": None if report is None else not is_up_to_date(spec, options),
        "accuracy": report["metrics"]["test_accuracy"] if report else None,
    }
