"""Deconvnet and guided-backprop projections of single units back to pixels.

Both are the input gradient of one unit through a clone of the model whose
ReLUs have a replaced gradient (Zeiler & Fergus 2014; Springenberg et al. 2015):

* deconvnet: relu(dy) at every ReLU, whatever the forward input was;
* guided backprop: dy * [dy > 0] * [x > 0].

Max pooling needs no change: its gradient already routes to the argmax (the
"switches"), and a convolution's input gradient is the transposed filter. The
user's model is never touched: the swap happens on a clone with copied weights.

The swap itself is model surgery (`model.surgery.relu_gradient`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from reportgen.methods.budget import batch_rows  # the device's batch budget, one module for all methods
from reportgen.model import Network
from reportgen.model.surgery import RELU_RULES


class Projector:
    """Projects units of chosen conv layers back to the input through a ReLU-swapped copy of the model.

    One copy serves every layer; each layer gets its own compiled function,
    traced once for any batch size. A conv layer's units are read where
    `Network.read_point` reads them (after its BatchNormalization and activation).
    Where a unit is computed from its receptive-field crop alone (valid
    padding throughout), single-unit projections run on the crops: the same
    numbers at a fraction of the cost.
    """

    def __init__(self, model: keras.Model | Network, layer_names: list[str], rule: str = "deconvnet",
                 input_size: tuple[int, int] | None = None) -> None:
        """`input_size`: the images' (height, width), which a model that takes any size needs for its receptive
        fields (default: the model's input size)."""
        if rule not in RELU_RULES:
            raise ValueError(f"unknown projection rule {rule!r} (known: {', '.join(RELU_RULES)})")
        network = Network.of(model)
        self.rule = rule
        graph = network.relu_graph(rule)
        shape = network.image_shape
        self._network = network
        points = {name: network.read_point(name) for name in layer_names}
        self._full = {name: _compile(graph.model(point), shape) for name, point in points.items()}
        self._fields = {name: network.receptive_field(point, input_size) for name, point in points.items()}
        self._windows = {}
        window_graph = None
        for name, rf in self._fields.items():
            if rf is not None and network.crops_are_exact(points[name]):
                window_graph = window_graph or network.relu_graph(rule, any_size=True)
                crop_shape = (*rf.crop_size, shape[-1])
                window = window_graph.model(points[name])
                if tuple(window.compute_output_shape((1, *crop_shape))[1:3]) == (1, 1):
                    self._windows[name] = _compile(window, crop_shape)

    def uses_crops(self, layer_name: str) -> bool:
        """Whether single-unit projections of this layer run on receptive-field crops."""
        return layer_name in self._windows

    def project(self, layer_name: str, images: np.ndarray, channels: np.ndarray,
                positions: np.ndarray | None = None, ids: np.ndarray | None = None) -> np.ndarray:
        """Projection of one unit per row: channel `channels[i]` at `positions[i]`
        (y, x) of image `images[ids[i]]` (`images[i]` without `ids`), or that
        channel's whole map when `positions` is None.

        Returns (N, H, W, C) input-space arrays, one per row.
        """
        n = len(channels)
        if positions is None:
            positions = np.full((n, 2), -1)
        return _run(self._full[layer_name], images, _rows(ids, n), channels, positions, self._batch(images))

    def project_crops(self, layer_name: str, images: np.ndarray, channels: np.ndarray, positions: np.ndarray,
                      ids: np.ndarray | None = None) -> np.ndarray:
        """Single-unit projections (rows as in `project`) cropped to each unit's
        receptive field, zero outside the image: (N, ry, rx, C); whole images
        when the layer has no receptive field."""
        rf, n = self._fields[layer_name], len(channels)
        if layer_name in self._windows:
            crops = rf.crop(images, positions, ids=_rows(ids, n))
            return _run(self._windows[layer_name], crops, np.arange(n), channels, np.zeros((n, 2)), self._batch(crops))
        crop = None if rf is None else (lambda p, at: rf.crop(p, at, fill=0.0))
        return _run(self._full[layer_name], images, _rows(ids, n), channels, positions, self._batch(images), crop)

    def release(self, layer_name: str) -> None:
        """Drop a layer's compiled functions once its units are done: each holds a traced copy of the model
        up to the layer, and a deep model's copies, kept for every layer, would add up to gigabytes."""
        self._full.pop(layer_name, None)
        self._windows.pop(layer_name, None)

    def _batch(self, images: np.ndarray) -> int:
        """Rows per gradient call for images of this size (crops cost less than whole images)."""
        return batch_rows(images.shape[1:], self._network.activation_values(images.shape[1:3]))


def _rows(ids: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if ids is None else np.asarray(ids).reshape(n)


def _compile(extractor: keras.Model, input_shape: tuple[int, ...]) -> Callable[..., tf.Tensor]:
    """The input gradient of the kept units of `extractor`'s output, seeded with their own activation."""
    index = tf.TensorSpec((None,), tf.int32)

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32), index, index, index])
    def project(x: tf.Tensor, channels: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            a = extractor(x, training=False)
            h, w, c = tf.shape(a)[1], tf.shape(a)[2], tf.shape(a)[3]
            # A negative position keeps the whole map instead of one unit.
            rows = tf.where(ys[:, None] < 0, 1.0, tf.one_hot(ys, h))
            cols = tf.where(xs[:, None] < 0, 1.0, tf.one_hot(xs, w))
            keep = rows[:, :, None, None] * cols[:, None, :, None] * tf.one_hot(channels, c)[:, None, None, :]
            # The seed is the kept activation itself, every other one zeroed.
            objective = tf.reduce_sum(a * tf.stop_gradient(a * keep))
        return tape.gradient(objective, x)

    return project


def _run(project: Callable[..., tf.Tensor], images: np.ndarray, ids: np.ndarray, channels: np.ndarray,
         positions: np.ndarray, batch_size: int,
         post: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """`project` over batches of rows (image `images[ids[i]]`); `post(chunk, positions)`
    shrinks each chunk (a crop) before it is kept, so memory stays at one batch of full images."""
    channels = np.asarray(channels, np.int32).reshape(len(ids))
    positions = np.asarray(positions, np.int32).reshape(len(ids), 2)
    chunks = []
    for start in range(0, len(ids), batch_size):
        s = slice(start, start + batch_size)
        out = project(tf.constant(images[ids[s]], tf.float32), tf.constant(channels[s]),
                      tf.constant(positions[s, 0]), tf.constant(positions[s, 1])).numpy()
        chunks.append(out if post is None else post(out, positions[s]))
    if not chunks:
        empty = np.zeros((0, *images.shape[1:]), np.float32)
        chunks.append(empty if post is None else post(empty, positions))
    return np.concatenate(chunks)


def projection_to_image(projections: np.ndarray) -> np.ndarray:
    """Projections (N, H, W, C) as pictures in [0, 1]: grey is zero, each one
    scaled on its own by its largest magnitude so the sign stays readable."""
    p = np.asarray(projections, np.float32)
    scale = np.abs(p).max(axis=(1, 2, 3), keepdims=True)
    return 0.5 + 0.5 * p / np.where(scale > 0, scale, 1.0)
