"""Training curves: accuracy and loss per epoch, train against validation."""

from __future__ import annotations

import matplotlib.pyplot as plt

from reportgen.sections.context import ModelContext
from reportgen.sections.report import Figure, Section, Table


def build(ctx: ModelContext) -> Section | None:
    history = ctx.history
    if not history.get("loss"):
        return Section(id="training", title="Training",
                       notes=["This model was loaded from a file, so there is no training history to show."])
    epochs = list(range(1, len(history["loss"]) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            if history.get(prefix + metric):
                ax.plot(epochs, history[prefix + metric], style, label=("validation " if prefix else "train ") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    final = {k: v[-1] for k, v in history.items() if v}
    figure = Figure(
        ctx.save_figure("training-curves", fig),
        caption=f"Accuracy and loss per epoch over {len(epochs)} epochs"
        + (f"; final validation accuracy {final['val_accuracy']:.4f}." if "val_accuracy" in final else "."),
        alt="Line charts of training and validation accuracy and loss per epoch",
        numbers=final,
    )
    columns = ["Epoch", *history.keys()]
    rows = [[e, *(f"{history[k][e - 1]:.4f}" for k in history)] for e in epochs]
    table = Table(columns, rows, title="Metrics per epoch", collapsed=len(rows) > 5)
    return Section(id="training", title="Training", figures=[figure], tables=[table],
                   data={"history": history})
