"""Users' own models, built from the CLI as a user would: the numbers on the page are the model's own.

Each model is saved to a file and built by `python -m reportgen build` in a new Python process, as a user
runs it from a shell: in the process that made the model Keras has already reserved the model's layer
names, which hides name collisions in what reportgen derives from it (issue 23).

For each model (see user_models.py) the build exits 0, report.json's accuracy and confusion matrix
equal the model's on its test set fed as it was trained, every conv-like layer (nested ones included)
has its gallery or is listed as left out by the budget, and no probability anywhere is outside [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from user_models import BUILDERS, UserModel, reportgen_process

pytestmark = pytest.mark.slow

CONV_LIKE = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D,
             keras.layers.Conv2DTranspose)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user-models")


def build(user: UserModel, model_file: Path, out: Path) -> dict[str, Any]:
    """`reportgen build --quick --config C` in a new process, on a config naming the saved model as a user
    writes it; the environment (KERAS_HOME: the offline datasets) is passed on."""
    config = model_file.with_suffix(".toml")
    budget = ""
    if user.budget:
        budget = "budget = { " + ", ".join(f"{k} = {v}" for k, v in user.budget.items()) + " }\n"
    config.write_text(f'[[models]]\nname = "{user.name}"\nmodel_file = "{model_file}"\ndataset = "{user.dataset}"\n'
                      + budget, encoding="utf-8")
    result = reportgen_process("build", "--config", str(config), "--quick", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / user.name / "report.json").read_text(encoding="utf-8"))


def conv_paths(model: keras.Model, prefix: str = "") -> list[str]:
    """Every conv-like layer's path, inside nested models too, as reportgen names them."""
    paths = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            paths += conv_paths(layer, f"{prefix}{layer.name}/")
        elif isinstance(layer, CONV_LIKE):
            paths.append(prefix + layer.name)
    return paths


def probabilities_in(record: Any, key: str = "") -> list[float]:
    """Every number in report.json stored under a key that names a probability (not a drop in one)."""
    if isinstance(record, dict):
        return [p for k, v in record.items() for p in probabilities_in(v, k)]
    if isinstance(record, list):
        return [p for v in record for p in probabilities_in(v, key)]
    named = ("probabilit" in key or key.startswith("p_") or key == "p") and "drop" not in key
    return [float(record)] if named and isinstance(record, (int, float)) and not isinstance(record, bool) else []


def check(user: UserModel, report: dict[str, Any]) -> None:
    accuracy, confusion = user.accuracy_and_confusion()
    assert accuracy > report["metrics"]["chance_accuracy"] + 0.1, "the test model itself is not trained enough"
    assert report["metrics"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)  # stored to 6 places
    section = {s["id"]: s for s in report["sections"]}
    np.testing.assert_array_equal(np.array(section["confusion"]["data"]["confusion_matrix"]), confusion)
    assert report["warnings"] == []

    budget = report["budget"]
    shown, left_out = set(budget["galleries"]), set(budget["left_out_layers"])
    assert shown | left_out == set(conv_paths(user.model)) and not shown & left_out
    assert shown == {path for path in section["units"]["data"] if path in shown}
    if left_out or budget["units_left_out"]:
        assert budget["summary"], "what the budget left out is said on the page"

    probabilities = probabilities_in(report)
    assert probabilities, "the report names no probability at all"
    assert all(0.0 <= p <= 1.0 for p in probabilities)


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_users_model_builds_with_the_models_own_numbers(builder, workdir):
    user = BUILDERS[builder](workdir)
    formats = (".h5", ".keras") if builder == "seed_style_sequential" else (".keras",)
    for suffix in formats:
        model_file = workdir / f"{user.name}{suffix}"
        user.model.save(model_file)
        report = build(user, model_file, workdir / f"site{suffix}")
        check(user, report)
        page = (workdir / f"site{suffix}" / report["model"]["slug"] / "index.html").read_text(encoding="utf-8")
        low, high = report["model"]["input_range"]
        assert f"[{low:g}, {high:g}]" in page or f"[{low}, {high}]" in page
