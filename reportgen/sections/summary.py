"""Model summary: every layer with its type, output shape and parameter count."""

from __future__ import annotations

import keras
import numpy as np

from reportgen.sections.context import ModelContext
from reportgen.sections.report import Section, Table

OUTPUT_WORDS = {"softmax": "softmax probabilities", "sigmoid": "one sigmoid unit (binary)",
                "logits": "logits (no activation), turned into probabilities with a softmax (a sigmoid for one unit)",
                "multi-sigmoid": "one sigmoid per class, compared through their logits with a softmax"}


def build(ctx: ModelContext) -> Section:
    """Every layer call of the flat graph: the layers of nested models appear with their path."""
    rows = []
    for node in ctx.network.graph.nodes.values():
        params = node.layer.count_params() if isinstance(node.layer, keras.layers.Layer) else 0
        rows.append([node.path, type(node.layer).__name__, _shape_text(node.shape), params])
    total = ctx.model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in ctx.model.trainable_weights)
    nested = sum(1 for node in ctx.network.graph.nodes.values() if "/" in node.path)
    return Section(
        id="summary",
        title="Model summary",
        intro=f"{len(rows)} layers" + (f" ({nested} inside nested models, shown with their path)" if nested else "")
        + f", {total:,} parameters ({trainable:,} trainable). Input: images of "
        f"{' x '.join(str(d) for d in ctx.network.image_shape)}, pixel values in {ctx.network.input_range.text()} "
        f"({ctx.network.input_range.source}). Output: {OUTPUT_WORDS[ctx.network.output_kind]}.",
        tables=[Table(["Layer", "Type", "Output shape", "Parameters"], rows, collapsed=len(rows) > 40)],
        data={"total_params": total, "trainable_params": trainable,
              "input_range": [ctx.network.input_range.low, ctx.network.input_range.high],
              "input_range_source": ctx.network.input_range.source, "output": ctx.network.output_kind,
              "layers": [dict(zip(("name", "type", "output_shape", "params"), r)) for r in rows]},
    )


def _shape_text(shape: tuple | str) -> str:
    return "" if shape == "" else "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
