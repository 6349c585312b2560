"""Datasets by spec name, through Keras's stock loaders, as float32 NHWC in [0, 1].

Specs: `mnist`, `fashion_mnist`, `cifar10`, `cats_vs_dogs`, `folder:PATH` (class subfolders)
and `npz:PATH` (arrays saved with `numpy.savez`, as `build_report` does for data in memory).
The stock loaders download on a user's machine and read the Keras cache
(`$KERAS_HOME/datasets`) when the files are already there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.util.errors import ReportgenError

DIGITS = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CATS_VS_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
FOLDER_IMAGE_SIZE = (150, 150)


@dataclass
class Dataset:
    """Train and test arrays, float32 in [0, 1], images (N, H, W, C), integer labels. For a report on a
    saved model the test images are fitted to the model's input (`fit_to_model`); the training images
    keep the dataset's own size."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_test.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(spec: str, image_size: tuple[int, int] | None = None) -> Dataset:
    """Load a dataset by its spec; `image_size` sizes folder datasets (default 150x150)."""
    try:
        if spec in KERAS_ARRAYS:
            return _load_keras_arrays(spec)
        if spec == "cats_vs_dogs":
            return _load_folders("cats_vs_dogs", _cats_vs_dogs_root(), image_size or FOLDER_IMAGE_SIZE)
        if spec.startswith("folder:"):
            return _load_folders(spec, Path(spec[len("folder:"):]).expanduser(), image_size or FOLDER_IMAGE_SIZE)
        if spec.startswith("npz:"):
            return _load_npz(Path(spec[len("npz:"):]).expanduser())
    except ReportgenError:
        raise
    except OSError as exc:  # includes failed downloads (no network) and unreadable files
        raise ReportgenError(f"dataset {spec!r} could not be loaded: {_one_line(exc)}") from None
    check_spec(spec)
    raise AssertionError(f"check_spec let {spec!r} through")


def check_spec(spec: str) -> None:
    """A one-line error for a dataset spec no loader takes (cheap: loads nothing)."""
    if spec in KERAS_ARRAYS or spec == "cats_vs_dogs" or spec.startswith(("folder:", "npz:")):
        return
    known = ", ".join([*KERAS_ARRAYS, "cats_vs_dogs", "folder:PATH", "npz:PATH"])
    raise ReportgenError(f"unknown dataset {spec!r} (known: {known})")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _keras_loader(name: str):
    import keras

    return getattr(keras.datasets, name).load_data


KERAS_ARRAYS = {"mnist": DIGITS, "fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}


def _load_keras_arrays(spec: str) -> Dataset:
    try:
        (x_train, y_train), (x_test, y_test) = _keras_loader(spec)()
    except Exception as exc:
        raise ReportgenError(
            f"dataset {spec!r} is not in the Keras cache ({_keras_cache() / 'datasets'}) and could not be "
            f"downloaded: {_one_line(exc)}"
        ) from None
    return Dataset(spec, _as_images(x_train), y_train.reshape(-1).astype(np.int64),
                   _as_images(x_test), y_test.reshape(-1).astype(np.int64), list(KERAS_ARRAYS[spec]))


def _as_images(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def _cats_vs_dogs_root() -> Path:
    """The extracted cats-vs-dogs folder from the Keras cache, downloading it if absent."""
    cached = _keras_cache() / "datasets" / "cats_vs_dogs"
    if (cached / "train").is_dir():
        return cached
    import keras

    try:
        archive = keras.utils.get_file("cats_and_dogs_filtered.zip", origin=CATS_VS_DOGS_URL, extract=True)
    except Exception as exc:
        raise ReportgenError(
            f"dataset 'cats_vs_dogs' is not in {cached} and could not be downloaded: {_one_line(exc)}"
        ) from None
    for train in sorted(Path(archive).parent.rglob("train")):
        if (train / "cats").is_dir():
            return train.parent
    raise ReportgenError(f"downloaded cats_vs_dogs archive has no train/cats folder under {Path(archive).parent}")


def _load_folders(name: str, root: Path, image_size: tuple[int, int]) -> Dataset:
    """Class subfolders under `root`; `root/train` + `root/validation` when present, else a 80/20 split."""
    if not root.is_dir():
        raise ReportgenError(f"dataset folder not found: {root}")
    train_dir, val_dir = root / "train", root / "validation"
    if train_dir.is_dir() and val_dir.is_dir():
        x_train, y_train, classes = _read_image_folder(train_dir, image_size)
        x_test, y_test, test_classes = _read_image_folder(val_dir, image_size)
        if test_classes != classes:
            raise ReportgenError(f"{val_dir} has classes {test_classes}, {train_dir} has {classes}")
    else:
        x, y, classes = _read_image_folder(root, image_size)
        order = np.random.default_rng(0).permutation(len(x))
        split = int(len(x) * 0.8)
        x_train, y_train, x_test, y_test = x[order[:split]], y[order[:split]], x[order[split:]], y[order[split:]]
    return Dataset(name, x_train, y_train, x_test, y_test, classes)


@dataclass
class ImagesAndLabels:
    """Test images (N, H, W, C) in their own dtype and range, class indices (N,), and the class count the labels
    imply (one-hot columns, else the largest index + 1)."""

    images: np.ndarray
    labels: np.ndarray
    classes: int


IMAGE_AND_LABEL_FORMS = ("images (N, H, W) or (N, H, W, C), uint8 or float, and labels as class indices (N,), "
                         "(N, 1) columns or one-hot rows (N, classes)")


def as_images_and_labels(x: Any, y: Any, source: str) -> ImagesAndLabels:
    """The one reading of test images and labels, for `npz:` files, numpy arrays and `tf.data`.

    Args:
        x: Images (N, H, W) or (N, H, W, C) of any numeric dtype (a channel axis is added to (N, H, W)).
        y: Labels: class indices (N,), an (N, 1) column, or one-hot (or probability) rows (N, classes).
        source: What the arrays came from, for the error message.

    Returns:
        The images with a channel axis, the labels as int64 class indices, and the class count.

    Raises:
        ReportgenError: Shapes or values that are none of these forms.
    """
    images, labels = np.asarray(x), np.asarray(y)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or not len(images):
        raise ReportgenError(f"{source}: images of shape {images.shape}; expected {IMAGE_AND_LABEL_FORMS}")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ReportgenError(f"{source}: images must be numbers, not {images.dtype}")
    if labels.ndim == 2 and labels.shape[1] > 1:
        classes = labels.shape[1]
        labels = labels.argmax(axis=1)
    elif labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1):
        labels = labels.reshape(-1)
        classes = 0
    else:
        raise ReportgenError(f"{source}: labels of shape {labels.shape}; expected {IMAGE_AND_LABEL_FORMS}")
    if len(labels) != len(images):
        raise ReportgenError(f"{source}: {len(images)} images but {len(labels)} labels; expected "
                             f"{IMAGE_AND_LABEL_FORMS}")
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise ReportgenError(f"{source}: labels must be class indices 0, 1, ... or one-hot rows")
    labels = labels.astype(np.int64)
    return ImagesAndLabels(images, labels, max(classes, int(labels.max()) + 1))


def _load_npz(path: Path) -> Dataset:
    """`x_test` and `y_test` in any form `as_images_and_labels` takes, the images uint8 0-255 or floats in [0, 1]
    or [0, 255], and optionally `class_names` and `name`. A trained model's report needs no training images."""
    if not path.is_file():
        raise ReportgenError(f"dataset file not found: {path}")
    try:
        arrays = np.load(path, allow_pickle=False)
        x, y = arrays["x_test"], arrays["y_test"]
    except (KeyError, ValueError) as exc:
        raise ReportgenError(f"{path}: not an .npz with x_test and y_test arrays ({_one_line(exc)})") from None
    read = as_images_and_labels(x, y, str(path))
    x = read.images
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    else:
        low, high = float(x.min()), float(x.max())
        if low < -1e-3 or high > 255 + 1e-3:
            raise ReportgenError(f"{path}: x_test must be uint8 or floats in [0, 1] or [0, 255], not "
                                 f"[{low:g}, {high:g}]")
        x = x.astype(np.float32) / (255.0 if high > 1 + 1e-3 else 1.0)
    x = np.clip(x, 0.0, 1.0)
    default_names = [str(i) for i in range(read.classes)]
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else default_names
    if len(names) < read.classes:
        raise ReportgenError(f"{path}: class_names has {len(names)} names but the labels name {read.classes} classes")
    name = str(arrays["name"]) if "name" in arrays else f"npz:{path.name}"
    return Dataset(name, x[:0], read.labels[:0], x, read.labels, names)


def _read_image_folder(folder: Path, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import keras

    try:
        ds = keras.utils.image_dataset_from_directory(
            folder, image_size=image_size, batch_size=256, shuffle=False, verbose=False
        )
    except ValueError as exc:
        raise ReportgenError(f"{folder}: {_one_line(exc)}") from None
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy() / 255.0)
        ys.append(y.numpy())
    if not xs:
        raise ReportgenError(f"{folder}: no images found")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64), list(ds.class_names)


def fit_to_model(x: np.ndarray, input_shape: tuple[int | None, ...]) -> np.ndarray:
    """Resize / convert images (N, H, W, C) to a model's input shape (None, H, W, C).

    Size changes and gray <-> RGB are safe; anything else is a clear error.
    """
    import tensorflow as tf

    if len(input_shape) != 4:
        raise ReportgenError(f"the model's input shape {tuple(input_shape)} is not an image (batch, H, W, C)")
    _, h, w, c = input_shape
    if c is not None and c != x.shape[-1]:
        if c == 3 and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        elif c == 1 and x.shape[-1] == 3:
            x = x @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
        else:
            raise ReportgenError(f"the model takes {c} channels but the dataset images have {x.shape[-1]}")
    if (h is not None and h != x.shape[1]) or (w is not None and w != x.shape[2]):
        x = np.concatenate([
            tf.image.resize(x[i : i + 1024], (h or x.shape[1], w or x.shape[2])).numpy()
            for i in range(0, len(x), 1024)
        ])
    return x.astype(np.float32)
