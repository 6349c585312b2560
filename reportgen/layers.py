"""Model introspection shared by every visualization: which layers to show, and
their outputs for a batch of images, computed in one pass."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from .keras_progress import PredictProgress

CONV_TYPES = (keras.layers.Conv2D,)
POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
DENSE_TYPES = (keras.layers.Dense,)


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every 2-D convolution, in order (Conv2D subclasses such as SeparableConv2D's base included)."""
    return [layer for layer in model.layers if isinstance(layer, CONV_TYPES)]


def visual_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers whose outputs the activation grids show: conv, pooling and dense."""
    return [layer for layer in model.layers if isinstance(layer, CONV_TYPES + POOL_TYPES + DENSE_TYPES)]


def feature_extractor(model: keras.Model, layer_names: list[str]) -> keras.Model:
    """A model from the input to the named layers' outputs (a dict keyed by name)."""
    return keras.Model(model.input, {name: model.get_layer(name).output for name in layer_names})


def layer_outputs(
    model: keras.Model, layer_names: list[str], x: np.ndarray, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Outputs of the named layers for images `x`, in one batched pass."""
    if not layer_names:
        return {}
    out = feature_extractor(model, layer_names).predict(x, batch_size=batch_size, verbose=0)
    return {name: np.asarray(out[name]) for name in layer_names}


def class_probabilities(model: keras.Model, x: np.ndarray, batch_size: int = 512,
                        progress_label: str | None = None) -> np.ndarray:
    """(N, num_classes) probabilities; a single sigmoid unit becomes [1 - p, p]. Inputs that fit in
    one batch go through a direct call, which skips `predict`'s set-up (Keras' own advice); longer
    passes show a progress bar over their batches when given a `progress_label`."""
    if len(x) <= batch_size:
        p = np.asarray(model(x, training=False), dtype=np.float64)
    else:
        callbacks = [PredictProgress(progress_label)] if progress_label else None
        p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0, callbacks=callbacks), dtype=np.float64)
    if p.ndim != 2:
        p = p.reshape(len(p), -1)
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    return p


def output_is_probability(model: keras.Model) -> bool:
    """True when the last layer ends in softmax or sigmoid (a probability, not a logit)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") in ("softmax", "sigmoid")


@dataclass(frozen=True)
class ChannelStats:
    """Each image's spatial mean and max of every channel of one 4-D layer, (N, C) each."""

    mean: np.ndarray
    max: np.ndarray


def channel_stats(model: keras.Model, layer_names: list[str], x: np.ndarray,
                  batch_size: int = 256) -> dict[str, ChannelStats]:
    """The spatial mean and max of every channel of the named 4-D layers, both in one pass over
    `x`, without ever holding the full maps of the whole set in memory."""
    if not layer_names:
        return {}
    outputs = {name: model.get_layer(name).output for name in layer_names}
    stats = {name: [keras.ops.mean(maps, axis=(1, 2)), keras.ops.max(maps, axis=(1, 2))]
             for name, maps in outputs.items()}
    out = keras.Model(model.input, stats).predict(x, batch_size=batch_size, verbose=0)
    return {name: ChannelStats(np.asarray(out[name][0]), np.asarray(out[name][1])) for name in layer_names}
