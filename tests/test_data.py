"""Datasets by spec, and fitting images to a user model's input."""

import numpy as np
import pytest
from PIL import Image

from reportgen.inputs.data import as_images_and_labels, fit_to_model, load_dataset
from reportgen.util.errors import ReportgenError


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


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


@pytest.mark.parametrize("form", ["indices", "column", "one-hot"])
@pytest.mark.parametrize("images", ["gray uint8 (N, H, W)", "rgb uint8", "float [0, 1]", "float [0, 255]"])
def test_npz_datasets_take_every_image_and_label_form(tmp_path, form, images):
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 3
    pixels = (rng.random((30, 8, 8, 3)) * 255).astype(np.uint8)
    x = {"gray uint8 (N, H, W)": pixels[..., 0], "rgb uint8": pixels, "float [0, 1]": pixels / 255.0,
         "float [0, 255]": pixels.astype(np.float32)}[images]
    y = {"indices": labels, "column": labels[:, None], "one-hot": one_hot(labels, 3)}[form]
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    np.testing.assert_array_equal(data.y_test, labels)
    assert data.x_test.shape == (30, 8, 8, 1 if x.ndim == 3 else 3) and data.x_test.dtype == np.float32
    np.testing.assert_allclose(data.x_test, (pixels[..., :1] if x.ndim == 3 else pixels) / 255.0, atol=1e-6)
    assert data.class_names == ["0", "1", "2"]


def test_one_hot_labels_give_the_class_count_when_a_class_is_absent():
    read = as_images_and_labels(np.zeros((4, 5, 5), np.uint8), one_hot(np.array([0, 1, 0, 1]), 4), "test")
    assert read.images.shape == (4, 5, 5, 1) and read.classes == 4
    np.testing.assert_array_equal(read.labels, [0, 1, 0, 1])


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((4, 5)), np.zeros(4), "images of shape"),
    (np.zeros((4, 5, 5, 1)), np.zeros((4, 2, 2)), "labels of shape"),
    (np.zeros((4, 5, 5, 1)), np.zeros(3), "4 images but 3 labels"),
    (np.zeros((4, 5, 5, 1)), np.array([0, 1, -1, 0]), "class indices"),
    (np.zeros((4, 5, 5, 1), bool), np.zeros(4), "numbers"),
])
def test_image_and_label_shapes_outside_the_rules_are_one_line_errors(x, y, message):
    with pytest.raises(ReportgenError, match=message) as raised:
        as_images_and_labels(x, y, "arrays")
    assert "\n" not in str(raised.value)


def test_an_npz_out_of_pixel_range_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_test=np.full((2, 4, 4), 300.0), y_test=np.zeros(2))
    with pytest.raises(ReportgenError, match=r"\[0, 255\]"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("form", ["indices", "one-hot"])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_tf_data_batched_or_not_reads_as_arrays_do(batched, form, channels):
    import tensorflow as tf

    from reportgen.api import test_arrays

    rng = np.random.default_rng(0)
    labels = np.arange(20) % 4
    shape = (20, 6, 6) if channels is None else (20, 6, 6, channels)
    x = (rng.random(shape) * 255).astype(np.uint8)
    y = labels if form == "indices" else one_hot(labels, 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if batched:
        dataset = dataset.batch(8)
    images, read_labels, _ = test_arrays(dataset)
    read = as_images_and_labels(images, read_labels, "tf.data")
    np.testing.assert_array_equal(read.labels, labels)
    np.testing.assert_array_equal(read.images, x if channels else x[..., None])
