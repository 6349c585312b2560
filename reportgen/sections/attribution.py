"""Attributions for the sample images and the most confident mistakes:
saliency, SmoothGrad and Grad-CAM, with a deletion test of Grad-CAM's faithfulness."""

from __future__ import annotations

import numpy as np

from ..attribution import Attributions, Attributor, Deletion, confident_mistakes, deletion_test
from ..context import ModelContext
from ..imaging import as_rgb, overlay_heatmap, resize_nearest, tile_grid, tile_size
from ..report import Figure, Section, Table

MISTAKES, QUICK_MISTAKES = 8, 4
NOISE_SAMPLES, QUICK_NOISE_SAMPLES = 16, 6
NOISE_STD = 0.15
DELETED = 0.2  # fraction of pixels the deletion test zeroes


def build(ctx: ModelContext) -> Section | None:
    convs = ctx.network.units
    layer = convs[-1].path if convs else None
    heat_name = "Grad-CAM" if layer else "SmoothGrad"
    section = Section(
        id="attribution", title="Attributions: saliency, SmoothGrad, Grad-CAM",
        intro="Which pixels each prediction rests on, for the predicted class's pre-softmax score. Columns: the "
        f"image; vanilla saliency (|gradient|); SmoothGrad (gradient averaged over noisy copies); Grad-CAM on "
        f"the last conv layer{f' ({layer})' if layer else ''}. Faithfulness: the drop in the predicted class's "
        f"probability and logit when the {DELETED:.0%} of pixels {heat_name} ranks highest are zeroed, against "
        "zeroing as many random pixels (the logit still moves when the probability is saturated at 1).")
    if not convs:
        section.notes.append("The model has no Conv2D layer, so there is no Grad-CAM; the deletion test ranks "
                             "pixels by SmoothGrad instead.")
    groups = {"samples": list(ctx.sample_indices),
              "mistakes": confident_mistakes(ctx.data.y_test, ctx.probabilities,
                                             QUICK_MISTAKES if ctx.quick else MISTAKES)}
    indices = groups["samples"] + groups["mistakes"]
    x = ctx.data.x_test[indices]
    classes = ctx.predictions[indices]
    attributor = Attributor(ctx.network, layer)
    att = attributor(x, classes, samples=QUICK_NOISE_SAMPLES if ctx.quick else NOISE_SAMPLES, noise=NOISE_STD,
                     seed=ctx.seed)
    heat = att.gradcam if att.gradcam is not None else att.smoothgrad
    deletion = deletion_test(ctx.network, x, classes, heat, fraction=DELETED, seed=ctx.seed, attributor=attributor)
    records = _records(ctx, indices, deletion)
    start = 0
    for group, members in groups.items():
        rows = slice(start, start + len(members))
        start += len(members)
        if not members:
            section.notes.append("Every test image is classified correctly: there are no mistakes to explain.")
            continue
        _figure(ctx, section, group, x[rows], att, rows, records[rows], heat_name)
    section.data = {"layer": layer, "noise_std": NOISE_STD, "deleted_fraction": DELETED, "images": records,
                    "groups": groups}
    return section


def _records(ctx: ModelContext, indices: list[int], deletion: Deletion) -> list[dict]:
    """Per image: classes, probabilities and the deletion-test drops."""
    records = []
    for j, i in enumerate(indices):
        true, pred = int(ctx.data.y_test[i]), int(ctx.predictions[i])
        records.append({"index": i, "true": ctx.class_name(true), "p_true": float(ctx.probabilities[i, true]),
                        "predicted": ctx.class_name(pred), "p_predicted": float(ctx.probabilities[i, pred]),
                        "drop_top": float(deletion.drop_top[j]), "drop_random": float(deletion.drop_random[j]),
                        "score_drop_top": float(deletion.score_drop_top[j]),
                        "score_drop_random": float(deletion.score_drop_random[j])})
    return records


def _figure(ctx: ModelContext, section: Section, group: str, x: np.ndarray, att: Attributions, rows: slice,
            records: list[dict], heat_name: str) -> None:
    size = tile_size(*x.shape[1:3], target=96, largest=160)
    images = resize_nearest(x, *size)
    tiles = []
    for j, image in enumerate(images):
        maps = [_scale(att.saliency[rows][j]), _scale(att.smoothgrad[rows][j])]
        if att.gradcam is not None:
            maps.append(_scale(att.gradcam[rows][j], percentile=100))
        tiles.append(as_rgb(image))
        tiles.extend(overlay_heatmap(image, resize_nearest(m[..., None], *size)[..., 0]) for m in maps)
    columns = 1 + 2 + (att.gradcam is not None)
    drop_top, drop_random, score_top, score_random = (np.array([r[key] for r in records]) for key in (
        "drop_top", "drop_random", "score_drop_top", "score_drop_random"))
    label = "sample images" if group == "samples" else "most confident mistakes"
    numbers = {"images": len(records), "layer": att.layer or "none",
               "probability_drop_top_mean": float(drop_top.mean()),
               "probability_drop_random_mean": float(drop_random.mean()),
               "logit_drop_top_mean": float(score_top.mean()),
               "logit_drop_random_mean": float(score_random.mean()),
               "top_beats_random_fraction": float(np.mean(score_top > score_random))}
    section.figures.append(Figure(
        ctx.save_png(f"attribution-{group}", tile_grid(np.stack(tiles), cols=columns)),
        title=f"Attributions for the {label}",
        caption=f"One row per image, in the order of the table: the image, saliency, SmoothGrad"
        f"{', Grad-CAM' if att.gradcam is not None else ''}, each overlaid (red is high). Zeroing the top "
        f"{DELETED:.0%} {heat_name} pixels lowers the predicted probability by {drop_top.mean():.3f} on average "
        f"(its logit by {score_top.mean():.2f}), zeroing as many random pixels by {drop_random.mean():.3f} "
        f"(logit {score_random.mean():.2f}).",
        alt=f"Grid of {len(records)} {label} with their saliency, SmoothGrad and Grad-CAM heatmaps",
        numbers=numbers))
    section.tables.append(Table(
        ["Row", "Test image", "True", "p(true)", "Predicted", "p(predicted)", f"p drop, {heat_name} top",
         "p drop, random", f"logit drop, {heat_name} top", "logit drop, random"],
        [[j + 1, r["index"], r["true"], round(r["p_true"], 4), r["predicted"], round(r["p_predicted"], 4),
          round(r["drop_top"], 4), round(r["drop_random"], 4), round(r["score_drop_top"], 3),
          round(r["score_drop_random"], 3)] for j, r in enumerate(records)],
        title=f"{label.capitalize()}: classes, probabilities, deletion test"))


def _scale(heat: np.ndarray, percentile: float = 99) -> np.ndarray:
    """Heatmap to [0, 1], clipping the top 1% of a gradient map so one spike does not wash out the rest."""
    top = np.percentile(heat, percentile)
    return np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)
