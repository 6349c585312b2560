"""Learning over time: snapshots kept in training, and a timeline whose numbers are each snapshot's own."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from reportgen.inputs.training import SnapshotSaver, default_snapshots, read_snapshots, snapshot_epoch
from reportgen.methods.featvis import LOGITS, FeatVisSettings, visualize_model, visualize_models
from reportgen.methods.timeline import first_epochs, image_correlations, settled_epochs, snapshot_weights
from reportgen.model import Network
from reportgen.model.surgery import weights_copy
from reportgen.sections import feature_vis
from reportgen.sections import timeline as timeline_section
from reportgen.sections.confusion import confusion_matrix
from tests.conftest import tiny_cnn, tiny_dataset
from tests.user_models import reportgen_process

TRAIN_IMAGES, TEST_IMAGES = 1500, 300


def small_mnist_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.MaxPooling2D(4, name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(h), name="learner")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_default_snapshots_are_log_spaced_and_end_at_the_last_epoch() -> None:
    assert default_snapshots(1) == [1]
    assert default_snapshots(3) == [1, 2, 3]
    assert default_snapshots(10) == [1, 2, 3, 6, 10]
    assert default_snapshots(100)[-1] == 100 and len(default_snapshots(100)) == 5


@pytest.mark.parametrize(("name", "epoch"), [("model.03-0.12.keras", 3), ("epoch-0007.weights.h5", 7),
                                             ("ckpt_epoch12.keras", 12), ("final.keras", None)])
def test_epoch_is_read_from_the_checkpoint_name(name: str, epoch: int | None) -> None:
    assert snapshot_epoch(Path(name)) == epoch


def test_snapshots_are_kept_at_the_chosen_epochs_and_load_back(tmp_path: Path) -> None:
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 12, 12, 1), dtype=np.float32), np.arange(32) % 3
    (tmp_path / "snaps").mkdir()
    (tmp_path / "snaps" / "epoch-0009.weights.h5").write_bytes(b"stale")  # an earlier run's: removed
    saver = SnapshotSaver(tmp_path / "snaps", [1, 3])
    weights = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]

    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[saver, Record()])
    assert sorted(saver.saved) == [1, 3]
    assert sorted(read_snapshots(tmp_path / "snaps")) == [1, 3]
    final = [np.array(w) for w in model.get_weights()]
    with snapshot_weights(model, saver.saved[1]) as (_, same):
        assert not same
        for got, want in zip(model.get_weights(), weights[1]):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(model.get_weights(), final):  # the model's own weights are back
        np.testing.assert_array_equal(got, want)


def test_measures_on_known_images() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((3, 5, 5, 1))
    noise = rng.random((3, 5, 5, 1))
    images = np.stack([noise, base, base * 2 + 1, base * 2 + 1])  # (4 epochs, 3 units): settles from epoch 2
    images[3, 2] = rng.random((5, 5, 1))  # unit 2 changes again at the last step
    corr = image_correlations(images)
    assert corr.shape == (3, 3)
    np.testing.assert_allclose(corr[1:, :2], 1.0)  # a change of contrast is no change
    flat = np.corrcoef(images[0, 0].ravel(), images[1, 0].ravel())[0, 1]
    assert corr[0, 0] == pytest.approx(flat)
    assert settled_epochs([1, 2, 4, 8], corr, 0.9) == [2, 2, None]
    flags = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 0]], bool)
    assert first_epochs([1, 2, 4], flags) == [4, 2, 1]


def test_timeline_from_model_checkpoint_files_equals_each_snapshot(tmp_path: Path) -> None:
    """A user's training with keras.callbacks.ModelCheckpoint, then `reportgen build --checkpoints`."""
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    x = x[:TRAIN_IMAGES, ..., None].astype(np.float32) / 255
    xt, yt = xt[:TEST_IMAGES, ..., None].astype(np.float32) / 255, yt[:TEST_IMAGES]
    report = _report_from_checkpoints(small_mnist_model(), x, y[:TRAIN_IMAGES], xt, yt, 3, tmp_path)
    checkpoints, out = tmp_path / "ckpt", tmp_path / "site"
    timeline = next(s for s in report["sections"] if s["id"] == "timeline")["data"]
    assert timeline["epochs"] == [1, 2, 3]
    for k, epoch in enumerate(timeline["epochs"]):  # each epoch's numbers are that checkpoint's own
        snapshot = keras.models.load_model(checkpoints / f"model.{epoch:02d}.keras")
        predicted = snapshot.predict(xt, verbose=0).argmax(axis=1)
        assert timeline["accuracy"][k] == pytest.approx(float(np.mean(predicted == yt)), abs=1e-6)
        cm = confusion_matrix(yt, predicted, 10)
        assert np.array_equal(np.array(timeline["confusion_matrices"][str(epoch)]), cm)
        conv = keras.Model(snapshot.input, snapshot.get_layer("conv").output).predict(xt, verbose=0)
        assert timeline["dead_filters"]["conv"][k] == int((conv.max(axis=(0, 1, 2)) <= 0).sum())
    assert timeline["accuracy"][-1] == pytest.approx(report["metrics"]["test_accuracy"], abs=1e-6)
    classes = timeline["classes"]
    assert len(classes) == 10 and all(len(c["recognised"]) == 3 for c in classes)
    for c in classes:
        first = next((e for e, r in zip(timeline["epochs"], c["recognised"]) if r), None)
        assert c["first_recognised"] == first
    page = (out / "learner" / "timeline" / "index.html").read_text()
    assert "Class images per epoch" in page and 'src="http' not in page
    for image in timeline["layers"]["conv"]["filters"]:
        assert (out / "learner" / image["image"]).is_file()
    unit_page = (out / "learner" / "conv" / "0.html").read_text()
    assert "Learning over time" in unit_page
    assert "learner/timeline/index.html" not in (out / "index.html").read_text()  # only the model page links it
    assert 'href="timeline/index.html"' in (out / "learner" / "index.html").read_text()

    bad = reportgen_process("build", "--model-file", str(tmp_path / "learner.keras"), "--dataset",
                            f"npz:{tmp_path / 'data.npz'}", "--checkpoints", str(tmp_path), "--quick",
                            "--out", str(tmp_path / "other"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("Error: --checkpoints")
    assert not (tmp_path / "other" / "learner").exists()


def test_config_snapshots_key() -> None:
    from reportgen.inputs.config import parse_config
    from reportgen.util.errors import ReportgenError

    entry = {"name": "m", "dataset": "mnist", "architecture": "mnist_3conv"}
    config = parse_config({"models": [{**entry, "snapshots": [1, 2, 4, 8]}]}, "t.toml", Path("."))
    assert config.models[0].snapshots == [1, 2, 4, 8]
    assert parse_config({"models": [entry]}, "t.toml", Path(".")).models[0].snapshots is None
    for bad in ([0, 2], "1,2", [1.5], []):
        with pytest.raises(ReportgenError, match="'snapshots' in model 'm' must be a list of epochs"):
            parse_config({"models": [{**entry, "snapshots": bad}]}, "t.toml", Path("."))


def test_the_training_cache_key_ignores_snapshots() -> None:
    from reportgen.inputs.config import ModelSpec

    plain = ModelSpec(name="m", dataset="mnist", architecture="mnist_3conv")
    chosen = ModelSpec(name="m", dataset="mnist", architecture="mnist_3conv", snapshots=[1, 2])
    assert plain.fingerprint(0, False) == chosen.fingerprint(0, False)  # old caches stay valid


def test_callback_keeps_snapshots_in_its_cache(tmp_path: Path) -> None:
    from reportgen.callback import ReportCallback

    callback = ReportCallback("mnist", out=tmp_path / "site", snapshots=[1, 3], cache_dir=tmp_path / "cache")
    callback.build_report = lambda: {}  # the report itself is tested in test_callback.py; here, the snapshots
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32), np.arange(16) % 3
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(read_snapshots(callback.snapshot_folder)) == [1, 3]
    assert callback.snapshot_folder.is_relative_to(tmp_path / "cache")
    with pytest.raises(Exception, match="snapshots must be a list of epochs"):
        ReportCallback("mnist", snapshots=[0])


def test_zoo_training_keeps_the_configured_snapshots_and_old_caches_stay(tmp_path: Path) -> None:
    from reportgen.inputs.config import ModelSpec
    from reportgen.inputs.training import load_or_train
    from tests.conftest import tiny_dataset

    data = tiny_dataset((28, 28, 1), num_classes=10, n=40)
    spec = ModelSpec(name="zoo", dataset="mnist", architecture="mnist_3conv", epochs=3, batch_size=20,
                     snapshots=[1, 3])
    trained = load_or_train(spec, data, tmp_path, seed=0)
    assert sorted(trained.snapshots) == [1, 3] and trained.source == "trained"
    with snapshot_weights(trained.model, trained.snapshots[3]) as (_, same):
        assert same  # the last snapshot is the trained model
    assert load_or_train(spec, data, tmp_path, seed=0).source == "cache"
    default = ModelSpec(name="zoo", dataset="mnist", architecture="mnist_3conv", epochs=3, batch_size=20)
    cached = load_or_train(default, data, tmp_path, seed=0)  # no snapshots asked for: the cache as it is
    assert cached.source == "cache" and sorted(cached.snapshots) == [1, 3]
    more = ModelSpec(name="zoo", dataset="mnist", architecture="mnist_3conv", epochs=3, batch_size=20,
                     snapshots=[2, 3])
    retrained = load_or_train(more, data, tmp_path, seed=0)  # epoch 2 is missing: trained again
    assert retrained.source == "trained" and sorted(retrained.snapshots) == [2, 3]


def test_snapshots_rendered_together_equal_each_rendered_alone() -> None:
    """The timeline's batched run (visualize_models over copies of the model) gives each snapshot the images and
    numbers visualize_model gives it alone, and its lean test pass the maxima and probabilities of test_pass."""
    model = tiny_cnn()
    other = weights_copy(model)
    other.set_weights([w + np.random.default_rng(k).normal(0, 0.2, w.shape).astype(w.dtype)
                       for k, w in enumerate(model.get_weights())])
    networks = [Network(model), Network(other)]
    units = [{"conv_a": np.array([0, 2]), "conv_b": np.array([1, 3, 5]), LOGITS: np.arange(3)},
             {"conv_b": np.array([5]), LOGITS: np.arange(3)}]
    settings = FeatVisSettings(steps=8)
    classes = dataclasses.replace(settings.for_classes(), steps=8, starts=2)
    together = visualize_models(networks, units, settings, 3, classes)
    for network, wanted, got in zip(networks, units, together):
        alone = visualize_model(network, wanted, settings, 3, classes)
        assert set(got) == set(wanted)
        for name in wanted:
            np.testing.assert_allclose(got[name].images, alone[name].images, atol=1e-6)
            np.testing.assert_allclose(got[name].activation, alone[name].activation, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0]["conv_b"].images[2], together[1]["conv_b"].images[0])  # own weights each
    # the first of several starts is what one start gives (the timeline's last snapshot reads it from the report)
    one = visualize_model(networks[0], {LOGITS: np.arange(3)}, settings, 3, dataclasses.replace(classes, starts=1))
    first = visualize_model(networks[0], {LOGITS: np.arange(3)}, settings, 3, classes)[LOGITS].first_start
    np.testing.assert_allclose(first.images, one[LOGITS].images, atol=1e-5)
    np.testing.assert_allclose(first.probability, one[LOGITS].probability, atol=1e-5)
    images = tiny_dataset().x_test
    paths = [unit.point.path for unit in networks[1].units]
    probabilities, maxima = networks[1].peak_pass(images, paths, batch_size=16)
    full = networks[1].test_pass(images, paths, batch_size=16)
    np.testing.assert_array_equal(probabilities, full.probabilities)
    for path in paths:
        np.testing.assert_array_equal(maxima[path], full.stats[path].max)


def test_a_model_keras_cannot_copy_gets_the_same_timeline(tiny_context, tmp_path: Path, monkeypatch) -> None:
    """Snapshots rendered one at a time (a model clone_model cannot copy) give what the batched run gives, and the
    snapshot that is the model as reported shows the feature-vis section's own pictures."""
    ctx = tiny_context
    ctx.quick = True
    own = ctx.model.get_weights()
    for epoch, scale in ((1, 0.5), (2, 1.0)):  # epoch 2 is the model as reported
        ctx.model.set_weights([w * scale for w in own])
        ctx.snapshots[epoch] = tmp_path / f"epoch-{epoch}.weights.h5"
        ctx.model.save_weights(ctx.snapshots[epoch])
    ctx.model.set_weights(own)
    vis = feature_vis.build(ctx)
    batched = timeline_section.build(ctx, vis.handoff).data
    monkeypatch.setattr(timeline_section, "weights_copy", lambda model: None)
    alone = timeline_section.build(ctx, vis.handoff).data
    assert batched["accuracy"] == alone["accuracy"] and batched["dead_filters"] == alone["dead_filters"]
    for key in ("judge_probability", "model_probability", "correlation_with_next"):
        np.testing.assert_allclose([c[key] for c in batched["classes"]], [c[key] for c in alone["classes"]],
                                   atol=1e-5)
    assert batched["layers"] and batched["epochs"] == [1, 2]
    for name, layer in batched["layers"].items():
        for got, want in zip(layer["filters"], alone["layers"][name]["filters"]):
            np.testing.assert_allclose(got["activation"], want["activation"], rtol=1e-5, atol=1e-6)
            assert got["activation"][-1] == pytest.approx(vis.handoff[name].records[got["filter"]]["activation"])
    assert [np.array_equal(w, v) for w, v in zip(ctx.model.get_weights(), own)] == [True] * len(own)


def test_a_colour_models_timeline_uses_the_photo_canvas_of_its_pictures(tmp_path: Path) -> None:
    """A colour model larger than the default canvas: its feature-vis pictures are optimised on its input size
    (photo_canvas), and the timeline's earlier snapshots must be too, to sit in one filmstrip with the last."""
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    x, xt, yt = _colour_digits(x[:600]), _colour_digits(xt[:100]), yt[:100]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((56, 56, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    h = keras.layers.GlobalMaxPooling2D(name="pool")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(h), name="colour")
    model.compile("adam", "sparse_categorical_crossentropy")
    report = _report_from_checkpoints(model, x, y[:600], xt, yt, 2, tmp_path)
    sections = {s["id"]: s["data"] for s in report["sections"]}
    assert sections["feature-vis"]["pictures"]["canvas"] == [56, 56]
    assert sections["timeline"]["epochs"] == [1, 2]


def _colour_digits(images: np.ndarray) -> np.ndarray:
    """MNIST digits at 56 px in three channels: a colour model larger than the default 48-px canvas."""
    return np.repeat(np.kron(images[..., None], np.ones((1, 2, 2, 1))), 3, axis=-1).astype(np.float32) / 255


def _report_from_checkpoints(model: keras.Model, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
                             y_test: np.ndarray, epochs: int, folder: Path) -> dict:
    """A user's training with keras.callbacks.ModelCheckpoint (folder/ckpt), the model saved to a file, then
    `reportgen build --checkpoints` in a new process; the report.json it wrote."""
    np.savez(folder / "data.npz", x_test=x_test, y_test=y_test)
    checkpoints = folder / "ckpt"
    checkpoints.mkdir()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(str(checkpoints / "model.{epoch:02d}.keras"))])
    model.save(folder / f"{model.name}.keras")
    out = folder / "site"
    result = reportgen_process("build", "--model-file", str(folder / f"{model.name}.keras"), "--dataset",
                               f"npz:{folder / 'data.npz'}", "--checkpoints", str(checkpoints), "--quick",
                               "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / model.name / "report.json").read_text())
