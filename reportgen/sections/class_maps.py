"""Per class: the mean activation map of every layer, and one filter compared
across two classes (the Fashion-MNIST post's "same filter, two classes")."""

from __future__ import annotations

import numpy as np

from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.util.imaging import as_rgb, maps_to_tiles, resize_nearest, tile_grid

TILE = 56


def build(ctx: ModelContext) -> Section | None:
    spatial = [node.path for node in ctx.network.grid_nodes() if len(node.shape) == 4]
    if not spatial:
        return Section(id="class-maps", title="Mean maps per class", notes=["The model has no conv or pooling layer."])
    representatives = list(ctx.representatives.values())
    outputs = ctx.network.outputs(spatial, ctx.data.x_test[representatives])
    section = Section(
        id="class-maps",
        title="Mean maps per class",
        intro="For one representative test image per class (the one the model is most sure of), the mean over all "
        "feature maps of each layer: where in the image the layer responds, class by class.",
    )
    section.figures.append(_mean_maps(ctx, spatial, outputs, representatives, section))
    compare = _compare_classes(ctx)
    if compare is not None:
        section.figures.append(compare[0])
        section.tables.append(compare[1])
        section.data["compare"] = compare[2]
    return section


def _mean_maps(ctx, names, outputs, representatives, section) -> Figure:
    images = resize_nearest(as_rgb(ctx.data.x_test[representatives]), TILE, TILE)
    rows = [images]
    table_rows = []
    for name in names:
        mean_map = outputs[name].mean(axis=-1)  # (K, H, W)
        rows.append(maps_to_tiles(mean_map, size=(TILE, TILE)))
        table_rows.append([name, *(f"{v:.3f}" for v in mean_map.mean(axis=(1, 2)))])
    grid = tile_grid(np.concatenate(rows), cols=len(representatives))
    classes = [ctx.class_name(ctx.data.y_test[i]) for i in representatives]
    section.tables.append(Table(["Layer", *classes], table_rows, title="Mean activation per layer and class"))
    section.data["mean_activation"] = {row[0]: dict(zip(classes, map(float, row[1:]))) for row in table_rows}
    return Figure(
        ctx.save_png("class-mean-maps", grid),
        caption=f"Top row: one image per class ({', '.join(classes)}); below it, one row per layer "
        f"({', '.join(names)}) with the mean of its maps, each scaled on its own.",
        alt="Mean activation map of each layer for one image per class",
        numbers={"layers": names, "classes": classes, "test_indices": representatives},
    )


def _compare_classes(ctx: ModelContext):
    """For each conv layer, the filter whose mean activation differs most between
    the two classes (over the whole test set), shown on one image of each class."""
    units = ctx.network.units
    if not units or ctx.data.num_classes < 2:
        return None
    a, b = ctx.spec.compare_classes or _most_confused_pair(ctx)
    in_a, in_b = ctx.data.y_test == a, ctx.data.y_test == b
    if not in_a.any() or not in_b.any():
        return None
    image_a, image_b = ctx.representatives[a], ctx.representatives[b]
    outputs = ctx.network.outputs([unit.point.path for unit in units], ctx.data.x_test[[image_a, image_b]])
    thumbs = resize_nearest(as_rgb(ctx.data.x_test[[image_a, image_b]]), TILE, TILE)
    tiles, rows, data = [], [], []
    for unit in units:
        name = unit.path
        means = ctx.conv_stats[name].mean
        mean_a, mean_b = means[in_a].mean(axis=0), means[in_b].mean(axis=0)
        f = int(np.argmax(np.abs(mean_a - mean_b)))
        pair = maps_to_tiles(outputs[unit.point.path][..., f], size=(TILE, TILE))
        tiles += [thumbs[0], pair[0], thumbs[1], pair[1]]
        rows.append([name, f, f"{mean_a[f]:.3f}", f"{mean_b[f]:.3f}", f"{mean_a[f] - mean_b[f]:+.3f}"])
        data.append({"layer": name, "filter": f, "mean_a": float(mean_a[f]), "mean_b": float(mean_b[f])})
    name_a, name_b = ctx.class_name(a), ctx.class_name(b)
    figure = Figure(
        ctx.save_png("compare-classes", tile_grid(np.stack(tiles), cols=4)),
        caption=f"The same filter on a {name_a} and a {name_b}: per conv layer (one row each), the filter whose "
        f"mean activation differs most between the two classes over the test set.",
        alt=f"One filter per layer compared between class {name_a} and class {name_b}",
        numbers={"classes": [name_a, name_b], "filters": {d["layer"]: d["filter"] for d in data}},
    )
    table = Table(["Layer", "Filter", f"Mean on {name_a}", f"Mean on {name_b}", "Difference"], rows,
                  title=f"{name_a} vs {name_b}: the filter that tells them apart")
    return figure, table, {"classes": [int(a), int(b)], "layers": data}


def _most_confused_pair(ctx: ModelContext) -> tuple[int, int]:
    n = ctx.data.num_classes
    counts = np.bincount(ctx.data.y_test * n + ctx.predictions, minlength=n * n).reshape(n, n)
    counts = counts + counts.T
    np.fill_diagonal(counts, -1)
    a, b = np.unravel_index(np.argmax(counts), counts.shape)
    return int(min(a, b)), int(max(a, b))
