"""`reportgen.build_report` from a notebook: a live model trained on real MNIST, data as numpy arrays and as a
tf.data.Dataset, the numbers on the page equal to the model's own, and bad arguments as one-line errors."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import reportgen
from reportgen.api import labels_as_indices, value_range
from reportgen.util.errors import ReportgenError

TRAIN_IMAGES, TEST_IMAGES = 2000, 600


@pytest.fixture(scope="module")
def notebook():
    """A model as a notebook trains it: Rescaling inside, fit on uint8 MNIST; its test arrays."""
    (x, y), (x_test, y_test) = keras.datasets.mnist.load_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                              keras.layers.MaxPooling2D(4), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")], name="notebook_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:TRAIN_IMAGES, ..., None], y[:TRAIN_IMAGES], epochs=2, batch_size=32, verbose=0)
    return model, x_test[:TEST_IMAGES], y_test[:TEST_IMAGES]


def own_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x[..., None].astype("float32"), verbose=0).argmax(axis=1) == y))


def test_arrays_give_the_models_own_numbers_and_leave_the_model_alone(notebook, tmp_path):
    model, x_test, y_test = notebook
    weights = [w.copy() for w in model.get_weights()]
    out = tmp_path / "site"
    names = [f"digit {i}" for i in range(10)]
    report = reportgen.build_report(model, (x_test, y_test), out, name="from arrays", class_names=names,
                                    quick=True, quiet=True, history={"loss": [0.9, 0.4]})

    assert report["metrics"]["test_accuracy"] == pytest.approx(own_accuracy(model, x_test, y_test), abs=1e-6)
    assert report["metrics"]["test_images"] == TEST_IMAGES
    assert report["metrics"]["test_accuracy"] > 0.5
    assert report["model"]["input_range"] == [0, 255]  # uint8 arrays, and the model's own Rescaling agrees
    assert report["model"]["class_names"] == names
    assert report["training"]["epochs"] == 2
    slug = report["model"]["slug"]
    stored = json.loads((out / slug / "report.json").read_text())
    assert stored["model"] == json.loads(json.dumps(report["model"]))  # the record returned is the one written
    assert stored["metrics"]["test_accuracy"] == pytest.approx(report["metrics"]["test_accuracy"], abs=1e-6)
    page = (out / slug / "index.html").read_text(encoding="utf-8")
    assert "numpy arrays (600 test images)" in page and "reportgen-api-" not in page
    assert f"{slug}/index.html" in (out / "index.html").read_text(encoding="utf-8")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_a_tf_data_dataset_of_batches_with_one_hot_labels(notebook, tmp_path, capsys):
    model, x_test, y_test = notebook
    batches = tf.data.Dataset.from_tensor_slices(
        (x_test[..., None].astype("float32"), keras.utils.to_categorical(y_test, 10))).batch(64)
    report = reportgen.build_report(model, batches, tmp_path / "site", name="from-tf-data", quick=True, quiet=True)
    assert report["metrics"]["test_accuracy"] == pytest.approx(own_accuracy(model, x_test, y_test), abs=1e-6)
    assert report["model"]["dataset"] == "tf.data.Dataset (600 test images)"
    assert capsys.readouterr().err == ""  # quiet: no progress at all


@pytest.mark.parametrize(("data", "kwargs", "fragment"), [
    ("mnsit", {}, "unknown dataset 'mnsit'"),
    ("mnist", {"class_names": ["a"]}, "class_names go with arrays"),
    ((np.zeros((4, 28, 28)), np.zeros(3)), {}, "4 images but 3 labels"),
    ((np.full((4, 28, 28), -5.0), np.zeros(4)), {}, "pass input_range"),
    ([1, 2, 3], {}, "data must be"),
    ((np.zeros((4, 28, 28)), np.zeros(4)), {"budget": {"layers": 0}}, "'budget.layers'"),
])
def test_bad_arguments_are_one_line_errors_and_write_nothing(notebook, tmp_path, data, kwargs, fragment):
    model, *_ = notebook
    with pytest.raises(ReportgenError, match=re.escape(fragment)) as error:
        reportgen.build_report(model, data, tmp_path / "site", quiet=True, **kwargs)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "site").exists()


def test_a_model_that_is_not_a_keras_model(tmp_path):
    with pytest.raises(ReportgenError, match=r"keras\.Model or the path"):
        reportgen.build_report(object(), "mnist", tmp_path / "site")
    with pytest.raises(ReportgenError, match="model file not found"):
        reportgen.build_report(tmp_path / "missing.keras", "mnist", tmp_path / "site")


def test_value_ranges_and_labels():
    assert value_range(np.zeros((2, 4, 4), np.uint8)) == (0.0, 255.0)
    assert value_range(np.linspace(0, 1, 32).reshape(2, 4, 4)) == (0.0, 1.0)
    assert value_range(np.linspace(0, 200, 32).reshape(2, 4, 4)) == (0.0, 255.0)
    assert value_range(np.linspace(-1, 1, 32).reshape(2, 4, 4)) == (-1.0, 1.0)
    np.testing.assert_array_equal(labels_as_indices(np.eye(3)[[2, 0, 1]], 3), [2, 0, 1])
    np.testing.assert_array_equal(labels_as_indices(np.array([[1], [0]]), 2), [1, 0])
    with pytest.raises(ReportgenError, match="class indices"):
        labels_as_indices(np.array([0.5, 1.0]), 2)
