"""Independent recognition: would a different model, trained on the same data, call a picture its class?

A class image is optimised against the report's model, so that model's confidence in it (p = 1.000 for
stroke tangles that show no digit) proves nothing: gradient ascent finds whatever the model responds to.
A judge that shares nothing with it but the training data (here a plain MLP on the pixels, trained
during the build) sees only what is in the pixels. A picture that shows nothing is recognised as its
class by such a judge only by chance (one class in C on average), so "recognised" is a number a
meaningless picture cannot reach; the judge's own test accuracy says how competent it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from reportgen.inputs.data import Dataset

JUDGE_SIDE = 32  # larger inputs are area-averaged down to at most this many pixels a side: fast on colour photos
HIDDEN = 128
EPOCHS = 2  # mnist: 96.9% test accuracy (1 epoch: 95.9%, and it recognised one mnist-3conv class image fewer)
MIN_STEPS = 400  # small training splits train longer: 2 epochs of cats-vs-dogs' 2,000 photos are 30 steps
BATCH = 128
LEARNING_RATE = 2e-3
MAX_TRAINING_IMAGES = 60_000  # the first ones; a larger training split would only cost time


@dataclass
class Judge:
    """A pixel MLP and how well it does on held-out images."""

    weights: list[np.ndarray]  # w1, b1, w2, b2
    centre: tuple[np.ndarray, float]  # the training pixels' mean per input and overall std: inputs are standardised
    side: tuple[int, int]  # the size images are brought to before the MLP reads them
    test_accuracy: float
    trained_on: str  # "training split" or "half of the test set" (datasets without training images)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) softmax probabilities for images (N, H, W, C) in [0, 1]."""
        w1, b1, w2, b2 = self.weights
        x = (_pixels(images, self.side) - self.centre[0]) / self.centre[1]
        logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Recognition:
    """What the judge says of one image per class."""

    classes: np.ndarray  # (N,) the class each image is meant to show
    predicted: np.ndarray  # (N,) the judge's class
    predicted_probability: np.ndarray  # (N,) the judge's probability of its class
    own_probability: np.ndarray  # (N,) the judge's probability of the meant class

    @property
    def recognised(self) -> np.ndarray:
        return self.predicted == self.classes

    @property
    def count(self) -> int:
        return int(self.recognised.sum())


def train_judge(data: Dataset, image_shape: tuple[int, int, int], seed: int = 0,
                cache_dir: Path | None = None) -> Judge:
    """A pixel MLP trained on the data's training split (half of the test set when it has none), tested
    on the test images (the other half). Images are brought to the model's channels and to at most
    JUDGE_SIDE pixels a side.

    Args:
        data: the model's dataset, images in [0, 1].
        image_shape: (H, W, C) of the images it will judge: it reads them as the model does.
        seed: weights' start and batch order.
        cache_dir: where trained weights are kept, under judges/, by a hash of the training pixels, labels,
            seed and training settings: every model of a dataset, and every rebuild, reuses them. None: no cache.

    Returns:
        The trained judge with its test accuracy.
    """
    height, width, channels = image_shape
    scale = min(1.0, JUDGE_SIDE / max(height, width))
    side = (max(1, round(height * scale)), max(1, round(width * scale)))
    if len(data.x_train):
        x_train, y_train = data.x_train[:MAX_TRAINING_IMAGES], data.y_train[:MAX_TRAINING_IMAGES]
        x_test, y_test, where = data.x_test, data.y_test, "training split"
    else:
        order = np.random.default_rng(seed).permutation(len(data.x_test))
        train, test = order[: len(order) // 2], order[len(order) // 2 :]
        x_train, y_train = data.x_test[train], data.y_test[train]
        x_test, y_test, where = data.x_test[test], data.y_test[test], "half of the test set"
    pixels = _pixels(_with_channels(x_train, channels), side)
    weights, centre = _cached_fit(pixels, y_train, data.num_classes, seed, cache_dir)
    judge = Judge(weights, centre, side, float("nan"), where)
    judge.test_accuracy = float((judge.probabilities(_with_channels(x_test, channels)).argmax(1) == y_test).mean())
    return judge


def recognise(judge: Judge, images: np.ndarray, classes: np.ndarray) -> Recognition:
    """The judge's verdict on `images` (N, H, W, C), image i meant to show class `classes[i]`."""
    probabilities = judge.probabilities(images)
    predicted = probabilities.argmax(axis=1)
    rows = np.arange(len(images))
    return Recognition(np.asarray(classes), predicted, probabilities[rows, predicted],
                       probabilities[rows, np.asarray(classes)])


def _with_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Gray -> RGB by repetition, RGB -> gray by the mean (as the model's own input conversion does roughly)."""
    if images.shape[-1] == channels:
        return images
    return np.repeat(images, channels, axis=-1) if images.shape[-1] == 1 else images.mean(axis=-1, keepdims=True)


def _pixels(images: np.ndarray, side: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, side*side*C) float32, area-averaged when the images are larger."""
    images = np.asarray(images, np.float32)
    if images.shape[1:3] != side:
        images = tf.image.resize(images, side, method="area").numpy()
    return images.reshape(len(images), -1)


def _cached_fit(pixels: np.ndarray, y: np.ndarray, classes: int, seed: int, cache_dir: Path | None
                ) -> tuple[list[np.ndarray], tuple[np.ndarray, float]]:
    """The judge's weights and input centre (the pixels' mean per input and overall std, which standardise its
    inputs), fitted now or read from an earlier fit on the same pixels, labels and settings (2.2 s on MNIST)."""
    settings = (pixels.shape, classes, seed, HIDDEN, EPOCHS, MIN_STEPS, BATCH, LEARNING_RATE)
    digest = hashlib.sha256(repr(settings).encode())
    digest.update(np.ascontiguousarray(pixels, np.float32).data)
    digest.update(np.ascontiguousarray(y, np.int64).data)
    path = None if cache_dir is None else Path(cache_dir) / "judges" / f"{digest.hexdigest()[:16]}.npz"
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return [stored[f"w{i}"] for i in range(4)], (stored["mean"], float(stored["std"]))
    centre = (pixels.mean(axis=0), float(pixels.std()) or 1.0)
    weights = _fit((pixels - centre[0]) / centre[1], y, classes, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, mean=centre[0], std=centre[1], **{f"w{i}": w for i, w in enumerate(weights)})
        partial.replace(path)
    return weights, centre


def _fit(x: np.ndarray, y: np.ndarray, classes: int, seed: int) -> list[np.ndarray]:
    """EPOCHS of Adam on softmax cross-entropy (at least MIN_STEPS steps), every step inside one compiled loop
    (Keras' `fit` spends longer dispatching its steps than this takes to run)."""
    rng = np.random.default_rng(seed)
    count, inputs = x.shape
    batch = min(BATCH, count)
    weights = [tf.Variable(w.astype(np.float32)) for w in (
        rng.normal(0, np.sqrt(2 / inputs), (inputs, HIDDEN)), np.zeros(HIDDEN),
        rng.normal(0, np.sqrt(1 / HIDDEN), (HIDDEN, classes)), np.zeros(classes))]
    moments = [(tf.Variable(tf.zeros_like(w)), tf.Variable(tf.zeros_like(w))) for w in weights]
    per_epoch = count // batch
    epochs = max(EPOCHS, -(-MIN_STEPS // per_epoch))
    order = np.stack([rng.permutation(count)[: per_epoch * batch] for _ in range(epochs)]).reshape(-1, batch)
    x, y, order = tf.constant(x), tf.constant(y, tf.int32), tf.constant(order.astype(np.int32))

    def step(t: tf.Tensor) -> tuple[tf.Tensor]:
        rows = order[t]
        with tf.GradientTape() as tape:
            hidden = tf.nn.relu(tf.gather(x, rows) @ weights[0] + weights[1])
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.gather(y, rows), hidden @ weights[2] + weights[3]))
        done = tf.cast(t, tf.float32) + 1.0
        for w, g, (m, v) in zip(weights, tape.gradient(loss, weights), moments):
            m.assign(0.9 * m + 0.1 * g)
            v.assign(0.999 * v + 0.001 * tf.square(g))
            w.assign_sub(LEARNING_RATE * (m / (1 - 0.9**done)) / (tf.sqrt(v / (1 - 0.999**done)) + 1e-7))
        return (t + 1,)

    train = tf.function(lambda: tf.while_loop(lambda t: t < len(order), step, (tf.constant(0),)), autograph=False)
    train()
    return [w.numpy() for w in weights]
