"""Kernel weights: the first conv layer's filters as images, and for deeper
layers each filter's kernel averaged over its input channels."""

from __future__ import annotations

import numpy as np

from reportgen.model.units import conv_kernel
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table
from reportgen.util.imaging import colorize, resize_nearest, tile_grid

KERNEL_TILE = 36


def build(ctx: ModelContext) -> Section | None:
    units = [unit for unit in ctx.network.units if unit.path in ctx.plan.units]
    if not units:
        return Section(id="kernels", title="Kernel weights", notes=["The model has no conv layer."])
    section = Section(
        id="kernels",
        title="Kernel weights",
        intro="The learned filters. The first layer's kernels are shown as they meet the image (RGB for colour "
        "input); deeper kernels are averaged over their input channels. Blue is negative, red positive, white "
        "zero, scaled per filter.",
    )
    for depth, unit in enumerate(units):
        name, kernel = unit.path, conv_kernel(unit.conv.layer)  # (kh, kw, cin, cout)
        shown = min(kernel.shape[-1], ctx.spec.max_units)
        per_filter = np.moveaxis(kernel[..., :shown], -1, 0)  # (F, kh, kw, cin)
        colour = depth == 0 and kernel.shape[2] == 3
        bgr = colour and ctx.network.input_range.channels == "bgr"  # the model meets the image as B, G, R
        tiles = _rgb_tiles(per_filter[..., ::-1] if bgr else per_filter) if colour else \
            _diverging_tiles(per_filter.mean(axis=-1))
        tiles = resize_nearest(tiles, *_enlarged(kernel.shape[:2]))
        norms = np.sqrt((per_filter**2).sum(axis=(1, 2, 3)))
        numbers = {"filters": int(kernel.shape[-1]), "kernel": list(kernel.shape),
                   "l2_norm_mean": float(norms.mean()), "l2_norm_min": float(norms.min()),
                   "l2_norm_max": float(norms.max()), "weight_min": float(kernel.min()),
                   "weight_max": float(kernel.max())}
        how = "as is" if depth == 0 else f"mean over {kernel.shape[2]} input channels"
        if colour:
            how = "as RGB (the model's BGR channels reversed)" if bgr else "as RGB"
        section.figures.append(Figure(
            ctx.save_png(f"kernels-{name}", tile_grid(tiles)),
            caption=f"{name}: {kernel.shape[-1]} kernels of {kernel.shape[0]}x{kernel.shape[1]}, {how}; "
            f"L2 norm per filter {numbers['l2_norm_min']:.3f} to {numbers['l2_norm_max']:.3f}.",
            alt=f"Kernel weights of layer {name}",
            title=name,
            numbers=numbers,
        ))
        section.tables.append(Table(
            ["Filter", "L2 norm", "Mean", "Min", "Max"],
            [[i, f"{n:.3f}", f"{w.mean():.4f}", f"{w.min():.4f}", f"{w.max():.4f}"]
             for i, (n, w) in enumerate(zip(norms, per_filter))],
            title=f"{name}: weights per filter", collapsed=True,
        ))
    return section


def _diverging_tiles(kernels: np.ndarray) -> np.ndarray:
    """(F, kh, kw) -> RGB tiles, zero at white, each filter scaled by its largest |weight|."""
    scale = np.abs(kernels).max(axis=(1, 2), keepdims=True)
    return colorize(0.5 + 0.5 * kernels / np.where(scale > 0, scale, 1), cmap="RdBu_r")


def _rgb_tiles(kernels: np.ndarray) -> np.ndarray:
    """(F, kh, kw, 3) -> RGB tiles, each filter min-max scaled over its three channels."""
    low = kernels.min(axis=(1, 2, 3), keepdims=True)
    span = kernels.max(axis=(1, 2, 3), keepdims=True) - low
    return (kernels - low) / np.where(span > 0, span, 1)


def _enlarged(size: tuple[int, int]) -> tuple[int, int]:
    factor = max(1, KERNEL_TILE // max(size))
    return size[0] * factor, size[1] * factor
