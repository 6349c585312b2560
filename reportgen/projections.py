"""Deconvnet and guided-backprop projections of single units back to pixels.

Both are the input gradient of one unit through a clone of the model whose
ReLUs have a replaced gradient (Zeiler & Fergus 2014; Springenberg et al. 2015):

* deconvnet: relu(dy) at every ReLU, whatever the forward input was;
* guided backprop: dy * [dy > 0] * [x > 0].

Max pooling needs no change: its gradient already routes to the argmax (the
"switches"), and a convolution's input gradient is the transposed filter. The
user's model is never touched: the swap happens on a clone with copied weights.

This module also holds the model surgery other visualizations share: the
ReLU/softmax swap on a clone (`clone_with_activations`, `logit_model`) and a
chain of layers re-applied to a new input size (`chain_model`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from .dataset_examples import crops_are_exact, layer_chain, receptive_field

Activation = Callable[[tf.Tensor], tf.Tensor]


@tf.custom_gradient
def deconvnet_relu(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """ReLU forward; backward passes relu(dy), ignoring the forward sign."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(dy)

    return tf.nn.relu(x), grad


@tf.custom_gradient
def guided_relu(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """ReLU forward; backward passes dy only where both dy and x are positive."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)

    return tf.nn.relu(x), grad


INPUT_BUDGET = 1 << 22  # input values per gradient batch: ~5000 MNIST images, ~60 colour 150x150 ones


def batch_rows(image_shape: tuple[int, ...], budget: int = INPUT_BUDGET) -> int:
    """Rows per gradient batch for images of this shape, so that memory stays bounded
    on a CPU and a GPU alike while small images still go through in one call."""
    return max(1, budget // int(np.prod(image_shape)))


RULES: dict[str, Activation] = {"deconvnet": deconvnet_relu, "guided": guided_relu}


def _is_relu(fn: object) -> bool:
    return getattr(fn, "__name__", "") == "relu"


def _is_plain_relu_layer(layer: keras.layers.Layer) -> bool:
    """A standalone ReLU with default settings, or Activation('relu')."""
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        return not cfg.get("max_value") and not cfg.get("negative_slope") and not cfg.get("threshold")
    return isinstance(layer, keras.layers.Activation) and _is_relu(layer.activation)


def _is_probability_activation(fn: object) -> bool:
    return getattr(fn, "__name__", "") in ("softmax", "sigmoid")


def clone_with_activations(model: keras.Model, relu: Activation | None = None, logits: bool = False) -> keras.Model:
    """A copy of `model` (same weights) with every ReLU replaced by `relu` and,
    when `logits`, the final softmax/sigmoid made linear.

    ReLUs are found both as a layer's `activation` (Conv2D(..., activation="relu"))
    and as standalone `ReLU` / `Activation("relu")` layers. Swapping on a clone
    keeps the user's model exactly as it was.
    """
    output_layer = model.layers[-1]

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        last = logits and layer is output_layer
        if last and (isinstance(layer, keras.layers.Softmax) or (
                isinstance(layer, keras.layers.Activation) and _is_probability_activation(layer.activation))):
            return keras.layers.Activation("linear", name=layer.name)
        if relu is not None and _is_plain_relu_layer(layer):
            return keras.layers.Activation(relu, name=layer.name)
        new = layer.__class__.from_config(layer.get_config())
        activation = getattr(layer, "activation", None)
        if last and _is_probability_activation(activation):
            new.activation = keras.activations.linear
        elif relu is not None and _is_relu(activation):
            new.activation = relu
        return new

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def logit_model(model: keras.Model) -> keras.Model:
    """The model with a linear last activation: gradients of pre-softmax scores
    do not vanish when the model is confident."""
    return clone_with_activations(model, logits=True)


def chain_model(chain: list[keras.layers.Layer], input_shape: tuple[int | None, ...], outputs: list[str],
                copy: bool = True) -> keras.Model:
    """The layers of `chain` applied in order to a new `keras.Input(input_shape)`,
    with the named layers as outputs (a single tensor for a single name).

    With free spatial dims this is a model of any input size. `copy` re-creates
    each layer with the trained weights, so the owner's layers gain no new
    nodes; without it (for our own clones, whose swapped activations do not
    serialize) the layers are shared.
    """
    inputs = keras.Input(input_shape)
    x, found = inputs, {}
    for layer in chain:
        if copy:
            fresh = layer.__class__.from_config(layer.get_config())
            x = fresh(x)
            fresh.set_weights(layer.get_weights())
        else:
            x = layer(x)
        found[layer.name] = x
    outputs_ = [found[name] for name in outputs]
    return keras.Model(inputs, outputs_[0] if len(outputs_) == 1 else outputs_)


class Projector:
    """Projects units of chosen layers back to the input through a ReLU-swapped clone.

    One clone serves every layer; each layer gets its own compiled function,
    traced once for any batch size. Where a unit is computed from its
    receptive-field crop alone (valid padding throughout), single-unit
    projections run on the crops: the same numbers at a fraction of the cost.
    """

    def __init__(self, model: keras.Model, layer_names: list[str], rule: str = "deconvnet") -> None:
        if rule not in RULES:
            raise ValueError(f"unknown projection rule {rule!r} (known: {', '.join(RULES)})")
        self.rule = rule
        clone = clone_with_activations(model, relu=RULES[rule])
        shape = tuple(model.input_shape[1:])
        self._full = {name: _compile(keras.Model(clone.input, clone.get_layer(name).output), shape)
                      for name in layer_names}
        self._fields = {name: receptive_field(model, name) for name in layer_names}
        self._windows = {}
        for name, rf in self._fields.items():
            if rf is not None and crops_are_exact(model, name):
                window = chain_model(layer_chain(clone, name), (*rf.size, shape[-1]), [name], copy=False)
                if tuple(window.output.shape[1:3]) == (1, 1):
                    self._windows[name] = _compile(window, (*rf.size, shape[-1]))

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
        return _run(self._full[layer_name], images, _rows(ids, n), channels, positions)

    def project_crops(self, layer_name: str, images: np.ndarray, channels: np.ndarray, positions: np.ndarray,
                      ids: np.ndarray | None = None) -> np.ndarray:
        """Single-unit projections (rows as in `project`) cropped to each unit's
        receptive field, zero outside the image: (N, ry, rx, C); whole images
        when the layer has no receptive field."""
        rf, n = self._fields[layer_name], len(channels)
        if layer_name in self._windows:
            crops = rf.crop(images, positions, ids=_rows(ids, n))
            return _run(self._windows[layer_name], crops, np.arange(n), channels, np.zeros((n, 2)))
        crop = None if rf is None else (lambda p, at: rf.crop(p, at, fill=0.0))
        return _run(self._full[layer_name], images, _rows(ids, n), channels, positions, crop)


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
         positions: np.ndarray, post: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """`project` over batches of rows (image `images[ids[i]]`); `post(chunk, positions)`
    shrinks each chunk (a crop) before it is kept, so memory stays at one batch of full images."""
    channels = np.asarray(channels, np.int32).reshape(len(ids))
    positions = np.asarray(positions, np.int32).reshape(len(ids), 2)
    chunks, batch_size = [], batch_rows(images.shape[1:])
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
