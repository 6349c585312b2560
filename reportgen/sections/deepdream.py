"""DeepDream on a photo at the photo's own resolution: what the conv layers
amplify when asked to see more of whatever they already see, octave by octave.

Every dream is scored against the photo: the structural similarity (SSIM,
the photo is still there) and the gain of the objective over the photo's
own (the layer's patterns were amplified). Only both together pass: a dream
that changed nothing keeps SSIM 1 and gains nothing, noise loses the photo.
"""

from __future__ import annotations

import numpy as np

from reportgen.methods import naturalness
from reportgen.methods.deepdream import DEFAULT_PHOTO, DeepDream, Dream, fit_photo, load_photo, resize, similarity
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.sections.units import LayerPictures
from reportgen.util import progress
from reportgen.util.imaging import as_rgb, resize_nearest, tile_grid

OCTAVES, SCALE = 6, 1.4  # the smallest octave is 1.4**5 = 5.4 times smaller than the photo
FIRST_STEPS = 8  # ascent steps at the smallest octave; each larger octave takes 1/SCALE as many
STEP_SIZE = 0.01  # mean absolute pixel change per step
MAP_DREAMS = 2  # single maps of the last conv layer dreamed beside the layer mix
CANDIDATES = 8  # maps the photo excites most, tried on the smallest octave to pick MAP_DREAMS of them
QUICK_SIZE, QUICK_OCTAVES, QUICK_FIRST_STEPS, QUICK_MAP_DREAMS = 128, 3, 4, 1
SSIM_GOAL = 0.4  # the photo is still there
GAIN_GOAL = 1.5  # the dream's objective over the photo's own: the layer's patterns were amplified
OCTAVE_TILE = 96  # pixels on the long side of each octave in the small strip


def build(ctx: ModelContext, pictures: dict[str, LayerPictures] | None = None) -> Section:
    """The section; with the feature-vis section's `pictures`, each map's dream strip ends with its feature vis."""
    layers = ctx.plan.layers
    section = Section(id="deepdream", title="DeepDream", template="sections/deepdream",
                      intro="Gradient ascent on the photo at its own resolution, from a small copy up to full size "
                      f"({OCTAVES} octaves, each {SCALE} times larger than the one before), on the squared "
                      "activations of whole layers or of one map. After each octave the image is enlarged and "
                      "the detail that shrinking the photo lost is added back, so the photo stays under the dream. "
                      f"A dream meets the goal when its structural similarity (SSIM) to the photo is at least "
                      f"{SSIM_GOAL} (the photo is still there) and its objective is at least {GAIN_GOAL} times the "
                      "photo's own (the layer's patterns were amplified): a dream that changed nothing fails the "
                      "second, one that buried the photo the first.")
    if not layers:
        section.notes.append("The model has no convolution layer to dream with.")
        return section
    dreamer = DeepDream(ctx.network, layers)
    long_side = min(ctx.spec.dream_size, QUICK_SIZE) if ctx.quick else ctx.spec.dream_size
    min_side = min(dreamer.tile_size) if dreamer.tiled else 1
    photo = fit_photo(load_photo(ctx.spec.dream_image), ctx.network.image_shape[-1], long_side, min_side)
    size = dreamer.dream_size(photo.shape[:2])
    if size is None:
        section.notes.append(f"The model computes on no size near the {photo.shape[0]}x{photo.shape[1]} px photo: "
                             "no dream.")
        return section
    if size != photo.shape[:2]:
        photo = _resize(photo, size)
    section.intro += (f" The photo is fitted to {photo.shape[0]}x{photo.shape[1]} px at its own aspect ratio"
                      f"{', on tiles of the model input size' if dreamer.tiled else ''}; SSIM is computed on "
                      f"{_ssim_on(photo)}.")
    target = layers[-1]
    octaves, first_steps = (QUICK_OCTAVES, QUICK_FIRST_STEPS) if ctx.quick else (OCTAVES, FIRST_STEPS)
    steps = octave_steps(first_steps, octaves, SCALE)
    energies = [e[0] for e in dreamer.channel_energy(photo[None])]
    smallest = dreamer.octave_sizes(photo.shape[:2], octaves, SCALE)[0]
    map_count = QUICK_MAP_DREAMS if ctx.quick else MAP_DREAMS
    maps = pick_maps(dreamer, _resize(photo, smallest), energies, map_count, max(1, first_steps // 2))
    progress.log(f"    deepdream: {len(maps) + 1} dreams of {photo.shape[0]}x{photo.shape[1]} px, "
                 f"{octaves} octaves of {'-'.join(map(str, steps))} steps{' on tiles' if dreamer.tiled else ''}")
    dream = dreamer.dream(photo, mix_and_maps(energies, maps), octaves=octaves, scale=SCALE, steps=steps,
                          step_size=STEP_SIZE, seed=ctx.seed)
    photo_path = ctx.save_png("deepdream-photo", photo)
    vis = pictures[target].images if pictures and target in pictures else {}
    records = []
    for row, unit in enumerate([None, *maps]):
        name = "deepdream-layers" if unit is None else f"deepdream-{target}-map-{unit}"
        record = dream_record(photo, dream, row, target, unit)
        record["octaves_path"] = ctx.save_png(f"{name}-octaves", _octave_strip(dream, row, vis.get(unit)))
        record["feature_vis_shown"] = unit in vis
        records.append(record)
        section.figures.append(_figure(ctx.save_png(name, dream.final[row]), dream, record))
    section.tables.append(_summary_table(records))
    section.data = {"photo": ctx.spec.dream_image or f"skimage.data.{DEFAULT_PHOTO}()", "photo_path": photo_path,
                    "size": list(photo.shape[:2]), "channels": photo.shape[-1], "tiled": dream.tiled,
                    "tile_size": list(dreamer.tile_size) if dream.tiled else None, "octave_sizes": dream.sizes,
                    "octave_scale": SCALE, "steps_per_octave": steps[-len(dream.sizes):], "step_size": STEP_SIZE,
                    "ssim_goal": SSIM_GOAL, "gain_goal": GAIN_GOAL, "ssim_on": _ssim_on(photo), "dreams": records}
    return section


def octave_steps(first: int, octaves: int, scale: float) -> list[int]:
    """Ascent steps per octave, smallest first: `first`, then 1/scale as many per
    larger octave (at least 1). The coarse octaves shape the dream where a step
    is cheap; the large ones, where a step costs up to scale**2 times more, refine it."""
    return [max(1, round(first / scale**k)) for k in range(octaves)]


def dream_record(photo: np.ndarray, dream: Dream, row: int, layer: str, unit: int | None) -> dict:
    """One dream's numbers: the objective around each octave, and how the final
    dream compares with the photo (SSIM, objective gain, mean absolute change)."""
    final = dream.final[row]
    ssim = similarity(photo, final)
    gain = float(dream.after[-1, row] / dream.photo_objective[row]) if dream.photo_objective[row] > 0 else None
    return {"objective": "weighted mix of all conv layers" if unit is None else f"map {unit} of {layer}",
            "layer": None if unit is None else layer, "map": unit,
            "before": dream.before[:, row], "after": dream.after[:, row],
            "rose_every_octave": bool(np.all(dream.after[:, row] > dream.before[:, row])),
            "photo_objective": float(dream.photo_objective[row]), "final_objective": float(dream.after[-1, row]),
            "objective_gain": gain, "ssim": ssim, "mean_abs_change": float(np.mean(np.abs(final - photo))),
            "meets_goal": bool(ssim >= SSIM_GOAL and gain is not None and gain >= GAIN_GOAL),
            **_slopes(photo, final)}


def _slopes(photo: np.ndarray, final: np.ndarray) -> dict:
    """A colour dream's spectral slope beside its photo's (naturalness.spectral_slope); nothing for grey ones."""
    if photo.shape[-1] != 3 or min(photo.shape[:2]) < naturalness.MIN_SIDE:
        return {}
    slopes = naturalness.spectral_slope(np.stack([photo, final]))
    return {"photo_spectral_slope": float(slopes[0]), "spectral_slope": float(slopes[1])}


def _ssim_on(photo: np.ndarray) -> str:
    return "the grey channel" if photo.shape[-1] == 1 else "each RGB channel, averaged"


def _octave_strip(dream: Dream, row: int, feature_vis: np.ndarray | None) -> np.ndarray:
    """The dream after each octave, small and all at one size; then the map's
    feature visualization when there is one, to compare the patterns."""
    h, w = dream.sizes[-1]
    shown = (max(1, round(h * OCTAVE_TILE / max(h, w))), max(1, round(w * OCTAVE_TILE / max(h, w))))
    small = [as_rgb(np.clip(resize(images[row : row + 1], shown)[0].numpy(), 0, 1)) for images in dream.images]
    if feature_vis is not None:
        small.append(_fit_inside(as_rgb(np.clip(feature_vis, 0, 1)), shown))
    return tile_grid(np.stack(small), cols=len(small), pad=4)


def _fit_inside(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image scaled to fit `size` at its own aspect ratio, centred on white."""
    h, w = image.shape[:2]
    scale = min(size[0] / h, size[1] / w)
    fitted = resize_nearest(image, max(1, round(h * scale)), max(1, round(w * scale)))
    canvas = np.ones((*size, image.shape[-1]), np.float32)
    top, left = (size[0] - fitted.shape[0]) // 2, (size[1] - fitted.shape[1]) // 2
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return canvas


def _figure(path: str, dream: Dream, record: dict) -> Figure:
    numbers = {"objective": record["objective"], "ssim": record["ssim"], "objective_gain": record["objective_gain"],
               "mean_abs_change": record["mean_abs_change"], "meets_goal": record["meets_goal"],
               "rose_every_octave": record["rose_every_octave"], "photo_objective": record["photo_objective"],
               "octaves": len(dream.sizes), "feature_vis_shown": record["feature_vis_shown"]}
    if "spectral_slope" in record:
        numbers |= {"spectral_slope": record["spectral_slope"], "photo_spectral_slope": record["photo_spectral_slope"]}
    for i, s in enumerate(dream.sizes, start=1):
        numbers[f"octave_{i}_size"] = f"{s[0]}x{s[1]}"
        numbers[f"octave_{i}_before"] = float(record["before"][i - 1])
        numbers[f"octave_{i}_after"] = float(record["after"][i - 1])
    if record["map"] is None:
        title = "All conv layers"
        what = ("the squared activations of every conv layer, deeper layers weighing more and each map weighing "
                "1 / (its energy on the photo + its layer's mean), so the maps the photo already drives hardest do "
                "not steer the dream")
    else:
        title = f"{record['layer']}, map {record['map']}"
        what = (f"the squared activation of map {record['map']} of {record['layer']} (of the {CANDIDATES} maps "
                "the photo excites most, one whose objective rose most in a short trial on the smallest octave)")
    h, w = dream.sizes[-1]
    sizes = ", ".join(f"{a}x{b}" for a, b in dream.sizes)
    goal = "meets" if record["meets_goal"] else "misses"
    return Figure(
        path, title=title,
        caption=f"The photo and its dream ({h}x{w} px) by gradient ascent on {what}; below, the dream after each of "
        f"{len(dream.sizes)} octaves ({sizes} px)" + (", then this map's feature visualization" if
                                                      record["feature_vis_shown"] else "")
        + f". SSIM to the photo {record['ssim']:.3f}, objective {_times(record['objective_gain'])} the photo's: "
        f"it {goal} the goal (SSIM at least {SSIM_GOAL} and at least {GAIN_GOAL} times the photo's objective).",
        alt=f"DeepDream of the photo for {record['objective']}", numbers=numbers)


def _times(gain: float | None) -> str:
    return "undefined against" if gain is None else f"{gain:.2f} times"


def _summary_table(records: list[dict]) -> Table:
    return Table(columns=["dream", "SSIM to the photo", "objective gain", "mean abs change", "rose every octave",
                          "meets goal"],
                 rows=[[r["objective"], r["ssim"], r["objective_gain"], r["mean_abs_change"], r["rose_every_octave"],
                        r["meets_goal"]] for r in records],
                 title="Every dream against the photo")


def pick_maps(dreamer: DeepDream, small_photo: np.ndarray, energies: list[np.ndarray], count: int,
              steps: int) -> list[int]:
    """The `count` maps of the last layer, among the CANDIDATES the photo excites most
    (`energies`: per layer, each map's energy on the photo), whose objective rises
    most in a short trial dream on the smallest octave.

    The map a photo excites most is often a brightness detector: clipping at
    white stops it from rising, and its dream is the photo, brighter. The trial
    costs a few steps on a copy 30 times smaller than the photo.
    """
    candidates = np.argsort(-energies[-1], kind="stable")[:CANDIDATES]
    if len(candidates) <= count:
        return [int(m) for m in candidates]
    weights = [np.zeros((len(candidates), len(e)), np.float32) for e in energies]
    weights[-1][np.arange(len(candidates)), candidates] = 1.0
    trial = dreamer.dream(small_photo, weights, octaves=1, steps=steps)
    gain = trial.after[0] / np.maximum(trial.before[0], 1e-12)
    return [int(candidates[i]) for i in np.argsort(-gain, kind="stable")[:count]]


def mix_and_maps(energies: list[np.ndarray], maps: list[int]) -> list[np.ndarray]:
    """Per layer, (1 + len(maps), channels) objective weights. Row 0 mixes every
    layer, deeper layers weighing more, each map by 1 / (its energy on the photo +
    the layer's mean), so that the maps the photo already drives hardest do not
    steer the whole dream; row 1+ is one map of the last layer each."""
    rows = len(maps) + 1
    depth_weights = np.arange(1, len(energies) + 1, dtype=np.float32)
    depth_weights /= depth_weights.sum()
    out = []
    for i, energy in enumerate(energies):
        w = np.zeros((rows, len(energy)), np.float32)
        w[0] = depth_weights[i] / (len(energy) * (energy + energy.mean() + 1e-12))
        if i == len(energies) - 1:
            w[np.arange(1, rows), maps] = 1.0
        out.append(w)
    return out


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.clip(resize(image[None], size)[0].numpy(), 0, 1)
