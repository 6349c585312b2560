"""ReportCallback: the site comes straight out of model.fit on real MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import reportgen
from reportgen.util.errors import ReportgenError

TRAIN_IMAGES = 2000


def small_mnist_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.MaxPooling2D(4)(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h), name="from_fit")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_callback_builds_the_report_with_the_training_history(tmp_path: Path) -> None:
    (x, y), _ = keras.datasets.mnist.load_data()
    x = x[:TRAIN_IMAGES, ..., None].astype(np.float32) / 255
    out = tmp_path / "site"
    callback = reportgen.ReportCallback("mnist", out=out, every_n_epochs=2, quick=True)
    # 3 epochs: a build after epoch 2 (every_n_epochs), then one at the end of training.
    model = small_mnist_model()
    model.fit(x, y[:TRAIN_IMAGES], epochs=3, batch_size=32, verbose=0, callbacks=[callback])

    report = json.loads((out / "from_fit" / "report.json").read_text())
    assert report["model"]["name"] == "from_fit"
    assert report["model"]["source"] == "file"
    assert report["training"]["epochs"] == 3  # the history collected during fit reached the page
    assert report["training"]["final"]["accuracy"] == pytest.approx(callback.history["accuracy"][-1])
    assert report["metrics"]["test_images"] == 10000
    assert report["metrics"]["test_accuracy"] > 0.5
    assert "from_fit/index.html" in (out / "index.html").read_text()
    kept = list((out / "from_fit" / "history").glob("*.json"))
    assert len(kept) == 1  # the epoch-2 build was kept; epoch 3 was built once, not again at train end
    assert json.loads(kept[0].read_text())["training"]["epochs"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    page = (out / "from_fit" / "index.html").read_text()
    assert "reportgen-callback-" not in page  # the temporary save path is not shown, only the file name
    assert "Quick build" not in page  # the quick-build note describes training, which the callback did not do


def test_bad_arguments_fail_before_training() -> None:
    with pytest.raises(ReportgenError, match="unknown dataset"):
        reportgen.ReportCallback("mnsit")
    with pytest.raises(ReportgenError, match="every_n_epochs"):
        reportgen.ReportCallback("mnist", every_n_epochs=0)
