"""A real --quick report from real MNIST, built through the command line."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import generate
from site_checks import html_problems, markdown_problems

from reportgen.build import pipeline
from reportgen.build.site import build_site
from reportgen.inputs.config import BuildOptions, load_config
from reportgen.sections import Step

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def work(quick_mnist_site) -> Path:
    return quick_mnist_site.parent


@pytest.fixture(scope="module")
def site(quick_mnist_site) -> Path:
    return quick_mnist_site


@pytest.fixture(scope="module")
def report(site) -> dict:
    return json.loads((site / "mnist-3conv" / "report.json").read_text())


def test_site_files(site):
    for name in ["index.html", "index.md", "style.css", ".nojekyll",
                 "mnist-3conv/index.html", "mnist-3conv/index.md", "mnist-3conv/report.json"]:
        assert (site / name).is_file(), name
    assert not [p for p in site.iterdir() if p.name.startswith(".staging")]


def test_accuracy_is_well_above_chance(report):
    assert report["metrics"]["test_images"] == 10000
    assert report["metrics"]["test_accuracy"] > 0.8
    assert 0 < report["metrics"]["test_loss"] < 1.0
    assert report["training"]["epochs"] == 1


def test_confusion_matrix_sums_to_the_test_set(report):
    section = next(s for s in report["sections"] if s["id"] == "confusion")
    matrix = section["data"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 10000
    assert abs(sum(matrix[i][i] for i in range(10)) / 10000 - report["metrics"]["test_accuracy"]) < 1e-9


def test_every_figure_exists_and_carries_numbers(site, report):
    figures = [f for s in report["sections"] for f in s["figures"]]
    assert len(figures) >= 15
    for figure in figures:
        assert (site / "mnist-3conv" / figure["path"]).is_file()
        assert figure["numbers"], figure["path"]
        assert figure["caption"] and figure["alt"]


def test_every_section_is_on_the_page(site, report):
    html = (site / "mnist-3conv" / "index.html").read_text()
    for section in report["sections"]:
        assert f'id="{section["id"]}"' in html
    assert f"{100 * report['metrics']['test_accuracy']:.2f}%" in html


def test_links_and_images_resolve_in_html_and_markdown(site):
    assert html_problems(site) == []
    assert markdown_problems(site) == []


def test_index_lists_the_model(site):
    assert 'href="mnist-3conv/index.html"' in (site / "index.html").read_text()
    assert "(mnist-3conv/index.md)" in (site / "index.md").read_text()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rebuild_with_nothing_changed_skips_the_model(site, work):
    before = snapshot(site / "mnist-3conv")
    result = generate(work, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mnist-3conv: up to date, skipped" in result.stderr
    assert snapshot(site / "mnist-3conv") == before
    assert "| tensorflow" not in result.stderr  # checking is cheap: no model work, not even the import


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_build_leaves_the_previous_site_untouched(site, work, tmp_path, monkeypatch, failure):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    before = snapshot(copy)

    def explode(ctx):
        raise failure

    monkeypatch.setattr(pipeline, "SECTION_BUILDERS", [*pipeline.SECTION_BUILDERS, Step("explode", explode)])
    spec = load_config(work / "reportgen.toml").model("mnist-3conv")
    options = BuildOptions(out=copy, cache_dir=work / ".cache" / "reportgen", quick=True, force=True)
    with pytest.raises(type(failure)):
        build_site([spec], options)
    assert snapshot(copy) == before


def test_a_retrained_model_is_compared_with_its_last_build(site, work, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    report_path = copy / "mnist-3conv" / "report.json"
    old = json.loads(report_path.read_text())
    old["model"]["weights_sha256"] = "weights-of-an-earlier-training"
    old["metrics"]["test_accuracy"] -= 0.05
    report_path.write_text(json.dumps(old))
    spec = load_config(work / "reportgen.toml").model("mnist-3conv")
    build_site([spec], BuildOptions(out=copy, cache_dir=work / ".cache" / "reportgen", quick=True, force=True))
    new = json.loads(report_path.read_text())
    changes = new["sections"][0]
    assert changes["id"] == "changes"
    accuracy = changes["data"]["metrics"]["test_accuracy"]
    assert abs(accuracy["after"] - accuracy["before"] - 0.05) < 1e-9
    kept = list((copy / "mnist-3conv" / "history").glob("*.json"))
    assert len(kept) == 1
    assert json.loads(kept[0].read_text())["model"]["weights_sha256"] == "weights-of-an-earlier-training"
    assert 'id="changes"' in (copy / "mnist-3conv" / "index.html").read_text()


def test_the_same_seed_gives_the_same_numbers(site, work, tmp_path):
    spec = load_config(work / "reportgen.toml").model("mnist-3conv")
    build_site([spec], BuildOptions(out=tmp_path / "again", cache_dir=work / ".cache" / "reportgen", quick=True))
    first = json.loads((site / "mnist-3conv" / "report.json").read_text())
    second = json.loads((tmp_path / "again" / "mnist-3conv" / "report.json").read_text())
    assert first["metrics"] == second["metrics"]
    assert [s for s in first["sections"] if s["id"] != "changes"] == second["sections"]


def test_navigation_links_models_already_in_the_site(tmp_path):
    from reportgen.build.site import navigation_models
    from reportgen.inputs.config import ModelSpec

    kept, new = ModelSpec(name="Kept", dataset="mnist"), ModelSpec(name="New", dataset="mnist")
    for name, slug in [("Old one", "old-one"), ("Kept", kept.slug)]:
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "report.json").write_text(json.dumps({"model": {"name": name, "slug": slug}}))
    (tmp_path / ".staging-x").mkdir()
    (tmp_path / ".staging-x" / "report.json").write_text("{}")
    models = navigation_models([kept, new], tmp_path)
    assert models == [("Kept", kept.slug), ("New", new.slug), ("Old one", "old-one")]


def test_deepdream_numbers_are_on_both_pages(site, report):
    from reportgen.build.render import number

    section = next(s for s in report["sections"] if s["id"] == "deepdream")
    data = section["data"]
    html = (site / "mnist-3conv" / "index.html").read_text()
    markdown = (site / "mnist-3conv" / "index.md").read_text()
    assert data["size"] == data["octave_sizes"][-1] and data["channels"] == 1
    assert html.count(f'src="{data["photo_path"]}"') == len(section["figures"])
    for figure, dream in zip(section["figures"], data["dreams"]):
        assert dream["rose_every_octave"] and figure["numbers"]["ssim"] == dream["ssim"]
        for page in (html, markdown):
            assert figure["path"] in page and dream["octaves_path"] in page
            for key in ("ssim", "objective_gain", "mean_abs_change"):
                assert number(dream[key]) in page, key


def test_unit_pictures_are_listed_linked_and_shown_with_their_numbers(site, report):
    from reportgen.build.render import number

    model = site / "mnist-3conv"
    vis = next(s for s in report["sections"] if s["id"] == "feature-vis")
    units = next(s for s in report["sections"] if s["id"] == "units")
    tiles = [tile for figure in vis["figures"] for tile in figure["tiles"]]
    assert len(tiles) == 24 + 48 + 64
    assert len([tile for tile in tiles if tile["href"]]) == 3 * 8  # a quick build pages 8 units per layer
    for tile in tiles:
        assert (model / tile["path"]).is_file()
        assert tile["href"] is None or (model / tile["href"]).is_file()
    for layer in vis["data"]["layers"].values():
        for record in layer["filters"]:
            images = record["images"]
            assert all((model / path).is_file() for path in [images["feature_vis"], images["neuron"],
                                                              *images.get("diversity", [])])
            assert record["uniform"] == ("neuron_field" in images)
    assert 0 <= units["data"]["resemblance_share"] <= 1
    found = units["data"]["conv2"]["resemblance"]
    assert f"{100 * found['share']:.0f}% of {found['live_filters']}" in (model / "conv2" / "index.html").read_text()
    unit, record = next((u, r) for u, r in found["units"].items() if r["top9"] is not None)
    html = (model / "conv2" / f"{unit}.html").read_text()
    assert number(record["top9"], 3) in html and number(record["random"], 3) in html
