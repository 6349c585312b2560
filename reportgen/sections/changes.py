"""What changed since the last build with other weights: metrics, classes,
confusions and units, compared record to record (report.json to report.json)."""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen.sections.report import Section, Table

PAIRS_SHOWN = 5
FILTERS_SHOWN = 8  # per conv layer, side by side before and now
# An earlier report's pictures folder, relative to the model's folder (history/<build>/), when its build kept
# them: set in memory by build.site.earlier_reports, never written to report.json.
PICTURES_KEY = "history_pictures"


def compare_reports(before: dict[str, Any], after: dict[str, Any]) -> Section:
    """A section comparing two report.json records of the same model."""
    section = Section(
        id="changes",
        title="What changed since the last build",
        template="sections/changes",
        intro=f"Compared with the build of {before['build'].get('built_at', 'an earlier date')} "
        f"(other weights: the model was retrained or replaced).",
    )
    metrics = [(n, before["metrics"].get(n), after["metrics"].get(n)) for n in ("test_accuracy", "test_loss")]
    section.tables.append(Table(
        ["Metric", "Before", "Now", "Change"],
        [[n, f"{b:.4f}", f"{a:.4f}", f"{a - b:+.4f}"] for n, b, a in metrics if None not in (a, b)],
        title="Test metrics",
    ))
    section.data["metrics"] = {n: {"before": b, "after": a} for n, b, a in metrics}
    classes = _per_class(before, after)
    if classes:
        section.tables.append(Table(["Class", "Before", "Now", "Change"],
                                    [[c, f"{b:.4f}", f"{a:.4f}", f"{a - b:+.4f}"] for c, b, a in classes],
                                    title="Accuracy per class"))
        section.data["per_class_accuracy"] = {c: {"before": b, "after": a} for c, b, a in classes}
    pairs = _confusion_changes(before, after)
    if pairs:
        section.tables.append(Table(["True class", "Predicted as", "Before", "Now", "Change"], pairs,
                                    title="Confusions that changed most"))
        section.data["confusion_changes"] = [dict(zip(("true", "predicted", "before", "after"), p[:4])) for p in pairs]
    units = _unit_changes(before, after)
    section.data["units"] = units
    died = sum(len(u["died"]) for u in units.values())
    revived = sum(len(u["came_alive"]) for u in units.values())
    section.notes.append(f"{died} filters died and {revived} came alive since that build."
                         if units else "Unit-level changes need the feature-visualization section in both builds.")
    if units:
        section.tables.append(Table(["Layer", "Died", "Came alive"],
                                    [[layer, ", ".join(map(str, u["died"])) or "-",
                                      ", ".join(map(str, u["came_alive"])) or "-"] for layer, u in units.items()],
                                    title="Filters that died or came alive"))
    folder = before.get(PICTURES_KEY)
    if folder:
        section.data["pictures"] = side_by_side(before, after, folder)
    else:
        section.notes.append("The earlier build kept no pictures (builds before reportgen kept them in history/): "
                             "only numbers are compared.")
    return section


def side_by_side(before: dict[str, Any], after: dict[str, Any], before_folder: str,
                 after_folder: str = "") -> dict[str, Any]:
    """The class images and the filters both builds show, each as (before, after) picture paths with their
    proof numbers: the judge's verdict for a class, the activation reached over the best test image's for a
    filter. Paths are `before_folder` / `after_folder` + the path in each report."""
    old, new = _section_data(before, "feature-vis"), _section_data(after, "feature-vis")
    old_classes = {c["class"]: c for c in old.get("classes", [])}
    classes = []
    for c in new.get("classes", []):
        b = old_classes.get(c["class"])
        if b is None or not b.get("image"):
            continue
        classes.append({"class": c["class"], "name": c["name"], "before": before_folder + b["image"],
                        "after": after_folder + c["image"], "width": c.get("width"), "height": c.get("height"),
                        "before_recognised": b.get("independent", {}).get("recognised"),
                        "after_recognised": c.get("independent", {}).get("recognised"),
                        "before_probability": b.get("probability"), "after_probability": c.get("probability")})
    layers = {}
    for name, layer in new.get("layers", {}).items():
        old_filters = {f["index"]: f for f in old.get("layers", {}).get(name, {}).get("filters", [])}
        rows = []
        for f in layer.get("filters", []):
            b = old_filters.get(f["index"])
            if b is None or "feature_vis" not in b.get("images", {}):
                continue
            rows.append({"filter": f["index"], "before": before_folder + b["images"]["feature_vis"],
                         "after": after_folder + f["images"]["feature_vis"],
                         "before_ratio": _ratio(b), "after_ratio": _ratio(f),
                         "before_dead": bool(b.get("dead")), "after_dead": bool(f.get("dead"))})
            if len(rows) == FILTERS_SHOWN:
                break
        if rows:
            layers[name] = rows
    return {"classes": classes, "layers": layers}


def _ratio(record: dict[str, Any]) -> float | None:
    """A filter image's mean activation over the best test image's (at least 1: the picture beats the data)."""
    reference = record.get("dataset_max") or 0
    return record["activation"] / reference if reference > 0 and "activation" in record else None


def _section_data(report: dict[str, Any], section_id: str) -> dict[str, Any]:
    return next((s["data"] for s in report.get("sections", []) if s["id"] == section_id), {})


def _per_class(before, after) -> list[tuple[str, float, float]]:
    b = _section_data(before, "confusion").get("per_class_accuracy", {})
    a = _section_data(after, "confusion").get("per_class_accuracy", {})
    return [(c, b[c], a[c]) for c in a if c in b]


def _confusion_changes(before, after) -> list[list[Any]]:
    b = np.asarray(_section_data(before, "confusion").get("confusion_matrix", []))
    a = np.asarray(_section_data(after, "confusion").get("confusion_matrix", []))
    if a.shape != b.shape or a.ndim != 2:
        return []
    names = after["model"]["class_names"]
    delta = a - b
    np.fill_diagonal(delta, 0)
    order = np.argsort(-np.abs(delta), axis=None)[:PAIRS_SHOWN]
    rows = []
    for t, p in zip(*np.unravel_index(order, delta.shape)):
        if delta[t, p]:
            rows.append([names[t], names[p], int(b[t, p]), int(a[t, p]), f"{int(delta[t, p]):+d}"])
    return rows


def _unit_changes(before, after) -> dict[str, dict[str, list[int]]]:
    """Per conv layer, the filter indices that are dead now but were not, and the reverse."""
    dead_before, dead_after = _dead_filters(before), _dead_filters(after)
    return {
        layer: {"died": sorted(dead_after[layer] - dead_before[layer]),
                "came_alive": sorted(dead_before[layer] - dead_after[layer])}
        for layer in dead_after
        if layer in dead_before
    }


def _dead_filters(report: dict[str, Any]) -> dict[str, set[int]]:
    layers = _section_data(report, "feature-vis").get("layers", {})
    return {name: {f["index"] for f in layer.get("filters", []) if f.get("dead")} for name, layer in layers.items()}
