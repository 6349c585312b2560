"""Feature visualization: for every filter of every conv layer and every class,
the input the model responds to most, with the proof that it does."""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import progress, recognition
from ..context import ModelContext
from ..featvis import LOGITS, FeatVisSettings, FilterImages, visualize_model
from ..imaging import as_rgb, resize_nearest, tile_grid, tile_size
from ..report import Figure, Section, Table

DEAD_TINT = np.array([0.85, 0.15, 0.15], np.float32)
SETTINGS_SHOWN = ("steps", "param", "warmup_steps", "leak", "zoom", "degrees", "scales", "total_variation", "l2")
GRID_BACKGROUND = 0.6  # grey, so all-white and all-black patterns both show their edges
CLASS_IMAGE_SIDE = 112  # each class's own PNG is magnified by a whole factor to about this many pixels (28 px: x4)
# l2 as used: the preset's per-margin weight times the typical margin, which is stored beside it
CLASS_SETTINGS_SHOWN = ("steps", "param", "objective", "starts", "l2", "l2_target", "total_variation")
BACKGROUND_SAMPLE = 512  # training images whose pixels give the background colour class images decay toward
CLASS_SLOTS = 40  # the preset's starts are cut so the class images take at most this many slots (1 each beyond)
UNIFORM_STD = 0.02  # an optimised image this flat is one colour: the filter wants the whole input bright or dark


def build(ctx: ModelContext) -> Section | None:
    convs = ctx.plan.layers
    settings = FeatVisSettings.from_config(ctx.spec.feature_vis)
    settings = settings.quick() if ctx.quick else settings
    section = Section(
        id="feature-vis",
        title="Feature visualization",
        template="sections/feature_vis",
        intro=f"For each filter, an image optimised by gradient ascent ({_recipe(settings)}) to maximise the "
        "filter's mean activation; for each class, an image maximising its "
        "pre-softmax logit over the others'. Proof: a filter's image should drive the filter at least as hard as "
        "the best test image does (mean over the map, and peak at any position); a class image should be classified "
        "as its class, by the model and by an independent judge. Dead filters (never active on any test image) are "
        "crossed out in red.",
    )
    units = ctx.plan.units
    section.notes.extend(budget_notes(ctx))
    class_settings = _class_settings(ctx, settings)
    results = visualize_model(ctx.network, {**units, LOGITS: None}, settings, ctx.seed, class_settings)
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
    _classes(ctx, section, results[LOGITS], class_settings)
    section.data["settings"] = {key: getattr(settings, key) for key in SETTINGS_SHOWN}
    return section


def _layer(ctx: ModelContext, section: Section, name: str, result: FilterImages,
           dataset_mean: np.ndarray, dataset_peak: np.ndarray) -> None:
    filters, units = len(dataset_mean), result.units
    dead = dataset_peak[units] <= 0
    reached = result.activation >= dataset_mean[units]
    tiles = as_rgb(result.images)
    tiles = resize_nearest(tiles, *tile_size(*tiles.shape[1:3], target=56, largest=64))
    tiles[dead] = _cross_out(tiles[dead])
    live = ~dead
    share = float(reached[live].mean()) if live.any() else None
    ratios = result.activation[live] / dataset_mean[units][live]
    uniform = live & (result.images.reshape(len(units), -1).std(axis=1) < UNIFORM_STD)
    numbers = {"filters": filters, "shown": len(units), "dead": int(dead.sum()), "live_reaching_dataset_max": share,
               "median_activation_over_dataset_max": float(np.median(ratios)) if live.any() else None,
               "uniform_images": int(uniform.sum())}
    section.figures.append(Figure(
        ctx.save_png(f"featvis-{name}", tile_grid(tiles, background=GRID_BACKGROUND)),
        title=name,
        caption=f"{name}: {len(units)} filters, row-major by index"
        + (f" ({len(units)} of {filters}, chosen by the budget)" if len(units) < filters else "")
        + f"; {int(dead.sum())} dead; {'-' if share is None else f'{share:.0%}'} of live filters reach or beat "
        "the best test image's mean activation."
        + (f" {int(uniform.sum())} respond most to a uniform image (all bright or all dark): no pattern drives "
           "them harder, so their tiles are flat." if uniform.any() else ""),
        alt=f"Optimised input pattern of every filter of layer {name}",
        numbers=numbers,
    ))
    records = [{"index": int(u), "activation": float(a), "dataset_max": float(dataset_mean[u]), "peak": float(p),
                "dataset_peak": float(dataset_peak[u]), "reached": bool(r), "dead": bool(d)}
               for u, a, p, r, d in zip(units, result.activation, result.peak, reached, dead)]
    section.data["layers"][name] = {**numbers, "filters": records}
    section.tables.append(Table(
        ["Filter", "Mean reached", "Best test image", "Ratio", "Peak reached", "Best test peak", "Status"],
        [[r["index"], f"{r['activation']:.3f}", f"{r['dataset_max']:.3f}", _ratio(r["activation"], r["dataset_max"]),
          f"{r['peak']:.3f}", f"{r['dataset_peak']:.3f}", "dead" if r["dead"] else "alive"] for r in records],
        title=f"{name}: activation per filter", collapsed=True,
    ))
    ctx.extra.setdefault("feature_vis", {})[name] = {
        "images": result.images, "units": units.tolist(), "activation": result.activation,
        "dataset_max": dataset_mean[units], "dead": dead,
    }
    progress.log(f"    {name}: {len(units)} filters, {numbers['dead']} dead, "
                 f"{'-' if share is None else f'{share:.0%}'} reach the dataset max")


def _class_settings(ctx: ModelContext, settings: FeatVisSettings) -> FeatVisSettings:
    """The class preset over the filters' settings (and the config's `feature_vis.classes`). Its `l2` is per unit
    of the model's typical margin, so it is scaled by that; it pulls toward the data's background, the median
    training pixel per channel (black for MNIST and Fashion-MNIST, where decaying toward grey left a grey canvas
    an independent judge read as a 3 for every class). Unless the config sets `starts`, a model with more than
    CLASS_SLOTS / 4 classes gets fewer starts, so an ImageNet-size head costs what it did."""
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
    return dataclasses.replace(classes, l2=classes.l2 * typical_margin(ctx.probabilities, ctx.data.y_test),
                               l2_target=tuple(round(float(v), 4) for v in median))


def typical_margin(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The median over test images of their class's margin (objectives.class_margin), at least 1. Read from the
    probabilities: a logit is its log-probability plus a per-image constant, which the margin cancels."""
    logs = np.log(np.clip(probabilities, 1e-30, None))
    own = logs[np.arange(len(logs)), labels]
    margins = own - (logs.sum(axis=1) - own) / (logs.shape[1] - 1)
    return max(1.0, float(np.median(margins))) if len(margins) else 1.0


def _classes(ctx: ModelContext, section: Section, result: FilterImages, settings: FeatVisSettings) -> None:
    names = [ctx.class_name(c) for c in result.units]
    judge = recognition.train_judge(ctx.data, ctx.network.image_shape, ctx.seed)
    verdict = recognition.recognise(judge, result.images, result.units)
    count, total = verdict.count, len(names)
    tiles = resize_nearest(as_rgb(result.images), *tile_size(*result.images.shape[1:3], target=56, largest=112))
    judged = (f"an independent judge (a pixel MLP trained on the {judge.trained_on}, {judge.test_accuracy:.1%} "
              f"test accuracy) recognises {count} of {total} as their class (an image showing nothing: about 1 "
              f"in {total} by chance)")
    numbers = {"classes": total, "min_probability": float(result.probability.min()),
               "independently_recognised": count, "judge_test_accuracy": judge.test_accuracy}
    section.figures.append(Figure(
        ctx.save_png("featvis-classes", tile_grid(tiles, background=GRID_BACKGROUND)),
        title="Classes",
        caption=f"One image per class ({', '.join(names)}), optimised for its logit over the others' from "
        f"{settings.starts} random start(s), decaying toward the data's background; the lowest probability the "
        f"model gives an image for its own class is {result.probability.min():.3f}, and {judged}.",
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
            "independent": {"predicted": predicted, "predicted_name": ctx.class_name(predicted),
                            "probability": float(verdict.predicted_probability[i]),
                            "own_probability": float(verdict.own_probability[i]),
                            "recognised": bool(verdict.recognised[i])},
        })
    section.tables.append(Table(
        ["Class", "Logit", "Probability", "Judge's class", "Judge's probability", "Recognised"],
        [[r["name"], f"{r['logit']:.2f}", f"{r['probability']:.4f}", r["independent"]["predicted_name"],
          f"{r['independent']['probability']:.3f}", "yes" if r["independent"]["recognised"] else "no"]
         for r in records],
        title="Class images"))
    section.data["classes"] = records
    section.data["independent_recognition"] = {
        "recognised": count, "classes": total, "judge": "pixel MLP", "judge_hidden_units": recognition.HIDDEN,
        "judge_trained_on": judge.trained_on, "judge_test_accuracy": judge.test_accuracy}
    section.data["class_settings"] = {key: getattr(settings, key) for key in CLASS_SETTINGS_SHOWN}
    section.data["class_settings"]["typical_margin"] = typical_margin(ctx.probabilities, ctx.data.y_test)
    progress.log(f"    classes: lowest probability {result.probability.min():.3f}, {count} of {total} recognised "
                 f"by an independent pixel MLP ({judge.test_accuracy:.1%} test accuracy)")


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
