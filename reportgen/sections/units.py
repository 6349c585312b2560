"""Looking at single units: the test images that excite each conv filter most
(cropped to the unit's receptive field), their deconvnet and guided-backprop
projections, and a page per layer and per unit (Microscope style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reportgen.methods.dataset_examples import LayerExamples, top_k
from reportgen.methods.featvis import ALIKE_SIMILARITY, SAME_PICTURE
from reportgen.methods.projections import Projector, projection_to_image
from reportgen.methods.resemblance import Resemblance, random_test_ids, unit_resemblance
from reportgen.model import ConvUnit, ReceptiveField
from reportgen.model.surgery import RELU_RULES
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Page, Section, Table
from reportgen.util import progress
from reportgen.util.imaging import magnified, resize_nearest, tile_grid, tile_size
from reportgen.util.slugs import slugify

TOP_K = 9
QUICK_UNITS = 8  # per layer in a quick build
OUTSIDE_FILL = 0.5  # grey where a receptive field hangs over the image border
BLANK = 1.0  # the tile background
PROOF_ROWS = 32  # per layer and rule: full-image projections checked against the receptive field


@dataclass
class LayerPictures:
    """One conv layer's pictures as the feature-vis section hands them on, to the unit pages and DeepDream."""

    images: dict[int, np.ndarray]  # shown filter -> its feature visualization (H, W, C)
    neuron_images: dict[int, np.ndarray]  # pictured filter -> the image maximising its map's central unit
    records: dict[int, dict[str, Any]]  # shown filter -> its report.json record (PNG paths and numbers)

    @property
    def canvas(self) -> tuple[int, int]:
        """The pictures' height and width."""
        return next(iter(self.images.values())).shape[:2]

    @property
    def display_size(self) -> tuple[int, int]:
        """How large a page shows them: small grey ones magnified (`magnified`), colour ones at least
        PHOTO_SIDE px a side (a photo model's pattern is texture and colour, lost in a small tile)."""
        image = next(iter(self.images.values()))
        return picture_size(*image.shape[:2], colour=image.shape[-1] == 3)


PHOTO_SIDE = 128  # colour pictures are shown at least this large on unit and layer pages


def picture_size(height: int, width: int, colour: bool) -> tuple[int, int]:
    """Display size of a unit's picture: `magnified` for grey ones; colour ones scaled up so the longer side is at
    least PHOTO_SIDE px (by a whole factor where that reaches it, else smoothly), never shrunk."""
    size = magnified(height, width)
    if not colour or max(size) >= PHOTO_SIDE:
        return size
    scale = PHOTO_SIDE / max(height, width)
    return round(height * scale), round(width * scale)


def build(ctx: ModelContext, pictures: dict[str, LayerPictures] | None = None) -> Section | None:
    """The section; `pictures` (the feature-vis section's, per conv layer) add each filter's images and their
    resemblance to its pages."""
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
    x = ctx.data.x_test
    names = [layer.path for layer in layers]
    examples = {name: top_k(name, ctx.conv_stats[name], TOP_K) for name in names}
    pictures = pictures or {}
    projectors = {rule: Projector(ctx.network, names, rule, input_size=x.shape[1:3]) for rule in RELU_RULES}
    slugs = [slugify(name) for name in names]
    rows = []
    with progress.bar(len(layers), "unit crops, projections and pages", unit="layer") as bar:
        for i, layer in enumerate(layers):
            rows.append(_layer(ctx, layer, examples[layer.path], pictures.get(layer.path), projectors, x, names, slugs,
                               i, section))
            for projector in projectors.values():
                projector.release(layer.path)
            bar.update()
    section.tables.append(Table(
        ["Layer", "Filters", "Receptive field", "Dead", "Pages", "Max |deconvnet| outside RF",
         "Max |guided| outside RF", "Neuron image resembles its top crops more than random ones"], rows,
        title="Conv layers"))
    section.data["images_scanned"] = len(x)
    section.data["top_k"] = TOP_K
    live = [r for name in names for r in section.data[name]["resemblance"]["units"].values()]
    section.data["resemblance_share"] = float(np.mean([r["beats_random"] for r in live])) if live else None
    return section


def paged_units(ctx: ModelContext) -> dict[str, np.ndarray]:
    """Conv path -> the units that get a page (and so a diverse group of images): the budget's, at most
    QUICK_UNITS per layer in a quick build."""
    cap = QUICK_UNITS if ctx.quick else None
    return {name: chosen[:cap] for name, chosen in ctx.plan.units.items()}


def gallery_tile(record: dict[str, Any], href: str | None) -> dict[str, Any]:
    """A filter's gallery tile: its feature vis, or its neuron field when its best input is uniform."""
    shows_neuron = "neuron_field" in record["images"]
    return {"unit": record["index"], "path": record["images"]["neuron_field" if shows_neuron else "feature_vis"],
            "href": href, "dead": record["dead"], "uniform": shows_neuron}


def save_unit_png(ctx: ModelContext, layer: str, unit: int, kind: str, image: np.ndarray) -> str:
    """One picture of one unit, at its own resolution (pages magnify it), as img/units/<layer>/<unit>-<kind>.png."""
    return ctx.save_png(f"{unit}-{kind}", np.clip(image, 0, 1), folder=("units", layer))


def _layer(ctx: ModelContext, layer: ConvUnit, ex: LayerExamples, pictures: LayerPictures | None,
           projectors: dict[str, Projector], x: np.ndarray, names: list[str], slugs: list[str], i: int,
           section: Section) -> list[Any]:
    """One layer's figures, pages and table row."""
    name, slug = layer.path, slugs[i]
    filters, k = ex.values.shape
    units = paged_units(ctx)[name]
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
    resemblance = _resemblance(ctx, layer, ex, pictures, units, x, rf, i)  # every live shown filter
    # A flat crop has no cosine: it counts as not resembling (conv1 filters that want white everywhere).
    share = float(np.mean([r.beats_random for r in resemblance.values()])) if resemblance else None
    flat = sum(r.top is None for r in resemblance.values())
    numbers = {"layer": name, "filters": filters, "units_shown": len(units), "dead_filters": int(dead.sum()),
               "receptive_field": rf_text, "top1_activation_mean": float(ex.values[:, 0].mean()),
               "projections_checked": proof["deconvnet"]["checked"],
               "max_abs_deconvnet_outside_rf": outside["deconvnet"], "max_abs_guided_outside_rf": outside["guided"],
               "neuron_resembles_top9_more_than_random": share}
    small = tile_size(*crops.shape[1:3], target=24, largest=24)
    overview = {"examples": crops, "deconvnet": projected["deconvnet"]}
    paths = {}
    for kind, tiles in overview.items():
        blocks = [tile_grid(resize_nearest(t, *small), cols=3, pad=1) for t in _by_unit(tiles, k)]
        paths[kind] = ctx.save_png(f"units-{slug}-{kind}", tile_grid(np.stack(blocks), pad=4))
    share_text = "" if share is None else (
        f" For {share:.0%} of the {len(resemblance)} live filters, the image maximising the central unit resembles "
        "the mean of the top crops more than the mean of random test crops at the same positions"
        + (f" ({flat} whose neuron image is flat in its receptive field count as not)." if flat else "."))
    section.figures.append(Figure(
        paths["examples"], title=f"{name}: top-{k} test images per filter",
        caption=f"Layer {name}: for each of {len(units)} of {filters} filters (row-major, in the order of the "
        f"layer page), its {k} "
        f"strongest test images cropped to the {rf_text} receptive field of the maximal unit; "
        f"{int(dead.sum())} filters never fire on the test set." + share_text,
        alt=f"Grid of {len(units)} blocks of {k} image crops, one block per filter of {name}",
        numbers=numbers))
    section.figures.append(Figure(
        paths["deconvnet"], title=f"{name}: deconvnet projections",
        caption=f"Layer {name}: the deconvnet projection of the maximal unit for the same crops, in the same "
        "order (grey is zero). Outside the receptive field every projection is exactly zero.",
        alt=f"Grid of {len(units)} blocks of {k} deconvnet projections, one block per filter of {name}",
        numbers={"layer": name, "max_abs_outside_rf": outside["deconvnet"]}))
    unit_pictures = _pages(ctx, layer, ex, pictures, units, crops, projected, rf_text, names, slugs, i, paths,
                           resemblance, share, section)
    section.data[name] = {
        "receptive_field": None if rf is None else {"size": rf.size, "jump": rf.jump, "start": rf.start},
        "projection_proof": proof,
        "dead": np.flatnonzero(dead), "dataset_max": ex.dataset_max, "mean_max": ex.mean_max,
        "fire_rate": ex.fire_rate,
        "top": {"activation": ex.values, "test_index": ex.indices, "position": ex.positions},  # every filter
        "resemblance": {"share": share, "live_filters": len(resemblance), "flat": flat,
                        "units": {int(u): _resemblance_record(r) for u, r in resemblance.items()}},
        "unit_pictures": unit_pictures,  # paged filter -> its page, top crops (in `top`'s rank order) and projections
    }
    return [name, filters, rf_text, int(dead.sum()), len(units), outside["deconvnet"], outside["guided"],
            "-" if share is None else f"{share:.0%} of {len(resemblance)}"]


def _resemblance(ctx: ModelContext, layer: ConvUnit, ex: LayerExamples, pictures: LayerPictures | None,
                 units: np.ndarray, x: np.ndarray, rf: ReceptiveField | None, i: int) -> dict[int, Resemblance]:
    """Each shown live filter's neuron image against its top crops and random crops (see resemblance);
    none without the feature-vis section's neuron images or without a receptive field."""
    if rf is None or pictures is None:
        return {}
    images = pictures.neuron_images
    canvas = next(iter(images.values())).shape[:2] if images else x.shape[1:3]
    field = ctx.network.receptive_field(layer.point.path, input_size=canvas)
    found = {}
    for u in units.tolist():
        live = ex.values[u] > 0
        if ex.dead[u] or u not in images or field is None:
            continue
        top = ex.indices[u][live]
        found[u] = unit_resemblance(images[u], field, x, rf, top, ex.positions[u][live],
                                    random_test_ids(len(x), len(top), ctx.seed, i, u))
    return found


def _resemblance_record(r: Resemblance) -> dict[str, Any]:
    return {"top9": r.top, "random": r.random, "beats_random": r.beats_random}


def _pages(ctx: ModelContext, layer: ConvUnit, ex: LayerExamples, pictures: LayerPictures | None,
           units: np.ndarray, crops: np.ndarray,
           projected: dict[str, np.ndarray], rf_text: str, names: list[str], slugs: list[str], i: int,
           layer_images: dict[str, str], resemblance: dict[int, Resemblance], share: float | None,
           section: Section) -> dict[int, dict[str, Any]]:
    """The layer's index page and one page per shown unit, with one PNG per picture of the unit; returns
    each unit's page and the PNGs of its top crops and projections, for report.json."""
    name, slug = layer.path, slugs[i]
    filters, k = ex.values.shape
    info = {"name": name, "slug": slug, "type": type(layer.conv.layer).__name__, "filters": filters,
            "receptive_field": rf_text, "units_shown": len(units), "read_at": layer.read_at}
    vis = pictures.records if pictures else {}
    crop_size = magnified(*crops.shape[1:3])
    unit_rows, gallery, unit_pictures = [], [], {}
    for j, u in enumerate(units.tolist()):
        block = slice(j * k, (j + 1) * k)
        strip = tile_grid(np.concatenate([projected["deconvnet"][block], projected["guided"][block]]), cols=k, pad=1)
        projections = save_unit_png(ctx, name, u, "projections", strip)
        stats = {"dataset_max": float(ex.dataset_max[u]), "mean_max": float(ex.mean_max[u]),
                 "fire_rate": float(ex.fire_rate[u])}
        found = resemblance.get(u)
        likeness = None if found is None else _resemblance_record(found)
        unit_rows.append({"unit": u, "href": f"{u}.html", "dead": bool(ex.dead[u]), **stats, "resemblance": likeness})
        examples = [{"rank": r + 1, "index": int(ex.indices[u, r]), "activation": float(ex.values[u, r]),
                     "position": f"{ex.positions[u, r, 0]}, {ex.positions[u, r, 1]}",
                     "label": ctx.class_name(ctx.data.y_test[ex.indices[u, r]]),
                     "predicted": ctx.class_name(ctx.predictions[ex.indices[u, r]]),
                     "image": save_unit_png(ctx, name, u, f"top-{r + 1}", crops[j * k + r])} for r in range(k)]
        record = vis.get(u)
        views = _views(record) if record else []
        if record:
            gallery.append(gallery_tile(record, f"{u}.html"))
        context = {
            "layer": info, "unit": u, "dead": bool(ex.dead[u]), "stats": stats, "examples": examples,
            "views": views, "view_size": pictures.display_size if views and pictures else None,
            "diversity": record.get("diversity") if record else None,
            "timeline": record.get("timeline") if record else None,
            "diverse_images": len(record["images"].get("diversity", [])) if record else 0,
            "alike_similarity": ALIKE_SIMILARITY, "same_picture": SAME_PICTURE,
            "neuron": bool(record and "neuron" in record["images"]),
            "uniform": bool(record and "neuron_field" in record["images"]),
            "crop_size": crop_size, "projections": projections,
            "projections_size": [side * crop_size[0] // crops.shape[1] for side in strip.shape[:2]],
            "resemblance": likeness,
            "prev_href": f"{units[j - 1]}.html" if j > 0 else None,
            "next_href": f"{units[j + 1]}.html" if j + 1 < len(units) else None,
            "prev_unit": int(units[j - 1]) if j > 0 else None,
            "next_unit": int(units[j + 1]) if j + 1 < len(units) else None,
            "layer_href": "index.html",
        }
        section.pages.append(Page(f"{slug}/{u}.html", "unit.html", f"{name} filter {u}", context))
        unit_pictures[u] = {"page": f"{slug}/{u}.html", "top": [e["image"] for e in examples],
                            "projections": projections}
    neighbours = {key: {"name": names[j], "href": f"../{slugs[j]}/index.html"} if 0 <= j < len(slugs) else None
                  for key, j in (("prev_layer", i - 1), ("next_layer", i + 1))}
    context = {"layer": info, "units": unit_rows, "not_shown": filters - len(units),
               "examples_image": layer_images["examples"], "projections_image": layer_images["deconvnet"],
               "dead_count": int(ex.dead.sum()), "resemblance_share": share,
               "resemblance_compared": len(resemblance),
               "gallery": gallery, "gallery_size": pictures.display_size if gallery and pictures else None,
               **neighbours}
    section.pages.append(Page(f"{slug}/index.html", "layer.html", f"Layer {name}", context))
    return unit_pictures


def _views(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The feature-vis section's pictures of one filter, each with the number it reached."""
    images = record["images"]
    views = [{"kind": "channel", "title": "Feature visualization", "image": images["feature_vis"],
              "label": "mean activation", "value": record["activation"]}]
    if "neuron" in images:
        views.append({"kind": "neuron", "title": "Central neuron", "image": images["neuron"],
                      "label": "central unit", "value": record["neuron_activation"]})
    values = record.get("diversity", {}).get("activation", [])
    for n, (image, value) in enumerate(zip(images.get("diversity", []), values)):
        views.append({"kind": "diversity", "title": f"Diverse {n + 1}", "image": image,
                      "label": "mean activation", "value": value})
    return views


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
