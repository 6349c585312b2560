"""ReportCallback: the site comes straight out of model.fit on real MNIST."""

import json

import keras
import numpy as np

import reportgen


def test_callback_builds_the_report_with_the_training_history(tmp_path):
    (x, y), _ = keras.datasets.mnist.load_data()
    x = x[:6000, ..., None].astype(np.float32) / 255
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.MaxPooling2D(4)(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h), name="from_fit")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    out = tmp_path / "site"
    callback = reportgen.ReportCallback("mnist", out=out, every_n_epochs=1, quick=True)
    model.fit(x, y[:6000], epochs=2, batch_size=64, verbose=0, callbacks=[callback])

    report = json.loads((out / "from_fit" / "report.json").read_text())
    assert report["model"]["name"] == "from_fit"
    assert report["training"]["epochs"] == 2
    assert report["metrics"]["test_images"] == 10000
    assert report["metrics"]["test_accuracy"] > 0.5
    assert (out / "index.html").is_file()
    assert len(list((out / "from_fit" / "history").glob("*.json"))) >= 1  # the epoch-1 build was kept
