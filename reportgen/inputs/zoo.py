"""The seed architectures, from the blog posts reportgen grew out of.

Every model is built on an explicit `keras.Input` (a Sequential model that was
never called has no `.input` in Keras 3) and takes images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from reportgen.util.errors import ReportgenError


def mnist_3conv(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Conv 24/48/64 `same` + max-pool each, Dense 128, Dropout .25 (~99.1% on MNIST)."""
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((24, 48, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.25, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mnist_3conv")


def mnist_oip(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Conv 32/64/128 `valid`, pools after the first two, Dense 100 (the "OIPs" post)."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Conv2D(128, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(100, activation="relu", name="dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mnist_oip")


def fashion_2conv(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Conv 64/64 `valid` + pools, Dense 128 (the Fashion-MNIST post, ~90%)."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(64, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="fashion_2conv")


def cats_vs_dogs_4conv(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """150x150 RGB, Conv 32/64/128/128 + pools, Dropout .5, Dense 512, one sigmoid unit (DLwP 5.2)."""
    if num_classes != 2:
        raise ReportgenError(f"architecture 'cats_vs_dogs_4conv' is binary, but the dataset has {num_classes} classes")
    inputs = keras.Input(input_shape, name="image")
    x = layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    x = layers.RandomZoom(0.1, name="augment_zoom")(x)
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    x = layers.Dense(512, activation="relu", name="dense")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, outputs, name="cats_vs_dogs_4conv")


ARCHITECTURES: dict[str, Callable[[tuple[int, int, int], int], keras.Model]] = {
    "mnist_3conv": mnist_3conv,
    "mnist_oip": mnist_oip,
    "fashion_2conv": fashion_2conv,
    "cats_vs_dogs_4conv": cats_vs_dogs_4conv,
}


def build_architecture(name: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise ReportgenError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})") from None
    return factory(input_shape, num_classes)
