"""Learning over time: what the network had learned at each snapshot kept during training.

Each snapshot's weights are loaded into the model and the report's own engines run on it: the test pass
(accuracy per class, confusion matrix, dead filters), feature visualization of a budgeted set of filters and
of the classes, always from the same random starts (the build's seed), so a picture changes only because the
model did, and the same independent judge of the class images. Its page shows the filmstrips; each filter's
page shows its own (the records of the feature-vis section are handed on with it).
"""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from reportgen.methods import recognition
from reportgen.methods.featvis import LOGITS, FeatVisSettings, visualize_model
from reportgen.methods.timeline import (
    STABLE_CORRELATION,
    first_epochs,
    image_correlations,
    settled_epochs,
    snapshot_weights,
)
from reportgen.model import Network
from reportgen.model.units import conv_kernel
from reportgen.sections.confusion import confusion_matrix
from reportgen.sections.context import ModelContext
from reportgen.sections.feature_vis import _class_settings, typical_margin
from reportgen.sections.kernels import _diverging_tiles, _enlarged, _rgb_tiles
from reportgen.sections.report import Figure, Page, Section, Table
from reportgen.sections.units import LayerPictures
from reportgen.util import progress
from reportgen.util.imaging import as_rgb, resize_nearest, tile_grid, tile_size
from reportgen.util.slugs import slugify

FILTERS_PER_LAYER = 8  # filters per conv layer followed through training: the budget's first (most active) ones
QUICK_FILTERS = 4
CLASSES_SHOWN = 20  # classes followed (the first ones), so a 1,000-class head costs what a small one does
KERNELS_SHOWN = 32  # first-layer kernels drawn per snapshot
PAGE = "timeline/index.html"
GREY = 0.6


def build(ctx: ModelContext, pictures: dict[str, LayerPictures] | None = None) -> Section | None:
    """The section and its page; None for a model without snapshots and without a way to have them."""
    section = Section(id="timeline", title="Learning over time", template="sections/timeline")
    if not ctx.snapshots:
        section.notes.append(_why_none(ctx))
        return section
    start = time.perf_counter()
    epochs = sorted(ctx.snapshots)
    settings = FeatVisSettings.from_config(ctx.spec.feature_vis)
    settings = settings.quick() if ctx.quick else settings
    class_settings = _class_settings(ctx, settings, typical_margin(ctx.probabilities, ctx.data.y_test))
    per_layer = QUICK_FILTERS if ctx.quick else FILTERS_PER_LAYER
    followed = {name: np.asarray(ctx.plan.units[name])[:per_layer] for name in ctx.plan.layers}
    classes = np.arange(min(ctx.network.num_classes, CLASSES_SHOWN))
    judge = recognition.train_judge(ctx.data, ctx.network.image_shape, ctx.seed, ctx.cache_dir)
    states = []
    with progress.bar(len(epochs), "snapshots", unit="epoch") as bar:
        for epoch in epochs:
            states.append(_evaluate(ctx, epoch, followed, classes, settings, class_settings, judge))
            bar.update()
    section.intro = (
        f"The model at {len(epochs)} snapshots kept during training (epochs {', '.join(map(str, epochs))}), each "
        "run through the same engines as the rest of this report, from the same random starts, so a picture "
        "changes only because the model did. A picture has stopped changing when its Pearson correlation over "
        f"pixels with the next snapshot's is at least {STABLE_CORRELATION} from that epoch on.")
    data: dict[str, Any] = {"epochs": epochs, "snapshot_files": {e: ctx.snapshots[e].name for e in epochs},
                            "stable_correlation": STABLE_CORRELATION, "measure": "pearson correlation over pixels"}
    section.data = data
    _accuracy(ctx, section, epochs, states)
    _classes(ctx, section, epochs, states, classes, judge)
    _kernels(ctx, section, epochs, states)
    layers = _layers(ctx, section, epochs, states, followed, pictures or {})
    _dead(ctx, section, epochs, states, layers)
    data["seconds"] = time.perf_counter() - start
    section.pages.append(Page(PAGE, "timeline.html", f"Learning over time: {ctx.spec.name}",
                              {"epochs": epochs, "page_figures": section.figures, "page_tables": section.tables}))
    return section


def _why_none(ctx: ModelContext) -> str:
    if ctx.spec.model_file:
        return ("No snapshots: pass --checkpoints DIR (the files keras.callbacks.ModelCheckpoint wrote, one per "
                "epoch) or train with reportgen.ReportCallback to see how the model learned.")
    return ("No snapshots: this model was trained before reportgen kept them (or with snapshots = []); rebuild with "
            "--retrain, or set snapshots = [1, 2, 4, 8] in its config entry.")


def _evaluate(ctx: ModelContext, epoch: int, followed: dict[str, np.ndarray], classes: np.ndarray,
              settings: FeatVisSettings, class_settings: FeatVisSettings, judge: recognition.Judge) -> dict[str, Any]:
    """Everything the timeline reads of one snapshot."""
    with snapshot_weights(ctx.model, ctx.snapshots[epoch]) as model:
        network = Network(model, ctx.network.input_range)
        units = {unit.path: unit for unit in network.units}
        passed = network.test_pass(ctx.data.x_test, [unit.point.path for unit in network.units],
                                   progress_label=f"epoch {epoch}: test set")
        dead = {path: passed.stats[unit.point.path].max.max(axis=0) <= 0 for path, unit in units.items()}
        pictures = visualize_model(network, {**{n: u for n, u in followed.items() if len(u)}, LOGITS: classes},
                                   settings, ctx.seed, class_settings)
        kernel = conv_kernel(network.units[0].conv.layer).copy() if network.units else None
    verdict = recognition.recognise(judge, pictures[LOGITS].images, classes)
    return {"probabilities": passed.probabilities, "dead": dead, "pictures": pictures, "kernel": kernel,
            "verdict": verdict}


def _accuracy(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]]) -> None:
    y, names = ctx.data.y_test, ctx.data.class_names
    matrices = [confusion_matrix(y, s["probabilities"].argmax(axis=1), len(names)) for s in states]
    support = np.maximum(matrices[0].sum(axis=1), 1)
    per_class = np.array([np.diag(cm) / support for cm in matrices])  # (E, classes)
    accuracy = [float(np.trace(cm) / cm.sum()) for cm in matrices]
    section.data["accuracy"] = accuracy
    section.data["per_class_accuracy"] = {name: per_class[:, c] for c, name in enumerate(names)}
    section.data["confusion_matrices"] = {e: cm for e, cm in zip(epochs, matrices)}
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for c, name in enumerate(names[:CLASSES_SHOWN]):
        ax.plot(epochs, per_class[:, c], "o-", lw=1, ms=3, label=name)
    ax.plot(epochs, accuracy, "k-", lw=2.5, label="all")
    ax.set_xscale("log" if epochs[-1] / epochs[0] > 8 else "linear")
    ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    section.figures.append(Figure(
        ctx.save_figure("timeline-accuracy", fig), title="Accuracy per class",
        caption=f"Test accuracy per class at each snapshot (black: all {len(y):,} test images), from "
        f"{accuracy[0]:.4f} at epoch {epochs[0]} to {accuracy[-1]:.4f} at epoch {epochs[-1]}.",
        alt="Line chart of the test accuracy of each class per snapshot epoch",
        numbers={"first_accuracy": accuracy[0], "last_accuracy": accuracy[-1]}))
    section.tables.append(Table(["Class", *(f"epoch {e}" for e in epochs)],
                                [[name, *(f"{v:.4f}" for v in per_class[:, c])] for c, name in enumerate(names)]
                                + [["all", *(f"{v:.4f}" for v in accuracy)]],
                                title="Accuracy per class and epoch", collapsed=len(names) > 12))
    if len(names) <= CLASSES_SHOWN:
        section.figures.append(_confusions(ctx, epochs, matrices, names))


def _confusions(ctx: ModelContext, epochs: list[int], matrices: list[np.ndarray], names: list[str]) -> Figure:
    """The confusion matrix of each snapshot, side by side, as shares of each true class."""
    n = len(names)
    fig, axes = plt.subplots(1, len(epochs), figsize=(0.3 * n * len(epochs) + 1, 0.3 * n + 0.9), squeeze=False)
    for ax, epoch, cm in zip(axes[0], epochs, matrices):
        ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"epoch {epoch}", fontsize=9)
        ax.set_xticks(range(n), names if n <= 12 else [], rotation=90, fontsize=6)
        ax.set_yticks(range(n), names if n <= 12 and ax is axes[0][0] else [], fontsize=6)
    fig.tight_layout()
    wrong = [int(cm.sum() - np.trace(cm)) for cm in matrices]
    return Figure(ctx.save_figure("timeline-confusion", fig), title="Confusion matrix per epoch",
                  caption="Rows are true classes, columns predictions, shaded by the share of the row; misclassified "
                  f"test images per snapshot: {', '.join(f'{w:,}' for w in wrong)} (the counts are in report.json).",
                  alt="Confusion matrices of the test set, one per snapshot epoch",
                  numbers={"first_misclassified": wrong[0], "last_misclassified": wrong[-1]})


def _classes(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]],
             classes: np.ndarray, judge: recognition.Judge) -> None:
    images = np.stack([s["pictures"][LOGITS].images for s in states])  # (E, classes, H, W, C)
    recognised = np.stack([s["verdict"].recognised for s in states])  # (E, classes)
    probability = np.stack([s["pictures"][LOGITS].probability for s in states])
    judge_own = np.stack([s["verdict"].own_probability for s in states])
    first = first_epochs(epochs, recognised)
    correlations = image_correlations(images)
    settled = settled_epochs(epochs, correlations)
    names = [ctx.class_name(c) for c in classes]
    marks = np.where(recognised, "recognised", "")
    path = _filmstrip(ctx, "timeline-classes", images, names, epochs, marks)
    count = sum(f is not None for f in first)
    section.figures.insert(0, Figure(
        path, title="Class images per epoch",
        caption=f"Each row one class, each column a snapshot: the image optimised for the class's logit at that "
        f"epoch. A green frame: the independent judge (a pixel MLP, {judge.test_accuracy:.1%} test accuracy) "
        f"calls it its class. {count} of {len(names)} class images are recognised at some snapshot; at the last, "
        f"{int(recognised[-1].sum())}.",
        alt="Filmstrip of the class images, one row per class and one column per snapshot epoch",
        numbers={"recognised_at_some_epoch": count, "recognised_last": int(recognised[-1].sum()),
                 "judge_test_accuracy": judge.test_accuracy}))
    section.tables.insert(0, Table(
        ["Class", *(f"epoch {e}" for e in epochs), "First recognised", "Stops changing after"],
        [[name, *(f"{'yes' if recognised[k, i] else 'no'} ({judge_own[k, i]:.2f})" for k in range(len(epochs))),
          "-" if first[i] is None else first[i], "-" if settled[i] is None else settled[i]]
         for i, name in enumerate(names)],
        title="Class images: the judge's verdict (its probability of the class) per epoch"))
    section.data["classes"] = [
        {"class": int(c), "name": names[i], "recognised": recognised[:, i], "judge_probability": judge_own[:, i],
         "model_probability": probability[:, i], "first_recognised": first[i],
         "correlation_with_next": correlations[:, i], "settled_after": settled[i]}
        for i, c in enumerate(classes)]


def _layers(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]],
            followed: dict[str, np.ndarray], pictures: dict[str, LayerPictures]) -> dict[str, Any]:
    layers: dict[str, Any] = {}
    for name, units in followed.items():
        if not len(units):
            continue
        results = [s["pictures"][name] for s in states]
        images = np.stack([r.images for r in results])  # (E, units, H, W, C)
        activation = np.stack([r.activation for r in results])
        correlations = image_correlations(images)
        settled = settled_epochs(epochs, correlations)
        path = _filmstrip(ctx, f"timeline-{name}", images, [f"filter {u}" for u in units], epochs)
        still = sum(s is None for s in settled)
        section.figures.append(Figure(
            path, title=f"{name}: filters per epoch",
            caption=f"{name}: {len(units)} filters (the budget's first), each row one filter, each column a "
            f"snapshot. {len(units) - still} of {len(units)} stop changing (correlation with the next snapshot "
            f"at least {STABLE_CORRELATION} from then on); {still} still change at the last step.",
            alt=f"Filmstrip of the feature visualization of filters of {name} per snapshot epoch",
            numbers={"filters": len(units), "settled": len(units) - still,
                     "median_last_correlation": float(np.median(correlations[-1])) if len(correlations) else None}))
        section.tables.append(Table(
            ["Filter", *(f"{a}→{b}" for a, b in pairwise(epochs)), "Stops changing after"],
            [[int(u), *(f"{v:.3f}" for v in correlations[:, j]), "-" if settled[j] is None else settled[j]]
             for j, u in enumerate(units)],
            title=f"{name}: correlation of each filter's image with the next snapshot's", collapsed=True))
        records = pictures.get(name)
        filters = []
        for j, u in enumerate(units.tolist()):
            strip = ctx.save_png(f"{u}-timeline", tile_grid(as_rgb(images[:, j]), cols=len(epochs),
                                                            background=GREY), folder=("units", name))
            record = {"filter": u, "activation": activation[:, j], "correlation_with_next": correlations[:, j],
                      "settled_after": settled[j], "image": strip}
            filters.append(record)
            if records is not None and u in records.records:  # the filter's page shows its filmstrip
                records.records[u]["timeline"] = {"image": strip, "epochs": epochs, **record}
        layers[name] = {"filters": filters, "settled": len(units) - still}
    section.data["layers"] = layers
    return layers


def _kernels(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]]) -> None:
    if states[0]["kernel"] is None:
        return
    name = ctx.network.units[0].path
    kernels = np.stack([s["kernel"] for s in states])  # (E, kh, kw, cin, F)
    shown = min(kernels.shape[-1], KERNELS_SHOWN)
    per_filter = np.moveaxis(kernels[..., :shown], -1, 1)  # (E, F, kh, kw, cin)
    colour = kernels.shape[3] == 3
    tiles = np.stack([_rgb_tiles(k) if colour else _diverging_tiles(k.mean(axis=-1)) for k in per_filter])
    tiles = np.stack([resize_nearest(t, *_enlarged(kernels.shape[1:3])) for t in tiles])
    path = ctx.save_png("timeline-kernels", tile_grid(tiles.reshape(-1, *tiles.shape[2:]), cols=shown))
    change = np.sqrt(((kernels[1:] - kernels[:-1]) ** 2).sum(axis=(1, 2, 3)))  # (E-1, F)
    norms = np.sqrt((kernels**2).sum(axis=(1, 2, 3)))  # (E, F)
    section.figures.append(Figure(
        path, title=f"{name}: kernels per epoch",
        caption=f"The first layer's {shown} kernels, one row per snapshot (epochs {', '.join(map(str, epochs))}), "
        f"{'as RGB' if colour else 'blue negative, red positive'}, scaled per filter. Mean L2 norm "
        f"{norms[0].mean():.3f} at epoch {epochs[0]}, {norms[-1].mean():.3f} at epoch {epochs[-1]}.",
        alt=f"Kernels of {name}, one row per snapshot epoch",
        numbers={"first_mean_norm": float(norms[0].mean()), "last_mean_norm": float(norms[-1].mean())}))
    section.data["kernels"] = {"layer": name, "mean_l2_norm": norms.mean(axis=1),
                               "mean_change_to_next": change.mean(axis=1) if len(change) else []}


def _dead(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]],
          layers: dict[str, Any]) -> None:
    paths = [unit.path for unit in ctx.network.units]
    if not paths:
        return
    counts = {path: [int(s["dead"][path].sum()) for s in states] for path in paths}
    sizes = {path: len(states[0]["dead"][path]) for path in paths}
    section.tables.append(Table(["Layer", "Filters", *(f"dead at epoch {e}" for e in epochs)],
                                [[path, sizes[path], *counts[path]] for path in paths],
                                title="Dead filters (never active on any test image) per epoch"))
    section.data["dead_filters"] = counts
    section.data["dead_filter_ids"] = {path: {e: np.flatnonzero(s["dead"][path]) for e, s in zip(epochs, states)}
                                       for path in paths}


def _filmstrip(ctx: ModelContext, name: str, images: np.ndarray, rows: list[str], epochs: list[int],
               marks: np.ndarray | None = None) -> str:
    """One row per unit, one column per epoch, labelled; `marks` (E, rows) frames the marked tiles in green."""
    count, height, width = images.shape[1], *images.shape[2:4]
    size = tile_size(height, width, target=56, largest=112)
    side = 0.75 * size[0] / 56
    fig, axes = plt.subplots(count, len(epochs), figsize=(side * len(epochs) + 1.2, side * count + 0.4),
                             squeeze=False)
    for k, epoch in enumerate(epochs):
        for i in range(count):
            ax = axes[i][k]
            ax.imshow(np.clip(as_rgb(images[k, i : i + 1])[0], 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            marked = marks is not None and bool(marks[k, i])
            for spine in ax.spines.values():
                spine.set_edgecolor("#1a9641" if marked else "#bbbbbb")
                spine.set_linewidth(3 if marked else 0.5)
            if i == 0:
                ax.set_title(f"epoch {epoch}", fontsize=8)
            if k == 0:
                ax.set_ylabel(rows[i], rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return ctx.save_figure(slugify(name), fig, dpi=100)

