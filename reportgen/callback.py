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

import keras

from .config import BuildOptions, ModelSpec
from .training import history_path


class ReportCallback(keras.callbacks.Callback):
    """Writes the report of the model being trained into `out` (a site folder)."""

    def __init__(self, dataset: str, out: str | Path = "site", name: str | None = None,
                 every_n_epochs: int | None = None, quick: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.dataset, self.out, self.name = dataset, Path(out), name
        self.every_n_epochs, self.quick, self.seed = every_n_epochs, quick, seed
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self.build_report()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.build_report()

    def build_report(self) -> None:
        """Save the model as it is now and rebuild its pages."""
        from .site import build_site

        with tempfile.TemporaryDirectory(prefix="reportgen-callback-") as folder:
            path = Path(folder) / "model.keras"
            self.model.save(path)
            history_path(path).write_text(json.dumps(self.history), encoding="utf-8")
            spec = ModelSpec(name=self.name or self.model.name, dataset=self.dataset, model_file=str(path))
            options = BuildOptions(out=self.out, cache_dir=Path(folder) / "cache", seed=self.seed, quick=self.quick)
            build_site([spec], options)
