"""Two models side by side, the filter matching, and the pictures history/ keeps for them."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from reportgen.methods.matching import correlation_matrix, match_filters
from tests.test_timeline import small_mnist_model
from tests.user_models import reportgen_process

TRAIN_IMAGES, TEST_IMAGES = 1500, 300
PERMUTATION = np.array([2, 0, 3, 1])  # B's filter j is A's filter PERMUTATION[j]


def permuted_copy(model: keras.Model, order: np.ndarray) -> keras.Model:
    """The same function with the conv layer's filters in another order (and the dense layer's inputs with them)."""
    copy = keras.models.clone_model(model)
    kernel, bias = model.get_layer("conv").get_weights()
    copy.get_layer("conv").set_weights([kernel[..., order], bias[order]])
    dense_kernel, dense_bias = model.get_layer("out").get_weights()
    channels = kernel.shape[-1]
    rows = dense_kernel.reshape(-1, channels, dense_kernel.shape[-1])[:, order]
    copy.get_layer("out").set_weights([rows.reshape(dense_kernel.shape), dense_bias])
    return copy


def test_correlation_matrix_is_pearson_per_channel_pair() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3, 3, 4)), rng.normal(size=(50, 3, 3, 5))
    b[..., 1] = 2 * a[..., 3] + 1
    b[..., 4] = 0  # a dead filter
    corr = correlation_matrix(a, b)
    full = np.corrcoef(a.reshape(-1, 4).T, b[..., :4].reshape(-1, 4).T)[:4, 4:]
    np.testing.assert_allclose(corr[:, :4], full, atol=1e-12)
    assert corr[3, 1] == pytest.approx(1.0)
    assert not corr[:, 4].any()


def test_matching_finds_the_permutation_of_a_permuted_copy() -> None:
    model = small_mnist_model()
    copy = permuted_copy(model, PERMUTATION)
    x = np.random.default_rng(1).random((64, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    acts = [keras.Model(m.input, m.get_layer("conv").output).predict(x, verbose=0) for m in (model, copy)]
    matching = match_filters(*acts)
    assert matching.a.tolist() == [0, 1, 2, 3]
    assert [int(PERMUTATION[j]) for j in matching.b] == [0, 1, 2, 3]  # A's filter i found at B's position
    np.testing.assert_allclose(matching.correlation, 1.0, atol=1e-6)
    assert matching.share_matched == 1.0


def test_compare_pages_and_history_pictures(tmp_path: Path) -> None:
    """Two model files (one a filter-permuted copy of the other) and a model compared with itself, from the
    config's [[compare]]; then a retrained model, whose history keeps its pictures, compared with its build
    before (`reportgen compare NAME NAME@1`)."""
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    x = x[:TRAIN_IMAGES, ..., None].astype(np.float32) / 255
    np.savez(tmp_path / "data.npz", x_test=xt[:TEST_IMAGES, ..., None].astype(np.float32) / 255,
             y_test=yt[:TEST_IMAGES])
    model = small_mnist_model()
    model.fit(x, y[:TRAIN_IMAGES], epochs=2, batch_size=64, verbose=0)
    model.save(tmp_path / "a.keras")
    permuted_copy(model, PERMUTATION).save(tmp_path / "b.keras")
    data = f"npz:{tmp_path / 'data.npz'}"
    (tmp_path / "reportgen.toml").write_text(f"""
[build]
out = "site"
cache_dir = "cache"
[[models]]
name = "first"
dataset = "{data}"
model_file = "a.keras"
[[models]]
name = "permuted"
dataset = "{data}"
model_file = "b.keras"
[[compare]]
a = "first"
b = "permuted"
[[compare]]
a = "first"
b = "first"
""")
    result = reportgen_process("build", "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    pair = json.loads((site / "compare" / "first--permuted" / "compare.json").read_text())
    assert pair["changed_predictions"]["changed"] == 0
    assert not np.any(pair["confusion"]["confusion_difference"])
    (layer,) = pair["matching"].values()
    found = {p["a"]: p["b"] for p in layer["pairs"]}
    assert {int(PERMUTATION[b]): a for a, b in found.items()} == {a: a for a in range(4)}
    assert min(p["correlation"] for p in layer["pairs"]) == pytest.approx(1.0, abs=1e-5)
    assert layer["share_matched"] == 1.0
    itself = json.loads((site / "compare" / "first--first" / "compare.json").read_text())
    assert itself["changed_predictions"]["changed"] == 0
    assert all(c["change"] == 0 for c in itself["confusion"]["per_class_accuracy"].values())
    assert all(layer["identity"] for layer in itself["matching"].values())
    page = (site / "compare" / "first--permuted" / "index.html").read_text()
    for src in [s.split('"')[0] for s in page.split('src="')[1:]]:
        assert (site / "compare" / "first--permuted" / src).is_file(), src
    assert 'href="compare/first--permuted/index.html"' in (site / "index.html").read_text()
    assert "compare/first--permuted/index.html" in (site / "permuted" / "index.html").read_text()

    # Retrained: "What changed" shows the pictures of the build before, which history/ kept.
    xt, yt = xt[:TEST_IMAGES, ..., None].astype(np.float32) / 255, yt[:TEST_IMAGES]
    old = model.predict(xt, verbose=0).argmax(axis=1)
    model.fit(x, y[:TRAIN_IMAGES], epochs=1, batch_size=64, verbose=0)
    model.save(tmp_path / "a.keras")
    new = model.predict(xt, verbose=0).argmax(axis=1)
    result = reportgen_process("build", "--quick", "--model", "first", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((site / "first" / "report.json").read_text())
    changes = next(s for s in report["sections"] if s["id"] == "changes")["data"]["pictures"]
    assert len(changes["classes"]) == 10 and changes["layers"]
    for row in changes["classes"] + [f for rows in changes["layers"].values() for f in rows]:
        assert row["before"].startswith("history/") and (site / "first" / row["before"]).is_file()
        assert (site / "first" / row["after"]).is_file()
    result = reportgen_process("compare", "first", "first@1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before = json.loads((site / "compare" / "first--first-1" / "compare.json").read_text())
    assert not before["b"]["weights_found"]  # the file was overwritten: the page compares the reports
    assert before["metrics"]["test_accuracy"]["b"] == pytest.approx(
        json.loads(next((site / "first" / "history").glob("*.json")).read_text())["metrics"]["test_accuracy"])
    # "permuted" still has the old weights (permuted): its page against the retrained model, number by number.
    result = reportgen_process("compare", "permuted", "first", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    after = json.loads((site / "compare" / "permuted--first" / "compare.json").read_text())
    assert after["changed_predictions"]["changed_indices"] == np.flatnonzero(old != new).tolist()
    assert after["changed_predictions"]["fixed"] == int(np.sum((old != yt) & (new == yt)))
    direct = np.zeros((10, 10), int)
    np.add.at(direct, (yt, new), 1)
    np.add.at(direct, (yt, old), -1)
    assert np.array_equal(after["confusion"]["confusion_difference"], direct)
    bad = reportgen_process("compare", "first", "first@5", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_config_compare_entries() -> None:
    from reportgen.inputs.config import parse_config
    from reportgen.util.errors import ReportgenError

    models = [{"name": n, "dataset": "mnist", "architecture": "mnist_3conv"} for n in ("a", "b")]
    config = parse_config({"models": models, "compare": [{"a": "a", "b": "b"}, {"a": "a", "b": "a@1"}]}, "t.toml",
                          Path("."))
    assert config.compares == [("a", "b"), ("a", "a@1")]
    with pytest.raises(ReportgenError, match="not a model of the config"):
        parse_config({"models": models, "compare": [{"a": "a", "b": "c"}]}, "t.toml", Path("."))
    with pytest.raises(ReportgenError, match="exactly the keys a and b"):
        parse_config({"models": models, "compare": [{"a": "a"}]}, "t.toml", Path("."))
