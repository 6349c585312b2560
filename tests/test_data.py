"""Datasets by spec, and fitting images to a user model's input."""

import numpy as np
import pytest
from PIL import Image

from reportgen.data import fit_to_model, load_dataset
from reportgen.errors import ReportgenError


def test_gray_images_are_resized_and_made_rgb_for_a_colour_model():
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    fitted = fit_to_model(x, (None, 32, 32, 3))
    assert fitted.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(fitted[..., 0], fitted[..., 2])


def test_rgb_images_become_gray_for_a_gray_model():
    x = np.zeros((2, 8, 8, 3), np.float32)
    x[..., 1] = 1.0
    fitted = fit_to_model(x, (None, 8, 8, 1))
    np.testing.assert_allclose(fitted, 0.587, rtol=1e-5)


@pytest.mark.parametrize("shape", [(None, 28, 28, 4), (None, 20), (None, 28, 28, 2)])
def test_unsafe_conversions_are_clear_errors(shape):
    with pytest.raises(ReportgenError):
        fit_to_model(np.zeros((1, 28, 28, 1), np.float32), shape)


def test_folder_dataset_reads_class_subfolders_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("apples", "pears"):
        (tmp_path / name).mkdir()
        for i in range(10):
            pixels = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}", image_size=(16, 16))
    assert data.class_names == ["apples", "pears"]
    assert len(data.x_train) == 16 and len(data.x_test) == 4
    assert data.x_train.shape[1:] == (16, 16, 3)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1


def test_missing_folder_and_unknown_spec_are_clear_errors(tmp_path):
    with pytest.raises(ReportgenError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(ReportgenError, match="unknown dataset"):
        load_dataset("imagenet")


def test_cats_vs_dogs_comes_from_the_keras_cache():
    data = load_dataset("cats_vs_dogs")
    assert data.class_names == ["cats", "dogs"]
    assert data.x_train.shape == (1000, 150, 150, 3) and data.x_test.shape == (500, 150, 150, 3)
    assert np.bincount(data.y_test).tolist() == [250, 250]
