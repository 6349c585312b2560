"""Every visualization family, in page order. A section module exposes
`build(ctx: ModelContext) -> Section | None`; add a new family by appending it here."""

from __future__ import annotations

from collections.abc import Callable

from ..context import ModelContext
from ..report import Section
from . import (
    activations,
    attribution,
    class_maps,
    confusion,
    deepdream,
    feature_vis,
    kernels,
    summary,
    training_curves,
    units,
)

SectionBuilder = Callable[[ModelContext], "Section | None"]

SECTION_BUILDERS: list[tuple[str, SectionBuilder]] = [
    ("model summary", summary.build),
    ("training curves", training_curves.build),
    ("confusion matrix and mistakes", confusion.build),
    ("activation grids", activations.build),
    ("mean maps per class", class_maps.build),
    ("kernel weights", kernels.build),
    ("feature visualization", feature_vis.build),
    ("dataset examples and projections", units.build),  # after feature vis: its pages show the tiles
    ("DeepDream", deepdream.build),
    ("attributions", attribution.build),
]
