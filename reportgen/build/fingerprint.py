"""What a model's pages depend on, as a hash: a rebuild skips a model whose
hash has not changed. Light on purpose: checking never imports TensorFlow."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from reportgen import __version__
from reportgen.inputs.config import ModelSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"  # package data: ships in the wheel and the sdist
STATIC = "static"  # a user's templates/static/ is copied to the site's static/

# The user's template folder of the build under way (`[build] templates`, or templates/ beside the config):
# its files override the package's one by one (see render.environment) and count in every inputs fingerprint.
_USER_TEMPLATES: contextvars.ContextVar[Path | None] = contextvars.ContextVar("user_templates", default=None)


def user_templates() -> Path | None:
    """The user's template folder the pages are rendered with now, or None for the package's templates only."""
    return _USER_TEMPLATES.get()


@contextlib.contextmanager
def using_templates(folder: Path | None) -> Iterator[None]:
    """Render and fingerprint with the user's template folder `folder` (None: the package's only) inside."""
    token = _USER_TEMPLATES.set(None if folder is None else Path(folder).resolve())
    try:
        yield
    finally:
        _USER_TEMPLATES.reset(token)


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


def user_templates_digest(folder: Path | None) -> str | None:
    """The user's template folder: every template's path in it and its bytes (None: no folder), so editing,
    adding or removing an override rebuilds the pages. Files under static/ are left out: every build copies
    them into the site anyway."""
    if folder is None:
        return None
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] != STATIC and "__pycache__" not in relative.parts:
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def inputs_fingerprint(spec: ModelSpec, seed: int, quick: bool, weights_digest: str | None) -> str:
    """Hash of the config entry, seed, quick mode, weights, reportgen's version, code and templates (the user's
    overrides too, when a build uses them: see `using_templates`)."""
    parts = [dataclasses.asdict(spec), seed, quick, weights_digest, __version__, code_digest()]
    overrides = user_templates_digest(user_templates())
    if overrides is not None:  # without overrides the fingerprint is the one earlier versions wrote
        parts.append(overrides)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def weights_path(spec: ModelSpec, cache_dir: Path, seed: int, quick: bool) -> Path:
    """The file a model's weights come from: the user's file, or the training cache."""
    if spec.model_file:
        return Path(spec.model_file)
    return spec.cache_folder(cache_dir, seed, quick) / "model.keras"
