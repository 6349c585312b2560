"""Where the model goes wrong: confusion matrix on the whole test set,
per-class accuracy, the most confused pairs and the most confident mistakes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.util.imaging import as_rgb, resize_nearest, tile_grid, tile_size

MISTAKES_SHOWN = 24
PAIRS_SHOWN = 8


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(true, predicted) counts."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def build(ctx: ModelContext) -> Section:
    y, pred, names = ctx.data.y_test, ctx.predictions, ctx.data.class_names
    cm = confusion_matrix(y, pred, len(names))
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.zeros(len(names)), where=support > 0)
    section = Section(
        id="confusion",
        title="Confusion and mistakes",
        intro=f"All {len(y):,} test images, predicted in one pass. Accuracy {np.trace(cm) / cm.sum():.4f}.",
        data={"confusion_matrix": cm, "per_class_accuracy": dict(zip(names, per_class)),
              "test_images": int(cm.sum())},
    )
    section.figures.append(_matrix_figure(ctx, cm, names))
    section.tables.append(Table(
        ["Class", "Test images", "Correct", "Accuracy"],
        [[n, int(s), int(cm[i, i]), f"{per_class[i]:.4f}"] for i, (n, s) in enumerate(zip(names, support))],
        title="Accuracy per class",
    ))
    pairs = _confused_pairs(cm)
    section.data["confused_pairs"] = [{"true": names[t], "predicted": names[p], "count": int(c)} for t, p, c in pairs]
    section.tables.append(Table(
        ["True class", "Predicted as", "Test images", "Share of the class"],
        [[names[t], names[p], int(c), f"{c / max(support[t], 1):.2%}"] for t, p, c in pairs],
        title="Most confused pairs",
    ))
    mistakes = _mistakes_figure(ctx)
    if mistakes is not None:
        section.figures.append(mistakes[0])
        section.tables.append(mistakes[1])
        section.data["mistakes"] = mistakes[2]
    return section


def _matrix_figure(ctx: ModelContext, cm: np.ndarray, names: list[str]) -> Figure:
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (t, p), count in np.ndenumerate(cm):
        ax.text(p, t, str(count), ha="center", va="center", fontsize=8,
                color="white" if shares[t, p] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return Figure(
        ctx.save_figure("confusion-matrix", fig),
        caption=f"Confusion matrix: rows are true classes, columns predictions; {int(cm.sum()):,} test images, "
        f"{int(np.trace(cm)):,} correct.",
        alt="Confusion matrix of the test set",
        numbers={"test_images": int(cm.sum()), "correct": int(np.trace(cm)),
                 "accuracy": float(np.trace(cm) / cm.sum())},
    )


def _confused_pairs(cm: np.ndarray) -> list[tuple[int, int, int]]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:PAIRS_SHOWN]
    return [(int(t), int(p), int(off[t, p])) for t, p in zip(*np.unravel_index(order, cm.shape)) if off[t, p] > 0]


def _mistakes_figure(ctx: ModelContext):
    wrong = np.flatnonzero(ctx.predictions != ctx.data.y_test)
    if not len(wrong):
        return None
    confidence = ctx.probabilities[wrong, ctx.predictions[wrong]]
    shown = wrong[np.argsort(-confidence)][:MISTAKES_SHOWN]
    images = as_rgb(ctx.data.x_test[shown])
    grid = tile_grid(resize_nearest(images, *tile_size(*images.shape[1:3], largest=112)), cols=min(len(shown), 8))
    rows, data = [], []
    for k, i in enumerate(shown):
        top = np.argsort(-ctx.probabilities[i])[:3]
        t, p = int(ctx.data.y_test[i]), int(ctx.predictions[i])
        record = {"test_index": int(i), "true": ctx.class_name(t), "predicted": ctx.class_name(p),
                  "p_predicted": float(ctx.probabilities[i, p]), "p_true": float(ctx.probabilities[i, t]),
                  "top3": {ctx.class_name(c): float(ctx.probabilities[i, c]) for c in top}}
        data.append(record)
        rows.append([k + 1, int(i), record["true"], record["predicted"], f"{record['p_predicted']:.3f}",
                     f"{record['p_true']:.3f}", ", ".join(f"{n} {v:.2f}" for n, v in record["top3"].items())])
    figure = Figure(
        ctx.save_png("mistakes", grid),
        caption=f"The {len(shown)} most confident mistakes of {len(wrong):,}, row by row (numbered in the table).",
        alt="Misclassified test images, most confident mistakes first",
        numbers={"misclassified": len(wrong), "shown": len(shown)},
    )
    table = Table(["#", "Test image", "True", "Predicted", "p(predicted)", "p(true)", "Top 3"], rows,
                  title="Most confident mistakes")
    return figure, table, data
