"""DeepDream on a photo: what the conv layers amplify when asked to see more of
whatever they already see, octave by octave."""

from __future__ import annotations

import numpy as np

from .. import progress
from ..context import ModelContext
from ..deepdream import DEFAULT_PHOTO, DeepDream, Dream, fit_photo, load_photo, resize
from ..imaging import as_rgb, tile_grid
from ..report import Figure, Section
from .units import feature_vis_images

OCTAVES, STEPS = 4, 12
QUICK_OCTAVES, QUICK_STEPS = 2, 6
MAP_DREAMS, QUICK_MAP_DREAMS = 3, 1
DISPLAY_MIN, DISPLAY_MAX = 128, 224  # pixels per shown octave


def build(ctx: ModelContext) -> Section | None:
    layers = [unit.path for unit in ctx.network.units]
    section = Section(id="deepdream", title="DeepDream",
                      intro="Gradient ascent on a photo, from small to large (octaves), on the squared activations "
                      "of whole layers or of one map; after each octave the image is enlarged and the detail lost "
                      "by shrinking the photo is added back. The objective is recorded before and after each "
                      "octave's ascent.")
    if not layers:
        section.notes.append("The model has no Conv2D layer to dream with.")
        return section
    source = ctx.spec.dream_image or f"skimage.data.{DEFAULT_PHOTO}()"
    h, w, channels = ctx.network.image_shape
    photo = fit_photo(load_photo(ctx.spec.dream_image), channels, aspect=(h / w) if h and w else 1.0)
    dreamer = DeepDream(ctx.network, layers)
    target = layers[-1]
    base = dreamer.input_size if None not in dreamer.input_size else photo.shape[:2]
    energies = dreamer.channel_energy(_resize(photo, base)[None])[-1][0]
    maps = [int(m) for m in np.argsort(-energies, kind="stable")[: QUICK_MAP_DREAMS if ctx.quick else MAP_DREAMS]]
    weights = _weights(dreamer, layers, maps)
    octaves, steps = (QUICK_OCTAVES, QUICK_STEPS) if ctx.quick else (OCTAVES, STEPS)
    progress.log(f"    deepdream: {len(maps) + 1} dreams, {octaves} octaves x {steps} steps")
    dream = dreamer.dream(photo, weights, octaves=octaves, steps=steps, seed=ctx.seed)
    last = dream.sizes[-1]
    scale = np.clip(max(last), DISPLAY_MIN, DISPLAY_MAX) / max(last)
    shown = (round(last[0] * scale), round(last[1] * scale))
    vis = feature_vis_images(ctx, target) or {}
    records = []
    for row, unit in enumerate([None, *maps]):
        tiles = [photo, *(images[row] for images in dream.images)]
        if unit in vis:
            tiles.append(np.clip(vis[unit], 0, 1))
        strip = tile_grid(np.stack([as_rgb(_resize(t, shown)) for t in tiles]), cols=len(tiles), pad=4)
        name = "deepdream-layers" if unit is None else f"deepdream-{target}-map-{unit}"
        records.append(_record(dream, row, target, unit))
        section.figures.append(_figure(ctx.save_png(name, strip), dream, row, records[-1], steps, unit in vis))
    if not dream.fully_convolutional:
        section.notes.append("The model could not be rebuilt for other input sizes, so there is a single octave "
                             "at the model's input size.")
    section.data = {"photo": source, "octave_sizes": dream.sizes, "fully_convolutional": dream.fully_convolutional,
                    "steps_per_octave": steps, "dreams": records}
    return section


def _record(dream: Dream, row: int, layer: str, unit: int | None) -> dict:
    """One dream's objective and its value before and after each octave's ascent."""
    return {"objective": "weighted mix of all conv layers" if unit is None else f"map {unit} of {layer}",
            "layer": None if unit is None else layer, "map": unit,
            "before": dream.before[:, row], "after": dream.after[:, row],
            "rose_every_octave": bool(np.all(dream.after[:, row] > dream.before[:, row]))}


def _figure(path: str, dream: Dream, row: int, record: dict, steps: int, has_vis: bool) -> Figure:
    numbers = {"objective": record["objective"], "octaves": len(dream.sizes), "steps_per_octave": steps,
               "rose_every_octave": record["rose_every_octave"], "feature_vis_shown": has_vis}
    for i, s in enumerate(dream.sizes, start=1):
        numbers[f"octave_{i}_size"] = f"{s[0]}x{s[1]}"
        numbers[f"octave_{i}_before"] = float(dream.before[i - 1, row])
        numbers[f"octave_{i}_after"] = float(dream.after[i - 1, row])
    if record["map"] is None:
        title, what = "All conv layers", "the squared activations of every conv layer, deeper layers weighted more"
    else:
        title = f"{record['layer']}, map {record['map']}"
        what = (f"the squared activation of map {record['map']} of {record['layer']}, one of the maps the photo "
                "excites most")
    sizes = ", ".join(f"{a}x{b}" for a, b in dream.sizes)
    return Figure(
        path, title=title,
        caption=f"The photo, then the dream after each of {len(dream.sizes)} octaves ({sizes} px), by gradient "
        f"ascent on {what}" + ("; last, this map's feature visualization." if has_vis else "."),
        alt=f"The photo and its DeepDream per octave for {record['objective']}", numbers=numbers, wide=True)


def _weights(dreamer: DeepDream, layers: list[str], maps: list[int]) -> list[np.ndarray]:
    """Row 0 mixes every layer (weight growing with depth, split over its maps);
    row 1+ is one map of the last layer each."""
    rows = len(maps) + 1
    out = []
    depth_weights = np.arange(1, len(layers) + 1, dtype=np.float32)
    depth_weights /= depth_weights.sum()
    for i, name in enumerate(layers):
        channels = dreamer.network.unit(name).channels
        w = np.zeros((rows, channels), np.float32)
        w[0] = depth_weights[i] / channels
        if i == len(layers) - 1:
            w[np.arange(1, rows), maps] = 1.0
        out.append(w)
    return out


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.clip(resize(image[None], size)[0].numpy(), 0, 1)
