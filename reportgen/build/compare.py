"""Two models side by side: `reportgen compare A B` and the config's `[[compare]]` entries.

A and B are models of a site, by name, or a model's earlier build from its history/ (`NAME@1` is the build
before the current one, `NAME@2` the one before that). What their report.json records hold is compared
directly: metrics, confusion matrices, accuracy per class, the class images with both judges' verdicts. When
both models' weights can be found (the build's training cache or the configured model file, checked by the
sha256 their reports name), they are run on the same test images: the predictions that changed, the same
samples' activation grids, and, where their conv layers have the same shapes, a one-to-one matching of A's
filters to B's by the correlation of their activations (methods/matching.py). The page is written to
`compare/<a>--<b>/` in the site, with its numbers in compare.json, and linked from the index and both models'
pages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.build.fingerprint import file_digest
from reportgen.build.ownership import check_site, mark_model_folder
from reportgen.build.render import COMPARE, compare_records, environment, render
from reportgen.build.site import HISTORY, STAGING_PREFIX, earlier_reports, swap_in, write_front_pages
from reportgen.inputs.config import BuildOptions, ModelSpec
from reportgen.sections.changes import PICTURES_KEY, side_by_side
from reportgen.sections.report import Figure, Section, Table, jsonable
from reportgen.util import progress
from reportgen.util.errors import ReportgenError
from reportgen.util.slugs import slugify

CHANGED_SHOWN = 24  # samples whose prediction changed, drawn
PAIRS_PICTURED = 16  # matched filter pairs per layer shown with both pictures
LINKS_START, LINKS_END = "<!--compare-links-->", "<!--/compare-links-->"  # model pages' block of compare links


@dataclass
class Side:
    """One of the two: its report, where its pictures are, and (when its weights were found) the model."""

    label: str  # what the page calls it
    key: str  # its part of the compare folder's name
    slug: str  # its model folder
    report: dict[str, Any]
    pictures: Path | None  # the folder its report's picture paths are relative to; None: none kept
    loaded: Any = None  # (TrainedModel, Network, Dataset) when its weights were found


def compare_folder_name(a: Side, b: Side) -> str:
    return f"{a.key}--{b.key}"


def resolve_side(out: Path, name: str, specs: list[ModelSpec], options: BuildOptions, load: bool = True
                 ) -> Side:
    """A model of the site (`NAME`) or one of its earlier builds (`NAME@N`), with its weights when they are found.

    Raises:
        ReportgenError: No such model in the site, or no such earlier build.
    """
    match = re.fullmatch(r"(.+?)@(\d+)", name)
    model, back = (match.group(1), int(match.group(2))) if match else (name, 0)
    slug = slugify(model)
    folder = out / slug
    if not (folder / "report.json").is_file():
        known = sorted(p.parent.name for p in out.glob("*/report.json") if not p.parent.name.startswith("."))
        raise ReportgenError(f"no model {model!r} in {out} (built: {', '.join(known) or 'none'})")
    reports = earlier_reports(folder)
    if back >= len(reports):
        raise ReportgenError(f"{model!r} has {len(reports) - 1} earlier build(s) in {folder / HISTORY}; "
                             f"{name!r} asks for build {back} before the current one")
    report = reports[back]
    if back == 0:
        pictures, label = folder, report["model"]["name"]
    else:
        kept = report.get(PICTURES_KEY)
        pictures = folder / kept if kept and (folder / kept).is_dir() else None
        label = f"{report['model']['name']} (build of {report['build'].get('built_at', '?')})"
    side = Side(label, f"{slug}-{back}" if back else slug, slug, report, pictures)
    if load:
        side.loaded = _load(report, specs, options)
    return side


def _load(report: dict[str, Any], specs: list[ModelSpec], options: BuildOptions) -> Any:
    """The model whose weights' sha256 the report names, from its spec's model file or the training cache,
    with its data (as the build loads them); None when neither holds those weights."""
    from reportgen.build.pipeline import load_model_and_data

    wanted = report["model"].get("weights_sha256")
    spec = next((s for s in specs if s.slug == report["model"]["slug"]), None)
    if spec is None or not wanted:
        return None
    candidates = [Path(spec.model_file)] if spec.model_file else \
        sorted(options.cache_dir.glob(f"{spec.slug}-*/model.keras"))
    for path in candidates:
        if file_digest(path) == wanted:
            as_file = dataclasses.replace(spec, model_file=str(path), architecture=None, checkpoints=None)
            return load_model_and_data(as_file, options)
    return None


def build_compares(out: Path, specs: list[ModelSpec], options: BuildOptions) -> None:
    """The config's `[[compare]]` pages, each rebuilt only when one of its two reports changed since."""
    for a_name, b_name in options.compares:
        try:
            a, b = (resolve_side(out, name, specs, options, load=False) for name in (a_name, b_name))
        except ReportgenError as exc:  # e.g. one of the two is not built yet (a build of other models)
            progress.log(f"compare {a_name} / {b_name}: skipped ({exc})")
            continue
        existing = out / COMPARE / compare_folder_name(a, b) / "compare.json"
        try:
            record = json.loads(existing.read_text(encoding="utf-8"))
            if [record["a"]["inputs"], record["b"]["inputs"]] == [_inputs(a), _inputs(b)] and not options.force:
                progress.log(f"compare {a_name} / {b_name}: up to date, skipped")
                continue
        except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
            pass
        progress.log(f"compare {a_name} / {b_name}")
        compare_models(out, a_name, b_name, specs, options)


def _inputs(side: Side) -> list[Any]:
    """What a compare page depends on from one side: its report's inputs and when it was built."""
    return [side.report.get("inputs_fingerprint"), side.report["build"].get("built_at")]


def compare_models(out: Path, a_name: str, b_name: str, specs: list[ModelSpec], options: BuildOptions
                   ) -> dict[str, Any]:
    """Write the compare page of A and B into the site `out` and link it from the index and both models' pages;
    `specs` (the config's models) say where their weights may be. Returns the page's record (compare.json)."""
    a = resolve_side(out, a_name, specs, options)
    b = resolve_side(out, b_name, specs, options)
    if (out / COMPARE / "report.json").exists():
        raise ReportgenError(f"{out / COMPARE} is a model's folder: rename that model to compare models")
    check_site(out, [])
    name = compare_folder_name(a, b)
    final = out / COMPARE / name
    staging = out / COMPARE / f"{STAGING_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with progress.step(f"comparing {a.label} with {b.label}"):
            sections, record = compare(a, b, staging)
        (staging / "compare.json").write_text(json.dumps(jsonable(record), indent=1), encoding="utf-8")
        context = {"record": record, "sections": sections, "site_root": "../../", "model_root": None,
                   "a": record["a"], "b": record["b"]}
        render("compare.html", staging / "index.html", **context)
        render("compare.md", staging / "index.md", **context)
        mark_model_folder(staging)
        swap_in(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for side in (a, b):
        link_from_model_page(out, side.slug)
    write_front_pages(out)
    return record


def link_from_model_page(out: Path, slug: str) -> None:
    """Put the links to every compare page of the model into its page's block for them (the page is otherwise
    left as its build wrote it)."""
    page = out / slug / "index.html"
    if not page.is_file():
        return
    links = [r for r in compare_records(out) if slug in (r["a"]["slug"], r["b"]["slug"])]
    html = environment(markdown=False).get_template("compare_links.html").render(links=links, site_root="../")
    text = page.read_text(encoding="utf-8")
    start, end = text.find(LINKS_START), text.find(LINKS_END)
    if start < 0 or end < start:
        return  # a page from before compare pages, or a user's template without the block
    page.write_text(text[: start + len(LINKS_START)] + html.strip() + text[end:], encoding="utf-8")


def compare(a: Side, b: Side, folder: Path) -> tuple[list[Section], dict[str, Any]]:
    """The compare page's sections and record, its pictures written into `folder`."""
    record: dict[str, Any] = {"a": _side_record(a), "b": _side_record(b)}
    sections = [_metrics(a, b, record)]
    same_classes = a.report["model"]["class_names"] == b.report["model"]["class_names"]
    if same_classes:
        sections.append(_confusion(a, b, folder, record))
    pictures = _class_images(a, b, folder, record)
    if pictures is not None:
        sections.append(pictures)
    both = a.loaded is not None and b.loaded is not None
    same_data = both and a.loaded[2].name == b.loaded[2].name and len(a.loaded[2].x_test) == len(b.loaded[2].x_test)
    if both and same_data and same_classes:
        networks = (a.loaded[1], b.loaded[1])
        data = a.loaded[2]
        probabilities = [n.probabilities(data.x_test, progress_label="test-set predictions") for n in networks]
        sections.append(_changed_predictions(a, b, data, probabilities, folder, record))
        sections.append(_activation_grids(a, b, data, folder, record))
        sections.append(_matching(a, b, data, folder, record))
    else:
        why = ("the weights of " + " and ".join(s.label for s in (a, b) if s.loaded is None)
               + " are no longer in the training cache or the configured model file") if not both else \
            "the two models were tested on different data or classes"
        sections.append(Section(id="models", title="Predictions, activations and filters",
                                notes=[f"Not compared: {why}. The sections above come from their reports."]))
    record["sections"] = [s.to_json() for s in sections]
    return sections, record


def _side_record(side: Side) -> dict[str, Any]:
    model = side.report["model"]
    return {"label": side.label, "name": model["name"], "slug": side.slug, "key": side.key, "inputs": _inputs(side),
            "weights_sha256": model.get("weights_sha256"), "built_at": side.report["build"].get("built_at"),
            "weights_found": side.loaded is not None}


def _metrics(a: Side, b: Side, record: dict[str, Any]) -> Section:
    rows, data = [], {}
    pairs = [("test accuracy", "metrics", "test_accuracy"), ("test loss", "metrics", "test_loss"),
             ("parameters", "model", "params"), ("layers", "model", "layers"), ("epochs trained", "training", "epochs")]
    for label, group, key in pairs:
        va, vb = a.report.get(group, {}).get(key), b.report.get(group, {}).get(key)
        data[key] = {"a": va, "b": vb}
        change = f"{vb - va:+.4f}" if isinstance(va, float) and isinstance(vb, float) else \
            (f"{vb - va:+,}" if isinstance(va, int) and isinstance(vb, int) else "-")
        rows.append([label, "-" if va is None else va, "-" if vb is None else vb, change])
    record["metrics"] = data
    same = a.report["model"].get("weights_sha256") == b.report["model"].get("weights_sha256")
    return Section(id="metrics", title="Metrics", tables=[Table(["", "A", "B", "B - A"], rows)],
                   intro=f"A is {a.label}, B is {b.label}." + (" They have the same weights." if same else ""),
                   data=data)


def _confusion(a: Side, b: Side, folder: Path, record: dict[str, Any]) -> Section:
    import matplotlib.pyplot as plt

    names = a.report["model"]["class_names"]
    ca, cb = (np.asarray(_data(s.report, "confusion").get("confusion_matrix", []), int) for s in (a, b))
    section = Section(id="confusion", title="Confusion matrix and accuracy per class")
    if ca.shape != cb.shape or ca.ndim != 2:
        section.notes.append("One of the reports has no confusion matrix.")
        return section
    delta = cb - ca
    support = np.maximum(ca.sum(axis=1), 1)
    acc_a, acc_b = np.diag(ca) / support, np.diag(cb) / np.maximum(cb.sum(axis=1), 1)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.4 + 0.5 * n, 1.0 + 0.45 * n))
    top = max(1, int(np.abs(delta).max()))
    ax.imshow(delta, cmap="RdBu_r", vmin=-top, vmax=top)
    for (t, p), count in np.ndenumerate(delta):
        if count:
            ax.text(p, t, f"{count:+d}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), names if n <= 30 else [], rotation=45, ha="right")
    ax.set_yticks(range(n), names if n <= 30 else [])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    (folder / "img").mkdir(exist_ok=True)
    fig.savefig(folder / "img" / "confusion-difference.png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    changed_cells = int((delta != 0).sum())
    section.figures.append(Figure(
        "img/confusion-difference.png", title="B minus A",
        caption=f"The confusion matrix of B minus A's (rows true classes, columns predictions): red where B puts "
        f"more test images, blue fewer; {changed_cells} of {n * n} cells differ, the diagonal (correct) by "
        f"{int(np.trace(delta)):+d} in all.",
        alt="Difference of the two confusion matrices",
        numbers={"cells_changed": changed_cells, "correct_change": int(np.trace(delta))}))
    section.tables.append(Table(["Class", "A", "B", "B - A"],
                                [[name, f"{x:.4f}", f"{y:.4f}", f"{y - x:+.4f}"]
                                 for name, x, y in zip(names, acc_a, acc_b)], title="Accuracy per class"))
    section.data = {"confusion_difference": delta, "per_class_accuracy": {
        name: {"a": x, "b": y, "change": y - x} for name, x, y in zip(names, acc_a, acc_b)}}
    record["confusion"] = section.data
    return section


def _class_images(a: Side, b: Side, folder: Path, record: dict[str, Any]) -> Section | None:
    if a.pictures is None or b.pictures is None:
        return Section(id="class-images", title="Class images", notes=[
            "Not shown: " + " and ".join(s.label for s in (a, b) if s.pictures is None) + " kept no pictures."])
    pairs = side_by_side(a.report, b.report, "a/", "b/")
    for row in pairs["classes"]:
        _copy(a.pictures, row["before"][2:], folder / "a")
        _copy(b.pictures, row["after"][2:], folder / "b")
    if not pairs["classes"]:
        return None
    section = Section(id="class-images", title="Class images", template="sections/compare_classes",
                      intro="Each class's image optimised for A and for B, with the independent judge's verdict "
                      "(a pixel MLP trained on the data: does it see the class in the picture?).")
    section.data = {"classes": pairs["classes"],
                    "recognised": {"a": sum(bool(c["before_recognised"]) for c in pairs["classes"]),
                                   "b": sum(bool(c["after_recognised"]) for c in pairs["classes"])}}
    record["class_images"] = section.data["recognised"]
    return section


def _copy(root: Path, rel: str, into: Path) -> None:
    source = root / rel
    if source.is_file() and ".." not in Path(rel).parts:
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, into / rel)


def _changed_predictions(a: Side, b: Side, data: Any, probabilities: list[np.ndarray], folder: Path,
                         record: dict[str, Any]) -> Section:
    from reportgen.util.imaging import as_rgb, resize_nearest, save_png, tile_grid, tile_size

    pa, pb = (p.argmax(axis=1) for p in probabilities)
    y = data.y_test
    changed = np.flatnonzero(pa != pb)
    fixed = int(np.sum((pa != y) & (pb == y)))
    broken = int(np.sum((pa == y) & (pb != y)))
    section = Section(id="changed", title="Test images whose prediction changed",
                      intro=f"{len(changed):,} of {len(y):,} test images are predicted differently by A and B: "
                      f"{fixed:,} that A got wrong B gets right, {broken:,} the reverse, and "
                      f"{len(changed) - fixed - broken:,} wrong both times, differently.")
    shown = changed[np.argsort(-np.abs(probabilities[1][changed, pb[changed]] - probabilities[0][changed, pa[changed]])
                               )][:CHANGED_SHOWN] if len(changed) else changed
    if len(shown):
        images = as_rgb(data.x_test[shown])
        grid = tile_grid(resize_nearest(images, *tile_size(*images.shape[1:3], largest=112)), cols=min(8, len(shown)))
        save_png(folder / "img" / "changed.png", grid)
        section.figures.append(Figure("img/changed.png", title="Changed predictions",
                                      caption=f"{len(shown)} of the {len(changed):,} changed test images, row by row "
                                      "in the order of the table.", alt="Test images predicted differently",
                                      numbers={"changed": len(changed), "fixed": fixed, "broken": broken}))
        names = data.class_names
        section.tables.append(Table(["#", "Test image", "True", "A says", "B says"],
                                    [[k + 1, int(i), names[y[i]], f"{names[pa[i]]} ({probabilities[0][i, pa[i]]:.2f})",
                                      f"{names[pb[i]]} ({probabilities[1][i, pb[i]]:.2f})"]
                                     for k, i in enumerate(shown)]))
    section.data = {"changed": len(changed), "fixed": fixed, "broken": broken, "changed_indices": changed,
                    "accuracy": {"a": float(np.mean(pa == y)), "b": float(np.mean(pb == y))}}
    record["changed_predictions"] = section.data
    return section


def _activation_grids(a: Side, b: Side, data: Any, folder: Path, record: dict[str, Any]) -> Section:
    """The activations section's grids for the same samples (the first test image of each class) in both."""
    from reportgen.sections import activations
    from reportgen.sections.context import ModelContext
    from reportgen.util.imaging import PngWriter

    samples = [int(np.flatnonzero(data.y_test == c)[0]) for c in range(data.num_classes)
               if np.any(data.y_test == c)][:10]
    grids = {}
    with PngWriter() as writer:
        for key, side in (("a", a), ("b", b)):
            spec = ModelSpec(name=side.label, dataset=data.name, model_file="-", samples=samples)
            ctx = ModelContext(spec=spec, network=side.loaded[1], data=data, out_dir=folder / key, writer=writer)
            built = activations.build(ctx)
            grids[key] = {f.title: f for f in built.figures} if built else {}
    section = Section(id="activation-grids", title="Activation grids of the same samples",
                      template="sections/compare_grids",
                      intro=f"Test images {', '.join(map(str, samples))} (the first of each class) through both "
                      "models: each row one sample, then that layer's maps, each scaled to its own range.")
    rows = []
    for title, fa in grids["a"].items():
        fb = grids["b"].get(title)
        rows.append({"layer": title, "a": "a/" + fa.path, "b": "b/" + fb.path if fb else None})
    for title, fb in grids["b"].items():
        if title not in grids["a"]:
            rows.append({"layer": title, "a": None, "b": "b/" + fb.path})
    section.data = {"samples": samples, "layers": rows}
    record["activation_grids"] = {"samples": samples, "layers": [r["layer"] for r in rows]}
    return section


def _matching(a: Side, b: Side, data: Any, folder: Path, record: dict[str, Any]) -> Section:
    from reportgen.methods.matching import MATCH_IMAGES, MATCHED_CORRELATION, match_filters

    net_a, net_b = a.loaded[1], b.loaded[1]
    section = Section(id="matching", title="Filters matched one to one", template="sections/compare_matching",
                      intro=f"Per conv layer, each filter of A paired with one filter of B so that the summed "
                      f"correlation of their activations (every position of {MATCH_IMAGES} test images) is largest, "
                      f"a one-to-one assignment as in Li et al. 2015, \"Convergent Learning\". A pair whose "
                      f"correlation reaches {MATCHED_CORRELATION} counts as the same feature in both.")
    units_a, units_b = net_a.units, net_b.units
    shapes = [(u.path, tuple(net_a.graph[u.point.path].shape)) for u in units_a]
    if [s for _, s in shapes] != [tuple(net_b.graph[u.point.path].shape) for u in units_b] or not units_a:
        section.notes.append("Not matched: the two models' conv layers do not have the same shapes (another "
                             "architecture).")
        record["matching"] = None
        return section
    images = data.x_test[:MATCH_IMAGES]
    out_a = net_a.outputs([u.point.path for u in units_a], images)
    out_b = net_b.outputs([u.point.path for u in units_b], images)
    pictures_a = _filter_pictures(a)
    pictures_b = _filter_pictures(b)
    layers = {}
    for ua, ub in zip(units_a, units_b):
        matching = match_filters(out_a[ua.point.path], out_b[ub.point.path])
        order = np.argsort(-matching.correlation)
        pairs = [{"a": int(matching.a[k]), "b": int(matching.b[k]), "correlation": float(matching.correlation[k])}
                 for k in order]
        pictured = []
        for pair in pairs:
            pa, pb = pictures_a.get(ua.path, {}).get(pair["a"]), pictures_b.get(ub.path, {}).get(pair["b"])
            if pa and pb and len(pictured) < PAIRS_PICTURED:
                _copy(a.pictures, pa, folder / "a")
                _copy(b.pictures, pb, folder / "b")
                pictured.append({**pair, "a_image": "a/" + pa, "b_image": "b/" + pb})
        layers[ua.path] = {"b_layer": ub.path, "pairs": pairs, "share_matched": matching.share_matched,
                           "mean_correlation": float(matching.correlation.mean()), "pictured": pictured,
                           "identity": bool(np.array_equal(matching.a, matching.b))}
        section.tables.append(Table(
            ["Filter of A", "Filter of B", "Correlation"],
            [[p["a"], p["b"], f"{p['correlation']:.3f}"] for p in pairs],
            title=f"{ua.path}: {matching.share_matched:.0%} of {len(pairs)} pairs correlate at least "
            f"{MATCHED_CORRELATION} (mean {matching.correlation.mean():.3f})", collapsed=True))
    section.data = {"threshold": MATCHED_CORRELATION, "images": len(images), "layers": layers}
    record["matching"] = {name: {k: v for k, v in layer.items() if k != "pictured"} for name, layer in layers.items()}
    return section


def _filter_pictures(side: Side) -> dict[str, dict[int, str]]:
    """Layer -> filter -> its feature visualization's path in the side's report (the filters it pictured)."""
    if side.pictures is None:
        return {}
    layers = _data(side.report, "feature-vis").get("layers", {})
    return {name: {f["index"]: f["images"]["feature_vis"] for f in layer.get("filters", [])
                   if "feature_vis" in f.get("images", {})} for name, layer in layers.items()}


def _data(report: dict[str, Any], section_id: str) -> dict[str, Any]:
    return next((s.get("data", {}) for s in report.get("sections", []) if s.get("id") == section_id), {})
