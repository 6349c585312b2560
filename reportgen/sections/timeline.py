"""Learning over time: what the network had learned at each snapshot kept during training.

Each snapshot's weights are loaded into a copy of the model and the report's own engines run on it: a test pass
(accuracy per class, confusion matrix, dead filters), feature visualization of a budgeted set of filters and
of the classes (all snapshots in one batched run), always from the same random starts (the build's seed), so a
picture changes only because the model did, and the same independent judge of the class images. The snapshot
that is the model as reported reuses the report's test pass and pictures. Its page shows the filmstrips; each filter's
page shows its own (the records of the feature-vis section are handed on with it).
"""

from __future__ import annotations

import dataclasses
import time
from itertools import pairwise
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from reportgen.methods import recognition
from reportgen.methods.featvis import LOGITS, FeatVisSettings, FilterImages, visualize_models
from reportgen.methods.timeline import (
    STABLE_CORRELATION,
    first_epochs,
    image_correlations,
    settled_epochs,
    snapshot_weights,
)
from reportgen.model import Network
from reportgen.model.surgery import weights_copy
from reportgen.model.units import conv_kernel
from reportgen.sections.confusion import confusion_matrix
from reportgen.sections.context import ModelContext
from reportgen.sections.feature_vis import _class_settings, picture_settings, typical_margin
from reportgen.sections.kernels import _diverging_tiles, _rgb_tiles
from reportgen.sections.report import Figure, Page, Section, Table
from reportgen.sections.units import LayerPictures, paged_units
from reportgen.util import progress
from reportgen.util.imaging import as_rgb, resize_nearest, tile_grid, tile_size
from reportgen.util.slugs import slugify

FILTERS_PER_LAYER = 8  # filters per conv layer followed through training: the budget's first (most active) ones
QUICK_FILTERS = 4
CLASSES_SHOWN = 20  # classes followed (the first ones), so a 1,000-class head costs what a small one does
# Snapshots whose pictures are optimised together (each as a copy of the model): the optimisations are traced once
# per group, and a group's copies are in memory at once.
SNAPSHOTS_AT_ONCE = 8
KERNELS_SHOWN = 32  # first-layer kernels drawn per snapshot
CLASS_TILE, KERNEL_TILE = 56, 24  # pixels a side the pictures are magnified to, about
PAGE = "timeline/index.html"
STRIP_PAD = 4
RECOGNISED, NOT_RECOGNISED = np.array([0.1, 0.59, 0.25]), np.array([0.84, 0.1, 0.11])


def build(ctx: ModelContext, pictures: dict[str, LayerPictures] | None = None) -> Section | None:
    """The section and its page; None for a model without snapshots and without a way to have them."""
    section = Section(id="timeline", title="Learning over time", template="sections/timeline")
    if not ctx.snapshots:
        section.notes.append(_why_none(ctx))
        return section
    start = time.perf_counter()
    epochs = sorted(ctx.snapshots)
    settings = picture_settings(ctx)
    # One random start per class: with the best of several, the start kept could change from one epoch to the
    # next, and the picture with it, though the model had not.
    class_settings = dataclasses.replace(
        _class_settings(ctx, settings, typical_margin(ctx.probabilities, ctx.data.y_test)), starts=1)
    per_layer = QUICK_FILTERS if ctx.quick else FILTERS_PER_LAYER
    followed = {name: _followed(ctx.plan.units[name], (pictures or {}).get(name), per_layer)
                for name in ctx.plan.layers}
    classes = np.arange(min(ctx.network.num_classes, CLASSES_SHOWN))
    judge = recognition.train_judge(ctx.data, ctx.network.image_shape, ctx.seed, ctx.cache_dir)
    seconds = {"test pass": 0.0, "feature visualization": 0.0}
    states = _evaluate_all(ctx, epochs, followed, classes, settings, class_settings, judge, pictures or {},
                           seconds)
    section.intro = (
        f"The model at {len(epochs)} snapshots kept during training (epochs {', '.join(map(str, epochs))}), each "
        "run through the same engines as the rest of this report, from the same random starts, so a picture "
        "changes only because the model did (one start per class image, not the best of several). A picture has "
        "stopped changing when its Pearson correlation over "
        f"pixels with the next snapshot's is at least {STABLE_CORRELATION} from that epoch on.")
    data: dict[str, Any] = {"epochs": epochs, "snapshot_files": {e: ctx.snapshots[e].name for e in epochs},
                            "stable_correlation": STABLE_CORRELATION, "measure": "pearson correlation over pixels"}
    section.data = data
    _accuracy(ctx, section, epochs, states)
    strips: dict[str, Any] = {}  # figure path -> its labelled rows, for the pages
    _classes(ctx, section, epochs, states, classes, judge, strips)
    _kernels(ctx, section, epochs, states, strips)
    layers = _layers(ctx, section, epochs, states, followed, pictures or {}, strips)
    _dead(ctx, section, epochs, states, layers)
    # timings vary from build to build, so they stay out of report.json (bench/timeline.py reads them here)
    section.handoff = {"seconds": {**seconds, "total": time.perf_counter() - start}}
    section.pages.append(Page(PAGE, "timeline.html", f"Learning over time: {ctx.spec.name}",
                              {"epochs": epochs, "blocks": _blocks(section), "strips": strips}))
    return section


def _blocks(section: Section) -> list[dict[str, Any]]:
    """The page's order: each figure followed by the tables on the same subject (see `_add`), then the rest."""
    blocks, used = [], set()
    for figure in section.figures:
        tables = [t for t in section.tables if t.title.startswith(figure.title.split(" per epoch")[0] + ":")]
        used |= {id(t) for t in tables}
        blocks.append({"figure": figure, "tables": tables})
    rest = [t for t in section.tables if id(t) not in used]
    if rest:
        blocks.append({"figure": None, "tables": rest})
    return blocks


def _followed(shown: np.ndarray, pictures: LayerPictures | None, count: int) -> np.ndarray:
    """The filters a layer's filmstrip follows: the first `count` of those the budget shows whose final image is a
    pattern (neither dead nor uniform, as the feature-vis section found them), then others if too few are."""
    shown = np.asarray(shown)
    records = pictures.records if pictures is not None else {}
    telling = [u for u in shown.tolist() if u in records and not records[u]["dead"] and not records[u]["uniform"]]
    rest = [u for u in shown.tolist() if u not in telling]
    return np.asarray(sorted((telling + rest)[:count]), int)


def _why_none(ctx: ModelContext) -> str:
    if ctx.spec.model_file:
        return ("No snapshots: pass --checkpoints DIR (the files keras.callbacks.ModelCheckpoint wrote, one per "
                "epoch) or train with reportgen.ReportCallback to see how the model learned.")
    return ("No snapshots: this model was trained before reportgen kept them (or with snapshots = []); rebuild with "
            "--retrain, or set snapshots = [1, 2, 4, 8] in its config entry.")


def _evaluate_all(ctx: ModelContext, epochs: list[int], followed: dict[str, np.ndarray], classes: np.ndarray,
                  settings: FeatVisSettings, class_settings: FeatVisSettings, judge: recognition.Judge,
                  pictures: dict[str, LayerPictures], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Everything the timeline reads of each snapshot, SNAPSHOTS_AT_ONCE snapshots at a time: each one's test
    pass, then their feature visualization in one batched run (`visualize_models`: the optimisations are traced
    once for the group, not once per snapshot). The snapshot that is the model as reported takes its filters' and
    classes' images from the feature-vis section, which rendered them with the same settings and starts (the
    classes' first start). The time each
    part took is added to `seconds`."""
    wanted = {**{name: units for name, units in followed.items() if len(units)}, LOGITS: classes}
    reused = {name: units for name, units in wanted.items()
              if name in pictures and all(u in pictures[name].images for u in units.tolist())}
    states: list[dict[str, Any]] = []
    with progress.bar(len(epochs), "snapshots", unit="epoch") as bar:
        for first in range(0, len(epochs), SNAPSHOTS_AT_ONCE):
            group = epochs[first : first + SNAPSHOTS_AT_ONCE]
            loaded = [_load(ctx, epoch, seconds) for epoch in group]
            own = [{n: u for n, u in wanted.items() if n not in reused} if network is ctx.network else wanted
                   for network, _ in loaded]
            if any(network is None for network, _ in loaded):  # a model Keras cannot copy: one snapshot at a time
                for epoch, units, (_, state) in zip(group, own, loaded):
                    with snapshot_weights(ctx.model, ctx.snapshots[epoch]) as (model, same):
                        network = ctx.network if same else Network(model, ctx.network.input_range)
                        state["pictures"] = _pictures(ctx, [network], [units], settings, class_settings, seconds)[0]
            else:
                rendered = _pictures(ctx, [network for network, _ in loaded], own, settings, class_settings, seconds)
                for (_, state), images in zip(loaded, rendered):
                    state["pictures"] = images
            for network, state in loaded:
                if network is ctx.network:
                    state["pictures"].update({name: _reported(pictures[name], units) for name, units in reused.items()})
                state["verdict"] = recognition.recognise(judge, state["pictures"][LOGITS].images, classes)
                states.append(state)
                bar.update()
    return states


def _reported(pictures: LayerPictures, units: np.ndarray) -> FilterImages:
    """The feature-vis section's images of `units` and the activation each reached (for classes: the logit and
    the model's probability)."""
    records = [pictures.records[u] for u in units.tolist()]
    probability = [r["probability"] for r in records] if all("probability" in r for r in records) else None
    return FilterImages(units, np.stack([pictures.images[u] for u in units.tolist()]),
                        np.array([r["activation"] for r in records], np.float32),
                        probability=None if probability is None else np.array(probability))


def _load(ctx: ModelContext, epoch: int, seconds: dict[str, float]) -> tuple[Network | None, dict[str, Any]]:
    """A snapshot's network (the model's own when the snapshot is the model as reported, else a copy of the model
    holding the snapshot's weights; None where the model cannot be copied) and its test pass, first-layer kernel
    and dead filters."""
    start = time.perf_counter()
    with snapshot_weights(ctx.model, ctx.snapshots[epoch]) as (model, same):
        kernel = conv_kernel(ctx.network.units[0].conv.layer).copy() if ctx.network.units else None
        if same:  # the snapshot is the model as reported: its test pass is the one every section read
            network, probabilities = ctx.network, ctx.probabilities
            maxima = {unit.path: ctx.conv_stats[unit.path].max for unit in ctx.network.units}
        else:
            copy = weights_copy(model)
            network = None if copy is None else Network(copy, ctx.network.input_range)
            passing = network or Network(model, ctx.network.input_range)
            # only what the timeline reads: probabilities and each channel's maximum (test_pass's means and max
            # positions would double the pass's time)
            probabilities, peaks = passing.peak_pass(ctx.data.x_test, [unit.point.path for unit in passing.units],
                                                     progress_label=f"epoch {epoch}: test set")
            maxima = {unit.path: peaks[unit.point.path] for unit in passing.units}
    seconds["test pass"] += time.perf_counter() - start
    dead = {path: values.max(axis=0) <= 0 for path, values in maxima.items()}
    return network, {"probabilities": probabilities, "dead": dead, "kernel": kernel}


def _pictures(ctx: ModelContext, networks: list[Network], wanted: list[dict[str, np.ndarray]],
              settings: FeatVisSettings, class_settings: FeatVisSettings, seconds: dict[str, float]
              ) -> list[dict[str, Any]]:
    start = time.perf_counter()
    pictures = visualize_models(networks, wanted, settings, ctx.seed, class_settings)
    seconds["feature visualization"] += time.perf_counter() - start
    return pictures


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
        ctx.save_figure("timeline-accuracy", fig), title="Accuracy per class per epoch",
        caption=f"Test accuracy per class at each snapshot (black: all {len(y):,} test images), from "
        f"{accuracy[0]:.4f} at epoch {epochs[0]} to {accuracy[-1]:.4f} at epoch {epochs[-1]}.",
        alt="Line chart of the test accuracy of each class per snapshot epoch",
        numbers={"first_accuracy": accuracy[0], "last_accuracy": accuracy[-1]}))
    section.tables.append(Table(["Class", *(f"epoch {e}" for e in epochs)],
                                [[name, *(f"{v:.4f}" for v in per_class[:, c])] for c, name in enumerate(names)]
                                + [["all", *(f"{v:.4f}" for v in accuracy)]],
                                title="Accuracy per class: test accuracy at each snapshot", collapsed=len(names) > 12))
    if len(names) <= CLASSES_SHOWN:
        section.figures.append(_confusions(ctx, epochs, matrices, names))


def _confusions(ctx: ModelContext, epochs: list[int], matrices: list[np.ndarray], names: list[str]) -> Figure:
    """The mistakes of each snapshot's confusion matrix side by side, on one scale (the diagonal, the correct
    answers, is left blank so the confusions show)."""
    n = len(names)
    off = [cm.astype(float) for cm in matrices]
    for cm in off:
        np.fill_diagonal(cm, np.nan)
    top = max(1.0, max(float(np.nanmax(cm)) for cm in off))
    fig, axes = plt.subplots(1, len(epochs), figsize=(min(2.6, 0.24 * n + 0.6) * len(epochs) + 0.8,
                                                     min(2.6, 0.24 * n + 0.6) + 0.5), squeeze=False)
    for ax, epoch, cm in zip(axes[0], epochs, off):
        image = ax.imshow(cm, cmap="Reds", vmin=0, vmax=top)
        ax.set_title(f"epoch {epoch}", fontsize=9)
        ax.set_xticks(range(n), names if n <= 12 else [], fontsize=6)
        ax.set_yticks(range(n), names if n <= 12 and ax is axes[0][0] else [], fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
    axes[0][0].set_ylabel("true", fontsize=7)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="test images")
    wrong = [int(cm.sum() - np.trace(cm)) for cm in matrices]
    return Figure(ctx.save_figure("timeline-confusion", fig), title="Confusion matrix per epoch",
                  caption="The mistakes of each snapshot: rows are true classes, columns predictions, the darker the "
                  f"more test images (one scale for all, at most {int(top)}); the diagonal (correct answers) is left "
                  f"blank. Misclassified test images per snapshot: {', '.join(f'{w:,}' for w in wrong)} (every "
                  "count is in report.json).",
                  alt="Confusion matrices of the test set without their diagonal, one per snapshot epoch",
                  numbers={"first_misclassified": wrong[0], "last_misclassified": wrong[-1]})


def _classes(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]],
             classes: np.ndarray, judge: recognition.Judge, strips: dict[str, Any]) -> None:
    images = np.stack([s["pictures"][LOGITS].images for s in states])  # (E, classes, H, W, C)
    recognised = np.stack([s["verdict"].recognised for s in states])  # (E, classes)
    probability = np.stack([s["pictures"][LOGITS].probability for s in states])
    judge_own = np.stack([s["verdict"].own_probability for s in states])
    first = first_epochs(epochs, recognised)
    correlations = image_correlations(images)
    settled = settled_epochs(epochs, correlations)
    names = [ctx.class_name(c) for c in classes]
    path, strip = _filmstrip(ctx, "timeline-classes", images, names, [f"epoch {e}" for e in epochs], recognised,
                             target=CLASS_TILE)
    strips[path] = strip
    count = sum(f is not None for f in first)
    section.figures.insert(0, Figure(
        path, title="Class images per epoch",
        caption=f"Each row one class, each column a snapshot: the image optimised for the class's logit at that "
        f"epoch. Framed green: the independent judge (a pixel MLP, {judge.test_accuracy:.1%} test accuracy) "
        f"calls it its class; red: it does not. {count} of {len(names)} class images are recognised at some "
        f"snapshot; at the last, {int(recognised[-1].sum())}.",
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
            followed: dict[str, np.ndarray], pictures: dict[str, LayerPictures], strips: dict[str, Any]
            ) -> dict[str, Any]:
    layers: dict[str, Any] = {}
    for name, units in followed.items():
        if not len(units):
            continue
        results = [s["pictures"][name] for s in states]
        images = np.stack([r.images for r in results])  # (E, units, H, W, C)
        activation = np.stack([r.activation for r in results])
        correlations = image_correlations(images)
        settled = settled_epochs(epochs, correlations)
        records = pictures.get(name)
        with_page = set(paged_units(ctx).get(name, np.zeros(0, int)).tolist()) if records is not None else set()
        paged = [u in with_page for u in units.tolist()]
        path, strip = _filmstrip(ctx, f"timeline-{name}", images, [f"filter {u}" for u in units],
                                 [f"epoch {e}" for e in epochs],
                                 row_files=[(f"{u}-timeline", ("units", name)) for u in units.tolist()],
                                 hrefs=[f"{slugify(name)}/{u}.html" if has else None
                                        for u, has in zip(units.tolist(), paged)])
        strips[path] = strip
        still = sum(s is None for s in settled)
        section.figures.append(Figure(
            path, title=f"{name} filters per epoch",
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
            title=f"{name} filters: correlation of each one's image with the next snapshot's", collapsed=True))
        filters = []
        for j, u in enumerate(units.tolist()):
            record = {"filter": u, "activation": activation[:, j], "correlation_with_next": correlations[:, j],
                      "settled_after": settled[j], "image": strip["rows"][j]["image"]}
            filters.append(record)
            if records is not None and u in records.records:  # the filter's page shows its filmstrip
                records.records[u]["timeline"] = {"epochs": epochs, **record}
        layers[name] = {"filters": filters, "settled": len(units) - still}
    section.data["layers"] = layers
    return layers


def _kernels(ctx: ModelContext, section: Section, epochs: list[int], states: list[dict[str, Any]],
             strips: dict[str, Any]) -> None:
    if states[0]["kernel"] is None:
        return
    name = ctx.network.units[0].path
    kernels = np.stack([s["kernel"] for s in states])  # (E, kh, kw, cin, F)
    shown = min(kernels.shape[-1], KERNELS_SHOWN)
    per_filter = np.moveaxis(kernels[..., :shown], -1, 1)  # (E, F, kh, kw, cin)
    colour = kernels.shape[3] == 3
    tiles = np.stack([_rgb_tiles(k) if colour else _diverging_tiles(k.mean(axis=-1)) for k in per_filter])
    # one column per filter, one row per epoch: the kernels are small, so the whole layer fits a row
    path, strip = _filmstrip(ctx, "timeline-kernels", np.swapaxes(tiles, 0, 1), [f"epoch {e}" for e in epochs],
                             [str(f) for f in range(shown)], target=KERNEL_TILE)
    strips[path] = strip
    change = np.sqrt(((kernels[1:] - kernels[:-1]) ** 2).sum(axis=(1, 2, 3)))  # (E-1, F)
    norms = np.sqrt((kernels**2).sum(axis=(1, 2, 3)))  # (E, F)
    section.figures.append(Figure(
        path, title=f"{name} kernels per epoch",
        caption=f"The first layer's {shown} kernels (columns, by filter index), one row per snapshot (epochs "
        f"{', '.join(map(str, epochs))}), "
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
                                title="Dead filters: filters never active on any test image, per epoch"))
    section.data["dead_filters"] = counts
    section.data["dead_filter_ids"] = {path: {e: np.flatnonzero(s["dead"][path]) for e, s in zip(epochs, states)}
                                       for path in paths}


def _filmstrip(ctx: ModelContext, name: str, images: np.ndarray, rows: list[str], columns: list[str],
               marks: np.ndarray | None = None, target: int = 56, row_files: list[tuple[str, tuple[str, ...]]]
               | None = None, hrefs: list[str | None] | None = None) -> tuple[str, dict[str, Any]]:
    """Pictures in rows and columns: `images` (columns, rows, H, W, C) in [0, 1]; `marks` (columns, rows) frames
    the tiles it holds true in green and the others in red. Each row is one PNG (at `row_files`' (name, folder)
    when given), the page labels them in HTML; the whole grid is one PNG too (the figure's, for report.json and
    the Markdown page).

    Returns:
        The grid's path and the strip the page draws: its column labels, tile size and rows (label, PNG, link).
    """
    n_columns, n_rows, height, width = images.shape[:4]
    size = tile_size(height, width, target=target, largest=2 * target)
    tiles = resize_nearest(as_rgb(images.reshape(-1, *images.shape[2:])), *size).reshape(n_columns, n_rows, *size, 3)
    if marks is not None:
        frame = max(1, size[0] // 20)
        colours = np.where(np.asarray(marks, bool)[..., None], RECOGNISED, NOT_RECOGNISED)[:, :, None, None, :]
        for edge in (np.s_[:, :, :frame], np.s_[:, :, -frame:], np.s_[:, :, :, :frame], np.s_[:, :, :, -frame:]):
            tiles[edge] = np.broadcast_to(colours, tiles[edge].shape)
    strips = [tile_grid(tiles[:, i], cols=n_columns, pad=STRIP_PAD) for i in range(n_rows)]
    row_files = row_files or [(f"{name}-{i}", ("timeline",)) for i in range(n_rows)]
    paths = [ctx.save_png(file, strip, folder=folder) for strip, (file, folder) in zip(strips, row_files)]
    grid = ctx.save_png(name, np.concatenate([strip[: -STRIP_PAD] for strip in strips[:-1]] + strips[-1:]))
    strip = {"columns": columns, "tile": list(size), "pad": STRIP_PAD,
             "width": strips[0].shape[1], "height": strips[0].shape[0],
             "rows": [{"label": label, "image": path, "href": (hrefs or [None] * n_rows)[i]}
                      for i, (label, path) in enumerate(zip(rows, paths))]}
    return grid, strip
