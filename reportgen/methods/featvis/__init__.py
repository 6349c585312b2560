"""Feature visualization: the input pattern each filter or class responds to most.

    from reportgen.methods.featvis import LOGITS, FeatVisSettings, visualize_classes, visualize_filters, visualize_model
    filters = visualize_filters(model, "conv2", settings=FeatVisSettings(), seed=0)
    filters.images, filters.activation          # (N, H, W, C) in [0, 1], (N,) mean activation reached
    everything = visualize_model(model, {"conv1": None, "conv2": None, LOGITS: None})  # one optimisation

Built Lucid-style from small parts: `objectives` (what to maximise, composable),
`params` (pixel or decorrelated FFT images), `transforms` (jitter, zoom, turn),
`regularizers` (total variation, L2, blur) and `render` (the batched loop,
optionally multi-scale).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations, groupby

import keras
import numpy as np
import tensorflow as tf

from reportgen.methods.budget import batch_rows
from reportgen.methods.featvis.objectives import (
    LOGITS,
    Objective,
    centred_grams,
    channel,
    class_logit,
    class_margin,
    diversity,
    layer_mean,
    mean_logit,
    neuron,
    relative,
)
from reportgen.methods.featvis.probes import PLAIN, LayerPath, Probe, layer_path, layer_probe, logit_probe
from reportgen.methods.featvis.render import (
    CLASS_PRESET,
    FeatVisSettings,
    Part,
    Renderer,
    RenderResult,
    penalties,
    render_units,
    stack,
)
from reportgen.model import Network
from reportgen.util import progress

__all__ = [
    "ALIKE_SIMILARITY", "CLASS_PRESET", "DIVERSITY_IMAGES", "LOGITS", "SAME_PICTURE", "FeatVisSettings", "FilterImages",
    "Objective", "RenderResult", "Renderer", "UnitViews", "canvas_size", "channel", "class_logit", "class_margin",
    "diversity", "gram_similarity", "layer_mean", "least_pixel_difference", "mean_logit", "neuron", "render_units",
    "unit_part", "visualize_classes", "visualize_filters", "visualize_model", "visualize_models",
]

DIVERSITY_IMAGES = 4  # images of one unit rendered together with the diversity term (Lucid's batch of 4)
# A diverse group's images start five times as spread out as other images, so they fall less often onto the same
# optimum: two images of one of mnist-3conv conv1's 24 groups (16 steps) came out the same white blob from the
# usual start, none from this one.
DIVERSE_SPREAD = 5.0
# A diverse group came out alike when its mean Gram similarity reaches ALIKE_SIMILARITY, or when two of its images
# are the same picture: their mean absolute pixel difference (pixels in [0, 1]) is under SAME_PICTURE. (Centred
# Gram matrices are blind to how strong a pattern is, so two blank images that differ in faint noise score as
# different styles; the pixels catch them.)
ALIKE_SIMILARITY, SAME_PICTURE = 0.95, 0.05
CHANNEL, NEURON, DIVERSE = "channel", "neuron", "diversity"  # what a slot maximises (see visualize_model)
Item = tuple[str, str, int, int]  # (layer path or LOGITS, kind, unit, which of the unit's random starts)
# canvas, settings, the items optimised together, and its slots (at least theirs: a chunk may be padded)
Chunk = tuple[tuple[int, int], FeatVisSettings, list[Item], int]


@dataclass
class UnitViews:
    """More images of some of a layer's units: each one's central neuron, or a diverse group of each."""

    units: np.ndarray  # (N,) filter indices
    images: np.ndarray  # (N, H, W, C) neuron images, or (N, DIVERSITY_IMAGES, H, W, C) diverse groups
    activation: np.ndarray  # (N,) the central unit's activation, or (N, DIVERSITY_IMAGES) each image's map mean
    similarity: np.ndarray | None = None  # diverse groups: (N,) mean pairwise cosine of the images' Gram matrices
    least_difference: np.ndarray | None = None  # diverse groups: (N,) mean |pixel difference| of the closest pair

    @property
    def alike(self) -> np.ndarray:
        """Diverse groups: (N,) True where the group came out alike (ALIKE_SIMILARITY, SAME_PICTURE)."""
        return (self.similarity >= ALIKE_SIMILARITY) | (self.least_difference < SAME_PICTURE)


@dataclass
class FilterImages:
    """One image per unit and the proof that it works."""

    units: np.ndarray  # (N,) unit (filter or class) indices
    images: np.ndarray  # (N, H, W, C) in [0, 1]
    activation: np.ndarray  # (N,) filters: the channel mean on the unit's image; classes: the class's logit
    peak: np.ndarray | None = None  # filters: the channel's largest value at any position
    probability: np.ndarray | None = None  # classes: the real model's probability of the class
    neuron: UnitViews | None = None  # filters asked for in `neurons`
    diversity: UnitViews | None = None  # filters asked for in `diverse`
    # units rendered from several random starts: each one's image from its first start, with its numbers (what a
    # render from one start gives, e.g. the timeline's, which must not pick a start per snapshot)
    first_start: FilterImages | None = None


def canvas_size(network: Network, probe: Probe, settings: FeatVisSettings) -> tuple[int, int]:
    """The model's input size, capped at `settings.max_size` when the probe takes any size (or the model has
    free dimensions), never below what the model accepts (`Network.canvas`)."""
    return network.canvas(settings.max_size, any_size=probe.any_size)


def visualize_model(model: keras.Model | Network, units: Mapping[str, np.ndarray | None],
                    settings: FeatVisSettings | None = None, seed: int = 0,
                    class_settings: FeatVisSettings | None = None, neurons: Mapping[str, np.ndarray] | None = None,
                    diverse: Mapping[str, np.ndarray] | None = None) -> dict[str, FilterImages]:
    """Filters of several layers and the classes (key LOGITS), all in as few optimisations as canvas
    sizes, settings and `settings.chunk_size` allow; `units[name]` None means all of them. A layer is named
    by its path in the model (`Network.units`: nested layers as "base/conv"); a Keras model is read as
    `Network.of(model)`. The classes take `class_settings` when given (e.g. `settings.for_classes()`), so
    they then run in an optimisation of their own.

    One optimisation for a whole model costs one compiled loop instead of one per layer, and a
    unit's image is the same as when it is rendered alone (see render). With `starts` > 1 a unit is
    rendered from that many random starts and the image with the highest objective, penalties included,
    is kept.

    Args:
        model: the model, or its `Network`.
        units: layer path (or LOGITS) -> the units to render, None for all.
        settings: the optimisation; default `FeatVisSettings()`.
        seed: random starts and transforms.
        class_settings: the classes' optimisation (e.g. `settings.for_classes()`); default `settings`.
        neurons: layer path -> filters that also get the image maximising their map's central unit
            (`FilterImages.neuron`), in the same optimisations.
        diverse: layer path -> filters that also get DIVERSITY_IMAGES images rendered together with the
            diversity term (`FilterImages.diversity`), each from its own random start, in the same optimisations.

    Returns:
        Layer path (or LOGITS) -> the images and their numbers.
    """
    settings = settings or FeatVisSettings()
    own_settings = {name: class_settings if name == LOGITS and class_settings else settings for name in units}
    network = Network.of(model)
    wanted = {name: _all_units(network, name) if chosen is None else np.asarray(chosen)
              for name, chosen in units.items()}
    extra = {NEURON: {name: np.asarray(chosen) for name, chosen in (neurons or {}).items() if len(chosen)},
             DIVERSE: {name: np.asarray(chosen) for name, chosen in (diverse or {}).items() if len(chosen)}}
    logits = logit_probe(network) if LOGITS in wanted else None
    layers = {name for name in [*wanted, *extra[NEURON], *extra[DIVERSE]] if name != LOGITS}
    paths = {name: layer_path(network, name) for name in layers}  # built once per layer
    whole = {name: layer_probe(network, name, path=paths[name]) if name in paths else logits
             for name in [*wanted, *layers]}
    chunks = _optimisations(network, {CHANNEL: wanted, **extra}, whole, settings, own_settings)
    rendered = _render(network, chunks, paths, logits, seed, len(wanted))
    results = {name: _proof(network, whole[name], name, wanted[name],
                            _best_starts(rendered[(name, CHANNEL)], len(wanted[name]))) for name in wanted}
    for name in wanted:
        if own_settings[name].starts > 1:
            images, values = _joined(rendered[(name, CHANNEL)])  # attempt by attempt: the first start's come first
            count = len(wanted[name])
            results[name].first_start = _proof(network, whole[name], name, wanted[name],
                                               RenderResult(images[:count], values[:count]))
    for name in layers - set(wanted):
        results[name] = FilterImages(np.zeros(0, int), np.zeros((0, 1, 1, network.image_shape[-1])), np.zeros(0))
    for name, picked in extra[NEURON].items():
        images, values = _joined(rendered[(name, NEURON)])
        results[name].neuron = UnitViews(picked, images, values)
    for name, picked in extra[DIVERSE].items():
        images, _ = _joined(rendered[(name, DIVERSE)])
        results[name].diversity = _diverse_views(whole[name], name, picked, images)
    return results


def visualize_models(networks: Sequence[Network], units: Sequence[Mapping[str, np.ndarray]],
                     settings: FeatVisSettings | None = None, seed: int = 0,
                     class_settings: FeatVisSettings | None = None) -> list[dict[str, FilterImages]]:
    """`visualize_model` for several networks of one architecture (e.g. a model's snapshots, each its own copy),
    in the optimisations of one: their units side by side in one batch. A slot's image depends only on its own
    network, start and the shared transforms, so each network's images are the ones `visualize_model` gives it
    alone (the timeline's tests compare them); the optimisations are traced once for all networks, not once each.

    Args:
        networks: the networks.
        units: per network, layer path (or LOGITS) -> the units to render; a layer path names a layer of the same
            width in every network that has it.
        settings: the optimisation; default `FeatVisSettings()`.
        seed: random starts and transforms.
        class_settings: the classes' optimisation; default `settings`.

    Returns:
        Per network, in order: layer path (or LOGITS) -> the images and their numbers.
    """
    settings = settings or FeatVisSettings()
    wanted = [{name: np.asarray(chosen) for name, chosen in own.items() if len(chosen)} for own in units]
    own_settings = {name: class_settings if name == LOGITS and class_settings else settings
                    for own in wanted for name in own}
    logits = [logit_probe(network) if LOGITS in own else None for network, own in zip(networks, wanted)]
    paths = [{name: layer_path(network, name) for name in own if name != LOGITS}
             for network, own in zip(networks, wanted)]
    whole = [{name: layer_probe(network, name, path=path[name]) if name in path else probe for name in own}
             for network, own, path, probe in zip(networks, wanted, paths, logits)]
    groups: dict[tuple[tuple[int, int], FeatVisSettings], list[tuple[int, Item]]] = {}
    for name, own in own_settings.items():
        k = next(k for k, chosen in enumerate(wanted) if name in chosen)
        groups.setdefault((canvas_size(networks[k], whole[k][name], own), own), []).extend(
            (k, (name, CHANNEL, int(unit), attempt))
            for attempt in range(own.starts) for k, chosen in enumerate(wanted) for unit in chosen.get(name, ()))
    rendered: dict[tuple[int, str], list[tuple[RenderResult, np.ndarray]]] = {}
    for (size, own), items in groups.items():
        per_chunk = max(1, min(own.chunk_size, batch_rows((*size, networks[0].image_shape[-1]),
                                                          max(n.activation_values(size) for n in networks))))
        for start in range(0, len(items), per_chunk):
            chunk = items[start : start + per_chunk]
            runs = [(key, len(list(run))) for key, run in groupby(chunk, key=lambda item: (item[0], item[1][0]))]
            parts = [_part(networks[k], name, CHANNEL, count, own, paths[k].get(name), logits[k])
                     for (k, name), count in runs]
            probe, objective = stack(parts)
            result = render_units(probe, objective, size, own, [part.slots for part in parts],
                                  np.array([item[2] for _, item in chunk]), seed,
                                  np.array([item[3] for _, item in chunk]))
            totals = result.values - penalties(own, result.images) if own.starts > 1 else result.values
            offsets = np.cumsum([0] + [count for _, count in runs])
            for (key, _), a, b in zip(runs, offsets[:-1], offsets[1:]):
                rendered.setdefault(key, []).append((RenderResult(result.images[a:b], result.values[a:b]), totals[a:b]))
    return [{name: _proof(network, whole[k][name], name, chosen,
                          _best_starts(rendered[(k, name)], len(chosen))) for name, chosen in wanted[k].items()}
            for k, network in enumerate(networks)]


def _optimisations(network: Network, kinds: dict[str, dict[str, np.ndarray]], whole: dict[str, Probe],
                   settings: FeatVisSettings, own_settings: dict[str, FeatVisSettings]) -> list[Chunk]:
    """Every slot to render, grouped into optimisations. An item is what must share one: one unit's slot for
    one of its random starts, or a diverse group's slots (the unit's random starts 1 to DIVERSITY_IMAGES).
    Items of one canvas size and settings share one optimisation when they fit `chunk_size` items and the
    slots memory allows (`batch_rows`). Otherwise each layer and kind is cut on its own into chunks of one
    slot count (the last one padded), which all run through one traced loop (see `_render`). Neuron images
    and diverse groups run their own, shorter ones (settings.picture_steps); the classes take their own
    settings. The composition depends on the items and the budget alone, never on where a chunk runs."""
    groups: dict[tuple[tuple[int, int], FeatVisSettings], list[Item]] = {}
    for kind, chosen in kinds.items():
        for name, picked in chosen.items():
            own = own_settings[name] if kind == CHANNEL else settings.for_pictures()
            attempts = own.starts if kind == CHANNEL else 1
            groups.setdefault((canvas_size(network, whole[name], own), own), []).extend(
                (name, kind, int(unit), attempt) for attempt in range(attempts) for unit in picked)
    channels = network.image_shape[-1]
    chunks = []  # large canvases and deep models take fewer slots per optimisation
    for (size, own), items in groups.items():
        # A diverse group's slot also holds its layer's C x C Gram matrix and that matrix's gradient: for the
        # deep layers of an EfficientNetB0 at 64 px (1,152 channels) more than the activations themselves.
        gram = max((_width(network, name) ** 2 for name, kind, *_ in items if kind == DIVERSE), default=0)
        slots = max(DIVERSITY_IMAGES, batch_rows((*size, channels), network.activation_values(size) + 2 * gram))
        if len(items) <= own.chunk_size and sum(map(_slots_of, items)) <= slots:
            chunks.append((size, own, items, sum(map(_slots_of, items))))
            continue
        for _, run in groupby(items, key=lambda item: (item[0], item[1])):
            run = list(run)
            each = _slots_of(run[0])
            count = -(-len(run) // max(1, min(own.chunk_size, slots // each)))  # chunks for this layer and kind
            per_chunk = -(-len(run) // count)  # as even as they can be, so the padding stays under one item
            chunks += [(size, own, run[start : start + per_chunk], per_chunk * each)
                       for start in range(0, len(run), per_chunk)]
    return chunks


def _render(network: Network, chunks: list[Chunk], paths: dict[str, LayerPath], logits: Probe | None, seed: int,
            layer_count: int) -> dict[tuple[str, str], list[tuple[RenderResult, np.ndarray]]]:
    """Each optimisation run (here, or where `run_chunks_with` sends them); (layer path, kind) -> its results in
    item order, each with the objective minus penalties of every slot (what `_best_starts` compares)."""
    slots_in_all = sum(_slots_of(item) for *_, chunk, _ in chunks for item in chunk)
    steps = " or ".join(sorted({str(own.steps) for _, own, *_ in chunks}, key=int, reverse=True))
    progress.log(f"    feature visualization: {slots_in_all:,} images of "
                 f"{layer_count} layers and classes in {len(chunks)} optimisation(s) of {steps} steps")
    here = ChunkRenderer(network, paths, logits)
    runner = _chunk_runner or (lambda chunks, seed: ((i, here.render(chunk, seed)) for i, chunk in enumerate(chunks)))
    outputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    with progress.bar(len(chunks), "feature visualization", unit="chunk") as bar:
        for index, output in runner(chunks, seed):
            outputs[index] = output
            bar.update()
    rendered: dict[tuple[str, str], list[tuple[RenderResult, np.ndarray]]] = {}
    for index, (_, _, chunk, _) in enumerate(chunks):
        images, values, totals = outputs[index]
        runs = [(key, list(run)) for key, run in groupby(chunk, key=lambda item: (item[0], item[1]))]
        offsets = np.cumsum([0] + [sum(map(_slots_of, run)) for _, run in runs])
        for (key, _), a, b in zip(runs, offsets[:-1], offsets[1:]):
            rendered.setdefault(key, []).append((RenderResult(images[a:b], values[a:b]), totals[a:b]))
    return rendered


ChunkRunner = Callable[[list[Chunk], int], Iterator[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]]
_chunk_runner: ChunkRunner | None = None


@contextmanager
def run_chunks_with(runner: ChunkRunner) -> Iterator[None]:
    """Inside the block, feature visualization hands its chunks to `runner(chunks, seed)`, which yields
    (chunk index, `ChunkRenderer.render`'s output) in any order: e.g. workers that each hold the model in a
    `ChunkRenderer`. A chunk's composition is fixed before, so where it runs does not change its result."""
    global _chunk_runner
    before, _chunk_runner = _chunk_runner, runner
    try:
        yield
    finally:
        _chunk_runner = before


def chunk_layout(chunk: Chunk) -> tuple:
    """What chunks sharing one compiled loop have in common: canvas, settings, and each part's layer, kind and
    slot count (a chunk of one layer and kind may be padded to its layout's slots; a stacked one never is)."""
    size, own, items, width = chunk
    runs = [(key, len(list(run))) for key, run in groupby(items, key=lambda item: (item[0], item[1]))]
    return size, own, tuple((name, kind, count if len(runs) > 1 else width // _slots_of((name, kind, 0, 0)))
                            for (name, kind), count in runs)


def chunk_work(chunk: Chunk) -> int:
    """A chunk's expected work, for ordering (largest first) and ETAs: slots x steps x canvas pixels."""
    size, own, _, width = chunk
    return width * own.steps * size[0] * size[1]


class ChunkRenderer:
    """Renders chunks of one network, keeping the parts and compiled loops of the `keep` layouts used last:
    chunks of one layout share one trace, here or in a worker process that holds the model. (Each loop holds a
    traced copy of the model up to its layers: a deep model's loops, all kept, would add up to gigabytes.)"""

    def __init__(self, network: Network, paths: dict[str, LayerPath] | None = None,
                 logits: Probe | None = None, keep: int = 4) -> None:
        self.network, self._paths, self._logits, self._keep = network, dict(paths or {}), logits, keep
        self.loops: OrderedDict[tuple, _Loop] = OrderedDict()

    def render(self, chunk: Chunk, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The chunk's images, objective values and totals (values minus penalties with several starts), in
        slot order, without the padding."""
        size, own, items, _ = chunk
        key = chunk_layout(chunk)
        if key not in self.loops:
            self.loops[key] = _Loop([_part(self.network, name, kind, count, own, self._path(name),
                                           self._logit_probe() if name == LOGITS else None)
                                     for name, kind, count in key[2]])
            while len(self.loops) > self._keep:
                self.loops.popitem(last=False)
        self.loops.move_to_end(key)
        loop = self.loops[key]
        slots = [slot for item in items for slot in _slots(item)]
        result = render_units(loop.probe, loop.objective, size, own, [part.slots for part in loop.parts],
                              np.array([unit for unit, _ in slots]), seed, np.array([attempt for _, attempt in slots]),
                              loop.steady, loop.spread, loop.renderers)
        totals = result.values - penalties(own, result.images) if own.starts > 1 else result.values
        return result.images, result.values, totals

    def _path(self, name: str) -> LayerPath | None:
        if name == LOGITS:
            return None
        if name not in self._paths:
            self._paths[name] = layer_path(self.network, name)
        return self._paths[name]

    def _logit_probe(self) -> Probe:
        if self._logits is None:
            self._logits = logit_probe(self.network)
        return self._logits


class _Loop:
    """The parts of one chunk layout, stacked, and the compiled loops of its stages once the first chunk ran."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.probe, self.objective = stack(parts)
        self.steady, self.spread = (np.concatenate([np.full(int(part.slots.shape[0]), getattr(part, key))
                                                    for part in parts]) for key in ("steady", "start_spread"))
        self.renderers: list[Renderer] = []


def _best_starts(results: list[tuple[RenderResult, np.ndarray]], count: int) -> RenderResult:
    """One result per unit, in unit order: of a unit's starts (rendered attempt by attempt, each covering
    all `count` units), the one with the highest objective minus penalties."""
    images, values = _joined(results)
    totals = np.concatenate([total for _, total in results]).reshape(-1, count)
    pick = totals.argmax(axis=0) * count + np.arange(count)
    return RenderResult(images[pick], values[pick])


def _chunks(items: list[Item], count: int, slots: int) -> list[list[Item]]:
    """Items in order, cut into chunks of at most `count` items and `slots` slots (a diverse group takes
    DIVERSITY_IMAGES), never splitting a group."""
    chunks: list[list[Item]] = [[]]
    used = 0
    for item in items:
        if len(chunks[-1]) == count or used + _slots_of(item) > slots:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += _slots_of(item)
    return [chunk for chunk in chunks if chunk]


def _slots_of(item: Item) -> int:
    return DIVERSITY_IMAGES if item[1] == DIVERSE else 1


def _slots(item: Item) -> list[tuple[int, int]]:
    """(unit, random start) of each slot of an item: a diverse group's images take the unit's starts 1, 2, ..."""
    _, kind, unit, attempt = item
    return [(unit, 1 + j) for j in range(DIVERSITY_IMAGES)] if kind == DIVERSE else [(unit, attempt)]


def _joined(results: list[tuple[RenderResult, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([result.images for result, _ in results]),
            np.concatenate([result.values for result, _ in results]))


def _part(network: Network, name: str, kind: str, count: int, settings: FeatVisSettings, path: LayerPath | None,
          logits: Probe | None) -> Part:
    """`count` units of one kind as one part of a stacked optimisation (see `unit_part`)."""
    if kind == CHANNEL:
        return unit_part(network, name, count, settings, path, logits)
    if kind == NEURON:  # a per-slot probe, as for the filters: its one map's centre, on the untransformed image
        slots = tf.Variable(tf.zeros([count], tf.int32))
        return Part(layer_probe(network, name, settings.leak, channels=slots, path=path), neuron(name, 0), slots,
                    steady=True)
    # Diverse groups read every channel of the layer: the Gram matrices compare the images' whole style there.
    # (The Gram of the layer's input, which a per-slot probe has anyway, took 12% less CPU time on mnist-3conv but
    # barely separates conv2's groups: mean similarity 0.82 to 1.0, against 0.36 to 0.59.)
    slots = tf.Variable(tf.zeros([count * DIVERSITY_IMAGES], tf.int32))
    objective = relative(channel(name, slots)) - settings.diversity * diversity(name, DIVERSITY_IMAGES)
    return Part(layer_probe(network, name, settings.leak, path=path), objective, slots, start_spread=DIVERSE_SPREAD)


def _diverse_views(probe: Probe, name: str, units: np.ndarray, images: np.ndarray, groups: int = 16) -> UnitViews:
    """The groups with each image's map mean (plain activation), each group's Gram similarity and the pixel
    difference of its closest pair,
    `groups` groups at a time so the layer's maps never all sit in memory."""
    images = images.reshape(len(units), DIVERSITY_IMAGES, *images.shape[1:])
    means, similarity = [], []
    for start in range(0, len(units), groups):
        batch = images[start : start + groups]
        maps = probe.fn(tf.constant(batch.reshape(-1, *batch.shape[2:])), tf.constant(PLAIN))[name].numpy()
        maps = maps.reshape(len(batch), DIVERSITY_IMAGES, -1, maps.shape[-1])
        own = units[start : start + groups]
        means.append(maps.mean(axis=2)[np.arange(len(own)), :, own])
        similarity.append(gram_similarity(maps))
    return UnitViews(units, images, np.concatenate(means), np.concatenate(similarity), least_pixel_difference(images))


def gram_similarity(maps: np.ndarray) -> np.ndarray:
    """(G, K, positions, C) activations of G groups of K images -> (G,) mean cosine similarity of the
    Gram matrices of each map's deviation from its mean (what `diversity` penalises) over the K (K - 1) / 2
    pairs of each group: 1 for images of the same style."""
    grams = centred_grams(tf.constant(maps.reshape(-1, *maps.shape[2:]))).numpy().reshape(*maps.shape[:2], -1)
    grams = grams / np.maximum(np.linalg.norm(grams, axis=-1, keepdims=True), 1e-10)
    cosines = np.einsum("gkx,gjx->gkj", grams, grams)
    k = maps.shape[1]
    return (cosines.sum(axis=(1, 2)) - np.trace(cosines, axis1=1, axis2=2)) / (k * (k - 1))


def least_pixel_difference(groups: np.ndarray) -> np.ndarray:
    """(G, K, H, W, C) images -> (G,) the mean absolute pixel difference of each group's closest pair, pair by
    pair (all pairs at once would hold G * K * K images: 0.55 GB for cats-vs-dogs' 128 groups of 150x150 px)."""
    flat = groups.reshape(*groups.shape[:2], -1)
    return np.min([np.abs(flat[:, a] - flat[:, b]).mean(axis=-1) for a, b in combinations(range(flat.shape[1]), 2)],
                  axis=0)


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
