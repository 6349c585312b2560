"""Train a zoo model (or load a user's saved one), cached by spec and seed.

The cache holds `model.keras` and `history.json` in a folder named after the
model and a hash of everything that changes its weights, so a rebuild after
editing only the report's settings skips training.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from reportgen.inputs.config import ModelSpec
from reportgen.inputs.data import Dataset
from reportgen.inputs.zoo import build_architecture
from reportgen.util.errors import ReportgenError
from reportgen.util.keras_progress import FitProgress

QUICK_TRAIN_SAMPLES = 10000
QUICK_EPOCHS = 1
SNAPSHOTS = "snapshots"  # the cache folder's subfolder of snapshot weights
SNAPSHOT_NAME = "epoch-{epoch:04d}.weights.h5"
DEFAULT_SNAPSHOT_COUNT = 5  # log-spaced epochs kept by default, the last included
SNAPSHOT_SUFFIXES = (".weights.h5", ".keras", ".h5")
# The epoch in a checkpoint's name: the number after "epoch" when there is one ("epoch-0003.weights.h5",
# "ckpt_epoch3.keras"), else the first number ("model.03-0.12.keras", ModelCheckpoint's documented pattern).
_EPOCH_AFTER_WORD = re.compile(r"epoch\D{0,2}?(\d+)", re.IGNORECASE)
_FIRST_NUMBER = re.compile(r"(\d+)")


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
    snapshots: dict[int, Path] = field(default_factory=dict)  # epoch -> weights kept during training (see timeline)


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
    # The snapshots are not part of the cache key: they do not change the weights. A cache from before
    # snapshots (or with other ones) is used as it is, unless the config asks for epochs it lacks.
    wanted = snapshot_epochs(spec.snapshots, QUICK_EPOCHS if quick else spec.epochs)
    if not retrain and (folder / "model.keras").exists():
        kept = read_snapshots(folder / SNAPSHOTS)
        if spec.snapshots is None or set(wanted) <= set(kept):
            meta = json.loads((folder / "history.json").read_text())
            model = keras.models.load_model(folder / "model.keras")
            return TrainedModel(model, meta["history"], "cache", meta["seconds"], folder / "model.keras",
                                snapshots={e: kept[e] for e in wanted if e in kept})
    folder.mkdir(parents=True, exist_ok=True)
    trained = train(spec, data, seed, quick, SnapshotSaver(folder / SNAPSHOTS, wanted))
    tmp = folder / "model.tmp.keras"
    trained.model.save(tmp)
    (folder / "history.json").write_text(json.dumps({"history": trained.history, "seconds": trained.seconds}))
    tmp.replace(folder / "model.keras")
    trained.path = folder / "model.keras"
    return trained


def train(spec: ModelSpec, data: Dataset, seed: int, quick: bool = False,
          snapshots: SnapshotSaver | None = None) -> TrainedModel:
    """Fit a zoo architecture on the dataset's training split, validating on its test split, keeping the
    weights of the epochs `snapshots` asks for."""
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
        callbacks=[FitProgress(f"training {spec.name}"), *([snapshots] if snapshots else [])],
    )
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return TrainedModel(model, history, "trained", time.perf_counter() - start,
                        snapshots=dict(snapshots.saved) if snapshots else {})


def default_snapshots(epochs: int) -> list[int]:
    """A few log-spaced epochs from the first to the last (the early epochs change a network most):
    3 epochs -> [1, 2, 3], 10 -> [1, 2, 3, 6, 10], 100 -> [1, 3, 10, 32, 100]."""
    if epochs < 1:
        return []
    count = min(DEFAULT_SNAPSHOT_COUNT, epochs)
    return sorted({round(float(e)) for e in np.geomspace(1, epochs, count)} | {epochs})


def snapshot_epochs(chosen: list[int] | None, epochs: int) -> list[int]:
    """The epochs to keep: those chosen that training reaches (all of them when the count is unknown, 0), else
    `default_snapshots`."""
    if chosen is None:
        return default_snapshots(epochs)
    return sorted({e for e in chosen if e >= 1 and (epochs <= 0 or e <= epochs)})


class SnapshotSaver(keras.callbacks.Callback):
    """Saves the model's weights at the end of the chosen epochs (counted from 1, as Keras prints them) as
    `folder`/epoch-NNNN.weights.h5; `saved` maps each epoch to its file. Earlier snapshot files in `folder`
    (only files of that name) are removed when training begins, so the folder holds this run's."""

    def __init__(self, folder: Path, epochs: list[int] | None) -> None:
        super().__init__()
        self.folder, self.epochs = Path(folder), epochs
        self.saved: dict[int, Path] = {}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.epochs is None:  # the default needs the number of epochs, known only now
            self.epochs = default_snapshots(int(self.params.get("epochs") or 0))
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name == SNAPSHOT_NAME.format(epoch=snapshot_epoch(old) or 0):
                old.unlink()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 in (self.epochs or ()):
            path = self.folder / SNAPSHOT_NAME.format(epoch=epoch + 1)
            self.model.save_weights(path)
            self.saved[epoch + 1] = path


def snapshot_epoch(path: Path) -> int | None:
    """The epoch in a snapshot's or checkpoint's file name (see _EPOCH_AFTER_WORD), or None."""
    stem = path.name
    for suffix in SNAPSHOT_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    match = _EPOCH_AFTER_WORD.search(stem) or _FIRST_NUMBER.search(stem)
    return int(match.group(1)) if match else None


def read_snapshots(folder: Path) -> dict[int, Path]:
    """Epoch -> weights file of the snapshots or ModelCheckpoint files in `folder` (.weights.h5, .keras, .h5;
    the epoch from the name); empty when there are none. Two files of one epoch: the newest is taken."""
    found: dict[int, Path] = {}
    if not Path(folder).is_dir():
        return found
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(SNAPSHOT_SUFFIXES)]
    for path in sorted(files, key=lambda p: p.stat().st_mtime):
        epoch = snapshot_epoch(path)
        if epoch is not None:
            found[epoch] = path
    return dict(sorted(found.items()))


def checkpoint_snapshots(folder: str | Path) -> dict[int, Path]:
    """The snapshots of `--checkpoints DIR`.

    Raises:
        ReportgenError: The folder is missing or holds no checkpoint file with an epoch in its name.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ReportgenError(f"--checkpoints: folder not found: {folder}")
    found = read_snapshots(folder)
    if not found:
        raise ReportgenError(f"--checkpoints {folder}: no checkpoint file with an epoch in its name (expected files "
                             "such as model.03.keras or epoch-0003.weights.h5, as keras.callbacks.ModelCheckpoint("
                             "'model.{epoch:02d}.keras') writes)")
    return found


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
