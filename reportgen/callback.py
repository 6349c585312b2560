"""`ReportCallback`: rebuild a model's report straight from `model.fit`.

    model.fit(x, y, epochs=10, callbacks=[reportgen.ReportCallback("mnist", out="site")])

At the end of training (and every `every_n_epochs` epochs, if set) the model
is built with its history so far by `reportgen.build_report`, like `reportgen
build --model-file`, atomically, so the site is never half-written while
training goes on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import keras

from reportgen.api import build_report
from reportgen.inputs.data import check_spec
from reportgen.inputs.training import SNAPSHOTS, SnapshotSaver
from reportgen.util.errors import ReportgenError
from reportgen.util.slugs import slugify


class ReportCallback(keras.callbacks.Callback):
    """Writes the report of the model being trained into `out` (a site folder), through `build_report`.

    Args:
        dataset: The test data, in any form `build_report` takes (a spec such as "mnist", or arrays).
        out: The site folder.
        name: The report's name (default: the model's name).
        every_n_epochs: Also build after every n epochs (default: only at the end of training).
        quick: Shortened visualizations.
        seed: Seed of every random start.
        snapshots: The epochs (from 1) whose weights are kept for the report's "Learning over time"; default a
            few log-spaced epochs and the last (of the `epochs` given to `fit`); `[]` keeps none.
        cache_dir: Where the snapshots are kept (under snapshots/<name>/), not in the site; default a temporary
            folder that lives as long as the callback (the reports it builds are what stays).

    Raises:
        ReportgenError: A bad argument (an unknown dataset, a non-positive `every_n_epochs`), here, when the
            callback is made, not after hours of training.
    """

    def __init__(self, dataset: Any, out: str | Path = "site", name: str | None = None,
                 every_n_epochs: int | None = None, quick: bool = False, seed: int = 0,
                 snapshots: list[int] | None = None, cache_dir: str | Path | None = None) -> None:
        super().__init__()
        if every_n_epochs is not None and (not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ReportgenError(f"every_n_epochs must be a positive int or None, not {every_n_epochs!r}")
        if snapshots is not None and not (isinstance(snapshots, (list, tuple)) and all(
                isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in snapshots)):
            raise ReportgenError(f"snapshots must be a list of epochs (1 or more), not {snapshots!r}")
        if name is not None and not name.strip():
            raise ReportgenError("name must not be empty")
        if isinstance(dataset, str):
            check_spec(dataset)
        self.dataset, self.out, self.name = dataset, Path(out), name
        self.every_n_epochs, self.quick, self.seed = every_n_epochs, quick, seed
        self.history: dict[str, list[float]] = {}  # per-epoch logs, across every fit() this callback sees
        self.epochs_seen = 0
        self._built_at: int | None = None  # epochs_seen at the last build, so train end does not build twice
        self.snapshots = None if snapshots is None else sorted(set(snapshots))
        self._scratch = tempfile.TemporaryDirectory(prefix="reportgen-snapshots-") if cache_dir is None else None
        self.cache_dir = Path(self._scratch.name if self._scratch else cache_dir).expanduser()
        self._saver: SnapshotSaver | None = None

    @property
    def snapshot_folder(self) -> Path:
        """Where this report's snapshots are kept: the cache's snapshots/<name>/."""
        return self.cache_dir / SNAPSHOTS / slugify(self.name or self.model.name)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._saver is None and self.snapshots != []:  # the first fit; a later one adds to its snapshots
            self._saver = SnapshotSaver(self.snapshot_folder, self.snapshots)
            self._saver.set_model(self.model)
            self._saver.params = self.params
            self._saver.on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs_seen += 1
        if self._saver is not None:
            self._saver.on_epoch_end(self.epochs_seen - 1, logs)
        for key, value in (logs or {}).items():
            number = _as_float(value)
            if number is not None:
                self.history.setdefault(key, []).append(number)
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self.build_report()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._built_at != self.epochs_seen:
            self.build_report()

    def build_report(self) -> dict[str, Any]:
        """Rebuild the pages of the model as it is now, with its history so far; returns its report."""
        report = build_report(self.model, self.dataset, self.out, name=self.name or self.model.name,
                              quick=self.quick, seed=self.seed, history=self.history,
                              checkpoints=self.snapshot_folder if self._saver and self._saver.saved else None,
                              description=f"Built by reportgen.ReportCallback after {self.epochs_seen} epochs of "
                                          "model.fit.")
        self._built_at = self.epochs_seen
        return report


def _as_float(value: Any) -> float | None:
    """A log value as a plain float (NaN kept, so every curve stays one value per epoch); None for text or arrays."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
