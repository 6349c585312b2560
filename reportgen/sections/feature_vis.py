"""Feature visualization: for every filter of every conv layer and every class,
the input the model responds to most, with the proof that it does."""

from __future__ import annotations

import dataclasses

import numpy as np

from reportgen.methods import naturalness, recognition
from reportgen.methods.budget import pictured
from reportgen.methods.featvis import DIVERSITY_IMAGES, LOGITS, FeatVisSettings, FilterImages, visualize_model
from reportgen.methods.resemblance import central_crops
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.sections.units import LayerPictures, gallery_tile, paged_units, picture_size, save_unit_png
from reportgen.util import progress
from reportgen.util.imaging import as_rgb, resize_nearest, tile_grid, tile_size
from reportgen.util.slugs import slugify

DEAD_TINT = np.array([0.85, 0.15, 0.15], np.float32)
SETTINGS_SHOWN = ("steps", "param", "warmup_steps", "leak", "zoom", "degrees", "scales", "total_variation", "l2",
                  "max_size", "fft_decay", "squash")
GRID_BACKGROUND = 0.6  # grey, so all-white and all-black patterns both show their edges
CLASS_IMAGE_SIDE = 112  # each class's own PNG is magnified by a whole factor to about this many pixels (28 px: x4)
# l2 as used: the preset's per-margin weight times the typical margin, which is stored beside it
CLASS_SETTINGS_SHOWN = ("steps", "param", "objective", "starts", "l2", "l2_target", "total_variation")
BACKGROUND_SAMPLE = 512  # training images whose pixels give the background colour class images decay toward
CLASS_SLOTS = 40  # the preset's starts are cut so the class images take at most this many slots (1 each beyond)
# An optimised image is uniform (the filter wants the whole input bright or dark) when fewer than
# UNIFORM_SHARE of its pixels lie farther than UNIFORM_SPREAD from its median: a standard deviation under
# 0.02 missed black images with a few white specks (fashion-2conv conv1 filters 52 and 57).
UNIFORM_SPREAD, UNIFORM_SHARE = 0.25, 0.05
PHOTO_TILE = 128  # a colour model's pictures are shown at least this large (class grid; unit pages: units.py)
PHOTO_CANVAS = 224  # the largest canvas photo_canvas gives
PHOTO_FFT_DECAY = 1.5  # photo models' FFT spectrum scaling (params.FFTParam): see photo_canvas
PHOTO_SAMPLE = 256  # test images whose spectral slopes give the photos' median (naturalness.spectral_slope)


def build(ctx: ModelContext) -> Section | None:
    """The section; its `handoff` is each conv layer's LayerPictures, and under LOGITS the class images from
    each class's first random start (their records: the logit reached and the model's probability)."""
    convs = ctx.plan.layers
    settings = picture_settings(ctx)
    section = Section(
        id="feature-vis",
        title="Feature visualization",
        template="sections/feature_vis",
        intro=f"For each filter, an image optimised by gradient ascent ({_recipe(settings)}) to maximise the "
        "filter's mean activation; for each class, an image maximising its "
        "pre-softmax logit over the others'. Proof: a filter's image should drive the filter at least as hard as "
        "the best test image does (mean over the map, and peak at any position); a class image should be classified "
        "as its class, by the model and by an independent judge. Dead filters (never active on any test image) are "
        "framed in red (crossed out in the one-file grids).",
    )
    units = ctx.plan.units
    section.notes.extend(budget_notes(ctx))
    section.notes.extend(canvas_notes(ctx, settings))
    margin = typical_margin(ctx.probabilities, ctx.data.y_test)
    class_settings = _class_settings(ctx, settings, margin)
    # The pictured filters also get their central neuron's image and, those with a page, a diverse group, in
    # shorter optimisations of their own (settings.picture_steps).
    neurons = _pictured(ctx, settings)
    paged = paged_units(ctx)
    diverse = {name: np.intersect1d(chosen, paged.get(name, ())) for name, chosen in neurons.items()}
    pictured_count, shown_count = sum(map(len, neurons.values())), sum(map(len, units.values()))
    if pictured_count < shown_count:
        section.notes.append(
            f"Neuron and diverse images for {pictured_count:,} of the {shown_count:,} filters shown: the budget's "
            f"picture_work ({ctx.plan.budget.picture_work:,} activation values) left out the others, whose extra "
            f"images would cost {_extra_images_per_unit(settings):g} times their own.")
    section.data["pictures"] = {"canvas": list(ctx.network.canvas(settings.max_size)),
                                "pictured_filters": pictured_count, "shown_filters": shown_count,
                                "steps": settings.for_pictures().steps, "diversity_weight": settings.diversity,
                                "diverse_images": DIVERSITY_IMAGES, "picture_work": ctx.plan.budget.picture_work}
    results = visualize_model(ctx.network, {**units, LOGITS: None}, settings, ctx.seed, class_settings,
                              neurons=neurons, diverse=diverse)
    section.handoff = {}
    slopes = _photo_slopes(ctx, results)
    if convs:
        section.data["layers"] = {}
        for name in convs:
            stats = ctx.conv_stats[name]
            section.handoff[name] = _layer(ctx, section, name, results[name], stats.mean.max(axis=0),
                                           stats.max.max(axis=0), paged.get(name, np.zeros(0, int)), slopes)
        live = [f for layer in section.data["layers"].values() for f in layer["filters"] if not f["dead"]]
        share = float(np.mean([f["reached"] for f in live])) if live else None
        section.data["live_filters_reaching_dataset_max"] = share
    else:
        section.notes.append("The model has no conv layer: only class images are shown.")
    _classes(ctx, section, results[LOGITS], class_settings, margin, slopes)
    if slopes is not None:
        section.data["photos_saturated_share"] = _photo_saturation(ctx)
        _naturalness_summary(section, slopes)
    # the class images from each class's first random start, which the timeline's last snapshot shows
    first = results[LOGITS].first_start or results[LOGITS]
    section.handoff[LOGITS] = LayerPictures(
        dict(zip(first.units.tolist(), first.images)), {},
        {int(c): {"activation": a, "probability": p}  # numpy scalars: the timeline's numbers keep their type
         for c, a, p in zip(first.units, first.activation, first.probability)})
    section.data["settings"] = {key: getattr(settings, key) for key in SETTINGS_SHOWN}
    return section


def picture_settings(ctx: ModelContext) -> FeatVisSettings:
    """The optimisation every filter picture of this model uses (the timeline's too, so its last snapshot's
    pictures are the section's): the config's, shortened by --quick, on a photo model's canvas."""
    settings = FeatVisSettings.from_config(ctx.spec.feature_vis)
    return photo_canvas(ctx, settings.quick() if ctx.quick else settings)


def photo_canvas(ctx: ModelContext, settings: FeatVisSettings) -> FeatVisSettings:
    """A colour model of fixed input size: its pictures are optimised on a canvas of its input size (at most
    PHOTO_CANVAS px a side), also in --quick, with the FFT spectrum scaled 1/f^PHOTO_FFT_DECAY; keys the config sets
    (`max_size`, `fft_decay`) win. Its units see textures and parts at the scale of its photos, which a 48-px canvas
    (the default cap for layers that take any size) cuts to a few receptive fields; and Lucid's 1/f scaling leaves
    the images flatter than photos (median slope -1.8 against the photos' -2.65 on the transfer model of
    bench/photos.py, 1/f^1.5: -2.3 with every live filter still reaching the dataset max; README)."""
    height, width, channels = ctx.network.image_shape
    if channels != 3 or height is None or width is None:
        return settings
    chosen = ctx.spec.feature_vis
    changes = {} if "fft_decay" in chosen else {"fft_decay": PHOTO_FFT_DECAY}
    if "max_size" not in chosen:
        changes["max_size"] = max(settings.max_size, min(max(height, width), PHOTO_CANVAS))
    return dataclasses.replace(settings, **changes)


def canvas_notes(ctx: ModelContext, settings: FeatVisSettings) -> list[str]:
    """Where the images are optimised on a canvas other than the model's input: a model that takes any size,
    or conv layers that do, optimised on at most `settings.max_size` px but never below what the model accepts."""
    height, width = ctx.network.image_shape[:2]
    canvas = ctx.network.canvas(settings.max_size)
    if (height, width) == canvas:
        return []
    size = f"{canvas[0]}x{canvas[1]} px canvas (at most {settings.max_size} px a side, no smaller than the model " \
           "computes on)"
    if None in (height, width):
        return [f"The model takes images of any size: the test images are fed at their own size "
                f"({ctx.data.x_test.shape[1]}x{ctx.data.x_test.shape[2]} px), and the images here are optimised on a "
                f"{size}."]
    return [f"The model's conv layers take any size: their filter images are optimised on a {size} rather than "
            f"its {height}x{width} px input."]


def _pictured(ctx: ModelContext, settings: FeatVisSettings) -> dict[str, np.ndarray]:
    """The shown filters that also get a neuron image and, with a page, a diverse group (budget.pictured)."""
    canvas = ctx.network.canvas(settings.max_size)
    return pictured(ctx.plan, ctx.network.activation_values(canvas), _extra_images_per_unit(settings))


def _extra_images_per_unit(settings: FeatVisSettings) -> float:
    """A neuron image and a diverse group, in full-length images."""
    return (1 + DIVERSITY_IMAGES) * settings.for_pictures().steps / settings.steps


def _photo_slopes(ctx: ModelContext, results: dict[str, FilterImages]) -> float | None:
    """The test photos' median spectral slope, for a colour model whose pictures are large enough to have one
    (naturalness.MIN_SIDE); None otherwise (grey digits and clothes are not photos: their slope says nothing)."""
    sides = [min(result.images.shape[1:3]) for result in results.values() if len(result.images)]
    if ctx.network.image_shape[-1] != 3 or not sides or min(sides) < naturalness.MIN_SIDE \
            or min(ctx.data.x_test.shape[1:3]) < naturalness.MIN_SIDE:
        return None
    return naturalness.median_slope(naturalness.spectral_slope(ctx.data.x_test[:PHOTO_SAMPLE]))


def _photo_saturation(ctx: ModelContext) -> float:
    """The test photos' median share of clipped pixels (naturalness.saturated_share)."""
    return float(np.median(naturalness.saturated_share(ctx.data.x_test[:PHOTO_SAMPLE])))


def _slopes(images: np.ndarray, photos: float | None) -> np.ndarray | None:
    """Each picture's spectral slope, for a colour model (photos not None)."""
    return None if photos is None or not len(images) else naturalness.spectral_slope(images)


def _median(values: np.ndarray | None) -> float | None:
    return None if values is None else naturalness.median_slope(values)


def _naturalness_summary(section: Section, photos: float) -> None:
    """Per layer and for the whole model, the median spectral slope of every kind of picture beside the photos'."""
    rows, every = [], []
    for name, layer in section.data.get("layers", {}).items():
        kinds = {"filters": [f["spectral_slope"] for f in layer["filters"]],
                 "neurons": [f["neuron_spectral_slope"] for f in layer["filters"] if "neuron_spectral_slope" in f],
                 "diverse": [s for f in layer["filters"] for s in f.get("diversity", {}).get("spectral_slopes", [])]}
        medians = {kind: naturalness.median_slope([v for v in values if v is not None]) if values else None
                   for kind, values in kinds.items()}
        every += [v for values in kinds.values() for v in values if v is not None]
        rows.append([name, *(_slope_text(medians[kind]) for kind in kinds), _slope_text(photos),
                     _slope_text(None if medians["filters"] is None else medians["filters"] - photos),
                     _share_text(layer.get("median_saturated_share"))])
        layer["naturalness"] = {f"{kind}_median_spectral_slope": value for kind, value in medians.items()}
    classes = [c["spectral_slope"] for c in section.data.get("classes", []) if c.get("spectral_slope") is not None]
    every += classes
    filters = [f["spectral_slope"] for layer in section.data.get("layers", {}).values() for f in layer["filters"]
               if f["spectral_slope"] is not None]
    summary = {"photos_median_spectral_slope": photos, "photos_measured": PHOTO_SAMPLE,
               "photos_median_saturated_share": section.data.pop("photos_saturated_share", None),
               "filters_median_spectral_slope": naturalness.median_slope(filters) if filters else None,
               "classes_median_spectral_slope": naturalness.median_slope(classes) if classes else None,
               "model_median_spectral_slope": naturalness.median_slope(every) if every else None,
               "layers": {name: layer["naturalness"] for name, layer in section.data.get("layers", {}).items()}}
    section.data["naturalness"] = summary
    rows.append(["classes", _slope_text(summary["classes_median_spectral_slope"]), "-", "-", _slope_text(photos),
                 _slope_text(None if summary["classes_median_spectral_slope"] is None
                             else summary["classes_median_spectral_slope"] - photos), "-"])
    rows.append(["all pictures", _slope_text(summary["model_median_spectral_slope"]), "", "", _slope_text(photos),
                 _slope_text(None if summary["model_median_spectral_slope"] is None
                             else summary["model_median_spectral_slope"] - photos),
                 f"photos: {_share_text(summary['photos_median_saturated_share'])}"])
    section.notes.append(
        "Naturalness: the spectral slope of a picture is the least-squares slope of its log power against log "
        "spatial frequency (grey image, Hann window, radially averaged power spectrum): white noise has 0, "
        f"this model's test photos a median of {photos:.2f}. A picture near the photos' slope spreads its detail "
        "over scales as a photo does; saturated pixel-scale patterns lie near -1. The slope is blind to a few large "
        "blobs of pure colour, which have a photo's slope but not its look: the share of clipped pixels (some "
        "channel within 0.02 of 0 or 1) is shown beside it.")
    section.tables.append(Table(
        ["Pictures of", "Filters' median slope", "Neuron images'", "Diverse images'", "Test photos'",
         "Filters minus photos", "Filters' clipped pixels (median)"], rows, title="Naturalness: median spectral slope"))


def _share_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _slope_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _layer(ctx: ModelContext, section: Section, name: str, result: FilterImages,
           dataset_mean: np.ndarray, dataset_peak: np.ndarray, paged: np.ndarray,
           photos: float | None = None) -> LayerPictures:
    filters, units = len(dataset_mean), result.units
    dead = dataset_peak[units] <= 0
    reached = result.activation >= dataset_mean[units]
    live = ~dead
    share = float(reached[live].mean()) if live.any() else None
    ratios = result.activation[live] / dataset_mean[units][live]
    flat = result.images.reshape(len(units), -1)
    uniform = live & (np.mean(np.abs(flat - np.median(flat, axis=1, keepdims=True)) > UNIFORM_SPREAD, axis=1)
                      < UNIFORM_SHARE)
    neurons = _neuron_images(result)
    # A filter whose best input is uniform is shown by its central neuron's image, cropped to that unit's
    # receptive field: the pattern it looks for there (a first layer's is 3x3 px of a 28-px image).
    fields = _neuron_fields(ctx, name, {u: neurons[u][0] for u in units[uniform].tolist() if u in neurons})
    size = tile_size(*result.images.shape[1:3], target=56, largest=64)
    tiles = resize_nearest(as_rgb(result.images), *size)
    for j, u in enumerate(units.tolist()):
        if u in fields:
            tiles[j] = resize_nearest(as_rgb(fields[u]), *size)
    tiles[dead] = _cross_out(tiles[dead])
    numbers = {"filters": filters, "shown": len(units), "dead": int(dead.sum()), "live_reaching_dataset_max": share,
               "median_activation_over_dataset_max": float(np.median(ratios)) if live.any() else None,
               "uniform_images": int(uniform.sum())}
    if result.diversity is not None:
        numbers |= {"diverse_groups": len(result.diversity.units), "alike_groups": int(result.diversity.alike.sum())}
    slopes = _slopes(result.images, photos)
    if slopes is not None:
        numbers["median_spectral_slope"] = _median(slopes)
        numbers["photos_median_spectral_slope"] = photos
        numbers["median_saturated_share"] = float(np.median(naturalness.saturated_share(result.images)))
    records, gallery = _unit_files(ctx, name, result, neurons, fields, dataset_mean, dataset_peak, reached, dead,
                                   uniform, paged, slopes, photos)
    section.figures.append(Figure(
        ctx.save_png(f"featvis-{name}", tile_grid(tiles, background=GRID_BACKGROUND)),
        title=name,
        caption=f"{name}: {len(units)} filters, row-major by index"
        + (f" ({len(units)} of {filters}, chosen by the budget)" if len(units) < filters else "")
        + f"; {int(dead.sum())} dead; {'-' if share is None else f'{share:.0%}'} of live filters reach or beat "
        "the best test image's mean activation."
        + (f" {int(uniform.sum())} respond most to a uniform image (all bright or all dark)"
           + (f"; the tiles of {len(fields)} of them (dashed frame) show instead the image that maximises the map's "
              "central unit, cropped to that unit's receptive field: the pattern it looks for there."
              if fields else ".") if uniform.any() else "")
        + ("" if slopes is None else f" Median spectral slope {numbers['median_spectral_slope']:+.2f} (test photos "
           f"{photos:+.2f}, white noise 0).")
        + " Each tile opens the filter's page.",
        alt=f"Optimised input pattern of every filter of layer {name}",
        numbers=numbers, tiles=gallery,
        tile_size=picture_size(*result.images.shape[1:3], colour=result.images.shape[-1] == 3),
    ))
    section.data["layers"][name] = {**numbers, "filters": records}
    section.tables.append(Table(
        ["Filter", "Mean reached", "Best test image", "Ratio", "Peak reached", "Best test peak", "Neuron image",
         "Status"],
        [[r["index"], f"{r['activation']:.3f}", f"{r['dataset_max']:.3f}", _ratio(r["activation"], r["dataset_max"]),
          f"{r['peak']:.3f}", f"{r['dataset_peak']:.3f}",
          "-" if r["neuron_activation"] is None else f"{r['neuron_activation']:.3f}",
          "dead" if r["dead"] else "uniform" if r["uniform"] else "alive"] for r in records],
        title=f"{name}: activation per filter", collapsed=True,
    ))
    progress.log(f"    {name}: {len(units)} filters, {numbers['dead']} dead, "
                 f"{'-' if share is None else f'{share:.0%}'} reach the dataset max")
    return LayerPictures(dict(zip(units.tolist(), result.images)), {u: image for u, (image, _) in neurons.items()},
                         {r["index"]: r for r in records})


def _neuron_images(result: FilterImages) -> dict[int, tuple[np.ndarray, float]]:
    """Filter -> its neuron image and central unit's activation, for the filters that have one."""
    if result.neuron is None:
        return {}
    return {int(u): (image, float(value))
            for u, image, value in zip(result.neuron.units, result.neuron.images, result.neuron.activation)}


def _neuron_fields(ctx: ModelContext, name: str, images: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Neuron images cropped to their central unit's receptive field (whole when it has none)."""
    if not images:
        return {}
    stack = np.stack(list(images.values()))
    field = ctx.network.receptive_field(ctx.network.unit(name).point.path, input_size=stack.shape[1:3])
    if field is not None:
        stack = central_crops(field, stack, fill=GRID_BACKGROUND)
    return dict(zip(images, stack))


def _unit_files(ctx: ModelContext, name: str, result: FilterImages, neurons: dict[int, tuple[np.ndarray, float]],
                fields: dict[int, np.ndarray], dataset_mean: np.ndarray, dataset_peak: np.ndarray,
                reached: np.ndarray, dead: np.ndarray, uniform: np.ndarray, paged: np.ndarray,
                slopes: np.ndarray | None = None, photos: float | None = None) -> tuple[list[dict], list[dict]]:
    """One PNG per image of each filter (feature vis, and for the pictured ones the neuron image and, with a
    page, the diverse group), each filter's record for report.json, and the gallery's tiles linking to the
    filters' pages."""
    paged = set(paged.tolist())
    diverse = result.diversity
    groups = {} if diverse is None else {int(u): j for j, u in enumerate(diverse.units)}
    slug = slugify(name)
    records, gallery = [], []
    for j, u in enumerate(result.units.tolist()):
        images = {"feature_vis": save_unit_png(ctx, name, u, "feature-vis", result.images[j])}
        if u in neurons:
            images["neuron"] = save_unit_png(ctx, name, u, "neuron", neurons[u][0])
        if u in fields:
            images["neuron_field"] = save_unit_png(ctx, name, u, "neuron-field", fields[u])
        record = {"index": u, "activation": float(result.activation[j]), "dataset_max": float(dataset_mean[u]),
                  "peak": float(result.peak[j]), "dataset_peak": float(dataset_peak[u]), "reached": bool(reached[j]),
                  "dead": bool(dead[j]), "uniform": bool(uniform[j]),
                  "neuron_activation": neurons[u][1] if u in neurons else None, "images": images,
                  "spectral_slope": None if slopes is None else _finite(slopes[j])}
        if slopes is not None and u in neurons:
            record["neuron_spectral_slope"] = _finite(naturalness.spectral_slope(neurons[u][0][None])[0])
        if u in groups:
            g = groups[u]
            images["diversity"] = [save_unit_png(ctx, name, u, f"diversity-{i}", image)
                                   for i, image in enumerate(diverse.images[g])]
            record["diversity"] = {"activation": diverse.activation[g].tolist(),
                                   "gram_similarity": float(diverse.similarity[g]),
                                   "least_pixel_difference": float(diverse.least_difference[g]),
                                   "alike": bool(diverse.alike[g])}
            if photos is not None:
                record["diversity"]["spectral_slopes"] = [
                    _finite(v) for v in naturalness.spectral_slope(diverse.images[g])]
        records.append(record)
        gallery.append(gallery_tile(record, f"{slug}/{u}.html" if u in paged else None))
    return records, gallery


def _finite(value: float) -> float | None:
    """A slope for report.json: None where the picture is uniform (no spectrum)."""
    return float(value) if np.isfinite(value) else None


def _class_settings(ctx: ModelContext, settings: FeatVisSettings, margin: float) -> FeatVisSettings:
    """The class preset over the filters' settings (and the config's `feature_vis.classes`). Its `l2` is per
    unit of the model's typical margin, so it is scaled by `margin` (typical_margin); it pulls toward the data's
    background, the median training pixel per channel (black for MNIST and Fashion-MNIST, where decaying toward
    grey left a grey canvas an independent judge read as a 3 for every class). Unless the config sets `starts`,
    a model with more than CLASS_SLOTS / 4 classes gets fewer starts, so an ImageNet-size head costs what it
    did."""
    overrides = ctx.spec.feature_vis.get("classes") or {}
    classes = settings.for_classes(overrides)
    if "starts" not in overrides:  # a model with many classes: one start each, as before the preset
        starts = max(1, min(classes.starts, CLASS_SLOTS // ctx.network.num_classes))
        classes = dataclasses.replace(classes, starts=starts)
    images = ctx.data.x_train[:BACKGROUND_SAMPLE] if len(ctx.data.x_train) else ctx.data.x_test[:BACKGROUND_SAMPLE]
    channels = ctx.network.image_shape[-1]
    median = np.median(images.reshape(-1, images.shape[-1]), axis=0)
    median = np.repeat(median, channels) if len(median) == 1 else median[:channels]
    if len(median) != channels:
        median = np.full(channels, median.mean())
    return dataclasses.replace(classes, l2=classes.l2 * margin,
                               l2_target=tuple(round(float(v), 4) for v in median))


def typical_margin(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The median over test images of their class's margin (objectives.class_margin), at least 1. Read from the
    probabilities: a logit is its log-probability plus a per-image constant, which the margin cancels."""
    logs = np.log(np.clip(probabilities, 1e-30, None))
    own = logs[np.arange(len(logs)), labels]
    margins = own - (logs.sum(axis=1) - own) / (logs.shape[1] - 1)
    return max(1.0, float(np.median(margins))) if len(margins) else 1.0


def _classes(ctx: ModelContext, section: Section, result: FilterImages, settings: FeatVisSettings,
             margin: float, photos: float | None = None) -> None:
    names = [ctx.class_name(c) for c in result.units]
    judge, counts, left_out = recognition.choose_judge(ctx.data, result.images.shape[1:], ctx.seed, ctx.cache_dir,
                                                       [w.numpy() for w in ctx.model.weights]
                                                       if result.images.shape[-1] == 3 else None)
    verdict = recognition.recognise(judge, result.images, result.units)
    count, total = verdict.count, len(names)
    tiles = resize_nearest(as_rgb(result.images), *tile_size(*result.images.shape[1:3], target=56,
                                                             largest=max(112, PHOTO_TILE)))
    described = f"a {judge.kind} trained on the {judge.trained_on}, {judge.test_accuracy:.1%} test accuracy"
    if counts:
        judged = (f"an independent judge ({described}) recognises {count} of {total} as their class (an image "
                  f"showing nothing: about 1 in {total} by chance)")
    else:
        judged = (f"the class images are not judged: the best independent judge available ({described}) is under "
                  f"the {recognition.MIN_JUDGE_ACCURACY:.0%} test accuracy a judge's verdict needs to mean anything"
                  + ("" if left_out is None else f"; the ImageNet trunk judge was left out: {left_out}"))
    slopes = _slopes(result.images, photos)
    numbers = {"classes": total, "min_probability": float(result.probability.min()),
               "independently_recognised": count if counts else None, "judge_test_accuracy": judge.test_accuracy}
    if slopes is not None:
        numbers |= {"median_spectral_slope": _median(slopes), "photos_median_spectral_slope": photos}
    section.figures.append(Figure(
        ctx.save_png("featvis-classes", tile_grid(tiles, background=GRID_BACKGROUND)),
        title="Classes",
        caption=f"One image per class ({', '.join(names)}), optimised for its logit over the others' from "
        f"{settings.starts} random start(s), decaying toward the data's background; the lowest probability the "
        f"model gives an image for its own class is {result.probability.min():.3f}, and {judged}."
        + ("" if slopes is None else f" Median spectral slope {numbers['median_spectral_slope']:+.2f} (test photos "
           f"{photos:+.2f}, white noise 0)."),
        alt="Optimised input pattern of every class",
        numbers=numbers,
    ))
    factor = max(1, CLASS_IMAGE_SIDE // max(result.images.shape[1:3]))
    records = []
    for i, (c, name, logit, p) in enumerate(zip(result.units, names, result.activation, result.probability)):
        image = resize_nearest(as_rgb(result.images[i]), *(factor * n for n in result.images.shape[1:3]))
        predicted = int(verdict.predicted[i])
        records.append({
            "class": int(c), "name": name, "logit": float(logit), "probability": float(p),
            "image": ctx.save_png(f"featvis-class-{int(c)}", image), "magnified": factor,
            "width": image.shape[1], "height": image.shape[0],
            "spectral_slope": None if slopes is None else _finite(slopes[i]),
            "independent": {"predicted": predicted, "predicted_name": ctx.class_name(predicted),
                            "probability": float(verdict.predicted_probability[i]),
                            "own_probability": float(verdict.own_probability[i]),
                            "recognised": bool(verdict.recognised[i]) if counts else None},
        })
    section.tables.append(Table(
        ["Class", "Logit", "Probability", "Judge's class", "Judge's probability", "Recognised"],
        [[r["name"], f"{r['logit']:.2f}", f"{r['probability']:.4f}", r["independent"]["predicted_name"],
          f"{r['independent']['probability']:.3f}",
          "not judged" if not counts else "yes" if r["independent"]["recognised"] else "no"]
         for r in records],
        title="Class images"))
    section.data["classes"] = records
    section.data["independent_recognition"] = {
        "judged": counts, "recognised": count if counts else None, "classes": total, "judge": judge.kind,
        "judge_hidden_units": recognition.HIDDEN if judge.kind == recognition.PIXEL_MLP else None,
        "judge_trained_on": judge.trained_on, "judge_test_accuracy": judge.test_accuracy,
        "trunk_judge_left_out": left_out,
        "judge_accuracy_needed": None if judge.kind == recognition.PIXEL_MLP and ctx.network.image_shape[-1] != 3
        else recognition.MIN_JUDGE_ACCURACY}
    section.data["class_settings"] = {key: getattr(settings, key) for key in CLASS_SETTINGS_SHOWN}
    section.data["class_settings"]["typical_margin"] = margin
    progress.log(f"    classes: lowest probability {result.probability.min():.3f}, "
                 + (f"{count} of {total} recognised by an independent {judge.kind}" if counts else "not judged: the "
                    f"best judge, a {judge.kind},") + f" ({judge.test_accuracy:.1%} test accuracy)")


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
    if settings.fft_decay != 1.0 and settings.param in ("auto", "fft"):
        words.append(f"colour images as a Fourier spectrum scaled 1/f^{settings.fft_decay:g}")
    if settings.squash == "spread" and settings.param in ("auto", "fft", "maco"):
        words.append("each colour image held at a photo's contrast")
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
