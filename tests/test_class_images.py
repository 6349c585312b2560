"""Class images: their own settings and objective, the best of several starts, and an independent judge
that must recognise them (a judge built here, not only the one the build trains)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_cnn, tiny_dataset
from PIL import Image

from reportgen.inputs.config import ModelSpec, load_config
from reportgen.inputs.data import Dataset, load_dataset
from reportgen.methods import recognition
from reportgen.methods.featvis import CLASS_PRESET, LOGITS, FeatVisSettings, class_margin, visualize_model
from reportgen.methods.featvis.probes import PLAIN, logit_probe
from reportgen.methods.featvis.render import penalties
from reportgen.model import Network
from reportgen.sections import feature_vis
from reportgen.sections.context import ModelContext
from reportgen.util.errors import ReportgenError

FAST = FeatVisSettings(steps=32)


def bars(n: int, seed: int, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images of 3 classes: class k is a bright bar across rows 2k+1 and 2k+2, on noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * noise
    for k in range(3):
        x[y == k, 2 * k + 1 : 2 * k + 3] = 1.0
    return x, y


def test_margin_is_the_class_logit_minus_the_mean_of_the_others():
    logits = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    got = class_margin([4, 0]).fn({LOGITS: tf.constant(logits)}).numpy()
    expected = [logits[0, 4] - np.delete(logits[0], 4).mean(), logits[1, 0] - np.delete(logits[1], 0).mean()]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    sigmoid = np.array([[2.0], [-3.0]], np.float32)  # a single sigmoid: class 1 its logit, class 0 the negation
    np.testing.assert_allclose(class_margin([1, 0]).fn({LOGITS: tf.constant(sigmoid)}).numpy(), [2.0, 3.0])


def test_recognition_matches_a_direct_computation_and_blank_images_are_not_recognised():
    x_train, y_train = bars(600, 0)
    x_test, y_test = bars(300, 1)
    data = Dataset("bars", x_train, y_train, x_test, y_test, ["top", "middle", "bottom"])
    judge = recognition.train_judge(data, (8, 8, 1), seed=0)
    assert judge.test_accuracy > 0.95 and judge.trained_on == "training split"
    clean, _ = bars(3, 2, noise=0.0)  # bars of classes 0, 1, 2
    meant = np.array([0, 2, 2])
    verdict = recognition.recognise(judge, clean, meant)
    w1, b1, w2, b2 = judge.weights
    mean, std = judge.centre
    logits = np.maximum((clean.reshape(3, -1) - mean) / std @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_array_equal(verdict.predicted, logits.argmax(1))
    np.testing.assert_array_equal(verdict.predicted, [0, 1, 2])
    assert verdict.count == 2 and verdict.recognised.tolist() == [True, False, True]
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(verdict.own_probability, softmax[np.arange(3), meant], rtol=1e-4)
    for blank in (np.zeros((3, 8, 8, 1), np.float32), np.full((3, 8, 8, 1), 0.5, np.float32)):
        assert recognition.recognise(judge, blank, np.arange(3)).count <= 1  # one image, one class: chance


def test_a_dataset_without_training_images_trains_the_judge_on_half_the_test_set():
    x_test, y_test = bars(400, 1)
    data = Dataset("bars", x_test[:0], y_test[:0], x_test, y_test, ["a", "b", "c"])
    judge = recognition.train_judge(data, (8, 8, 1))
    assert judge.trained_on == "half of the test set" and judge.test_accuracy > 0.9


def test_the_judge_is_kept_in_the_cache_and_retrained_when_its_training_images_change(tmp_path, monkeypatch):
    x_train, y_train = bars(600, 0)
    x_test, y_test = bars(300, 1)
    data = Dataset("bars", x_train, y_train, x_test, y_test, ["top", "middle", "bottom"])
    first = recognition.train_judge(data, (8, 8, 1), seed=0, cache_dir=tmp_path)
    fits = []
    fit = recognition._fit
    monkeypatch.setattr(recognition, "_fit", lambda *args: fits.append(1) or fit(*args))
    again = recognition.train_judge(data, (8, 8, 1), seed=0, cache_dir=tmp_path)
    assert not fits and len(list((tmp_path / "judges").glob("*.npz"))) == 1
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(a, b)
    assert again.test_accuracy == first.test_accuracy
    data.x_train = data.x_train.copy()
    data.x_train[0, 0, 0, 0] += 0.5  # one pixel of the training split
    recognition.train_judge(data, (8, 8, 1), seed=0, cache_dir=tmp_path)
    assert len(fits) == 1 and len(list((tmp_path / "judges").glob("*.npz"))) == 2


def test_class_settings_are_the_preset_over_the_filters_and_the_config(tmp_path):
    classes = FeatVisSettings(steps=40, total_variation=0.1).for_classes()
    assert (classes.steps, classes.total_variation) == (40, 0.1)  # inherited from the filters' settings
    assert {key: getattr(classes, key) for key in CLASS_PRESET} == CLASS_PRESET
    assert FeatVisSettings().objective == "logit" and FeatVisSettings().starts == 1  # filters: unchanged
    path = tmp_path / "reportgen.toml"
    path.write_text('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\n'
                    'feature_vis = { steps = 64, classes = { starts = 2, objective = "logit", l2 = 3.0 } }\n')
    values = load_config(path).models[0].feature_vis
    filters = FeatVisSettings.from_config(values)
    assert filters.steps == 64 and filters.starts == 1
    classes = filters.for_classes(values["classes"])
    assert (classes.steps, classes.starts, classes.objective, classes.l2, classes.param) == (64, 2, "logit", 3.0,
                                                                                          "auto-smooth")
    path.write_text('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\n'
                    'feature_vis = { classes = { objective = "probability" } }\n')
    with pytest.raises(ReportgenError, match=r"'feature_vis\.classes\.objective' .* logit, margin"):
        load_config(path)


def test_the_classes_run_with_their_own_settings_and_every_start(monkeypatch):
    from reportgen.methods import featvis

    calls, real = [], featvis.render_units

    def spy(probe, objective, size, settings, slots, units, seed, attempts=None, *more):
        calls.append((settings, len(units), None if attempts is None else attempts.tolist(), objective.name))
        return real(probe, objective, size, settings, slots, units, seed, attempts, *more)

    monkeypatch.setattr(featvis, "render_units", spy)
    classes = FAST.for_classes({"starts": 2})
    result = visualize_model(tiny_cnn(), {"conv_a": None, LOGITS: None}, FAST, 0, classes)
    assert len(calls) == 2
    filters, logits = sorted(calls, key=lambda call: call[0].starts)
    assert filters[0] is FAST and filters[1] == 4 and set(filters[2]) == {0} and "channel" in filters[3]
    assert logits[0] is classes and logits[1] == 6 and logits[2] == [0, 0, 0, 1, 1, 1]
    assert logits[3] == "class_margin"
    assert result[LOGITS].images.shape == (3, 12, 12, 1) and list(result[LOGITS].units) == [0, 1, 2]


def test_the_kept_start_has_the_highest_objective():
    model = tiny_cnn()
    probe = logit_probe(model)

    def totals(settings: FeatVisSettings) -> np.ndarray:
        images = visualize_model(model, {LOGITS: None}, FAST, 3, settings)[LOGITS].images
        margins = class_margin(np.arange(3)).fn(probe.fn(tf.constant(images), tf.constant(PLAIN))).numpy()
        return margins - penalties(settings, images)

    one, three = FAST.for_classes({"starts": 1}), FAST.for_classes({"starts": 3})
    assert np.all(totals(three) >= totals(one) - 1e-3)  # start 0 is among the three


def test_the_section_stores_each_class_image_and_its_independent_recognition(tiny_context):
    section = feature_vis.build(tiny_context)
    records = section.data["classes"]
    assert [r["class"] for r in records] == [0, 1, 2]
    for record in records:
        image = np.asarray(Image.open(tiny_context.out_dir / record["image"]))
        assert record["magnified"] == 9 and image.shape[:2] == (108, 108)  # 12 px, x9
        assert set(record["independent"]) == {"predicted", "predicted_name", "probability", "own_probability",
                                              "recognised"}
    summary = section.data["independent_recognition"]
    assert summary["recognised"] == sum(r["independent"]["recognised"] for r in records)
    assert 0 <= summary["judge_test_accuracy"] <= 1
    figure = next(f for f in section.figures if f.title == "Classes")
    assert figure.numbers["independently_recognised"] == summary["recognised"]
    assert "independent judge" in figure.caption
    shown = section.data["class_settings"]
    margin = feature_vis.typical_margin(tiny_context.probabilities, tiny_context.data.y_test)
    assert shown["objective"] == "margin" and shown["starts"] == CLASS_PRESET["starts"]
    assert shown["typical_margin"] == pytest.approx(margin)
    assert shown["l2"] == pytest.approx(CLASS_PRESET["l2"] * margin)
    median = float(np.median(tiny_context.data.x_train))
    assert shown["l2_target"] == pytest.approx((median,), abs=1e-3)


def test_many_classes_get_fewer_starts_unless_the_config_sets_them(tmp_path):
    def settings(classes: int, config: dict) -> FeatVisSettings:
        network, data = Network(tiny_cnn(num_classes=classes)), tiny_dataset(num_classes=classes)
        spec = ModelSpec(name="t", dataset="mnist", architecture="mnist_3conv", feature_vis=config)
        ctx = ModelContext(spec=spec, network=network, data=data, out_dir=tmp_path)
        return feature_vis._class_settings(ctx, FeatVisSettings(), margin=16.0)

    assert settings(10, {}).starts == 4
    assert settings(20, {}).starts == 2 and settings(50, {}).starts == 1  # at most 40 slots
    assert settings(20, {"classes": {"starts": 3}}).starts == 3


def test_typical_margin_reads_logits_from_probabilities():
    logits = np.array([[4.0, 1.0, 1.0], [0.0, 3.0, 0.0], [2.0, 2.0, 8.0]])
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert feature_vis.typical_margin(probabilities, np.array([0, 1, 2])) == pytest.approx(3.0)  # 3, 3, 6
    assert feature_vis.typical_margin(probabilities, np.array([1, 0, 0])) == 1.0  # negative: at least 1


@pytest.fixture(scope="module")
def quick_report(quick_mnist_site) -> tuple[dict, dict]:
    report = json.loads((quick_mnist_site / "mnist-3conv" / "report.json").read_text())
    return report, next(s for s in report["sections"] if s["id"] == "feature-vis")


def test_the_page_shows_each_class_image_and_its_recognition(quick_mnist_site, quick_report):
    _, section = quick_report
    html = (quick_mnist_site / "mnist-3conv" / "index.html").read_text()
    markdown = (quick_mnist_site / "mnist-3conv" / "index.md").read_text()
    summary = section["data"]["independent_recognition"]
    assert f"recognises {summary['recognised']} of 10" in html
    for record in section["data"]["classes"]:
        assert f'src="{record["image"]}"' in html and f"]({record['image']})" in markdown
        assert (quick_mnist_site / "mnist-3conv" / record["image"]).is_file()
    table = next(t for t in section["tables"] if t["title"] == "Class images")
    assert table["columns"][-1] == "Recognised" and len(table["rows"]) == 10


def test_mnist_class_images_are_recognised_by_a_model_trained_here(quick_mnist_site, quick_report):
    """The goal on the model the test build trains (mnist-3conv, --quick): a plain Keras pixel MLP, trained
    here on the training split, recognises at least 9 of the 10 class images the build saved, and the model
    itself gives each its class."""
    _, section = quick_report
    records = section["data"]["classes"]
    images = np.stack([np.asarray(Image.open(quick_mnist_site / "mnist-3conv" / r["image"]), np.float32)
                       [:: r["magnified"], :: r["magnified"], :1] / 255.0 for r in records])
    data = load_dataset("mnist")
    keras.utils.set_random_seed(1)
    judge = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    judge.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    judge.fit(data.x_train, data.y_train, batch_size=256, epochs=2, verbose=0)
    assert judge.evaluate(data.x_test, data.y_test, verbose=0)[1] > 0.95  # a competent judge
    predicted = judge.predict(images, verbose=0).argmax(axis=1)
    assert (predicted == np.arange(10)).sum() >= 9, predicted
    assert section["data"]["independent_recognition"]["recognised"] >= 9  # the build's own judge agrees
    assert min(r["probability"] for r in records) >= 0.5
