"""Models as users bring them, trained for a few steps on real data, and the data fed as each was trained.

Each builder returns a `UserModel`: the Keras model, the dataset spec reportgen gets, and the test images
and labels exactly as the model was trained to take them, so a test can compare reportgen's numbers with
the model's own. Digits come from MNIST through the stock loader; the two- and three-class sets are MNIST
digits written as PNG folders and read back by reportgen's own folder loader.

`reportgen_process` runs the command line in a new Python process, as a user does from a shell: every test of a
saved model goes that way (issue 23), since the process that made a model has already reserved its layer names
in Keras, which hides name collisions in the models reportgen derives from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from reportgen.inputs.data import fit_to_model, load_dataset

TRAIN_IMAGES = 2000  # per model: enough for a few hundred steps' worth of accuracy above chance


def reportgen_process(*args: str, env: dict[str, str] | None = None, timeout: float = 1800,
                      cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m reportgen ARGS` in a new process with this environment (KERAS_HOME: the offline datasets)
    plus `env`; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "reportgen", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd)


@dataclass
class UserModel:
    name: str
    model: keras.Model
    dataset: str  # the spec reportgen is given
    x_test: np.ndarray  # the test images as the model was trained on them (range, size, channels)
    y_test: np.ndarray
    budget: dict | None = None  # a config budget that keeps the test quick for large models

    def accuracy_and_confusion(self) -> tuple[float, np.ndarray]:
        """What the model itself says on its test set, fed as it was trained."""
        outputs = np.asarray(self.model.predict(self.x_test, batch_size=256, verbose=0))
        predicted = (outputs[:, 0] > (0.0 if _is_logit(self.model) else 0.5)).astype(int) if outputs.shape[1] == 1 \
            else outputs.argmax(axis=1)
        classes = int(max(self.y_test.max(), predicted.max())) + 1
        confusion = np.zeros((classes, classes), int)
        np.add.at(confusion, (self.y_test, predicted), 1)
        return float(np.mean(predicted == self.y_test)), confusion


def _is_logit(model: keras.Model) -> bool:
    return getattr(model.layers[-1], "activation", None) is keras.activations.linear


def digit_folders(root: Path, digits: tuple[int, ...], per_class: int = 300) -> str:
    """MNIST digits as PNGs in train/ and validation/ class folders; returns the dataset spec."""
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    for split, x, y, count in (("train", x_train, y_train, per_class), ("validation", x_test, y_test, per_class // 3)):
        for digit in digits:
            folder = root / split / f"digit_{digit}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(x[y == digit][:count]):
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return f"folder:{root}"


def calibrate_batch_norm(model: keras.Model, momentum: float = 0.8) -> None:
    """After a few steps the moving statistics are still near their start values (momentum 0.99):
    train with a faster momentum so that inference sees the statistics training did."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, from_logits: bool = False,
          batch_size: int = 32) -> None:
    keras.utils.set_random_seed(0)
    calibrate_batch_norm(model)
    binary = model.output_shape[-1] == 1
    loss = keras.losses.BinaryCrossentropy(from_logits=from_logits) if binary else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    epochs = max(1, steps * batch_size // len(x))
    model.fit(x, y.astype("float32") if binary else y, batch_size=batch_size, epochs=epochs, verbose=0)


def mnist(shape: tuple[int, int, int], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST fitted to `shape` (resized, grey to RGB) as reportgen fits it, times `scale` (255 for models
    with their own Rescaling)."""
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train = fit_to_model(x_train[:TRAIN_IMAGES, ..., None] / 255.0, (None, *shape)) * scale
    x_test = fit_to_model(x_test[..., None] / 255.0, (None, *shape)) * scale
    return x_train, y_train[:TRAIN_IMAGES], x_test, y_test


def folder(spec: str, shape: tuple[int, int, int], scale: float = 1.0):
    """A folder dataset read by reportgen's loader at the model's size, times `scale`."""
    data = load_dataset(spec, image_size=shape[:2])
    return (fit_to_model(data.x_train, (None, *shape)) * scale, data.y_train,
            fit_to_model(data.x_test, (None, *shape)) * scale, data.y_test)


def seed_style_sequential(tmp: Path) -> UserModel:
    """The Fashion-MNIST / cats-vs-dogs posts' way: `input_shape=` on the first layer, no Input."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.layers.Conv2D(16, 3, activation="relu", input_shape=(28, 28, 1)),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(24, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    x, y, x_test, y_test = mnist((28, 28, 1))
    train(model, x, y, steps=250)
    return UserModel("seed-sequential", model, "mnist", x_test, y_test)


def mlp(tmp: Path) -> UserModel:
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    x, y, x_test, y_test = mnist((28, 28, 1))
    train(model, x, y, steps=250)
    return UserModel("mlp", model, "mnist", x_test, y_test)


def transfer_mobilenet(tmp: Path) -> UserModel:
    """Transfer learning as the Keras guide writes it: preprocessing, then a base model as one layer."""
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 127.5, offset=-1), base,
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    x, y, x_test, y_test = mnist((32, 32, 3), scale=255.0)
    train(model, x, y, steps=300)
    return UserModel("transfer-mobilenetv2", model, "mnist", x_test, y_test, budget={"layers": 4, "units": 48})


def keras_io_binary(tmp: Path) -> UserModel:
    """keras.io "image classification from scratch", small: augmentation and Rescaling inside, SeparableConv2D
    blocks with residual adds, one logit."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.05)(x)
    x = keras.layers.Rescaling(1.0 / 255)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    previous = x
    for size in (24, 32):
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(size, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv2D(size, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = keras.layers.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = keras.layers.add([x, residual])
        previous = x
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.25)(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation=None)(x))
    spec = digit_folders(tmp / "digits-01", (0, 1))
    x, y, x_test, y_test = folder(spec, (32, 32, 3), scale=255.0)
    train(model, x, y, steps=120, from_logits=True)
    return UserModel("kerasio-binary-logit", model, spec, x_test, y_test)


def single_sigmoid(tmp: Path) -> UserModel:
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    spec = digit_folders(tmp / "digits-01", (0, 1))
    x, y, x_test, y_test = folder(spec, (28, 28, 3))
    train(model, x, y, steps=200)
    return UserModel("single-sigmoid", model, spec, x_test, y_test)


def multiclass_logit(tmp: Path) -> UserModel:
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(12, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)])
    x, y, x_test, y_test = mnist((28, 28, 1))
    train(model, x, y, steps=250, from_logits=True)
    return UserModel("multiclass-logit", model, "mnist", x_test, y_test)


def efficientnet(tmp: Path) -> UserModel:
    """EfficientNetB0 with its own Rescaling and Normalization: it takes [0, 255]."""
    keras.utils.set_random_seed(7)
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=3)
    spec = digit_folders(tmp / "digits-012", (0, 1, 2))
    x, y, x_test, y_test = folder(spec, (32, 32, 3), scale=255.0)
    train(model, x, y, steps=150)
    return UserModel("efficientnetb0", model, spec, x_test, y_test, budget={"layers": 3, "units": 24})


def resnet(tmp: Path) -> UserModel:
    keras.utils.set_random_seed(8)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=3)
    spec = digit_folders(tmp / "digits-012", (0, 1, 2))
    x, y, x_test, y_test = folder(spec, (32, 32, 3))
    train(model, x, y, steps=100)
    return UserModel("resnet50", model, spec, x_test, y_test, budget={"layers": 3, "units": 24})


BUILDERS: dict[str, Callable[[Path], UserModel]] = {
    builder.__name__: builder for builder in (seed_style_sequential, mlp, transfer_mobilenet, keras_io_binary,
                                              single_sigmoid, multiclass_logit, efficientnet, resnet)
}
