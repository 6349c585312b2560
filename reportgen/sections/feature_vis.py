"""Feature visualization: for every filter of every conv layer and every class,
the input the model responds to most, with the proof that it does."""

from __future__ import annotations

import numpy as np

from .. import progress
from ..context import ModelContext
from ..featvis import LOGITS, FeatVisSettings, FilterImages, visualize_model
from ..imaging import as_rgb, magnified, resize_nearest, tile_grid, tile_size
from ..report import Figure, Section, Table
from ..resemblance import map_centre
from ..slugs import slugify
from .units import paged_units, save_unit_png

DEAD_TINT = np.array([0.85, 0.15, 0.15], np.float32)
SETTINGS_SHOWN = ("steps", "param", "warmup_steps", "leak", "zoom", "degrees", "scales", "total_variation", "l2")
GRID_BACKGROUND = 0.6  # grey, so all-white and all-black patterns both show their edges
# An optimised image is uniform (the filter wants the whole input bright or dark) when fewer than
# UNIFORM_SHARE of its pixels lie farther than UNIFORM_SPREAD from its median: a standard deviation under
# 0.02 missed black images with a few white specks (fashion-2conv conv1 filters 52 and 57).
UNIFORM_SPREAD, UNIFORM_SHARE = 0.25, 0.05


def build(ctx: ModelContext) -> Section | None:
    convs = ctx.plan.layers
    settings = FeatVisSettings.from_config(ctx.spec.feature_vis)
    settings = settings.quick() if ctx.quick else settings
    section = Section(
        id="feature-vis",
        title="Feature visualization",
        intro=f"For each filter, an image optimised by gradient ascent ({_recipe(settings)}) to maximise the "
        "filter's mean activation; for each class, an image maximising its "
        "pre-softmax logit. Proof: a filter's image should drive the filter at least as hard as the best test "
        "image does (mean over the map, and peak at any position); a class image should be classified as its "
        "class. Dead filters (never active on any test image) are framed in red (crossed out in the one-file grids).",
    )
    units = ctx.plan.units
    section.notes.extend(budget_notes(ctx))
    # Every filter also gets its central neuron's image (in the filters' optimisations), and each filter with a
    # page a diverse group (in shorter ones of their own).
    results = visualize_model(ctx.network, {**units, LOGITS: None}, settings, ctx.seed, neurons=units,
                              diverse=paged_units(ctx))
    if convs:
        section.data["layers"] = {}
        for name in convs:
            stats = ctx.conv_stats[name]
            _layer(ctx, section, name, results[name], stats.mean.max(axis=0), stats.max.max(axis=0))
        live = [f for layer in section.data["layers"].values() for f in layer["filters"] if not f["dead"]]
        share = float(np.mean([f["reached"] for f in live])) if live else None
        section.data["live_filters_reaching_dataset_max"] = share
    else:
        section.notes.append("The model has no conv layer: only class images are shown.")
    _classes(ctx, section, results[LOGITS])
    section.data["settings"] = {key: getattr(settings, key) for key in SETTINGS_SHOWN}
    return section


def _layer(ctx: ModelContext, section: Section, name: str, result: FilterImages,
           dataset_mean: np.ndarray, dataset_peak: np.ndarray) -> None:
    filters, units = len(dataset_mean), result.units
    dead = dataset_peak[units] <= 0
    reached = result.activation >= dataset_mean[units]
    live = ~dead
    share = float(reached[live].mean()) if live.any() else None
    ratios = result.activation[live] / dataset_mean[units][live]
    flat = result.images.reshape(len(units), -1)
    uniform = live & (np.mean(np.abs(flat - np.median(flat, axis=1, keepdims=True)) > UNIFORM_SPREAD, axis=1)
                      < UNIFORM_SHARE)
    # A filter whose best input is uniform is shown by its central neuron's image, cropped to that unit's
    # receptive field: the pattern it looks for there (a first layer's is 3x3 px of a 28-px image).
    fields = _neuron_fields(ctx, name, result.neuron.images)
    size = tile_size(*result.images.shape[1:3], target=56, largest=64)
    tiles = resize_nearest(as_rgb(result.images), *size)
    for j in np.flatnonzero(uniform):
        tiles[j] = resize_nearest(as_rgb(fields[j]), *size)
    tiles[dead] = _cross_out(tiles[dead])
    numbers = {"filters": filters, "shown": len(units), "dead": int(dead.sum()), "live_reaching_dataset_max": share,
               "median_activation_over_dataset_max": float(np.median(ratios)) if live.any() else None,
               "uniform_images": int(uniform.sum())}
    records, gallery = _unit_files(ctx, name, result, fields, dataset_mean, dataset_peak, reached, dead, uniform)
    section.figures.append(Figure(
        ctx.save_png(f"featvis-{name}", tile_grid(tiles, background=GRID_BACKGROUND)),
        title=name,
        caption=f"{name}: {len(units)} filters, row-major by index"
        + (f" ({len(units)} of {filters}, chosen by the budget)" if len(units) < filters else "")
        + f"; {int(dead.sum())} dead; {'-' if share is None else f'{share:.0%}'} of live filters reach or beat "
        "the best test image's mean activation."
        + (f" {int(uniform.sum())} respond most to a uniform image (all bright or all dark), so their tiles "
           "(dashed frame) show instead the image that maximises the map's central unit, cropped to that unit's "
           "receptive field: the pattern it looks for there." if uniform.any() else "")
        + " Each tile opens the filter's page.",
        alt=f"Optimised input pattern of every filter of layer {name}",
        numbers=numbers, tiles=gallery, tile_size=magnified(*result.images.shape[1:3]),
    ))
    section.data["layers"][name] = {**numbers, "filters": records}
    section.tables.append(Table(
        ["Filter", "Mean reached", "Best test image", "Ratio", "Peak reached", "Best test peak", "Neuron image",
         "Status"],
        [[r["index"], f"{r['activation']:.3f}", f"{r['dataset_max']:.3f}", _ratio(r["activation"], r["dataset_max"]),
          f"{r['peak']:.3f}", f"{r['dataset_peak']:.3f}", f"{r['neuron_activation']:.3f}",
          "dead" if r["dead"] else "uniform" if r["uniform"] else "alive"] for r in records],
        title=f"{name}: activation per filter", collapsed=True,
    ))
    ctx.extra.setdefault("feature_vis", {})[name] = {
        "images": result.images, "units": units.tolist(), "activation": result.activation,
        "dataset_max": dataset_mean[units], "dead": dead, "uniform": uniform,
        "neuron_images": result.neuron.images, "records": {r["index"]: r for r in records},
    }
    progress.log(f"    {name}: {len(units)} filters, {numbers['dead']} dead, "
                 f"{'-' if share is None else f'{share:.0%}'} reach the dataset max")


def _neuron_fields(ctx: ModelContext, name: str, images: np.ndarray) -> np.ndarray:
    """The neuron images cropped to their central unit's receptive field (whole when it has none)."""
    field = ctx.network.receptive_field(ctx.network.unit(name).point.path, input_size=images.shape[1:3])
    if field is None:
        return images
    return field.crop(images, np.repeat(map_centre(field), len(images), axis=0), fill=GRID_BACKGROUND)


def _unit_files(ctx: ModelContext, name: str, result: FilterImages, fields: np.ndarray, dataset_mean: np.ndarray,
                dataset_peak: np.ndarray, reached: np.ndarray, dead: np.ndarray, uniform: np.ndarray
                ) -> tuple[list[dict], list[dict]]:
    """One PNG per image of each filter (feature vis, neuron, and the diverse group of those with a page), each
    filter's record for report.json, and the gallery's tiles linking to the filters' pages."""
    paged = set(paged_units(ctx).get(name, np.zeros(0, int)).tolist())
    diverse = result.diversity
    groups = {} if diverse is None else {int(u): j for j, u in enumerate(diverse.units)}
    slug = slugify(name)
    records, gallery = [], []
    for j, u in enumerate(result.units.tolist()):
        images = {"feature_vis": save_unit_png(ctx, name, u, "feature-vis", result.images[j]),
                  "neuron": save_unit_png(ctx, name, u, "neuron", result.neuron.images[j])}
        if uniform[j]:
            images["neuron_field"] = save_unit_png(ctx, name, u, "neuron-field", fields[j])
        record = {"index": u, "activation": float(result.activation[j]), "dataset_max": float(dataset_mean[u]),
                  "peak": float(result.peak[j]), "dataset_peak": float(dataset_peak[u]), "reached": bool(reached[j]),
                  "dead": bool(dead[j]), "uniform": bool(uniform[j]),
                  "neuron_activation": float(result.neuron.activation[j]), "images": images}
        if u in groups:
            g = groups[u]
            images["diversity"] = [save_unit_png(ctx, name, u, f"diversity-{i}", image)
                                   for i, image in enumerate(diverse.images[g])]
            record["diversity"] = {"activation": diverse.activation[g].tolist(),
                                   "gram_similarity": float(diverse.similarity[g])}
        records.append(record)
        gallery.append({"unit": u, "path": images["neuron_field" if uniform[j] else "feature_vis"],
                        "href": f"{slug}/{u}.html" if u in paged else None, "dead": bool(dead[j]),
                        "uniform": bool(uniform[j])})
    return records, gallery


def _classes(ctx: ModelContext, section: Section, result: FilterImages) -> None:
    names = [ctx.class_name(c) for c in result.units]
    tiles = resize_nearest(as_rgb(result.images), *tile_size(*result.images.shape[1:3], target=56, largest=112))
    section.figures.append(Figure(
        ctx.save_png("featvis-classes", tile_grid(tiles, background=GRID_BACKGROUND)),
        title="Classes",
        caption=f"One image per class ({', '.join(names)}), optimised for its logit; the lowest probability the "
        f"model gives an image for its own class is {result.probability.min():.3f}.",
        alt="Optimised input pattern of every class",
        numbers={"classes": len(names), "min_probability": float(result.probability.min())},
    ))
    section.tables.append(Table(["Class", "Logit", "Probability"],
                                [[n, f"{v:.2f}", f"{p:.4f}"] for n, v, p in
                                 zip(names, result.activation, result.probability)],
                                title="Class images"))
    section.data["classes"] = [{"class": int(c), "name": n, "logit": float(v), "probability": float(p)}
                               for c, n, v, p in zip(result.units, names, result.activation, result.probability)]
    progress.log(f"    classes: lowest probability {result.probability.min():.3f}")


def budget_notes(ctx: ModelContext) -> list[str]:
    """What the budget left out of the galleries, for the sections that follow it."""
    plan = ctx.plan
    notes = [plan.describe()] if plan.describe() else []
    if plan.left_out_layers:
        notes.append("Conv layers without a gallery: " + ", ".join(plan.left_out_layers) + ".")
    return notes


def _recipe(settings: FeatVisSettings) -> str:
    """The optimisation in words, for the intro."""
    transforms = ["random jitter"]
    if settings.zoom > 0:
        transforms.append(f"zoom by up to {settings.zoom:.0%}")
    if settings.degrees > 0:
        transforms.append(f"rotation by up to {settings.degrees:g}°")
    words = [f"{settings.steps} steps", " and ".join(transforms) + " at every step"]
    if len(settings.scales) > 1:
        words.append("coarse to fine over scales " + ", ".join(f"{scale:g}" for scale in settings.scales))
    return "; ".join(words)


def _cross_out(tiles: np.ndarray) -> np.ndarray:
    """Tint dead filters' tiles red and draw both diagonals, so they read as dead, not grey."""
    tiles = 0.5 * tiles + 0.5 * DEAD_TINT
    n = min(tiles.shape[1], tiles.shape[2])
    idx = np.arange(n)
    tiles[:, idx, idx] = DEAD_TINT
    tiles[:, idx, n - 1 - idx] = DEAD_TINT
    return tiles


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else "-"
