"""Activation grids: what every conv, pooling and dense layer outputs for the
sample images, one PNG per layer (a row per sample: the image, then its maps)."""

from __future__ import annotations

import numpy as np

from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.util import progress
from reportgen.util.imaging import (
    as_rgb,
    colorize,
    maps_to_tiles,
    near_square,
    normalize_each,
    resize_nearest,
    tile_grid,
)

DENSE_CELL_TARGET = 96  # a dense layer's near-square grid is about this many pixels wide


def build(ctx: ModelContext) -> Section | None:
    nodes = ctx.network.grid_nodes()
    if not nodes:
        return Section(id="activations", title="Activation grids",
                       notes=["The model has no conv, pooling, merge or dense layer to show."])
    indices = ctx.sample_indices
    units = {unit.point.path: unit for unit in ctx.network.units}
    outputs = ctx.network.outputs([node.path for node in nodes], ctx.samples)
    figures, tables, data, notes = [], [], {}, []
    for node in nodes:
        out, unit = outputs[node.path], units.get(node.path)
        name = unit.path if unit else node.path  # a conv's units are shown under the conv's name
        if out.ndim == 4:
            figure, table, numbers = _conv_layer(ctx, name, out, indices, unit.read_at if unit else "")
        elif out.ndim == 2:
            figure, table, numbers = _dense_layer(ctx, name, out, indices)
        else:
            continue
        figures.append(figure)
        tables.append(table)
        data[name] = numbers
        hidden = out.shape[-1] - numbers.get("maps_shown", out.shape[-1])
        if hidden > 0:
            notes.append(f"{name}: the first {numbers['maps_shown']} maps are drawn, {hidden} more are not "
                         f"(max_units = {ctx.spec.max_units}); their numbers are in the tables.")
    progress.log(f"    {len(figures)} activation grids for {len(indices)} sample images")
    return Section(
        id="activations",
        title="Activation grids",
        intro="Each row is one sample image followed by the layer's output for it: one tile per feature map "
        "(conv and pooling layers) or a near-square grid of units (dense layers). Each map is scaled to its own "
        "range (dark = lowest, yellow = highest); a map that is zero everywhere is silent for that image.",
        figures=figures,
        tables=tables,
        data=data,
        notes=notes,
    )


def _conv_layer(ctx: ModelContext, name: str, out: np.ndarray, indices: list[int], read_at: str = ""):
    """(S, H, W, C) maps: one row per sample, the input image then C map tiles."""
    shown = min(out.shape[-1], ctx.spec.max_units)
    maps = np.moveaxis(out[..., :shown], -1, 1)  # (S, C, H, W)
    single = out.shape[1] * out.shape[2] == 1  # a 1x1 map is one value: scale each map over the samples instead
    if single:
        maps = normalize_each(maps, axis=(0, 2, 3))
    tiles = maps_to_tiles(maps.reshape(-1, *maps.shape[2:]), scaled=single)
    tiles = tiles.reshape(len(out), shown, *tiles.shape[1:])
    rows = np.concatenate([_thumbnails(ctx.samples, tiles.shape[2:4])[:, None], tiles], axis=1)
    grid = tile_grid(rows.reshape(-1, *rows.shape[2:]), cols=shown + 1)
    per_sample = _per_sample_numbers(ctx, out, indices, silent_axis=(1, 2))
    numbers = {"maps": int(out.shape[-1]), "maps_shown": shown, "map_size": list(out.shape[1:3]),
               "mean_activation": float(out.mean()), "max_activation": float(out.max()),
               "silent_maps_all_samples": int(np.sum(out.max(axis=(0, 1, 2)) <= 0))}
    caption = (f"{name}: {out.shape[-1]} maps of {out.shape[1]}x{out.shape[2]}"
               + (f", {read_at}" if read_at else "")
               + (", each map scaled over the sample images" if single else "")
               + (f" (first {shown} shown)" if shown < out.shape[-1] else "")
               + f"; mean activation {numbers['mean_activation']:.3f}, max {numbers['max_activation']:.3f}, "
               f"{numbers['silent_maps_all_samples']} maps silent for every sample.")
    figure = Figure(ctx.save_png(f"activations-{name}", grid), caption=caption, title=name, numbers=numbers, wide=True,
                    alt=f"Activation maps of layer {name}, one row per sample image")
    return figure, _table(name, per_sample, "silent maps"), {**numbers, "samples": per_sample}


def _dense_layer(ctx: ModelContext, name: str, out: np.ndarray, indices: list[int]):
    """(S, U) unit values: each sample's units as a near-square grid of cells."""
    units = out.shape[-1]
    rows_, cols_ = near_square(units)
    padded = np.full((len(out), rows_ * cols_), np.nan, np.float32)
    padded[:, :units] = normalize_each(out, axis=(-1,))
    cell = max(2, DENSE_CELL_TARGET // cols_)
    cells = colorize(np.nan_to_num(padded, nan=0.0)).reshape(len(out), rows_, cols_, 3)
    cells[np.isnan(padded).reshape(len(out), rows_, cols_)] = 1.0  # unused cells are blank
    cells = resize_nearest(cells, rows_ * cell, cols_ * cell)
    thumbs = _thumbnails(ctx.samples, cells.shape[1:3])
    pairs = np.stack([thumbs, cells], axis=1).reshape(-1, *cells.shape[1:])
    grid = tile_grid(pairs, cols=2 * min(len(out), 5), pad=3)
    per_sample = _per_sample_numbers(ctx, out, indices, silent_axis=())
    numbers = {"units": int(units), "mean_activation": float(out.mean()), "max_activation": float(out.max()),
               "silent_units_all_samples": int(np.sum(out.max(axis=0) <= 0))}
    caption = (f"{name}: {units} units as a {rows_}x{cols_} grid beside each sample image; "
               f"mean {numbers['mean_activation']:.3f}, max {numbers['max_activation']:.3f}, "
               f"{numbers['silent_units_all_samples']} units silent for every sample.")
    figure = Figure(ctx.save_png(f"activations-{name}", grid), caption=caption, title=name, numbers=numbers,
                    alt=f"Unit values of dense layer {name} for each sample image")
    return figure, _table(name, per_sample, "silent units"), {**numbers, "samples": per_sample}


def _thumbnails(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return resize_nearest(as_rgb(images), *size)


def _per_sample_numbers(ctx: ModelContext, out: np.ndarray, indices: list[int], silent_axis: tuple[int, ...]):
    flat_max = out.max(axis=silent_axis) if silent_axis else out
    return [
        {
            "test_index": int(i),
            "label": ctx.class_name(ctx.data.y_test[i]),
            "predicted": ctx.class_name(ctx.predictions[i]),
            "probability": float(ctx.probabilities[i, ctx.predictions[i]]),
            "mean": float(o.mean()),
            "max": float(o.max()),
            "silent": int(np.sum(m <= 0)),
        }
        for i, o, m in zip(indices, out, flat_max)
    ]


def _table(name: str, per_sample: list[dict], silent_label: str) -> Table:
    rows = [[r + 1, s["test_index"], s["label"], f"{s['predicted']} ({s['probability']:.3f})",
             f"{s['mean']:.3f}", f"{s['max']:.3f}", s["silent"]] for r, s in enumerate(per_sample)]
    return Table(["Row", "Test image", "Label", "Predicted (p)", "Mean", "Max", silent_label.capitalize()], rows,
                 title=f"{name}: numbers per row", collapsed=True)
