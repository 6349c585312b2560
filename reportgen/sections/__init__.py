"""Every visualization family, in page order. A section module exposes
`build(ctx: ModelContext, ...) -> Section | None`; add a new family by appending a `Step` here. A step that
shows what an earlier one made names it in `needs`: its `build` then takes that section's `handoff`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reportgen.sections import (
    activations,
    attribution,
    class_maps,
    confusion,
    deepdream,
    feature_vis,
    kernels,
    summary,
    timeline,
    training_curves,
    units,
)
from reportgen.sections.context import ModelContext
from reportgen.sections.report import Section


@dataclass(frozen=True)
class Step:
    """One section of the page: its name (for progress and timing), its builder, and the earlier steps whose
    sections' `handoff` the builder takes after `ctx`, in order (None when that step made no section)."""

    name: str
    build: Callable[..., Section | None]
    needs: tuple[str, ...] = ()

    def run(self, ctx: ModelContext, built: dict[str, Section | None]) -> Section | None:
        """Build this section from the context and the sections `built` so far (step name -> section)."""
        return self.build(ctx, *(_handoff(built.get(name)) for name in self.needs))


def _handoff(section: Section | None) -> Any:
    return None if section is None else section.handoff


SECTION_BUILDERS: list[Step] = [
    Step("model summary", summary.build),
    Step("training curves", training_curves.build),
    Step("confusion matrix and mistakes", confusion.build),
    Step("activation grids", activations.build),
    Step("mean maps per class", class_maps.build),
    Step("kernel weights", kernels.build),
    Step("feature visualization", feature_vis.build),
    Step("learning over time", timeline.build, needs=("feature visualization",)),  # filmstrips on the unit pages
    Step("dataset examples and projections", units.build, needs=("feature visualization",)),  # shows its pictures
    Step("DeepDream", deepdream.build, needs=("feature visualization",)),
    Step("attributions", attribution.build),
]
