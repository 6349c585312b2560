"""Model summary: every layer with its type, output shape and parameter count."""

from __future__ import annotations

from ..context import ModelContext
from ..report import Section, Table


def build(ctx: ModelContext) -> Section:
    rows = []
    for layer in ctx.model.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None and hasattr(shape, "shape") else ""
        rows.append([layer.name, type(layer).__name__, _shape_text(shape), layer.count_params()])
    total = ctx.model.count_params()
    trainable = sum(int(w.numpy().size) for w in ctx.model.trainable_weights)
    return Section(
        id="summary",
        title="Model summary",
        intro=f"{len(rows)} layers, {total:,} parameters ({trainable:,} trainable).",
        tables=[Table(["Layer", "Type", "Output shape", "Parameters"], rows)],
        data={"total_params": total, "trainable_params": trainable,
              "layers": [dict(zip(("name", "type", "output_shape", "params"), r)) for r in rows]},
    )


def _shape_text(shape: tuple | str) -> str:
    return "" if shape == "" else "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
