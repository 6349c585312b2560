"""Dataset examples (OpenAI Microscope style): the test images that excite each
filter most, cropped to the receptive field of the maximal position.

One streamed pass over the test set per model computes every conv layer at
once; only a per-filter spatial max and its position leave the graph, and a
running top-k keeps memory bounded by k, not by the size of the test set.

A conv layer's units are read where `Network.units` reads them (after its
BatchNormalization and activation); the crops come from `model.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import progress
from .model import Network

ACTIVATION_BUDGET = 1 << 25  # activation values per batch of the dataset pass


class RunningTopK:
    """The k largest values per filter seen so far, with the ids and positions
    that came with them; memory is (filters, k) however long the stream."""

    def __init__(self, k: int, filters: int) -> None:
        self.k = k
        self.values = np.empty((filters, 0), np.float32)
        self.ids = np.empty((filters, 0), np.int64)
        self.positions = np.empty((filters, 0, 2), np.int32)

    def update(self, values: np.ndarray, ids: np.ndarray, positions: np.ndarray | None = None) -> None:
        """Add a batch: values (B, filters), ids (B,), positions (B, filters, 2)."""
        b, filters = values.shape
        if positions is None:
            positions = np.zeros((b, filters, 2), np.int32)
        values = np.concatenate([self.values, values.T.astype(np.float32)], axis=1)
        ids = np.concatenate([self.ids, np.broadcast_to(np.asarray(ids, np.int64), (filters, b))], axis=1)
        positions = np.concatenate([self.positions, positions.transpose(1, 0, 2).astype(np.int32)], axis=1)
        if values.shape[1] > self.k:
            keep = np.argpartition(-values, self.k - 1, axis=1)[:, : self.k]
            values = np.take_along_axis(values, keep, axis=1)
            ids = np.take_along_axis(ids, keep, axis=1)
            positions = np.take_along_axis(positions, keep[..., None], axis=1)
        self.values, self.ids, self.positions = values, ids, positions

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, ids, positions), each filter's row sorted from the largest value."""
        order = np.argsort(-self.values, axis=1, kind="stable")
        return (np.take_along_axis(self.values, order, axis=1), np.take_along_axis(self.ids, order, axis=1),
                np.take_along_axis(self.positions, order[..., None], axis=1))


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


def dataset_top_k(model: keras.Model | Network, layer_names: list[str], x: np.ndarray, k: int = 9,
                  batch_size: int | None = None,
                  progress_label: str = "strongest test images") -> dict[str, LayerExamples]:
    """Top-k images per filter for every named conv layer, in one streamed pass over `x`.

    The default batch holds about 32M activation values of the named layers
    (~1000 MNIST images, ~27 colour 150x150 ones), so memory does not grow with `x`.
    """
    network = Network.of(model)
    points = [network.unit(name).point for name in layer_names]
    if batch_size is None:
        per_image = sum(int(np.prod(point.shape[1:])) for point in points)
        batch_size = max(1, ACTIVATION_BUDGET // per_image)
    extractor = keras.Model(network.graph.input, [point.tensor for point in points])

    @tf.function(input_signature=[tf.TensorSpec((None, *network.image_shape), tf.float32)])
    def summarize(batch: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
        outputs = extractor(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        summary = []
        for a in outputs:
            flat = tf.reshape(a, (tf.shape(a)[0], -1, tf.shape(a)[3]))
            summary.append((tf.reduce_max(flat, axis=1), tf.argmax(flat, axis=1, output_type=tf.int32)))
        return summary

    widths = [point.shape[2] for point in points]
    filters = [point.shape[3] for point in points]
    tops = [RunningTopK(k, c) for c in filters]
    maxima = [np.full(c, -np.inf, np.float32) for c in filters]
    sums = [np.zeros(c, np.float64) for c in filters]
    fires = [np.zeros(c, np.int64) for c in filters]
    with progress.bar(-(-len(x) // batch_size), progress_label, unit="batch") as batches:
        for start in range(0, len(x), batch_size):
            ids = np.arange(start, min(start + batch_size, len(x)))
            for i, (vmax, arg) in enumerate(summarize(tf.constant(x[ids], tf.float32))):
                vmax, arg = vmax.numpy(), arg.numpy()
                positions = np.stack(np.divmod(arg, widths[i]), axis=-1)
                tops[i].update(vmax, ids, positions)
                maxima[i] = np.maximum(maxima[i], vmax.max(axis=0))
                sums[i] += vmax.sum(axis=0)
                fires[i] += (vmax > 0).sum(axis=0)
            batches.update()
    result = {}
    for i, name in enumerate(layer_names):
        values, indices, positions = tops[i].result()
        result[name] = LayerExamples(name, values, indices, positions, maxima[i],
                                     (sums[i] / len(x)).astype(np.float32), (fires[i] / len(x)).astype(np.float32))
    return result
