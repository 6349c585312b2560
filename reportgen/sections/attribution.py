"""Attributions for the sample images and the most confident mistakes: saliency, SmoothGrad,
Integrated Gradients, Grad-CAM and Grad-CAM++, compared by a deletion test of their
faithfulness and by the model-randomisation sanity check."""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen.methods.attribution import (
    CAM_METHODS,
    CONTROL,
    LABELS,
    METHODS,
    Attributions,
    Attributor,
    confident_mistakes,
)
from reportgen.methods.faithfulness import (
    SIGNIFICANCE,
    Deletion,
    MethodFaithfulness,
    deletion_test,
    most_faithful,
    summarize,
)
from reportgen.methods.sanity import SANITY_THRESHOLD, cascade_layers, passes, rank_correlation
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.util import progress
from reportgen.util.imaging import as_rgb, overlay_heatmap, resize_nearest, tile_grid, tile_size

MISTAKES, QUICK_MISTAKES = 8, 4
NOISE_SAMPLES, QUICK_NOISE_SAMPLES = 16, 6
IG_STEPS, QUICK_IG_STEPS = 16, 8  # 16 steps: Integrated Gradients complete within 1.4% on mnist-3conv
NOISE_STD = 0.15
DELETED = 0.2  # fraction of pixels the deletion test zeroes
RANDOM_TRIALS = 4  # random pixel sets per image
SANITY_IMAGES = 4  # sample images shown on the trained and the randomised model
GROUP_LABELS = {"samples": "sample images", "mistakes": "most confident mistakes"}


def build(ctx: ModelContext) -> Section | None:
    units = ctx.network.units
    layer = units[-1].path if units else None
    methods = [m for m in METHODS if layer or m not in CAM_METHODS]
    groups = {"samples": list(ctx.sample_indices),
              "mistakes": confident_mistakes(ctx.data.y_test, ctx.probabilities,
                                             QUICK_MISTAKES if ctx.quick else MISTAKES)}
    indices = groups["samples"] + groups["mistakes"]
    x, classes = ctx.data.x_test[indices], ctx.predictions[indices]
    settings = {"samples": QUICK_NOISE_SAMPLES if ctx.quick else NOISE_SAMPLES, "noise": NOISE_STD,
                "steps": QUICK_IG_STEPS if ctx.quick else IG_STEPS, "seed": ctx.seed, "control": True}

    with progress.bar(3, "attributions: trained model, deletion test, randomised copy", unit="pass") as done:
        attributor = Attributor(ctx.network, layer)
        trained = attributor(x, classes, **settings)
        done.update()
        deletion = deletion_test(attributor.logits, x, classes, trained.maps, DELETED, RANDOM_TRIALS, ctx.seed)
        done.update()
        randomized_layers = cascade_layers(ctx.network, layer)
        randomized = Attributor(ctx.network.randomized(randomized_layers, ctx.seed), layer)(x, classes, **settings)
        done.update()
    correlations = {m: rank_correlation(trained.maps[m], randomized.maps[m]) for m in trained.maps}
    # Signed maps (Integrated Gradients) are ranked by evidence; their magnitude is checked too.
    magnitudes = {m: rank_correlation(np.abs(trained.maps[m]), np.abs(randomized.maps[m]))
                  for m in trained.maps if trained.maps[m].min() < 0}

    compared = [*methods, CONTROL]
    summary = summarize(deletion, compared)
    leaders = most_faithful(deletion, methods)
    sanity = {m: passes(correlations[m]) for m in compared}
    section = Section(id="attribution", title="Attributions compared: saliency, SmoothGrad, Integrated Gradients, "
                      "Grad-CAM, Grad-CAM++", intro=_intro(layer, randomized_layers, settings))
    if not layer:
        section.notes.append("The model has no convolution layer, so there is no Grad-CAM or Grad-CAM++.")
    section.notes.append(_faithfulness_verdict(leaders, summary, len(indices)))
    section.notes.extend(_sanity_verdicts(compared, correlations, sanity, randomized_layers))
    section.notes.extend(_magnitude_notes(magnitudes, sanity))

    records = _records(ctx, indices, compared, trained, deletion, correlations)
    start = 0
    for group, members in groups.items():
        rows = slice(start, start + len(members))
        start += len(members)
        if not members:
            section.notes.append("Every test image is classified correctly: there are no mistakes to explain.")
            continue
        _group_figure(ctx, section, group, x[rows], trained, methods, deletion, rows, records[rows])
    shown = slice(0, min(SANITY_IMAGES, len(groups["samples"])))
    _sanity_figure(ctx, section, x[shown], trained, randomized, compared, correlations, randomized_layers)
    section.tables.append(_comparison_table(compared, summary, correlations, sanity, leaders))
    section.data = {
        "layer": layer, "methods": {m: LABELS[m] for m in compared}, "control": CONTROL,
        "noise_std": NOISE_STD, "noise_samples": settings["samples"],
        "ig_baseline": "black image (all zeros)", "ig_steps": settings["steps"],
        "ig_completeness_error_max": float(trained.completeness_error.max()),
        "deleted_fraction": DELETED, "random_trials": RANDOM_TRIALS,
        "ranking": "mean logit drop with the top pixels zeroed, among methods whose margin over random exceeds "
                   f"{SIGNIFICANCE:g} standard errors; ties within {SIGNIFICANCE:g} standard errors of the paired "
                   "difference",
        "most_faithful": leaders, "tie": len(leaders) > 1, "no_method_beats_random": not leaders,
        "randomized_layers": randomized_layers, "sanity_threshold": SANITY_THRESHOLD,
        "comparison": {m: _method_numbers(summary[m], correlations[m], sanity[m]) for m in compared},
        "rank_correlation_of_magnitude_mean": {m: float(rho.mean()) for m, rho in magnitudes.items()},
        "images": records, "groups": groups,
    }
    return section


def _intro(layer: str | None, randomized_layers: list[str], settings: dict[str, Any]) -> str:
    cams = f"; Grad-CAM and Grad-CAM++ on the last conv layer ({layer})" if layer else ""
    return ("Which pixels each prediction rests on, for the predicted class's pre-softmax score. Columns: the image; "
            "saliency (|gradient|); SmoothGrad (the gradient averaged over "
            f"{settings['samples']} noisy copies, noise std {NOISE_STD}); Integrated Gradients from a black image "
            f"({settings['steps']} steps, positive evidence drawn){cams}. Faithfulness: zeroing the {DELETED:.0%} of "
            "pixels a method ranks highest should lower the predicted class's logit more than zeroing as many random "
            f"pixels ({RANDOM_TRIALS} random sets per image, the same for every method). Methods are ranked by that "
            f"mean logit drop, among those whose margin over random exceeds {SIGNIFICANCE:g} standard errors; a "
            f"method within {SIGNIFICANCE:g} standard errors of the leader (paired over the images) is tied with it. "
            "Sanity check (Adebayo et al. 2018): the same maps on a copy of the model with "
            f"{', '.join(randomized_layers)} re-initialised; a method whose maps keep their pixel ranking (mean "
            f"Spearman correlation at least {SANITY_THRESHOLD}) shows the image rather than what the model learned, "
            "and fails. Guided backprop, which the paper shows failing, is the control.")


def _faithfulness_verdict(leaders: list[str], summary: dict[str, MethodFaithfulness], images: int) -> str:
    """The most faithful method(s) in words, or that none beats random pixels."""
    if not leaders:
        return (f"No method beats random pixels on this model: none lowers the logit by more than {SIGNIFICANCE:g} "
                f"standard errors beyond zeroing {DELETED:.0%} random pixels, over {images} images.")
    described = "; ".join(f"{LABELS[m]}: logit drop {summary[m].logit_drop_top:.2f} against "
                          f"{summary[m].logit_drop_random:.2f} for random pixels, larger on "
                          f"{summary[m].top_beats_random:.0%} of the images" for m in leaders)
    if len(leaders) > 1:
        return (f"Most faithful for this model, tied within {SIGNIFICANCE:g} standard errors over {images} images: "
                f"{described}.")
    return f"Most faithful for this model, over {images} images: {described}."


def _sanity_verdicts(methods: list[str], correlations: dict[str, np.ndarray], sanity: dict[str, bool],
                     randomized_layers: list[str]) -> list[str]:
    """One sentence per failing method, one for those that pass."""
    notes = [f"{LABELS[m]}{' (the control)' if m == CONTROL else ''} FAILS the model-randomisation sanity check: "
             f"with {', '.join(randomized_layers)} re-initialised its maps still rank the pixels alike (mean Spearman "
             f"{correlations[m].mean():.2f}, threshold {SANITY_THRESHOLD}), so they show the image more than what the "
             "model learned." for m in methods if not sanity[m]]
    passed = [m for m in methods if sanity[m]]
    if passed:
        notes.append("Passes the sanity check (maps change when the top layers are re-initialised): " + ", ".join(
            f"{LABELS[m]} (mean Spearman {correlations[m].mean():.2f})" for m in passed) + ".")
    return notes


def _magnitude_notes(magnitudes: dict[str, np.ndarray], sanity: dict[str, bool]) -> list[str]:
    """A signed map that passes on its ranking but whose magnitude keeps its ranking, in words."""
    notes = []
    for m, rho in magnitudes.items():
        if sanity[m] and not passes(rho):
            cause = (" (from a black baseline it is zero wherever the image is black, on any model)"
                     if m == "integrated_gradients" else "")
            notes.append(f"{LABELS[m]} passes on its signed map, which the deletion test ranks, but not on its "
                         f"magnitude: |map| keeps a mean Spearman {rho.mean():.2f} on the randomised copy{cause}, so "
                         "the direction of its evidence changes, but not where it lies.")
    return notes


def _method_numbers(summary: MethodFaithfulness, correlations: np.ndarray, passed: bool) -> dict[str, Any]:
    return {"logit_drop_top_mean": summary.logit_drop_top, "logit_drop_random_mean": summary.logit_drop_random,
            "probability_drop_top_mean": summary.probability_drop_top,
            "probability_drop_random_mean": summary.probability_drop_random,
            "top_beats_random_fraction": summary.top_beats_random, "margin_mean": summary.margin,
            "margin_standard_error": summary.margin_se, "beats_random": summary.beats_random,
            "rank_correlation_mean": float(correlations.mean()), "sanity_check_passed": passed}


def _records(ctx: ModelContext, indices: list[int], methods: list[str], att: Attributions, deletion: Deletion,
             correlations: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per image: classes, probabilities, Integrated Gradients' completeness, and per method the deletion
    drops and the rank correlation with the randomised model."""
    records = []
    for j, i in enumerate(indices):
        true, pred = int(ctx.data.y_test[i]), int(ctx.predictions[i])
        records.append({
            "index": i, "true": ctx.class_name(true), "p_true": float(ctx.probabilities[i, true]),
            "predicted": ctx.class_name(pred), "p_predicted": float(ctx.probabilities[i, pred]),
            "logit": float(deletion.score[j]), "ig_completeness_error": float(att.completeness_error[j]),
            "logit_drop_random": float(deletion.score_drop_random[j]),
            "probability_drop_random": float(deletion.probability_drop_random[j]),
            "methods": {m: {"logit_drop_top": float(deletion.score_drop_top[m][j]),
                            "probability_drop_top": float(deletion.probability_drop_top[m][j]),
                            "rank_correlation": float(correlations[m][j])} for m in methods}})
    return records


def _tiles(x: np.ndarray, att: Attributions, methods: list[str], rows: slice) -> list[np.ndarray]:
    """Per image: the image, then each method's map overlaid on it (red is high)."""
    size = tile_size(*x.shape[1:3], target=96, largest=160)
    images = resize_nearest(x, *size)
    tiles = []
    for j, image in enumerate(images):
        tiles.append(as_rgb(image))
        for m in methods:
            heat = _scale(att.maps[m][rows][j], percentile=100 if m in CAM_METHODS else 99)
            tiles.append(overlay_heatmap(image, resize_nearest(heat[..., None], *size)[..., 0]))
    return tiles


def _group_figure(ctx: ModelContext, section: Section, group: str, x: np.ndarray, att: Attributions,
                  methods: list[str], deletion: Deletion, rows: slice, records: list[dict[str, Any]]) -> None:
    label = GROUP_LABELS[group]
    summary = summarize(deletion, methods, rows)
    random_drop = float(deletion.score_drop_random[rows].mean())
    numbers: dict[str, Any] = {"images": len(records), "layer": att.layer or "none",
                               "logit_drop_random_mean": random_drop,
                               "ig_completeness_error_max": float(att.completeness_error[rows].max())}
    numbers.update({f"logit_drop_top_{m}": summary[m].logit_drop_top for m in methods})
    numbers.update({f"top_beats_random_{m}": summary[m].top_beats_random for m in methods})
    names = ", ".join(LABELS[m] for m in methods)
    drops = "; ".join(f"{LABELS[m]} {summary[m].logit_drop_top:.2f}" for m in methods)
    section.figures.append(Figure(
        ctx.save_png(f"attribution-{group}", tile_grid(np.stack(_tiles(x, att, methods, rows)),
                                                       cols=1 + len(methods))),
        title=f"Attributions for the {label}",
        caption=f"One row per image, in the order of the table: the image, {names}, each overlaid (red is high). "
        f"Zeroing each method's top {DELETED:.0%} pixels lowers the predicted logit on average by: {drops}; "
        f"zeroing as many random pixels by {random_drop:.2f}. Integrated Gradients sums to the score difference "
        f"from the black baseline within {numbers['ig_completeness_error_max']:.1%} on every image.",
        alt=f"Grid of {len(records)} {label} with their {names} maps", numbers=numbers))
    section.tables.append(Table(
        ["Row", "Test image", "True", "p(true)", "Predicted", "p(predicted)",
         *(f"logit drop, {LABELS[m]} top" for m in methods), "logit drop, random"],
        [[j + 1, r["index"], r["true"], round(r["p_true"], 4), r["predicted"], round(r["p_predicted"], 4),
          *(round(r["methods"][m]["logit_drop_top"], 3) for m in methods), round(r["logit_drop_random"], 3)]
         for j, r in enumerate(records)],
        title=f"{label.capitalize()}: classes, probabilities, deletion test"))


def _sanity_figure(ctx: ModelContext, section: Section, x: np.ndarray, trained: Attributions,
                   randomized: Attributions, methods: list[str], correlations: dict[str, np.ndarray],
                   randomized_layers: list[str]) -> None:
    """The first sample images' maps on the trained model, each followed by the same maps on the randomised copy."""
    rows = slice(0, len(x))
    tiles = [tile for j in range(len(x)) for att in (trained, randomized)
             for tile in _tiles(x[j : j + 1], att, methods, slice(j, j + 1))]
    names = ", ".join(LABELS[m] for m in methods)
    numbers: dict[str, Any] = {"images": len(x), "randomized_layers": ", ".join(randomized_layers),
                               "sanity_threshold": SANITY_THRESHOLD}
    numbers.update({f"rank_correlation_{m}": float(correlations[m][rows].mean()) for m in methods})
    section.figures.append(Figure(
        ctx.save_png("attribution-sanity", tile_grid(np.stack(tiles), cols=1 + len(methods))),
        title="Sanity check: the maps on the trained model and on a randomised copy",
        caption=f"Rows in pairs: an image with its {names} maps on the trained model, then the same on a copy with "
        f"{', '.join(randomized_layers)} re-initialised. Mean Spearman correlation between the two over these "
        "images: " + "; ".join(f"{LABELS[m]} {correlations[m][rows].mean():.2f}" for m in methods)
        + f". The table below gives them over every image; a mean of at least {SANITY_THRESHOLD} fails.",
        alt=f"Pairs of rows: {names} on the trained model and on the randomised copy", numbers=numbers))


def _comparison_table(methods: list[str], summary: dict[str, MethodFaithfulness],
                      correlations: dict[str, np.ndarray], sanity: dict[str, bool], leaders: list[str]) -> Table:
    ranking = sorted((m for m in methods if m != CONTROL), key=lambda m: -summary[m].logit_drop_top)
    return Table(
        ["Method", "Faithfulness rank", "logit drop, top", "logit drop, random", "p drop, top", "p drop, random",
         "top beats random (share of images)", "beats random", "rank correlation with randomised model",
         "sanity check"],
        [[LABELS[m] + (" (control)" if m == CONTROL else "") + (" (most faithful)" if m in leaders else ""),
          ranking.index(m) + 1 if m in ranking else "not ranked",
          round(summary[m].logit_drop_top, 3), round(summary[m].logit_drop_random, 3),
          round(summary[m].probability_drop_top, 4), round(summary[m].probability_drop_random, 4),
          round(summary[m].top_beats_random, 3), "yes" if summary[m].beats_random else "no",
          round(float(correlations[m].mean()), 3), "passed" if sanity[m] else "FAILED"] for m in methods],
        title="Method comparison: faithfulness (deletion test, every image) and the randomisation sanity check")


def _scale(heat: np.ndarray, percentile: float = 99) -> np.ndarray:
    """Heatmap to [0, 1] (negative evidence as 0), clipping the top 1% of a gradient map so one
    spike does not wash out the rest."""
    heat = np.maximum(heat, 0)
    top = np.percentile(heat, percentile)
    return np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)
