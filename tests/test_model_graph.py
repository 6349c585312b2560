"""The model module's conformance rules: models derived from a user's never clash with its names, and no
optimisation or dream runs at a size the model does not compute on (found from the model, not per family)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from reportgen.methods.featvis import LOGITS, FeatVisSettings, visualize_model
from reportgen.model import Network
from reportgen.model.graph import unique_names

REPO = Path(__file__).resolve().parent.parent


def test_added_operations_are_renamed_where_the_users_model_has_their_name():
    inputs = keras.Input((6, 6, 1))
    users = keras.layers.Conv2D(2, 3, name="multiply")(inputs)
    added = keras.ops.multiply(users, 2.0)  # Keras names it after its own counter, which may say "multiply"
    added_op = added._keras_history[0]
    added_op.name = "multiply"
    unique_names(added, keep={id(users._keras_history[0])})
    assert added_op.name != "multiply" and users._keras_history[0].name == "multiply"
    keras.Model(inputs, added)  # accepted: every name is unique


SAVE = """
import keras
keras.utils.set_random_seed(0)
inputs = keras.Input((16, 16, 3))
x = keras.layers.Rescaling(1 / 255)(inputs)
x = keras.layers.Conv2D(4, 3, padding="same", activation="swish")(x)
y = keras.layers.Conv2D(4, 3, padding="same")(x)
x = keras.layers.add([x, y])
x = keras.layers.Activation("relu")(x * keras.ops.sigmoid(x))
x = keras.layers.GlobalAveragePooling2D()(x)
keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save("{path}")
"""

READ = """
import json, sys
import keras, numpy as np
from reportgen.model import Network
network = Network(keras.models.load_model("{path}"))
images = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
paths = [unit.point.path for unit in network.units]
stats = network.test_pass(images, paths)
logits = network.logits_model()(images)
guided = network.relu_graph("guided", logits=True)
guided.model(guided.output)(images)
print(json.dumps({{"names": [node.path for node in network.graph.nodes.values()],
                   "rows": float(stats.probabilities.sum())}}))
"""


def test_a_model_read_in_a_new_process_gets_every_derived_model(tmp_path):
    """In the process that made a model, Keras has counted its "add" and "multiply"; a user's fresh process has
    not, and derived models used to reuse those names ("The name "add" is used 2 times in the model")."""
    path = tmp_path / "ops.keras"
    for script in (SAVE, READ):
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script.format(path=path))],
                                capture_output=True, text=True, cwd=REPO, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"add", "multiply"} <= set(out["names"])
    assert out["rows"] == pytest.approx(4.0, abs=1e-4)


def valid_convs(size: int | None) -> keras.Model:
    """Two valid 5x5 convs, the second with stride 2: maps of at least one pixel need 9 px or more."""
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(3, 5, activation="relu", name="first")(inputs)
    x = keras.layers.Conv2D(3, 5, strides=2, activation="relu", name="second")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_the_smallest_size_is_found_from_the_model():
    network = Network(valid_convs(64))
    assert network.smallest_side() == 9
    assert not network.accepts((8, 8)) and network.accepts((9, 9)) and network.accepts((9, 40))
    # A canvas capped below the smallest size grows to it; a model of free size gets the cap.
    assert network.canvas(6) == (9, 9) and network.canvas(48) == (48, 48)
    assert Network(valid_convs(None)).canvas(48) == (48, 48)


def test_branches_that_meet_only_at_some_sizes():
    """A strided valid branch added to a strided same one: equal shapes only at odd sizes (as NASNet's
    reductions need some sizes and not others); Keras' shape inference alone does not see it."""
    inputs = keras.Input((None, None, 1))
    a = keras.layers.Conv2D(2, 3, strides=2, padding="valid")(inputs)
    b = keras.layers.Conv2D(2, 1, strides=2, padding="valid")(keras.layers.Cropping2D(((1, 0), (1, 0)))(inputs))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    network = Network(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)))
    assert network.accepts((9, 9)) and not network.accepts((10, 10))
    size = network.accepted_size((20, 30))
    assert size is not None and size != (20, 30) and network.accepts(size)
    assert network.graph.model(network.graph.output)(np.zeros((1, *size, 1), np.float32)).shape == (1, 2)
    assert network.canvas(48) == (49, 49)  # the cap is even: the canvas is the next size the model takes


def test_a_layer_named_logits_is_a_layer_not_the_classes():
    """MobileNetV3's classifier is a conv named "logits"; the class images' pseudo-layer must not be it."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="logits")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    network = Network(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)))
    results = visualize_model(network, {"logits": None, LOGITS: None}, FeatVisSettings(steps=2))
    assert results["logits"].peak is not None and len(results["logits"].units) == 3
    assert results[LOGITS].probability is not None and len(results[LOGITS].units) == 2


@pytest.mark.slow
def test_a_model_of_free_size_is_fed_the_data_at_its_size_and_pictured_on_a_stated_canvas(tmp_path):
    """keras.Input((None, None, 1)), global pooling, Dense: saved, then built from the command line."""
    from user_models import reportgen_process

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    train, test = y_train < 3, y_test < 3
    x_train, y_train = x_train[train][:3000, ..., None] / 255.0, y_train[train][:3000]
    x_test, y_test = x_test[test][:300], y_test[test][:300]
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    model.save(tmp_path / "free.keras")
    np.savez(tmp_path / "digits.npz", x_test=x_test, y_test=y_test)
    result = reportgen_process("build", "--quick", "-q", "--model-file", str(tmp_path / "free.keras"),
                               "--dataset", f"npz:{tmp_path / 'digits.npz'}", "--out", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "site" / "free" / "report.json").read_text(encoding="utf-8"))
    own = model.predict(x_test[..., None] / 255.0, verbose=0).argmax(axis=1)
    assert report["metrics"]["test_accuracy"] == pytest.approx(float(np.mean(own == y_test)), abs=1e-6)
    feature_vis = next(s for s in report["sections"] if s["id"] == "feature-vis")
    canvas = feature_vis["data"]["pictures"]["canvas"]
    assert any(f"{canvas[0]}x{canvas[1]} px canvas" in note for note in feature_vis["notes"])
    assert any("test images are fed at their own size (28x28 px)" in note for note in feature_vis["notes"])
