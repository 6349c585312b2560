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

from reportgen.inputs.config import ModelSpec
from reportgen.inputs.data import Dataset
from reportgen.inputs.zoo import build_architecture
from reportgen.util.keras_progress import FitProgress

QUICK_TRAIN_SAMPLES = 10000
QUICK_EPOCHS = 1


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics, empty for user models
    source: str = "trained"  # "trained", "cache" or "file"
    seconds: float = 0.0  # training time when it was trained
    path: Path | None = None  # the .keras file the weights come from
    dtype_policy: str = "float32"  # the policy the model was saved under; reportgen computes in float32
    mended: list[str] = field(default_factory=list)  # what reading a Keras 2 file changed in its stored config
    trusted_code: bool = False  # loaded with Keras' safe mode off (--trust-model-code)
    output: str | None = None  # the output reported on, when the model has several or one was named


def load_or_train(
    spec: ModelSpec,
    data: Dataset,
    cache_dir: Path,
    seed: int,
    quick: bool = False,
    retrain: bool = False,
) -> TrainedModel:
    """The zoo model of `spec`: from the cache, or trained now and cached (a model file is read by
    `reportgen.model.files.load_model_file`)."""
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


def model_file_record(trained: TrainedModel) -> dict[str, Any]:
    """How the model was read, for report.json's `model` record."""
    return {"dtype_policy": trained.dtype_policy, "mended": list(trained.mended),
            "trusted_code": trained.trusted_code, "output_name": trained.output, "reading": reading_notes(trained)}


def reading_notes(trained: TrainedModel) -> list[str]:
    """Sentences for the model's page on how its file was read, when anything was out of the ordinary."""
    notes = []
    if trained.dtype_policy != "float32":
        notes.append(f"The model was trained under {trained.dtype_policy}; reportgen computes in float32.")
    if trained.output:
        notes.append(f"The report is on the model's output {trained.output!r}.")
    if trained.trusted_code:
        notes.append("Loaded with --trust-model-code: Keras' safe mode was off, so code stored in the file "
                     "(Lambda layers) ran.")
    if trained.mended:
        notes.append(f"Read as a Keras 2 file, its stored config mended for Keras 3: {'; '.join(trained.mended)}.")
    return notes


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
