"""Dataset examples (OpenAI Microscope style): the test images that excite each
filter most, cropped to the receptive field of the maximal position.

They come from the channel statistics of the one pass over the test set that
every section shares (`Network.test_pass`): each image's spatial max of every
channel and where it lies, so finding them costs no pass of its own.

A conv layer's units are read where `Network.units` reads them (after its
BatchNormalization and activation); the crops come from `model.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from reportgen.model import ChannelStats, Network


@dataclass
class LayerExamples:
    """A layer's top-k test images per filter, and activation statistics over the whole set."""

    layer: str
    values: np.ndarray  # (filters, k) spatial-max activation, largest first
    indices: np.ndarray  # (filters, k) test-set indices
    positions: np.ndarray  # (filters, k, 2) (y, x) of the spatial max
    dataset_max: np.ndarray  # (filters,) largest activation anywhere in the test set
    mean_max: np.ndarray  # (filters,) spatial max averaged over the test set
    fire_rate: np.ndarray  # (filters,) fraction of test images where the filter is ever positive

    @property
    def dead(self) -> np.ndarray:
        """Filters never positive on any test image."""
        return self.dataset_max <= 0


def top_k(layer: str, stats: ChannelStats, k: int = 9) -> LayerExamples:
    """A layer's k test images per filter with the largest spatial max, from its channel statistics over the set.

    Args:
        layer: the conv layer's path.
        stats: its channel statistics over the test set, (N, filters) each.
        k: images per filter (fewer when the set is smaller).

    Returns:
        Each filter's top images, largest first (ties: the earlier image), with their positions.
    """
    peaks = stats.max
    indices = np.argsort(-peaks, axis=0, kind="stable")[:k].T  # (filters, k)
    filters = np.arange(peaks.shape[1])[:, None]
    return LayerExamples(layer, peaks[indices, filters], indices, stats.peak_at[indices, filters].astype(np.int32),
                         peaks.max(axis=0), peaks.mean(axis=0), (peaks > 0).mean(axis=0).astype(np.float32))


def dataset_top_k(model: keras.Model | Network, layer_names: list[str], x: np.ndarray, k: int = 9,
                  batch_size: int | None = None) -> dict[str, LayerExamples]:
    """Top-k images per filter for every named conv layer, in one pass over `x` (see `top_k`)."""
    network = Network.of(model)
    points = {name: network.unit(name).point.path for name in layer_names}
    stats = network.channel_stats(list(points.values()), x, batch_size)
    return {name: top_k(name, stats[point], k) for name, point in points.items()}
