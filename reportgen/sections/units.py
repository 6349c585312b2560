"""Looking at single units: the test images that excite each conv filter most
(cropped to the unit's receptive field), their deconvnet and guided-backprop
projections, and a page per layer and per unit (Microscope style)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import progress
from ..context import ModelContext
from ..dataset_examples import LayerExamples, dataset_top_k
from ..imaging import as_rgb, resize_nearest, tile_grid, tile_size
from ..model import ConvUnit, ReceptiveField
from ..model.surgery import RELU_RULES
from ..projections import Projector, projection_to_image
from ..report import Figure, Page, Section, Table
from ..slugs import slugify

TOP_K = 9
QUICK_UNITS = 8  # per layer in a quick build
QUICK_IMAGES = 2000  # test images scanned in a quick build
OUTSIDE_FILL = 0.5  # grey where a receptive field hangs over the image border
BLANK = 1.0  # the tile background
PROOF_ROWS = 32  # per layer and rule: full-image projections checked against the receptive field


def build(ctx: ModelContext) -> Section | None:
    layers = [unit for unit in ctx.network.units if unit.path in ctx.plan.units]
    section = Section(
        id="units",
        title="Units: dataset examples and projections",
        intro=f"For every filter of every conv layer: the {TOP_K} test images on which its strongest response "
        "(spatial max) is largest, each cropped to the receptive field of that maximal position, and the "
        "projection of that single unit back to pixels (every other activation of the layer zeroed), by the "
        "deconvnet rule (Zeiler & Fergus) and by guided backprop (Springenberg et al.). Each layer and each "
        "unit has its own page.",
    )
    if not layers:
        section.notes.append("The model has no Conv2D layer, so there are no filters to show.")
        return section
    x = ctx.data.x_test[:QUICK_IMAGES] if ctx.quick else ctx.data.x_test
    names = [layer.path for layer in layers]
    with progress.step(f"top-{TOP_K} test images for {len(names)} conv layers"):
        examples = dataset_top_k(ctx.network, names, x, k=TOP_K)
    ctx.extra["dataset_examples"] = examples
    projectors = {rule: Projector(ctx.network, names, rule) for rule in RELU_RULES}
    cap = QUICK_UNITS if ctx.quick else None
    slugs = [slugify(name) for name in names]
    rows = []
    with progress.bar(len(layers), "unit crops, projections and pages", unit="layer") as bar:
        for i, layer in enumerate(layers):
            rows.append(_layer(ctx, layer, examples[layer.path], projectors, x, cap, names, slugs, i, section))
            for projector in projectors.values():
                projector.release(layer.path)
            bar.update()
    section.tables.append(Table(
        ["Layer", "Filters", "Receptive field", "Dead", "Pages", "Max |deconvnet| outside RF",
         "Max |guided| outside RF"], rows, title="Conv layers"))
    section.data["images_scanned"] = len(x)
    section.data["top_k"] = TOP_K
    return section


def _layer(ctx: ModelContext, layer: ConvUnit, ex: LayerExamples, projectors: dict[str, Projector], x: np.ndarray,
           cap: int | None, names: list[str], slugs: list[str], i: int, section: Section) -> list[Any]:
    """One layer's figures, pages and table row."""
    name, slug = layer.path, slugs[i]
    filters, k = ex.values.shape
    units = ctx.plan.units[name][:cap]
    rf = ctx.network.receptive_field(layer.point.path, input_size=x.shape[1:3])
    ids = ex.indices[units].ravel()  # row r shows test image ids[r]
    positions = ex.positions[units].reshape(-1, 2)
    channels = np.repeat(units, k)
    # An image on which the filter stays at or below zero is no example of it: drawn blank, not projected.
    live = ex.values[units].ravel() > 0
    crops = _crop(rf, x, positions, ids)
    crops[~live] = BLANK
    projected, proof = {}, {}
    for rule, projector in projectors.items():
        projected[rule], proof[rule] = _project(projector, rf, name, x, ids, channels, positions, live)
    outside = {rule: p["max_abs_outside_rf"] for rule, p in proof.items()}
    dead = ex.dead
    rf_text = f"{rf.size[0]}x{rf.size[1]} px" if rf else "whole image"
    numbers = {"layer": name, "filters": filters, "units_shown": len(units), "dead_filters": int(dead.sum()),
               "receptive_field": rf_text, "top1_activation_mean": float(ex.values[:, 0].mean()),
               "projections_checked": proof["deconvnet"]["checked"],
               "max_abs_deconvnet_outside_rf": outside["deconvnet"], "max_abs_guided_outside_rf": outside["guided"]}
    small = tile_size(*crops.shape[1:3], target=24, largest=24)
    overview = {"examples": crops, "deconvnet": projected["deconvnet"]}
    paths = {}
    for kind, tiles in overview.items():
        blocks = [tile_grid(resize_nearest(t, *small), cols=3, pad=1) for t in _by_unit(tiles, k)]
        paths[kind] = ctx.save_png(f"units-{slug}-{kind}", tile_grid(np.stack(blocks), pad=4))
    section.figures.append(Figure(
        paths["examples"], title=f"{name}: top-{k} test images per filter",
        caption=f"Layer {name}: for each of {len(units)} of {filters} filters (row-major, in the order of the "
        f"layer page), its {k} "
        f"strongest test images cropped to the {rf_text} receptive field of the maximal unit; "
        f"{int(dead.sum())} filters never fire on the test set.",
        alt=f"Grid of {len(units)} blocks of {k} image crops, one block per filter of {name}",
        numbers=numbers))
    section.figures.append(Figure(
        paths["deconvnet"], title=f"{name}: deconvnet projections",
        caption=f"Layer {name}: the deconvnet projection of the maximal unit for the same crops, in the same "
        "order (grey is zero). Outside the receptive field every projection is exactly zero.",
        alt=f"Grid of {len(units)} blocks of {k} deconvnet projections, one block per filter of {name}",
        numbers={"layer": name, "max_abs_outside_rf": outside["deconvnet"]}))
    _pages(ctx, layer, ex, units, crops, projected, rf_text, names, slugs, i, paths, section)
    section.data[name] = {
        "receptive_field": None if rf is None else {"size": rf.size, "jump": rf.jump, "start": rf.start},
        "projection_proof": proof,
        "dead": np.flatnonzero(dead), "dataset_max": ex.dataset_max, "mean_max": ex.mean_max,
        "fire_rate": ex.fire_rate,
        "top": {"activation": ex.values, "test_index": ex.indices, "position": ex.positions},  # every filter
    }
    return [name, filters, rf_text, int(dead.sum()), len(units), outside["deconvnet"], outside["guided"]]


def _pages(ctx: ModelContext, layer: ConvUnit, ex: LayerExamples, units: np.ndarray, crops: np.ndarray,
           projected: dict[str, np.ndarray], rf_text: str, names: list[str], slugs: list[str], i: int,
           layer_images: dict[str, str], section: Section) -> None:
    """The layer's index page and one page per shown unit, with one PNG per unit."""
    name, slug = layer.path, slugs[i]
    filters, k = ex.values.shape
    info = {"name": name, "slug": slug, "type": type(layer.conv.layer).__name__, "filters": filters,
            "receptive_field": rf_text, "units_shown": len(units), "read_at": layer.read_at}
    vis = feature_vis_images(ctx, name)
    size = tile_size(*crops.shape[1:3], target=48, largest=96)
    rgb = crops.shape[-1] == 3 or (vis is not None and any(v.shape[-1] == 3 for v in vis.values()))
    # Grey models keep one channel: a third of the bytes to encode, for 100s of unit images.
    rows = {kind: _channels(resize_nearest(t, *size), rgb) for kind, t in (("examples", crops), *projected.items())}
    unit_rows = []
    for j, u in enumerate(units):
        block = slice(j * k, (j + 1) * k)
        grid = tile_grid(np.concatenate([rows["examples"][block], rows["deconvnet"][block], rows["guided"][block]]),
                         cols=k)
        has_vis = vis is not None and u in vis
        if has_vis:
            grid = _beside(_channels(resize_nearest(np.clip(vis[u], 0, 1), *((grid.shape[0] - 4,) * 2)), rgb), grid)
        image = ctx.save_png(f"units-{slug}-{u}", grid)
        stats = {"dataset_max": float(ex.dataset_max[u]), "mean_max": float(ex.mean_max[u]),
                 "fire_rate": float(ex.fire_rate[u])}
        unit_rows.append({"unit": int(u), "href": f"{u}.html", "dead": bool(ex.dead[u]), **stats})
        examples = [{"rank": r + 1, "index": int(ex.indices[u, r]), "activation": float(ex.values[u, r]),
                     "position": f"{ex.positions[u, r, 0]}, {ex.positions[u, r, 1]}",
                     "label": ctx.class_name(ctx.data.y_test[ex.indices[u, r]]),
                     "predicted": ctx.class_name(ctx.predictions[ex.indices[u, r]])} for r in range(k)]
        context = {
            "layer": info, "unit": int(u), "dead": bool(ex.dead[u]), "stats": stats, "examples": examples,
            "image": image, "has_feature_vis": has_vis,
            "image_alt": f"Filter {u} of {name}: {'feature visualization, then ' if has_vis else ''}{k} strongest "
            "test crops (top row), their deconvnet projections (middle) and guided-backprop projections (bottom)",
            "prev_href": f"{units[j - 1]}.html" if j > 0 else None,
            "next_href": f"{units[j + 1]}.html" if j + 1 < len(units) else None,
            "prev_unit": int(units[j - 1]) if j > 0 else None,
            "next_unit": int(units[j + 1]) if j + 1 < len(units) else None,
            "layer_href": "index.html",
        }
        section.pages.append(Page(f"{slug}/{u}.html", "unit.html", f"{name} filter {u}", context))
    neighbours = {key: {"name": names[j], "href": f"../{slugs[j]}/index.html"} if 0 <= j < len(slugs) else None
                  for key, j in (("prev_layer", i - 1), ("next_layer", i + 1))}
    context = {"layer": info, "units": unit_rows, "not_shown": filters - len(units),
               "examples_image": layer_images["examples"], "projections_image": layer_images["deconvnet"],
               "dead_count": int(ex.dead.sum()), **neighbours}
    section.pages.append(Page(f"{slug}/index.html", "layer.html", f"Layer {name}", context))


def _project(projector: Projector, rf: ReceptiveField | None, name: str, x: np.ndarray, ids: np.ndarray,
             channels: np.ndarray, positions: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Crop-sized projection tiles for the live rows (blank for the rest), and
    the proof on full-image projections of the first live ones: zero outside the
    receptive field, and equal to the cropped projections drawn."""
    tiles = np.full((len(ids), *(rf.crop_size if rf else x.shape[1:3]), x.shape[-1]), BLANK, np.float32)
    cropped = projector.project_crops(name, x, channels[live], positions[live], ids=ids[live])
    tiles[live] = projection_to_image(cropped)
    checked = np.flatnonzero(live)[:PROOF_ROWS]
    full = projector.project(name, x, channels[checked], positions[checked], ids=ids[checked])
    difference = np.abs(_crop(rf, full, positions[checked], fill=0.0) - cropped[: len(checked)])
    return tiles, {"checked": len(checked), "max_abs_outside_rf": _max_outside(rf, full, positions[checked]),
                   "max_abs_crop_difference": float(difference.max(initial=0.0))}


def _crop(rf: ReceptiveField | None, images: np.ndarray, positions: np.ndarray, ids: np.ndarray | None = None,
          fill: float = OUTSIDE_FILL) -> np.ndarray:
    """Receptive-field crops of images[ids] (whole images when there is no receptive field)."""
    if rf is None:
        return images[np.arange(len(positions)) if ids is None else ids].copy()
    return rf.crop(images, positions, fill=fill, ids=ids)


def _max_outside(rf: ReceptiveField | None, projections: np.ndarray, positions: np.ndarray) -> float | None:
    """The largest |projection| outside each unit's receptive field: the proof that
    only the chosen unit was projected (0.0 exactly)."""
    if rf is None:
        return None
    return float(np.abs(projections).max(axis=-1)[~rf.masks(positions)].max(initial=0.0))


def _by_unit(tiles: np.ndarray, k: int) -> list[np.ndarray]:
    """Tiles in groups of k (one group per unit), each padded to 9 with blank tiles for a 3x3 block."""
    groups = []
    for start in range(0, len(tiles), k):
        group = tiles[start : start + k]
        if len(group) < 9:
            group = np.concatenate([group, np.full((9 - len(group), *group.shape[1:]), BLANK, group.dtype)])
        groups.append(group[:9])
    return groups


def _channels(images: np.ndarray, rgb: bool) -> np.ndarray:
    return as_rgb(images) if rgb else images[..., :1]


def _beside(square: np.ndarray, grid: np.ndarray, pad: int = 2) -> np.ndarray:
    """`square` (h, h, C) to the left of `grid` (.., .., C), vertically centred, on white."""
    out = np.ones((grid.shape[0], square.shape[1] + pad + grid.shape[1], grid.shape[2]), np.float32)
    top = (grid.shape[0] - square.shape[0]) // 2
    out[top : top + square.shape[0], pad : pad + square.shape[1]] = square
    out[:, square.shape[1] + pad :] = grid
    return out


def feature_vis_images(ctx: ModelContext, layer_name: str) -> dict[int, np.ndarray] | None:
    """Unit -> feature-visualization image from the feature-vis section, when it ran first."""
    entry = ctx.extra.get("feature_vis", {}).get(layer_name)
    if not entry or entry.get("images") is None:
        return None
    images = np.asarray(entry["images"])
    if np.issubdtype(images.dtype, np.integer):
        images = images / 255.0
    units = entry.get("units", range(len(images)))
    return {int(u): images[j] for j, u in enumerate(units) if j < len(images)}
