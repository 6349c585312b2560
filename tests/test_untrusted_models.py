"""User models with hostile names and unusual shapes build safe, complete sites.

Each model is saved and built by the command line in a new process, as a user runs it (issue 23).
"""

import json
from pathlib import Path

import keras
import pytest
from site_checks import html_problems, markdown_problems
from user_models import reportgen_process

# TensorFlow runs only layer names made of [A-Za-z0-9_.-]; the model name is free text.
HOSTILE = "..x-y."
MODEL_NAME = "<img src=x onerror=alert(1)> & \"é\" /../../evil"


def build(tmp_path: Path, model: keras.Model, name: str) -> Path:
    """Save the model, then `reportgen build --quick` on a config naming it (the name as a TOML string)."""
    path = tmp_path / "model.keras"
    model.save(path)
    config = tmp_path / "reportgen.toml"
    config.write_text(f"[[models]]\nname = {json.dumps(name)}\ndataset = \"mnist\"\n"
                      f"model_file = {json.dumps(str(path))}\nmax_units = 4\n", encoding="utf-8")
    out = tmp_path / "site"
    result = reportgen_process("build", "--config", str(config), "--quick", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu", name=f"conv{HOSTILE}")(inputs)
    x = keras.layers.MaxPooling2D(name=f"pool{HOSTILE}")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name=f"conv2{HOSTILE}")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name=f"out{HOSTILE}")(x)
    return build(tmp_path_factory.mktemp("hostile"), keras.Model(inputs, outputs), MODEL_NAME)


def test_every_file_stays_inside_the_site(hostile_site):
    root = hostile_site.resolve()
    for path in hostile_site.rglob("*"):
        assert path.resolve().is_relative_to(root)
        assert all(c.isascii() for c in path.relative_to(hostile_site).as_posix()), path
    assert not (hostile_site.parent / "evil").exists()


def test_names_are_escaped_in_html_and_markdown(hostile_site):
    pages = list(hostile_site.rglob("*.html")) + list(hostile_site.rglob("*.md"))
    assert len(pages) >= 4
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text, page
    model_page = next(p for p in hostile_site.glob("*/index.html")).read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;é&#34;" in model_page


def test_hostile_site_links_resolve(hostile_site):
    assert html_problems(hostile_site) == []
    assert markdown_problems(hostile_site) == []


def test_names_survive_in_report_json(hostile_site):
    report = json.loads(next(hostile_site.glob("*/report.json")).read_text(encoding="utf-8"))
    assert report["model"]["name"] == MODEL_NAME
    summary = next(s for s in report["sections"] if s["id"] == "summary")
    assert f"conv{HOSTILE}" in [layer["name"] for layer in summary["data"]["layers"]]


def test_the_cap_on_units_is_stated(hostile_site):
    report = json.loads(next(hostile_site.glob("*/report.json")).read_text(encoding="utf-8"))
    activations = next(s for s in report["sections"] if s["id"] == "activations")
    conv = activations["data"][f"conv{HOSTILE}"]
    assert conv["maps"] == 6 and conv["maps_shown"] == 4
    assert any("2 more" in note for note in activations["notes"])


def test_a_model_without_conv_layers_builds_what_applies(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    site = build(tmp_path, keras.Model(inputs, outputs), "dense-only")
    report = json.loads((site / "dense-only" / "report.json").read_text())
    sections = {s["id"]: s for s in report["sections"]}
    assert sections["activations"]["figures"]  # the dense layers are shown
    assert sections["confusion"]["data"]["test_images"] == 10000
    assert any("no conv layer" in note for note in sections["kernels"]["notes"])
    assert html_problems(site) == []
