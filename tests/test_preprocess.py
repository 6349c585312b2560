"""Preprocessing outside the model: keras.applications' preprocess_input modes and per-channel means.

reportgen's images stay RGB in [0, 1]; `InputRange.to_model` must feed the model exactly what
`preprocess_input(x * 255, mode=...)` gives, as numpy, as a TensorFlow tensor and inside a traced graph.
A user's model trained on caffe-preprocessed colour digits, saved and built from the command line in a
new process with `--preprocess caffe`, gets its own accuracy and shows its pictures in RGB.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.applications.imagenet_utils import preprocess_input
from PIL import Image
from user_models import folder, reportgen_process, train

from reportgen.api import model_spec
from reportgen.build.fingerprint import inputs_fingerprint
from reportgen.build.pipeline import chance_warning
from reportgen.cli import input_overrides
from reportgen.inputs.config import PREPROCESS_MODES, ModelSpec, load_config
from reportgen.model import Network
from reportgen.model.inputs import KERAS_MODES, given_input, preprocessing
from reportgen.util.errors import ReportgenError

MODES = ("caffe", "tf", "torch")
MODEL = '[[models]]\nname = "a"\ndataset = "mnist"\nmodel_file = "m.keras"\n'


def load(tmp_path: Path, lines: str):
    path = tmp_path / "r.toml"
    path.write_text(MODEL + lines, encoding="utf-8")
    return load_config(path)


def unit_images(channels: int, seed: int = 0, size: tuple[int, int] = (5, 6)) -> np.ndarray:
    """Random [0, 1] images with both ends included, as reportgen holds them."""
    images = np.random.default_rng(seed).random((4, *size, channels)).astype(np.float32)
    images[0, 0, 0], images[0, 0, 1] = 0.0, 1.0
    return images


def keras_preprocessed(images: np.ndarray, mode: str) -> np.ndarray:
    return preprocess_input(images * np.float32(255), mode=mode)  # it changes its argument in place


def traced(images: np.ndarray, setting) -> np.ndarray:
    """`to_model` applied to a symbolic input, as `flatten` applies it, then run."""
    inputs = keras.Input(images.shape[1:])
    return keras.Model(inputs, preprocessing(setting).to_model(inputs)).predict(images, verbose=0)


def assert_fed_alike(got, want: np.ndarray) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)  # float32 rounding: 255 / 127.5 is not 2 exactly


def test_the_three_modes_are_the_ones_the_config_accepts():
    assert set(KERAS_MODES) == set(PREPROCESS_MODES) == set(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_feeds_what_preprocess_input_gives_as_numpy_tensor_and_graph(mode):
    images = unit_images(3)
    want = keras_preprocessed(images.copy(), mode)
    fed = preprocessing(mode)
    assert_fed_alike(fed.to_model(images), want)
    assert_fed_alike(fed.to_model(tf.constant(images)).numpy(), want)
    assert_fed_alike(traced(images, mode), want)
    np.testing.assert_array_equal(images, unit_images(3))  # reportgen's own images are left as they were
    assert not fed.is_unit


def test_tf_mode_on_grey_images_and_a_single_mean_and_deviation():
    grey = unit_images(1)
    assert_fed_alike(preprocessing("tf").to_model(grey), keras_preprocessed(grey.copy(), "tf"))
    one_for_all = {"scale": 255, "mean": 127.5, "std": 127.5}
    assert_fed_alike(traced(grey, one_for_all), keras_preprocessed(grey.copy(), "tf"))


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_the_table_form_writes_each_mode_out(mode):
    """The same maps, given as numbers: caffe's means in the model's (BGR) order, torch's on [0, 1]."""
    tables = {"caffe": {"scale": 255, "channels": "bgr", "mean": [103.939, 116.779, 123.68]},
              "torch": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    images = unit_images(3, seed=1)
    assert_fed_alike(preprocessing(tables[mode]).to_model(images), keras_preprocessed(images.copy(), mode))


def test_bgr_reverses_the_channels_before_the_means():
    images = np.zeros((1, 1, 1, 3), np.float32)
    images[..., 0] = 1.0  # pure red
    fed = preprocessing({"scale": 10, "channels": "bgr", "mean": [1, 2, 3]}).to_model(images)
    np.testing.assert_array_equal(fed[0, 0, 0], [-1, -2, 7])


def test_a_plain_range_is_mapped_as_before_and_records_no_preprocessing():
    given = given_input([0, 255], None)
    images = unit_images(3)
    np.testing.assert_array_equal(given.to_model(images), images * 255.0)
    assert given.text() == "[0, 255]" and given.preprocess_record() is None
    assert given_input(None, None) is None


def test_three_channel_means_refuse_a_grey_model():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ReportgenError, match=r'preprocess "caffe" has 3 channel means.*1 channel'):
        Network(model, preprocessing("caffe"))


def test_a_network_with_preprocessing_predicts_as_the_model_on_preprocessed_images():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = unit_images(3, size=(8, 8))
    network = Network(model, given_input(None, "caffe"))
    want = model.predict(keras_preprocessed(images.copy(), "caffe"), verbose=0)
    np.testing.assert_allclose(network.probabilities(images), want, rtol=1e-5, atol=1e-6)
    record = network.input_range.preprocess_record()
    assert record["mode"] == "caffe" and record["channels"] == "bgr" and record["high"] == 255
    assert "BGR" in record["text"] and "103.939" in record["text"]


@pytest.mark.parametrize("line", ['preprocess = "caffe"', 'preprocess = "tf"', 'preprocess = "torch"',
                                  'preprocess = { scale = 255, mean = [1, 2.5, 3], std = 58, channels = "bgr" }',
                                  "preprocess = { mean = 0.5, std = [0.2] }"])
def test_the_allowed_forms_load(line, tmp_path):
    (spec,) = load(tmp_path, line).models
    assert preprocessing(spec.preprocess).mode in (*MODES, "custom")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('preprocess = "vgg"', "unknown mode 'vgg'"),
        ("preprocess = 3", "not int"),
        ("preprocess = {}", "an empty table"),
        ("preprocess = { mean = [1, 2, 3], offset = 1 }", "unknown key 'offset'"),
        ('preprocess = { mean = ["a"] }', "mean ['a'] is not one number"),
        ("preprocess = { mean = [] }", "mean [] is not one number"),
        ("preprocess = { std = [1, 0, 1] }", "std [1, 0, 1] is not one number above 0"),
        ("preprocess = { scale = -255 }", "scale -255 is not a number above 0"),
        ("preprocess = { mean = [1, 2, 3], std = [1, 2] }", "mean and std give 3 and 2 channels"),
        ('preprocess = { channels = "grb" }', "channels 'grb' is not"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_the_allowed_forms(line, fragment, tmp_path):
    with pytest.raises(ReportgenError) as error:
        load(tmp_path, line)
    message = str(error.value)
    assert "\n" not in message and fragment in message
    assert message.startswith(f"{tmp_path / 'r.toml'}: 'preprocess' in model 'a'")
    assert '"caffe", "tf" or "torch"' in message and "channels" in message


def test_input_range_and_preprocess_together_are_refused_everywhere(tmp_path, capsys):
    with pytest.raises(ReportgenError, match="both 'input_range' and 'preprocess'"):
        load(tmp_path, 'input_range = [0, 255]\npreprocess = "tf"')
    with pytest.raises(ReportgenError, match="--input-range or --preprocess, not both"):
        input_overrides([0.0, 255.0], "caffe")
    with pytest.raises(ReportgenError, match="both 'input_range' and 'preprocess'"):
        model_spec(tmp_path / "m.keras", "mnist", tmp_path, input_range=(0, 255), preprocess="caffe")


def test_a_flag_replaces_the_configured_setting():
    assert input_overrides(None, "caffe") == {"input_range": None, "preprocess": "caffe"}
    assert input_overrides([-1.0, 1.0], None) == {"input_range": [-1.0, 1.0], "preprocess": None}
    assert input_overrides(None, None) == {}


def test_the_api_takes_a_table_with_tuples_and_arrays(tmp_path):
    images = (np.random.default_rng(0).random((6, 8, 8, 3)) * 255).astype(np.float32)
    spec = model_spec(tmp_path / "m.keras", (images, np.arange(6) % 3), tmp_path,
                      preprocess={"scale": np.float32(255), "mean": (1.0, 2.0, 3.0), "std": np.array([4.0, 5, 6])})
    assert spec.input_range is None  # the arrays' [0, 255] is the preprocessing's, not a range of its own
    assert spec.preprocess == {"scale": 255.0, "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}


def test_the_setting_is_in_the_rebuild_fingerprint():
    spec = ModelSpec(name="a", dataset="mnist", model_file="m.keras")
    with_mode = ModelSpec(name="a", dataset="mnist", model_file="m.keras", preprocess="caffe")
    other_mode = ModelSpec(name="a", dataset="mnist", model_file="m.keras", preprocess="torch")
    prints = {inputs_fingerprint(s, 0, True, "w") for s in (spec, with_mode, other_mode)}
    assert len(prints) == 3


def test_the_chance_warning_names_both_options(tiny_context):
    tiny_context.__dict__["predictions"] = np.zeros(len(tiny_context.data.y_test), int)
    warning = chance_warning(tiny_context)
    assert "--input-range" in warning and "--preprocess" in warning and "preprocess" in warning


ORANGE_ON_BLUE = (np.array([1.0, 0.6, 0.1]), np.array([0.1, 0.1, 0.7]))  # (stroke, background) RGB


def colour_digit_folders(root: Path, digits: tuple[int, ...] = (0, 1, 2), per_class: int = 300) -> str:
    """MNIST digits as orange strokes on blue, PNGs in train/ and validation/ class folders: colour in which a
    channel swap shows (grey digits look the same in BGR)."""
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    stroke, background = ORANGE_ON_BLUE
    for split, x, y, count in (("train", x_train, y_train, per_class), ("validation", x_test, y_test, per_class // 3)):
        for digit in digits:
            place = root / split / f"digit_{digit}"
            place.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(x[y == digit][:count]):
                v = image[..., None] / 255.0
                Image.fromarray(np.round(255 * (v * stroke + (1 - v) * background)).astype(np.uint8)).save(
                    place / f"{i:04d}.png")
    return f"folder:{root}"


def vgg_style(shape: tuple[int, int, int]) -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="block1_conv2")(x)
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv1")(x)
    x = keras.layers.MaxPooling2D(name="block2_pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))


@pytest.mark.slow
def test_a_caffe_model_saved_and_built_from_the_command_line(tmp_path):
    """The VGG recipe: `vgg16.preprocess_input` on the images outside the model, then fit."""
    shape = (28, 28, 3)
    dataset = colour_digit_folders(tmp_path / "digits")
    x_train, y_train, x_test, y_test = folder(dataset, shape)  # in [0, 1], as reportgen reads them
    model = vgg_style(shape)
    train(model, keras_preprocessed(x_train, "caffe"), y_train, steps=240)
    own = model.predict(keras_preprocessed(x_test.copy(), "caffe"), verbose=0).argmax(axis=1)
    accuracy = float(np.mean(own == y_test))
    assert accuracy > 0.6, "the test model itself is not trained enough"
    model_file = tmp_path / "vgg-caffe.keras"
    model.save(model_file)

    out = tmp_path / "site"
    result = reportgen_process("build", "--quick", "--model-file", str(model_file), "--dataset", dataset,
                               "--preprocess", "caffe", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "vgg-caffe" / "report.json").read_text(encoding="utf-8"))
    assert report["metrics"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert report["warnings"] == []
    assert report["model"]["preprocess"]["mode"] == "caffe"
    assert report["model"]["input_range"] == [0, 255]
    page = (out / "vgg-caffe" / "index.html").read_text(encoding="utf-8")
    assert "preprocess_input mode &#34;caffe&#34;" in page
    assert "in BGR order, minus the means [103.939, 116.779, 123.68] per channel" in page
    markdown = (out / "vgg-caffe" / "index.md").read_text(encoding="utf-8")
    assert "in BGR order" in markdown

    crops = sorted((out / "vgg-caffe" / "img" / "units").rglob("*-top-*.png"))  # test images, cropped
    assert crops
    pixels = np.concatenate([np.asarray(Image.open(p).convert("RGB"), float).reshape(-1, 3) for p in crops])
    with_red = dict(zip(("red", "green", "blue"), np.corrcoef(pixels.T)[0]))
    assert with_red["green"] > 0.8 and with_red["blue"] < -0.8, "orange on blue: green rises with red, not with blue"
