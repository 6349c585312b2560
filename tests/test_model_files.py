"""Reading users' model files as a user brings them: each model is saved by a separate Python process, then
built by `python -m reportgen build` in another one.

Keras 2 files come from `tf_keras` (Keras 2 and Keras 3 do not mix in one process); the mended model must
predict what tf_keras predicted. Mixed precision, several outputs, custom classes, Lambda layers and other
formats end in a correct report or in one `Error:` line that names the cause and the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reportgen.model.files import explain_load_failure, keras_reason, mend_config
from reportgen.util.errors import ReportgenError

REPO = Path(__file__).resolve().parent.parent
has_tf_keras = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import importlib.util as u; exit(u.find_spec('tf_keras') is None)"],
                   capture_output=True).returncode != 0,
    reason="tf_keras (Keras 2) is not installed: pip install '.[test]'")


def environment() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def run_python(code: str, cwd: Path, *args: str) -> str:
    """Run `code` with `args` in a new Python process in `cwd`; its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=600, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def reportgen_build(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m reportgen build --quick -q ARGS` in a new process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "reportgen", "build", "--quick", "-q", "--out", str(cwd / "site"),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=environment())


def error_line(result: subprocess.CompletedProcess) -> str:
    """The `Error:` line of a failed build (asserting there is exactly one and the exit code is 2)."""
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "unexpected error" not in errors[0]
    return errors[0]


def built(cwd: Path, result: subprocess.CompletedProcess, name: str) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((cwd / "site" / name / "report.json").read_text(encoding="utf-8"))


def page(cwd: Path, name: str) -> str:
    return (cwd / "site" / name / "index.html").read_text(encoding="utf-8")


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    """A reportgen.toml listing `models` (values: strings, booleans, lists of strings, inline tables of ints)."""
    def toml(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{k} = {v}" for k, v in value.items()) + " }"
        if isinstance(value, list):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        return json.dumps(str(value))

    path.write_text("".join("[[models]]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in model.items()) + "\n"
                            for model in models), encoding="utf-8")
    return path


def save_npz(path: Path, shape: tuple[int, ...], classes: int, n: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x_test=(rng.random((n, *shape)) * 255).astype(np.uint8), y_test=np.arange(n) % classes)
    return path


# --- Keras 2 files -------------------------------------------------------------------------------------------

KERAS2_MODELS = """
    import sys
    import numpy as np
    import tf_keras as k

    k.utils.set_random_seed(0)
    x28 = np.load("d28.npz")["x_test"].astype("float32") / 255.0
    x32 = np.load("d32.npz")["x_test"].astype("float32") / 255.0
    small = k.Sequential([
        k.Input((28, 28, 1)), k.layers.Conv2D(8, 3, activation="relu"), k.layers.BatchNormalization(),
        k.layers.DepthwiseConv2D(3), k.layers.SeparableConv2D(8, 3), k.layers.Conv2DTranspose(4, 3),
        k.layers.MaxPooling2D(), k.layers.Flatten(), k.layers.Dropout(0.2), k.layers.Dense(10, activation="softmax")])
    # Keras 2's usual transfer model: a MobileNetV2 base, its BatchNormalization axis stored as a list, nested
    base = k.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    pets = k.Sequential([base, k.layers.GlobalAveragePooling2D(), k.layers.Dense(3, activation="softmax")])
    models = {"small.h5": (small, x28), "small.keras": (small, x28), "pets.h5": (pets, x32)}
    for family in sys.argv[1:]:
        models[family + ".h5"] = (getattr(k.applications, family)(input_shape=(32, 32, 3), weights=None,
                                                                   classes=3), x32)
    for name, (model, x) in models.items():
        model.save(name)
        np.save(name + ".predictions.npy", model.predict(x, verbose=0))
"""

PREDICT_WITH_REPORTGEN = """
    import sys
    from pathlib import Path
    import numpy as np
    from reportgen.model.files import read_model_file

    for name in sys.argv[1:]:
        x = np.load("d28.npz" if name.startswith("small") else "d32.npz")["x_test"].astype("float32") / 255.0
        read = read_model_file(Path(name))
        expected = np.load(name + ".predictions.npy")
        got = read.model.predict(x, verbose=0)
        assert np.allclose(got, expected, atol=1e-5), (name, float(np.abs(got - expected).max()))
        assert read.mended, name
        print(name, "same predictions; mended:", "; ".join(read.mended))
"""


def keras2_files(cwd: Path, *families: str) -> None:
    save_npz(cwd / "d28.npz", (28, 28, 1), 10)
    save_npz(cwd / "d32.npz", (32, 32, 3), 3)
    run_python(KERAS2_MODELS, cwd, *families)


def tf_keras_accuracy(cwd: Path, name: str, data: str) -> float:
    predictions = np.load(cwd / f"{name}.predictions.npy")
    return float(np.mean(predictions.argmax(axis=1) == np.load(cwd / data)["y_test"]))


@has_tf_keras
def test_keras2_files_build_with_tf_keras_own_predictions(tmp_path):
    keras2_files(tmp_path)
    names = ["small.h5", "small.keras", "pets.h5"]
    out = run_python(PREDICT_WITH_REPORTGEN, tmp_path, *names)
    assert "BatchNormalization axis" in out and "DepthwiseConv2D groups" in out and "SeparableConv2D" in out
    config = write_config(tmp_path / "reportgen.toml", [
        {"name": "small-h5", "model_file": "small.h5", "dataset": "npz:d28.npz"},
        {"name": "small-keras", "model_file": "small.keras", "dataset": "npz:d28.npz"},
        {"name": "pets", "model_file": "pets.h5", "dataset": "npz:d32.npz", "budget": {"layers": 2, "units": 8}},
    ])
    result = reportgen_build(tmp_path, "--config", str(config))
    for name, file, data in [("small-h5", "small.h5", "d28.npz"), ("small-keras", "small.keras", "d28.npz"),
                             ("pets", "pets.h5", "d32.npz")]:
        report = built(tmp_path, result, name)
        assert report["metrics"]["test_accuracy"] == pytest.approx(tf_keras_accuracy(tmp_path, file, data), abs=1e-6)
        assert report["model"]["mended"] and report["model"]["dtype_policy"] == "float32"
        assert "Read as a Keras 2 file" in page(tmp_path, name)


@pytest.mark.slow
@has_tf_keras
def test_keras2_applications_families_predict_as_tf_keras_did(tmp_path):
    families = ["ResNet50V2", "DenseNet121", "EfficientNetB0", "MobileNet", "NASNetMobile"]
    keras2_files(tmp_path, *families)
    names = [f"{family}.h5" for family in families]
    run_python(PREDICT_WITH_REPORTGEN, tmp_path, *names)
    config = write_config(tmp_path / "reportgen.toml", [
        {"name": "resnet50v2", "model_file": "ResNet50V2.h5", "dataset": "npz:d32.npz",
         "budget": {"layers": 2, "units": 8}}])
    report = built(tmp_path, reportgen_build(tmp_path, "--config", str(config)), "resnet50v2")
    assert report["metrics"]["test_accuracy"] == pytest.approx(
        tf_keras_accuracy(tmp_path, "ResNet50V2.h5", "d32.npz"), abs=1e-6)


def test_keras2_configs_are_mended_without_running_anything():
    stored = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Functional", "config": {
            "name": "base", "input_layers": [["input_1", 0, 0]], "output_layers": [["conv1/bn", 0, 0]],
            "layers": [
                {"class_name": "InputLayer", "config": {"name": "input_1", "batch_input_shape": [None, 8, 8, 3]},
                 "inbound_nodes": []},
                {"class_name": "BatchNormalization", "config": {"name": "conv1/bn", "axis": [3], "dtype": {
                    "class_name": "Policy", "config": {"name": "mixed_float16"}}},
                 "inbound_nodes": [[["input_1", 0, 0, {}]]]}]}},
        {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1, "dtype": "mixed_float16"}},
        {"class_name": "Dense", "config": {"name": "out", "dtype": {
            "class_name": "Policy", "config": {"name": "float32"}}}}]}}
    config, mended, policy = mend_config(stored)
    base = config["config"]["layers"][0]["config"]
    assert base["output_layers"] == ["conv1_bn", 0, 0] and base["input_layers"] == ["input_1", 0, 0]
    bn = base["layers"][1]["config"]
    assert bn["name"] == "conv1_bn" and bn["axis"] == 3 and bn["dtype"] == "float32"
    assert "groups" not in config["config"]["layers"][1]["config"]
    assert config["config"]["layers"][2]["config"]["dtype"]["config"]["name"] == "float32"
    assert policy == "mixed_float16" and len(mended) == 4
    assert stored["config"]["layers"][1]["config"]["groups"] == 1  # the stored config is left alone


def test_keras_reasons_are_one_informative_sentence():
    message = ("<class 'Sequential'> could not be deserialized properly. Please ensure that components that are "
               "Python object instances ... config={'module': 'keras', 'config': {'name': 'x', 'layers': "
               + "[{'a': 1}, " * 40 + "]}}. Exception encountered: Error when deserializing class "
               "'BatchNormalization' using config={'name': 'bn', 'axis': [3], 'momentum': 0.99, 'epsilon': 0.001}. "
               "Exception encountered: int() argument must be a string, a bytes-like object or a real number, "
               "not 'list'")
    assert keras_reason(message) == ("BatchNormalization: int() argument must be a string, a bytes-like object or "
                                     "a real number, not 'list'")
    missing = explain_load_failure(ValueError("Unknown layer: 'Custom>Scale'. Please ensure ..."), {})
    assert "'Scale'" in missing and "--import" in missing


# --- dtype policies --------------------------------------------------------------------------------------------

MIXED_PRECISION_MODEL = """
    import json
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    (x, y), (x_test, y_test) = keras.datasets.mnist.load_data()
    x, y, x_test, y_test = x[:3000, ..., None] / 255.0, y[:3000], x_test[:500, ..., None], y_test[:500]
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10)(h)
    outputs = keras.layers.Activation("softmax", dtype="float32")(h)  # the documented recipe
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.save("mixed.keras")
    np.savez("mnist500.npz", x_test=x_test, y_test=keras.utils.to_categorical(y_test, 10))  # one-hot, as posts do
    accuracy = float(np.mean(model.predict(x_test / 255.0, verbose=0).argmax(axis=1) == y_test))
    print(json.dumps({"accuracy": accuracy}))
"""


def test_a_mixed_float16_model_is_reported_in_float32(tmp_path):
    own = json.loads(run_python(MIXED_PRECISION_MODEL, tmp_path).strip().splitlines()[-1])["accuracy"]
    assert own > 0.5
    report = built(tmp_path, reportgen_build(tmp_path, "--model-file", "mixed.keras", "--dataset", "npz:mnist500.npz"),
                   "mixed")
    assert report["metrics"]["test_accuracy"] == pytest.approx(own, abs=0.01)
    assert report["model"]["dtype_policy"] == "mixed_float16" and report["model"]["mended"] == []
    assert "trained under mixed_float16; reportgen computes in float32" in page(tmp_path, "mixed")


# --- several outputs and inputs -------------------------------------------------------------------------------

SEVERAL_OUTPUTS = """
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    shape = keras.layers.Dense(3, activation="softmax", name="shape")(h)
    brightness = keras.layers.Dense(1, name="brightness")(h)
    colour = keras.layers.Dense(3, activation="softmax", name="colour")(h)
    keras.Model(inputs, [shape, brightness]).save("aux.keras")
    keras.Model(inputs, [shape, colour]).save("two_heads.keras")
    second = keras.Input((16, 16, 3))
    merged = keras.layers.Concatenate()([inputs, second])
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(merged))
    keras.Model([inputs, second], out).save("two_inputs.keras")
"""


def test_several_outputs_use_the_one_classifier_or_say_how_to_choose(tmp_path):
    run_python(SEVERAL_OUTPUTS, tmp_path)
    save_npz(tmp_path / "shapes.npz", (16, 16, 3), 3)
    dataset = ("--dataset", "npz:shapes.npz")

    report = built(tmp_path, reportgen_build(tmp_path, "--model-file", "aux.keras", *dataset), "aux")
    assert report["model"]["output_name"] == "shape"
    assert "output &#39;shape&#39;" in page(tmp_path, "aux") or "output 'shape'" in page(tmp_path, "aux")

    error = error_line(reportgen_build(tmp_path, "--model-file", "two_heads.keras", *dataset))
    assert "'shape' (None, 3)" in error and "'colour' (None, 3)" in error and "--output NAME" in error
    report = built(tmp_path, reportgen_build(tmp_path, "--model-file", "two_heads.keras", "--output", "colour",
                                             *dataset), "two_heads")
    assert report["model"]["output_name"] == "colour"

    error = error_line(reportgen_build(tmp_path, "--model-file", "two_inputs.keras", *dataset))
    assert "2 inputs" in error and "one image input" in error


# --- custom classes and Lambda layers -------------------------------------------------------------------------

CUSTOM_LAYERS = """
    import keras


    @keras.saving.register_keras_serializable(package="mine")
    class Brighten(keras.layers.Layer):
        def __init__(self, amount=0.1, **kwargs):
            super().__init__(**kwargs)
            self.amount = amount

        def call(self, x):
            return x + self.amount

        def get_config(self):
            return {**super().get_config(), "amount": self.amount}
"""

CUSTOM_AND_LAMBDA_MODELS = """
    import sys

    import keras

    sys.path.insert(0, "code")
    from my_layers import Brighten

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = Brighten(name="brighten")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    keras.Model(inputs, outputs).save("custom.keras")
    h = keras.layers.Lambda(lambda x: x * 2.0, name="double")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    keras.Model(inputs, outputs).save("lambda.keras")
"""


def test_custom_classes_load_with_import_and_lambda_layers_with_trust(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_layers.py").write_text(textwrap.dedent(CUSTOM_LAYERS), encoding="utf-8")
    run_python(CUSTOM_AND_LAMBDA_MODELS, tmp_path)
    save_npz(tmp_path / "d.npz", (16, 16, 3), 3)
    dataset = ("--dataset", "npz:d.npz")

    error = error_line(reportgen_build(tmp_path, "--model-file", "custom.keras", *dataset))
    assert "'Brighten'" in error and "--import" in error
    report = built(tmp_path, reportgen_build(tmp_path, "--model-file", "custom.keras", "--import",
                                             "code/my_layers.py", *dataset), "custom")
    assert report["metrics"]["test_images"] == 200

    error = error_line(reportgen_build(tmp_path, "--model-file", "lambda.keras", *dataset))
    assert "'double'" in error and "Lambda" in error and "--trust-model-code" in error
    config = write_config(tmp_path / "reportgen.toml", [
        {"name": "trusted", "model_file": "lambda.keras", "dataset": "npz:d.npz", "trust_model_code": True}])
    report = built(tmp_path, reportgen_build(tmp_path, "--config", str(config)), "trusted")
    assert report["model"]["trusted_code"] is True
    assert "--trust-model-code" in page(tmp_path, "trusted")


# --- other formats --------------------------------------------------------------------------------------------

def test_other_model_formats_say_what_to_save(tmp_path):
    saved_model = tmp_path / "savedmodel"
    (saved_model / "variables").mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"\x08\x01")
    save_npz(tmp_path / "d.npz", (16, 16, 3), 3, n=10)
    error = error_line(reportgen_build(tmp_path, "--model-file", str(saved_model), "--dataset", "npz:d.npz"))
    assert "SavedModel" in error and 'model.save("model.keras")' in error


@pytest.mark.parametrize("name, kind", [("model.pb", "TensorFlow graph"), ("model.tflite", "TensorFlow Lite"),
                                        ("model.onnx", "ONNX"), ("folder", "folder")])
def test_each_other_format_is_named(tmp_path, name, kind):
    from reportgen.model.files import load_model_file

    path = tmp_path / name
    path.mkdir() if name == "folder" else path.write_bytes(b"x")
    with pytest.raises(ReportgenError, match=kind) as raised:
        load_model_file(path)
    assert 'model.save("model.keras")' in str(raised.value) and "\n" not in str(raised.value)


def test_weights_only_h5_is_named(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save_weights(tmp_path / "w.weights.h5")
    (tmp_path / "w.weights.h5").rename(tmp_path / "w.h5")
    from reportgen.model.files import load_model_file

    with pytest.raises(ReportgenError, match="weights only"):
        load_model_file(tmp_path / "w.h5")
