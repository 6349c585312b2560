"""`ReportCallback`: rebuild a model's report straight from `model.fit`.

    model.fit(x, y, epochs=10, callbacks=[reportgen.ReportCallback("mnist", out="site")])

At the end of training (and every `every_n_epochs` epochs, if set) the model
is saved with its history so far and built like `reportgen build --model-file`,
atomically, so the site is never half-written while training goes on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import keras

from .config import BuildOptions, ModelSpec
from .training import history_path


class ReportCallback(keras.callbacks.Callback):
    """Writes the report of the model being trained into `out` (a site folder).

    Bad arguments (an unknown dataset, a non-positive `every_n_epochs`) fail here,
    when the callback is made, not after hours of training.
    """

    def __init__(self, dataset: str, out: str | Path = "site", name: str | None = None,
                 every_n_epochs: int | None = None, quick: bool = False, seed: int = 0) -> None:
        super().__init__()
        if every_n_epochs is not None and (not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be a positive int or None, not {every_n_epochs!r}")
        if name is not None and not name.strip():
            raise ValueError("name must not be empty")
        from .cli import check_inputs

        check_inputs([ModelSpec(name=name or "model", dataset=dataset)])  # one-line ReportgenError on a typo
        self.dataset, self.out, self.name = dataset, Path(out), name
        self.every_n_epochs, self.quick, self.seed = every_n_epochs, quick, seed
        self.history: dict[str, list[float]] = {}  # per-epoch logs, across every fit() this callback sees
        self.epochs_seen = 0
        self._built_at: int | None = None  # epochs_seen at the last build, so train end does not build twice

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs_seen += 1
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
        """Save the model as it is now, with its history, and rebuild its pages; returns its report."""
        from .site import build_site

        name = self.name or self.model.name
        with tempfile.TemporaryDirectory(prefix="reportgen-callback-") as folder:
            spec = ModelSpec(name=name, dataset=self.dataset,
                             description=f"Built by reportgen.ReportCallback after {self.epochs_seen} epochs of "
                                         "model.fit.")
            path = Path(folder) / f"{spec.slug}.keras"
            self.model.save(path)
            history_path(path).write_text(json.dumps(self.history), encoding="utf-8")
            spec.model_file = str(path)
            options = BuildOptions(out=self.out, cache_dir=Path(folder) / "cache", seed=self.seed, quick=self.quick)
            (report,) = build_site([spec], options)
        self._built_at = self.epochs_seen
        return report


def _as_float(value: Any) -> float | None:
    """A log value as a plain float (NaN kept, so every curve stays one value per epoch); None for text or arrays."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
