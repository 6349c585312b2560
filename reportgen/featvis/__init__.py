"""Feature visualization: the input pattern each filter or class responds to most.

    from reportgen.featvis import visualize_filters, visualize_classes, FeatVisSettings
    filters = visualize_filters(model, "conv2", settings=FeatVisSettings(), seed=0)
    filters.images, filters.activation          # (N, H, W, C) in [0, 1], (N,) mean activation reached

Built Lucid-style from small parts: `objectives` (what to maximise, composable),
`params` (pixel or decorrelated FFT images), `transforms` (jitter, zoom, turn),
`regularizers` (total variation, L2, blur) and `render` (the batched loop,
optionally multi-scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ..layers import class_probabilities
from .objectives import LOGITS, Objective, channel, class_logit, layer_mean, neuron
from .probes import PLAIN, Probe, layer_probe, logit_probe
from .render import FeatVisSettings, Renderer, RenderResult, render_units

__all__ = [
    "LOGITS", "FeatVisSettings", "FilterImages", "Objective", "RenderResult", "Renderer", "canvas_size", "channel",
    "class_logit", "layer_mean", "neuron", "render_units", "visualize_classes", "visualize_filters",
]


@dataclass
class FilterImages:
    """One image per unit and the proof that it works."""

    units: np.ndarray  # (N,) unit (filter or class) indices
    images: np.ndarray  # (N, H, W, C) in [0, 1]
    activation: np.ndarray  # (N,) the objective on the unit's image: channel mean (filters) or logit (classes)
    peak: np.ndarray | None = None  # filters: the channel's largest value at any position
    probability: np.ndarray | None = None  # classes: the real model's probability of the class


def canvas_size(probe: Probe, settings: FeatVisSettings) -> tuple[int, int]:
    """The model's input size, capped at `settings.max_size` when the probe takes any size."""
    height, width = probe.input_shape[:2]
    if probe.any_size:
        return min(height, settings.max_size), min(width, settings.max_size)
    return height, width


def visualize_filters(model: keras.Model, layer_name: str, units: np.ndarray | None = None,
                      settings: FeatVisSettings | None = None, seed: int = 0) -> FilterImages:
    """Every filter of a conv layer (or the given ones), optimised together."""
    settings = settings or FeatVisSettings()
    filters = model.get_layer(layer_name).output.shape[-1]
    units = np.arange(filters) if units is None else np.asarray(units)
    batch = min(settings.chunk_size, len(units))
    slots = tf.Variable(tf.zeros([batch], tf.int32))
    probe = layer_probe(model, layer_name, settings.leak, channels=slots)  # slot b's map is its own unit's
    result = render_units(probe, channel(layer_name, 0), canvas_size(probe, settings), settings, slots, units, seed)
    peaks = layer_probe(model, layer_name)
    return FilterImages(units, result.images, result.values, spatial_max(peaks, layer_name, result.images, units))


def spatial_max(probe: Probe, layer_name: str, images: np.ndarray, units: np.ndarray, batch: int = 64) -> np.ndarray:
    """Each unit's largest activation, over all positions, on its own image (`probe` gives every channel)."""
    values = []
    for start in range(0, len(images), batch):
        maps = probe.fn(tf.constant(images[start : start + batch]), tf.constant(PLAIN))[layer_name]
        values.append(tf.reduce_max(maps, axis=[1, 2]).numpy()[np.arange(len(maps)), units[start : start + batch]])
    return np.concatenate(values)


def visualize_classes(model: keras.Model, classes: np.ndarray | None = None,
                      settings: FeatVisSettings | None = None, seed: int = 0) -> FilterImages:
    """One image per class maximising its logit, with the real model's probability for it."""
    settings = settings or FeatVisSettings()
    outputs = model.output_shape[-1]
    classes = np.arange(max(outputs, 2)) if classes is None else np.asarray(classes)
    batch = min(settings.chunk_size, len(classes))
    slots = tf.Variable(tf.zeros([batch], tf.int32))
    probe = logit_probe(model)
    result = render_units(probe, class_logit(slots), canvas_size(probe, settings), settings, slots, classes, seed)
    probabilities = class_probabilities(model, result.images)[np.arange(len(classes)), classes]
    return FilterImages(classes, result.images, result.values, probability=probabilities)
