"""Model surgery on the flat graph: the same model with some layers swapped, never the user's model changed.

Every swap is a `graph.Replace` hook used while tracing: a layer whose
activation must change (a linear output for logits, a ReLU with another
gradient for deconvnet and guided backprop) is called as a copy with the same
weights and the new activation; the sanity check's re-initialised layers are
fresh copies; every other layer is shared as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from reportgen.model.graph import Replace
from reportgen.model.outputs import PROBABILITY_ACTIVATIONS, final_activation

Activation = Callable[[Any], Any]


def with_activation(layer: keras.layers.Layer, activation: Activation | str) -> keras.layers.Layer:
    """A copy of `layer` with the same weights and another activation (e.g. "linear")."""
    config = {**layer.get_config(), "name": f"{layer.name}_{getattr(activation, '__name__', activation)}"}
    config["activation"] = activation if isinstance(activation, str) else "linear"
    copy = layer.__class__.from_config(config)
    copy.build(_input_shape(layer))
    copy.set_weights(layer.get_weights())
    if not isinstance(activation, str):
        copy.activation = activation
    return copy


def _input_shape(layer: keras.layers.Layer) -> Any:
    shape = layer.input.shape if not isinstance(layer.input, list) else [t.shape for t in layer.input]
    return tuple(shape) if not isinstance(shape, list) else shape


def linear_output(output_path: str) -> Replace:
    """The model with a linear last activation: its output is the logits, whose gradients do not vanish
    when the model is confident (a softmax saturates)."""

    def replace(path: str, layer: keras.Operation) -> Activation | None:
        if path != output_path or final_activation(layer) not in PROBABILITY_ACTIVATIONS:
            return None
        if hasattr(layer, "activation") and not isinstance(layer, keras.layers.Activation):
            return with_activation(layer, "linear")
        return lambda x, *args, **kwargs: x  # an Activation or Softmax layer (or op) of its own

    return replace


def plain_swish(path: str, layer: keras.Operation) -> Activation | None:
    """Swish (SiLU) computed as x * sigmoid(x) and differentiated by TensorFlow itself (the `Replace` hook every
    Network's graphs are traced with). tf.nn.silu defines its gradient with tf.custom_gradient, which in a traced
    function registers a gradient function globally that keeps the whole traced graph alive: an EfficientNetB0
    build kept about 0.2 GB more after each feature-visualization optimisation."""
    if not _is_swish(getattr(layer, "activation", None)):
        return None
    if isinstance(layer, keras.layers.Activation):
        return lambda x, *args, **kwargs: swish(x)
    if type(layer).__module__.startswith("keras."):  # a Keras layer copies from its config; a custom one is kept
        return with_activation(layer, swish)
    return None


def swish(x: Any) -> Any:
    """x * sigmoid(x) in Keras ops, so it traces on Keras' symbolic tensors as on TensorFlow's."""
    return keras.ops.multiply(x, keras.ops.sigmoid(x))


def plain_activation(activation: Activation) -> Activation:
    """A unit's activation (a function or an Activation layer) as the Network's graphs compute it: swish as
    `swish` (see plain_swish), any other as it is."""
    return swish if _is_swish(getattr(activation, "activation", activation)) else activation


def _is_swish(fn: object) -> bool:
    return fn is keras.activations.silu or getattr(fn, "__name__", "") in ("silu", "swish")


def reinitialized(paths: list[str], seed: int = 0) -> Replace:
    """The layers at `paths` as fresh copies with their own initializers, seeded (`seed` plus the path's
    position), for the cascading randomisation of the sanity check. Each copy is made once, so every graph
    traced with this hook shares its new weights."""
    seeds = {path: seed + k for k, path in enumerate(paths)}
    made: dict[str, keras.layers.Layer] = {}

    def replace(path: str, layer: keras.Operation) -> Activation | None:
        if path not in seeds:
            return None
        if path not in made:
            config = _seeded_initializers(layer.get_config(), seeds[path])
            copy = layer.__class__.from_config({**config, "name": f"{layer.name}_random"})
            copy(keras.Input(batch_shape=layer.input.shape))  # builds it, and gives it an input like the original's
            made[path] = copy
        return made[path]

    return replace


def _seeded_initializers(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The layer config with every random initializer given a seed (distinct per initializer)."""
    out = dict(config)
    for k, key in enumerate(sorted(k for k in config if k.endswith("_initializer") and config[k] is not None)):
        initializer = keras.initializers.get(config[key])
        settings = initializer.get_config()
        if "seed" in settings:
            out[key] = initializer.__class__.from_config({**settings, "seed": seed * 16 + k})
    return out


def chain(first: Replace, then: Replace) -> Replace:
    """`then` applied to the layer `first` gives (or to the original where `first` leaves it)."""

    def replace(path: str, layer: keras.Operation) -> Activation | None:
        replaced = first(path, layer)
        return then(path, replaced or layer) or replaced

    return replace


def combine(*hooks: Replace) -> Replace:
    """The first hook's replacement that is not None."""

    def replace(path: str, layer: keras.Operation) -> Activation | None:
        return next((r for hook in hooks if (r := hook(path, layer)) is not None), None)

    return replace


@tf.custom_gradient
def deconvnet_relu(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """ReLU forward; backward passes relu(dy), ignoring the forward sign (Zeiler & Fergus)."""
    return tf.nn.relu(x), tf.nn.relu


@tf.custom_gradient
def guided_relu(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """ReLU forward; backward passes dy only where both dy and x are positive (Springenberg et al.)."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)

    return tf.nn.relu(x), grad


RELU_RULES: dict[str, Activation] = {"deconvnet": deconvnet_relu, "guided": guided_relu}


def relu_gradient(rule: str) -> Replace:
    """Every plain ReLU (a layer's `activation` or a ReLU / Activation("relu") layer) with the gradient of
    `rule` ("deconvnet" or "guided"). Max pooling needs no change: its gradient already routes to the argmax."""
    if rule not in RELU_RULES:
        raise ValueError(f"unknown projection rule {rule!r} (known: {', '.join(RELU_RULES)})")
    relu = RELU_RULES[rule]

    def replace(path: str, layer: keras.Operation) -> Activation | None:
        if is_plain_relu_layer(layer):
            return keras.layers.Activation(relu, name=f"{layer.name}_{rule}")
        if _is_relu(getattr(layer, "activation", None)) and not isinstance(layer, keras.layers.Activation):
            return with_activation(layer, relu)
        return None

    return replace


def _is_relu(fn: object) -> bool:
    return getattr(fn, "__name__", "") == "relu"


def is_plain_relu_layer(layer: keras.Operation) -> bool:
    """A standalone ReLU with default settings, or Activation('relu')."""
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return not config.get("max_value") and not config.get("negative_slope") and not config.get("threshold")
    return isinstance(layer, keras.layers.Activation) and _is_relu(layer.activation)


def per_channel_affine(layer: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization at inference as (scale, shift) per channel: y = scale * x + shift."""
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy()) for w in layer.weights}
    channels = int(layer.moving_mean.shape[0])
    gamma = weights.get("gamma", np.ones(channels, np.float32))
    beta = weights.get("beta", np.zeros(channels, np.float32))
    scale = gamma / np.sqrt(weights["moving_variance"] + layer.epsilon)
    return scale.astype(np.float32), (beta - weights["moving_mean"] * scale).astype(np.float32)


def weights_copy(model: keras.Model) -> keras.Model | None:
    """A copy of `model` (same layer names) whose own variables hold `model`'s current weights, so several
    weight sets (a model's snapshots) can be run side by side; None where Keras cannot clone the model (a
    subclassed one)."""
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    except Exception:  # clone_model raises several kinds for models it cannot rebuild from their config
        return None
    return copy
