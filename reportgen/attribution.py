"""Which pixels a prediction rests on: saliency, SmoothGrad and Grad-CAM.

All three come from one batched gradient pass of the pre-softmax score (a
softmax saturates when the model is confident, and its gradient vanishes):
the original images and their noisy copies go through together, and each row
gives both its input gradient and its Grad-CAM map. A deletion test says
whether Grad-CAM is faithful: hiding its top pixels should hurt the
prediction more than hiding as many random pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from .model import Network
from .projections import batch_rows


@dataclass
class Attributions:
    """Per image (N, H, W) maps, at the input resolution."""

    saliency: np.ndarray  # max over channels of |d score / d pixel|
    smoothgrad: np.ndarray  # the same for the gradient averaged over noisy copies
    gradcam: np.ndarray | None  # relu(sum_c mean(d score / d A_c) * A_c), None without a conv layer
    layer: str | None


def class_scores(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """The logit of each row's class; a single sigmoid unit scores class 1 as z, class 0 as -z."""
    if logits.shape[-1] == 1:
        z = logits[:, 0]
        return tf.where(classes == 1, z, -z)
    return tf.gather(logits, classes, axis=1, batch_dims=1)


class Attributor:
    """Gradients of class logits for batches of images, from a linear-output clone."""

    def __init__(self, model: keras.Model | Network, layer_name: str | None = None) -> None:
        network = Network.of(model)
        graph = network.logits_graph
        self.layer = layer_name
        output = graph[graph.output].tensor
        conv = graph[network.read_point(layer_name)].tensor if layer_name else output
        extractor = keras.Model(graph.input, [output, conv])
        size = network.image_shape[:2]

        @tf.function(input_signature=[tf.TensorSpec((None, *network.image_shape), tf.float32),
                                      tf.TensorSpec((None,), tf.int32)])
        def gradients(x: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits, a = extractor(x, training=False)
                score = tf.reduce_sum(class_scores(logits, classes))
            grad_x, grad_a = tape.gradient(score, [x, a])
            if not layer_name:
                return grad_x, tf.zeros(tf.shape(x)[:3])
            weights = tf.reduce_mean(grad_a, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * a, axis=-1, keepdims=True))
            return grad_x, tf.image.resize(cam, size, method="bilinear")[..., 0]

        self._gradients = gradients

        @tf.function(input_signature=gradients.input_signature)
        def scores(x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
            return class_scores(extractor(x, training=False)[0], classes)

        self._scores = scores

    def scores(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(N,) pre-softmax score of `classes[i]` for image `x[i]`."""
        classes = np.asarray(classes, np.int32)
        batch_size = batch_rows(x.shape[1:])
        return np.concatenate([self._scores(tf.constant(x[i : i + batch_size], tf.float32),
                                            tf.constant(classes[i : i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    def __call__(self, x: np.ndarray, classes: np.ndarray, samples: int = 16, noise: float = 0.15,
                 seed: int = 0, batch_size: int | None = None) -> Attributions:
        """Attributions of `classes[i]` for image `x[i]`; SmoothGrad uses `samples`
        copies with Gaussian noise of std `noise` (images are in [0, 1]). All rows
        go through in one batch unless `batch_size` (default: `batch_rows`) splits them."""
        n = len(x)
        classes = np.asarray(classes, np.int32)
        rng = np.random.default_rng(seed)
        noisy = np.repeat(x, samples, axis=0) + rng.normal(0, noise, (n * samples, *x.shape[1:])).astype(np.float32)
        rows = np.concatenate([x, noisy]).astype(np.float32)
        row_classes = np.concatenate([classes, np.repeat(classes, samples)])
        grads = np.zeros_like(rows)
        cams = np.zeros(rows.shape[:3], np.float32)
        batch_size = batch_size or batch_rows(x.shape[1:])
        for start in range(0, len(rows), batch_size):
            s = slice(start, start + batch_size)
            g, cam = self._gradients(tf.constant(rows[s]), tf.constant(row_classes[s]))
            grads[s], cams[s] = g.numpy(), cam.numpy()
        smooth = grads[n:].reshape(n, samples, *x.shape[1:]).mean(axis=1)
        return Attributions(
            saliency=np.abs(grads[:n]).max(axis=-1),
            smoothgrad=np.abs(smooth).max(axis=-1),
            gradcam=cams[:n] if self.layer else None,
            layer=self.layer,
        )


@dataclass
class Deletion:
    """Class probability (and pre-softmax score) before and after zeroing a fraction of the pixels."""

    original: np.ndarray  # (N,)
    drop_top: np.ndarray  # (N,) drop when the heatmap's top pixels are zeroed
    drop_random: np.ndarray  # (N,) mean drop over random pixel sets of the same size
    score_drop_top: np.ndarray | None = None  # the same for the logit, which does not saturate at p = 1
    score_drop_random: np.ndarray | None = None


def deletion_test(model: keras.Model | Network, x: np.ndarray, classes: np.ndarray, heat: np.ndarray,
                  fraction: float = 0.2, trials: int = 4, seed: int = 0,
                  attributor: Attributor | None = None) -> Deletion:
    """Zero the `fraction` of pixels (all channels) `heat` ranks highest, and as
    many random pixels `trials` times; all variants go through one predict
    (and one score pass through `attributor`'s logit clone, when given)."""
    n, h, w = heat.shape
    count = max(1, round(fraction * h * w))
    rng = np.random.default_rng(seed)
    # A tiny random tie-break, so flat regions of the heatmap are not cut in raster order.
    ranked = heat.reshape(n, -1) + rng.uniform(0, 1e-9, (n, h * w))
    top = np.argpartition(-ranked, count - 1, axis=1)[:, :count]
    random_sets = np.argsort(rng.random((n * trials, h * w)), axis=1)[:, :count]
    masks = np.ones((n * (1 + trials), h * w), np.float32)
    np.put_along_axis(masks, np.concatenate([top, random_sets]), 0.0, axis=1)
    base = np.concatenate([x, np.repeat(x, trials, axis=0)])
    variants = base * masks.reshape(-1, h, w, 1)
    everything = np.concatenate([x, variants])
    rows = np.concatenate([classes, classes, np.repeat(classes, trials)])
    p = Network.of(model).probabilities(everything)[np.arange(len(rows)), rows]
    drops = _drops(p, n, trials)
    score_drops = _drops(attributor.scores(everything, rows), n, trials) if attributor else (None, None)
    return Deletion(p[:n], *drops, *score_drops)


def _drops(values: np.ndarray, n: int, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """(original - top-deleted, original - mean of random-deleted) from [original, top, random x trials] rows."""
    original = values[:n]
    return original - values[n : 2 * n], original - values[2 * n :].reshape(n, trials).mean(axis=1)


def confident_mistakes(labels: np.ndarray, probs: np.ndarray, limit: int = 8) -> list[int]:
    """Test indices of misclassified images, the most confidently wrong first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = np.argsort(-probs[wrong, predicted[wrong]], kind="stable")
    return [int(i) for i in wrong[order[:limit]]]
