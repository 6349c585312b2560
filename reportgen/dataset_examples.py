"""Dataset examples (OpenAI Microscope style): the test images that excite each
filter most, cropped to the receptive field of the maximal position.

One streamed pass over the test set per model computes every conv layer at
once; only a per-filter spatial max and its position leave the graph, and a
running top-k keeps memory bounded by k, not by the size of the test set.

The receptive-field geometry lives here too: which input pixels a unit sees,
computed from the layer configs along the chain from the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import progress

# Layers that leave the pixel geometry alone at inference time.
POINTWISE_TYPES = (
    keras.layers.InputLayer, keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
    keras.layers.PReLU, keras.layers.ELU, keras.layers.BatchNormalization,
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.Rescaling, keras.layers.Normalization, keras.layers.Identity,
    keras.layers.RandomFlip, keras.layers.RandomZoom, keras.layers.RandomRotation, keras.layers.RandomTranslation,
    keras.layers.RandomContrast, keras.layers.RandomBrightness,
)
WINDOW_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
ACTIVATION_BUDGET = 1 << 25  # activation values per batch of the dataset pass


def layer_chain(model: keras.Model, layer_name: str) -> list[keras.layers.Layer] | None:
    """The layers from the input (excluded) to `layer_name` (included), when the
    path is a simple chain of single-input layers; None for branching graphs."""
    chain: list[keras.layers.Layer] = []
    layer = model.get_layer(layer_name)
    while not isinstance(layer, keras.layers.InputLayer):
        if isinstance(layer, keras.Model):
            return None
        try:
            tensor = layer.input
        except (AttributeError, ValueError):
            return None
        if isinstance(tensor, (list, tuple, dict)):
            return None
        chain.append(layer)
        layer = tensor._keras_history.operation
    return chain[::-1]


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a unit of a layer can see, per axis (rows, cols).

    The unit at output index o covers input pixels
    [start + o * jump, start + o * jump + size) on that axis; parts of the box
    may lie outside the image (padding).
    """

    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1), half-open, unclipped."""
        y0 = self.start[0] + y * self.jump[0]
        x0 = self.start[1] + x * self.jump[1]
        return y0, y0 + self.size[0], x0, x0 + self.size[1]

    def _spans(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input rows (N, size_y) and cols (N, size_x) under each of (N, 2) unit positions."""
        positions = np.asarray(positions).reshape(-1, 2)
        rows = (self.start[0] + positions[:, 0] * self.jump[0])[:, None] + np.arange(self.size[0])
        cols = (self.start[1] + positions[:, 1] * self.jump[1])[:, None] + np.arange(self.size[1])
        return rows, cols

    def masks(self, positions: np.ndarray) -> np.ndarray:
        """(N, H, W) boolean: True on the input pixels each unit can see."""
        rows, cols = self._spans(positions)
        in_rows = (np.arange(self.input_size[0]) >= rows[:, :1]) & (np.arange(self.input_size[0]) <= rows[:, -1:])
        in_cols = (np.arange(self.input_size[1]) >= cols[:, :1]) & (np.arange(self.input_size[1]) <= cols[:, -1:])
        return in_rows[:, :, None] & in_cols[:, None, :]

    def mask(self, y: int, x: int) -> np.ndarray:
        """(H, W) boolean: True on the input pixels the unit at (y, x) can see."""
        return self.masks(np.array([[y, x]]))[0]

    def crop(self, images: np.ndarray, positions: np.ndarray, fill: float = 0.5,
             ids: np.ndarray | None = None) -> np.ndarray:
        """Crops around (N, 2) unit positions, (N, size_y, size_x, C), from
        images[ids[i]] (images[i] without `ids`); the part outside the image is `fill`.
        Only the crops are gathered, never a padded copy of the images."""
        rows, cols = self._spans(positions)
        ids = np.arange(len(rows)) if ids is None else np.asarray(ids)
        h, w = images.shape[1:3]
        out = images[ids[:, None, None], rows.clip(0, h - 1)[:, :, None], cols.clip(0, w - 1)[:, None, :]]
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        out[~inside] = fill
        return out


def crops_are_exact(model: keras.Model, layer_name: str) -> bool:
    """True when a unit's value is computed exactly from its receptive-field crop
    alone: a chain of pointwise layers and `valid` windows (no padding anywhere,
    so the crop's borders are the image's own pixels and strides stay aligned)."""
    chain = layer_chain(model, layer_name)
    return chain is not None and all(
        isinstance(layer, POINTWISE_TYPES) or (isinstance(layer, WINDOW_TYPES) and layer.padding == "valid")
        for layer in chain)


def _pair(value: int | tuple | list) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window(layer: keras.layers.Layer) -> tuple[tuple[int, int], tuple[int, int], str]:
    """Effective kernel size (dilation included), strides and padding of a conv or pool."""
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        kernel = _pair(layer.pool_size)
        strides = _pair(layer.strides or layer.pool_size)
        dilation = (1, 1)
    else:
        kernel, strides, dilation = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    return effective, strides, layer.padding  # type: ignore[return-value]


def receptive_field(model: keras.Model, layer_name: str,
                    input_size: tuple[int, int] | None = None) -> ReceptiveField | None:
    """The receptive field of `layer_name`'s units, from the layer configs
    (kernels, strides, dilation, padding, pools, zero-padding, cropping).

    None when the path from the input is not a chain of known layers (a branch,
    a Flatten, a resize), since then no box can be stated exactly.
    """
    chain = layer_chain(model, layer_name)
    if chain is None:
        return None
    if input_size is None:
        input_size = tuple(model.input_shape[1:3])  # type: ignore[assignment]
    if input_size is None or None in input_size:
        return None
    jump, start, size, n = [1, 1], [0, 0], [1, 1], list(input_size)
    for layer in chain:
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return None
        if isinstance(layer, POINTWISE_TYPES):
            continue
        if isinstance(layer, WINDOW_TYPES):
            kernel, strides, padding = _window(layer)
            for a in range(2):
                if padding == "same":
                    out = -(-n[a] // strides[a])
                    left = max((out - 1) * strides[a] + kernel[a] - n[a], 0) // 2
                else:
                    out = (n[a] - kernel[a]) // strides[a] + 1
                    left = 0
                start[a] -= left * jump[a]
                size[a] += (kernel[a] - 1) * jump[a]
                jump[a] *= strides[a]
                n[a] = out
        elif isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
            amounts = layer.padding if isinstance(layer, keras.layers.ZeroPadding2D) else layer.cropping
            sign = 1 if isinstance(layer, keras.layers.ZeroPadding2D) else -1
            for a in range(2):
                before, after = _pair(amounts[a])
                start[a] -= sign * before * jump[a]
                n[a] += sign * (before + after)
        else:
            return None
    return ReceptiveField(tuple(jump), tuple(start), tuple(size), tuple(input_size), tuple(n))  # type: ignore[arg-type]


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


def dataset_top_k(model: keras.Model, layer_names: list[str], x: np.ndarray, k: int = 9,
                  batch_size: int | None = None,
                  progress_label: str = "strongest test images") -> dict[str, LayerExamples]:
    """Top-k images per filter for every named 4-D layer, in one streamed pass over `x`.

    The default batch holds about 32M activation values of the named layers
    (~1000 MNIST images, ~27 colour 150x150 ones), so memory does not grow with `x`.
    """
    if batch_size is None:
        per_image = sum(int(np.prod(model.get_layer(name).output.shape[1:])) for name in layer_names)
        batch_size = max(1, ACTIVATION_BUDGET // per_image)
    extractor = keras.Model(model.input, [model.get_layer(name).output for name in layer_names])

    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def summarize(batch: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
        outputs = extractor(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        summary = []
        for a in outputs:
            flat = tf.reshape(a, (tf.shape(a)[0], -1, tf.shape(a)[3]))
            summary.append((tf.reduce_max(flat, axis=1), tf.argmax(flat, axis=1, output_type=tf.int32)))
        return summary

    widths = [model.get_layer(name).output.shape[2] for name in layer_names]
    filters = [model.get_layer(name).output.shape[3] for name in layer_names]
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
