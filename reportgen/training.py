"""Train a zoo model (or load a user's saved one), cached by spec and seed.

The cache holds `model.keras` and `history.json` in a folder named after the
model and a hash of everything that changes its weights, so a rebuild after
editing only the report's settings skips training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .config import ModelSpec
from .data import Dataset
from .errors import ReportgenError
from .keras_progress import FitProgress
from .zoo import build_architecture

QUICK_TRAIN_SAMPLES = 10000
QUICK_EPOCHS = 1


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics, empty for user models
    source: str = "trained"  # "trained", "cache" or "file"
    seconds: float = 0.0  # training time when it was trained
    path: Path | None = None  # the .keras file the weights come from


def load_or_train(
    spec: ModelSpec,
    data: Dataset,
    cache_dir: Path,
    seed: int,
    quick: bool = False,
    retrain: bool = False,
) -> TrainedModel:
    """The model of `spec`: from its file, from the cache, or trained now and cached."""
    if spec.model_file:
        return load_model_file(Path(spec.model_file))
    folder = spec.cache_folder(cache_dir, seed, quick)
    if not retrain and (folder / "model.keras").exists():
        meta = json.loads((folder / "history.json").read_text())
        model = keras.models.load_model(folder / "model.keras")
        return TrainedModel(model, meta["history"], "cache", meta["seconds"], folder / "model.keras")
    trained = train(spec, data, seed, quick)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.tmp.keras"
    trained.model.save(tmp)
    (folder / "history.json").write_text(json.dumps({"history": trained.history, "seconds": trained.seconds}))
    tmp.replace(folder / "model.keras")
    trained.path = folder / "model.keras"
    return trained


def train(spec: ModelSpec, data: Dataset, seed: int, quick: bool = False) -> TrainedModel:
    """Fit a zoo architecture on the dataset's training split, validating on its test split."""
    keras.utils.set_random_seed(seed)
    model = build_architecture(spec.architecture or "", data.image_shape, data.num_classes)
    binary = model.output_shape[-1] == 1
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = data.x_train, data.y_train
    epochs = spec.epochs
    if quick:
        keep = np.random.default_rng(seed).permutation(len(x))[:QUICK_TRAIN_SAMPLES]
        x, y, epochs = x[keep], y[keep], QUICK_EPOCHS
    start = time.perf_counter()
    fit = model.fit(
        x, y, batch_size=spec.batch_size, epochs=epochs, shuffle=True,
        validation_data=(data.x_test, data.y_test), verbose=0,
        callbacks=[FitProgress(f"training {spec.name}")],
    )
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return TrainedModel(model, history, "trained", time.perf_counter() - start)


def load_model_file(path: Path) -> TrainedModel:
    """A user's saved model (.keras or .h5), with one-line errors for every way it can fail."""
    if not path.exists():
        raise ReportgenError(f"model file not found: {path}")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ReportgenError(f"{path}: not a Keras model file (expected .keras or .h5)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ReportgenError(f"{path}: could not be loaded as a Keras model ({detail})") from None
    if not isinstance(model, keras.Model):
        raise ReportgenError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return TrainedModel(model, read_history(history_path(path)), "file", 0.0, path)


def history_path(model_path: Path) -> Path:
    """Where a model file's training history may sit: `my_model.keras` -> `my_model.history.json`."""
    return model_path.with_name(model_path.stem + ".history.json")


def read_history(path: Path) -> dict[str, list[float]]:
    """A Keras History.history dict saved as JSON; empty when absent or unreadable."""
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(history, dict):
        return {}
    return {str(k): [float(v) for v in values] for k, values in history.items() if isinstance(values, list)}


def describe_history(history: dict[str, Any]) -> dict[str, Any]:
    """Final-epoch numbers of a Keras history, for report.json."""
    return {k: v[-1] for k, v in history.items() if v}
