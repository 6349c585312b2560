"""Deconvnet and guided-backprop projections of single units back to pixels.

Both are the input gradient of one unit through a clone of the model whose
ReLUs have a replaced gradient (Zeiler & Fergus 2014; Springenberg et al. 2015):

* deconvnet: relu(dy) at every ReLU, whatever the forward input was;
* guided backprop: dy * [dy > 0] * [x > 0].

Max pooling needs no change: its gradient already routes to the argmax (the
"switches"), and a convolution's input gradient is the transposed filter. The
user's model is never touched: the swap happens on a clone with copied weights.

This module also holds the model surgery other visualizations share: the
ReLU/softmax swap on a clone (`clone_with_activations`, `logit_model`) and the
chain of layers from the input to a layer (`layer_chain`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

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


RULES: dict[str, Activation] = {"deconvnet": deconvnet_relu, "guided": guided_relu}
RULE_NAMES = {"deconvnet": "deconvnet", "guided": "guided backprop"}


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


class Projector:
    """Projects units of chosen layers back to the input through a ReLU-swapped clone.

    One clone serves every layer; each layer gets its own compiled extractor,
    traced once for any batch size.
    """

    def __init__(self, model: keras.Model, layer_names: list[str], rule: str = "deconvnet") -> None:
        if rule not in RULES:
            raise ValueError(f"unknown projection rule {rule!r} (known: {', '.join(RULES)})")
        self.rule = rule
        clone = clone_with_activations(model, relu=RULES[rule])
        self._input_spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._functions = {name: self._compile(keras.Model(clone.input, clone.get_layer(name).output))
                           for name in layer_names}

    def _compile(self, extractor: keras.Model) -> Callable[..., tf.Tensor]:
        index = tf.TensorSpec((None,), tf.int32)

        @tf.function(input_signature=[self._input_spec, index, index, index])
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

    def project(
        self,
        layer_name: str,
        images: np.ndarray,
        channels: np.ndarray,
        positions: np.ndarray | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Projection of one unit per image: channel `channels[i]` at `positions[i]`
        (y, x) of image i, or that channel's whole map when `positions` is None.

        Returns (N, H, W, C) input-space arrays, one row per image.
        """
        n = len(images)
        channels = np.asarray(channels, np.int32).reshape(n)
        pos = np.full((n, 2), -1, np.int32) if positions is None else np.asarray(positions, np.int32).reshape(n, 2)
        project = self._functions[layer_name]
        out = np.zeros((n, *images.shape[1:]), np.float32)
        for start in range(0, n, batch_size):
            s = slice(start, start + batch_size)
            out[s] = project(tf.constant(images[s], tf.float32), tf.constant(channels[s]),
                             tf.constant(pos[s, 0]), tf.constant(pos[s, 1])).numpy()
        return out


def projection_to_image(projections: np.ndarray) -> np.ndarray:
    """Projections (N, H, W, C) as pictures in [0, 1]: grey is zero, each one
    scaled on its own by its largest magnitude so the sign stays readable."""
    p = np.asarray(projections, np.float32)
    scale = np.abs(p).max(axis=(1, 2, 3), keepdims=True)
    return 0.5 + 0.5 * p / np.where(scale > 0, scale, 1.0)
