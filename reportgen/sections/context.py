"""What every section builder gets: the trained model, its data, the test set's
predictions and channel statistics (one pass, shared) and a place to write pictures."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import keras
import matplotlib
import numpy as np

from reportgen.inputs.config import ModelSpec
from reportgen.inputs.data import Dataset
from reportgen.methods.budget import Budget, Plan, plan
from reportgen.model import ChannelStats, Network, TestPass
from reportgen.util.imaging import PngWriter
from reportgen.util.slugs import slugify

matplotlib.use("Agg")


@dataclass
class ModelContext:
    """Everything a section needs about one model. Sections read the model through `network` (its flat
    graph, units, input range and surgery), never change it, and write files only through `save_*`."""

    spec: ModelSpec
    network: Network
    data: Dataset  # x_test / x_train in [0, 1], already fitted to the model's input shape
    out_dir: Path  # the model's site folder being built (a temporary folder)
    history: dict[str, list[float]] = field(default_factory=dict)
    seed: int = 0
    quick: bool = False
    cache_dir: Path | None = None  # where what depends only on the data (the class images' judge) is kept; None: not
    writer: PngWriter = field(default_factory=PngWriter)  # the build's is a background one (see PngWriter)
    snapshots: dict[int, Path] = field(default_factory=dict)  # epoch -> weights file kept in training (timeline)

    @property
    def model(self) -> keras.Model:
        return self.network.model

    @cached_property
    def test_pass(self) -> TestPass:
        """The test set through the model once: its probabilities, and every conv layer's channel statistics
        read at its units' point (keyed by that point's path)."""
        paths = [unit.point.path for unit in self.network.units]
        return self.network.test_pass(self.data.x_test, paths, progress_label="test-set predictions")

    @property
    def probabilities(self) -> np.ndarray:
        """(N_test, num_classes) the model's probabilities for the test set."""
        return self.test_pass.probabilities

    @cached_property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @cached_property
    def conv_stats(self) -> dict[str, ChannelStats]:
        """Every conv layer's per-image channel statistics over the test set (ChannelStats), keyed by the
        conv's path."""
        return {unit.path: self.test_pass.stats[unit.point.path] for unit in self.network.units}

    @cached_property
    def plan(self) -> Plan:
        """The conv layers and units with full galleries, within the model's budget."""
        budget = Budget(**{"per_layer": self.spec.max_units, **self.spec.budget})
        return plan(self.network.units, budget, self.conv_stats if budget.choose == "activation" else None)

    @cached_property
    def representatives(self) -> dict[int, int]:
        """Class id -> its representative test image (see representative_per_class)."""
        return representative_per_class(self.data.y_test, self.probabilities)

    @cached_property
    def sample_indices(self) -> list[int]:
        """Test-set indices of the sample images: one per class by default."""
        if isinstance(self.spec.samples, list):
            n = len(self.data.x_test)
            bad = [i for i in self.spec.samples if not 0 <= i < n]
            if bad:
                from reportgen.util.errors import ReportgenError

                raise ReportgenError(f"sample index {bad[0]} is outside the test set (0..{n - 1})")
            return list(self.spec.samples)
        return list(self.representatives.values())

    @property
    def samples(self) -> np.ndarray:
        return self.data.x_test[self.sample_indices]

    def class_name(self, label: int) -> str:
        return self.data.class_names[int(label)]

    def save_png(self, name: str, image: np.ndarray, folder: tuple[str, ...] = ()) -> str:
        """Save a float [0, 1] image under img/ (and `folder`, each part slugified) and return its path
        relative to the page."""
        rel = "/".join(["img", *map(slugify, folder), f"{slugify(name)}.png"])
        self.writer.save(self.out_dir / rel, image)
        return rel

    def save_figure(self, name: str, fig: matplotlib.figure.Figure, dpi: int = 110) -> str:
        """Save a matplotlib figure under img/, close it, and return its relative path."""
        import matplotlib.pyplot as plt

        rel = f"img/{slugify(name)}.png"
        (self.out_dir / "img").mkdir(parents=True, exist_ok=True)
        fig.savefig(self.out_dir / rel, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        return rel


def representative_per_class(labels: np.ndarray, probabilities: np.ndarray) -> dict[int, int]:
    """Class id -> the test image of that class the model gives the highest
    probability: the clearest example of what the class looks like to the model."""
    chosen = {}
    for c in range(probabilities.shape[1]):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen[c] = int(members[np.argmax(probabilities[members, c])])
    return chosen
