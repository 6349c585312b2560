"""Feature visualization: the input pattern each filter or class responds to most.

    from reportgen.featvis import LOGITS, FeatVisSettings, visualize_classes, visualize_filters, visualize_model
    filters = visualize_filters(model, "conv2", settings=FeatVisSettings(), seed=0)
    filters.images, filters.activation          # (N, H, W, C) in [0, 1], (N,) mean activation reached
    everything = visualize_model(model, {"conv1": None, "conv2": None, LOGITS: None})  # one optimisation

Built Lucid-style from small parts: `objectives` (what to maximise, composable),
`params` (pixel or decorrelated FFT images), `transforms` (jitter, zoom, turn),
`regularizers` (total variation, L2, blur) and `render` (the batched loop,
optionally multi-scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby

import keras
import numpy as np
import tensorflow as tf

from .. import progress
from ..model import Network
from ..projections import batch_rows
from .objectives import LOGITS, Objective, channel, class_logit, class_margin, layer_mean, mean_logit, neuron
from .probes import PLAIN, LayerPath, Probe, layer_path, layer_probe, logit_probe
from .render import CLASS_PRESET, FeatVisSettings, Part, Renderer, RenderResult, penalties, render_units, stack

__all__ = [
    "CLASS_PRESET", "LOGITS", "FeatVisSettings", "FilterImages", "Objective", "RenderResult", "Renderer", "canvas_size",
    "channel", "class_logit", "class_margin", "layer_mean", "mean_logit", "neuron", "render_units", "unit_part",
    "visualize_classes", "visualize_filters", "visualize_model",
]


@dataclass
class FilterImages:
    """One image per unit and the proof that it works."""

    units: np.ndarray  # (N,) unit (filter or class) indices
    images: np.ndarray  # (N, H, W, C) in [0, 1]
    activation: np.ndarray  # (N,) filters: the channel mean on the unit's image; classes: the class's logit
    peak: np.ndarray | None = None  # filters: the channel's largest value at any position
    probability: np.ndarray | None = None  # classes: the real model's probability of the class


def canvas_size(probe: Probe, settings: FeatVisSettings) -> tuple[int, int]:
    """The model's input size, capped at `settings.max_size` when the probe takes any size."""
    height, width = probe.input_shape[:2]
    if probe.any_size:
        return min(height, settings.max_size), min(width, settings.max_size)
    return height, width


def visualize_model(model: keras.Model | Network, units: Mapping[str, np.ndarray | None],
                    settings: FeatVisSettings | None = None, seed: int = 0,
                    class_settings: FeatVisSettings | None = None) -> dict[str, FilterImages]:
    """Filters of several layers and the classes (key LOGITS), all in as few optimisations as canvas
    sizes, settings and `settings.chunk_size` allow; `units[name]` None means all of them. A layer is named
    by its path in the model (`Network.units`: nested layers as "base/conv"); a Keras model is read as
    `Network.of(model)`. The classes take `class_settings` when given (e.g. `settings.for_classes()`), so
    they then run in an optimisation of their own.

    One optimisation for a whole model costs one compiled loop instead of one per layer, and a
    unit's image is the same as when it is rendered alone (see render). With `starts` > 1 a unit is
    rendered from that many random starts and the image with the highest objective, penalties included,
    is kept.
    """
    settings = settings or FeatVisSettings()
    own_settings = {name: class_settings if name == LOGITS and class_settings else settings for name in units}
    network = Network.of(model)
    wanted = {name: _all_units(network, name) if chosen is None else np.asarray(chosen)
              for name, chosen in units.items()}
    logits = logit_probe(network) if LOGITS in wanted else None
    paths = {name: layer_path(network, name) for name in wanted if name != LOGITS}  # built once per layer
    whole = {name: layer_probe(network, name, path=paths[name]) if name in paths else logits for name in wanted}
    groups: dict[tuple[tuple[int, int], FeatVisSettings], list[tuple[str, int, int]]] = {}
    for name, chosen in wanted.items():
        own = own_settings[name]
        groups.setdefault((canvas_size(whole[name], own), own), []).extend(
            (name, int(unit), attempt) for attempt in range(own.starts) for unit in chosen)
    channels = network.image_shape[-1]
    chunks = []  # (canvas, settings, slots): large canvases and deep models take fewer slots per optimisation
    for (size, own), slots in groups.items():
        step = min(own.chunk_size, batch_rows((*size, channels), network.activation_values(size)))
        chunks += [(size, own, slots[start : start + step]) for start in range(0, len(slots), step)]
    rendered: dict[str, list[tuple[RenderResult, np.ndarray]]] = {name: [] for name in wanted}
    steps = sorted({own.steps for own in own_settings.values()})
    progress.log(f"    feature visualization: {sum(len(chunk) for *_, chunk in chunks):,} images of "
                 f"{len(wanted)} layers and classes in {len(chunks)} optimisation(s) of "
                 f"{' or '.join(map(str, steps))} steps")
    with progress.bar(len(chunks), "feature visualization", unit="chunk") as bar:
        for size, own, chunk in chunks:
            runs = [(name, list(run)) for name, run in groupby(chunk, key=lambda slot: slot[0])]
            parts = [unit_part(network, name, len(run), own, paths.get(name), logits) for name, run in runs]
            probe, objective = stack(parts)
            result = render_units(probe, objective, size, own, [part.slots for part in parts],
                                  np.array([unit for _, unit, _ in chunk]), seed,
                                  np.array([attempt for *_, attempt in chunk]))
            totals = result.values - penalties(own, result.images) if own.starts > 1 else result.values
            offsets = np.cumsum([0] + [len(run) for _, run in runs])
            for (name, _), a, b in zip(runs, offsets[:-1], offsets[1:]):
                rendered[name].append((RenderResult(result.images[a:b], result.values[a:b]), totals[a:b]))
            bar.update()
    return {name: _proof(network, whole[name], name, wanted[name], _best_starts(rendered[name], len(wanted[name])))
            for name in wanted}


def _best_starts(results: list[tuple[RenderResult, np.ndarray]], count: int) -> RenderResult:
    """One result per unit, in unit order: of a unit's starts (rendered attempt by attempt, each covering
    all `count` units), the one with the highest objective minus penalties."""
    images = np.concatenate([result.images for result, _ in results])
    values = np.concatenate([result.values for result, _ in results])
    totals = np.concatenate([total for _, total in results]).reshape(-1, count)
    pick = totals.argmax(axis=0) * count + np.arange(count)
    return RenderResult(images[pick], values[pick])


def _all_units(network: Network, name: str) -> np.ndarray:
    if name == LOGITS:
        return np.arange(network.num_classes)  # a single sigmoid unit still has two classes
    return np.arange(_width(network, name))


def _width(network: Network, name: str) -> int:
    """Units of a conv layer (read at its activated output) or a dense layer."""
    unit = next((u for u in network.units if u.path == name), None)
    return unit.channels if unit is not None else int(network.graph[name].shape[-1])


def unit_part(model: keras.Model | Network, name: str, size: int, settings: FeatVisSettings,
              path: LayerPath | None = None, logits: Probe | None = None) -> Part:
    """`size` slots of a layer's filters (a probe keeping only each slot's own channel) or of the
    classes (`name` LOGITS), as the engine optimises them; `path` and `logits` reuse what is built."""
    slots = tf.Variable(tf.zeros([size], tf.int32))
    if name == LOGITS:
        objective = class_margin(slots) if settings.objective == "margin" else class_logit(slots)
        return Part(logits or logit_probe(model), objective, slots)
    return Part(layer_probe(model, name, settings.leak, channels=slots, path=path), channel(name, 0), slots)


def _proof(network: Network, probe: Probe, name: str, units: np.ndarray, result: RenderResult) -> FilterImages:
    """The images with their numbers: each filter's peak activation, or each class's logit and probability."""
    images = result.images
    if name == LOGITS:
        logits = probe.fn(tf.constant(images), tf.constant(PLAIN))[LOGITS].numpy()
        own = logits[:, 0] * (2 * units - 1) if logits.shape[-1] == 1 else logits[np.arange(len(units)), units]
        probabilities = network.probabilities(images)[np.arange(len(units)), units]
        return FilterImages(units, images, own, probability=probabilities)
    return FilterImages(units, images, result.values, spatial_max(probe, name, images, units))


def visualize_filters(model: keras.Model | Network, layer_name: str, units: np.ndarray | None = None,
                      settings: FeatVisSettings | None = None, seed: int = 0) -> FilterImages:
    """Every filter of a conv layer (or the given ones), optimised together."""
    return visualize_model(model, {layer_name: units}, settings, seed)[layer_name]


def visualize_classes(model: keras.Model | Network, classes: np.ndarray | None = None,
                      settings: FeatVisSettings | None = None, seed: int = 0) -> FilterImages:
    """One image per class maximising its logit (or its margin: `settings.objective`), with the real model's
    probability for it. `FeatVisSettings().for_classes()` gives the settings the report uses."""
    return visualize_model(model, {LOGITS: classes}, settings, seed)[LOGITS]


def spatial_max(probe: Probe, layer_name: str, images: np.ndarray, units: np.ndarray, batch: int = 64) -> np.ndarray:
    """Each unit's largest activation, over all positions, on its own image (`probe` gives every channel)."""
    values = []
    for start in range(0, len(images), batch):
        maps = probe.fn(tf.constant(images[start : start + batch]), tf.constant(PLAIN))[layer_name]
        values.append(tf.reduce_max(maps, axis=[1, 2]).numpy()[np.arange(len(maps)), units[start : start + batch]])
    return np.concatenate(values)
