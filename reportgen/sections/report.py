"""The report's data model: what every visualization family hands to the renderer.

A section is plain data: figures (a PNG plus the numbers that prove it means
something), tables and extra pages. The same objects become report.json, the
HTML page and the Markdown page, so a number shown is always a number stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Figure:
    """One picture with its caption and its proof numbers."""

    path: str  # relative to the model's folder, e.g. "img/activations_conv2d.png"
    caption: str
    alt: str = ""
    title: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    wide: bool = False  # scroll horizontally at natural size instead of fitting the column
    # A gallery: one PNG per unit (dicts with "unit", "path", "href" to its page or None, and its numbers),
    # drawn in HTML as linked tiles of `tile_size` (height, width) pixels; `path` is the whole grid in one PNG.
    tiles: list[dict[str, Any]] = field(default_factory=list)
    tile_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.alt = self.alt or self.caption


@dataclass
class Table:
    """A small table; cells are plain values, escaped by the templates."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    collapsed: bool = False  # shown folded (<details>) when long


@dataclass
class Page:
    """An extra page of a model's site (a layer or a unit), rendered from a template."""

    path: str  # relative to the model's folder, e.g. "conv2d/3.html"
    template: str  # HTML template name; a `.md` twin is rendered when it exists
    title: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    """One family of visualizations on a model's page."""

    id: str
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # extra numbers for report.json only
    pages: list[Page] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "no conv layer: section skipped"
    template: str = "sections/generic"  # without extension: .html and .md are rendered
    # What later sections take from this one (e.g. feature vis: each layer's pictures), passed to them by the
    # section registry (sections.Step.needs); never written to report.json.
    handoff: Any = None

    def to_json(self) -> dict[str, Any]:
        """The section as report.json stores it (pages are listed by path only)."""
        return {
            "id": self.id,
            "title": self.title,
            "figures": [jsonable(dataclasses.asdict(f)) for f in self.figures],
            "tables": [jsonable(dataclasses.asdict(t)) for t in self.tables],
            "data": jsonable(self.data),
            "pages": [p.path for p in self.pages],
            "notes": list(self.notes),
        }


def jsonable(value: Any) -> Any:
    """Turn numpy scalars and arrays (nested anywhere) into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    return value
