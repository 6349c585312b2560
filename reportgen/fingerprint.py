"""What a model's pages depend on, as a hash: a rebuild skips a model whose
hash has not changed. Light on purpose: checking never imports TensorFlow."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from . import __version__
from .config import ModelSpec

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"  # package data: ships in the wheel and the sdist


def file_digest(path: Path | None) -> str | None:
    """sha256 of a file's bytes (None when there is no file)."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_digest() -> str:
    """The package's Python files and the templates: a changed reportgen (a pull, an edit) rebuilds
    every page, with or without a version bump."""
    digest = hashlib.sha256()
    for root, pattern in [(PACKAGE_DIR, "*.py"), (TEMPLATES_DIR, "*")]:
        for path in sorted(root.rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root.parent).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def inputs_fingerprint(spec: ModelSpec, seed: int, quick: bool, weights_digest: str | None) -> str:
    """Hash of the config entry, seed, quick mode, weights, reportgen's version, code and templates."""
    parts = [dataclasses.asdict(spec), seed, quick, weights_digest, __version__, code_digest()]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def weights_path(spec: ModelSpec, cache_dir: Path, seed: int, quick: bool) -> Path:
    """The file a model's weights come from: the user's file, or the training cache."""
    if spec.model_file:
        return Path(spec.model_file)
    return spec.cache_folder(cache_dir, seed, quick) / "model.keras"
