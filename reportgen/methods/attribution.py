"""Which pixels a prediction rests on: saliency, SmoothGrad, Integrated Gradients,
Grad-CAM and Grad-CAM++, with guided backprop as a control for the sanity check.

Every map but the control comes from one batched gradient pass of the
pre-softmax score (a softmax saturates when the model is confident, and its
gradient vanishes). Per image the pass holds the image itself, the Integrated
Gradients baseline, the interior points of the straight path between them and
the noisy SmoothGrad copies; each row returns its input gradient, its score and,
from the same activations and gradients of the last conv layer, its Grad-CAM
and Grad-CAM++ maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import keras
import numpy as np
import tensorflow as tf

from reportgen.methods.projections import batch_rows
from reportgen.model import ModelGraph, Network

METHODS: dict[str, str] = {
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM",
    "gradcam_plus_plus": "Grad-CAM++",
}
CAM_METHODS = ("gradcam", "gradcam_plus_plus")
CONTROL = "guided_backprop"  # known to fail the randomisation check (Adebayo et al. 2018)
LABELS = {**METHODS, CONTROL: "Guided backprop"}


@dataclass
class Attributions:
    """Per image (N, H, W) maps at the input resolution, keyed by method (see METHODS),
    and the scores Integrated Gradients' completeness is checked against."""

    maps: dict[str, np.ndarray]
    layer: str | None  # the conv layer of Grad-CAM and Grad-CAM++; None without one (and without those maps)
    score: np.ndarray  # (N,) pre-softmax score of each image's class
    baseline_score: np.ndarray  # (N,) the same class's score at the Integrated Gradients baseline
    ig_total: np.ndarray  # (N,) the sum of each image's Integrated Gradients over pixels and channels

    @property
    def completeness_error(self) -> np.ndarray:
        """(N,) |sum of IG - (score - baseline score)| relative to |score - baseline score|:
        Integrated Gradients sums to that difference exactly when the path integral is exact."""
        gap = self.score - self.baseline_score
        return np.abs(self.ig_total - gap) / np.maximum(np.abs(gap), 1e-6)


def class_scores(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """The logit of each row's class; a single sigmoid unit scores class 1 as z, class 0 as -z."""
    if logits.shape[-1] == 1:
        z = logits[:, 0]
        return tf.where(classes == 1, z, -z)
    return tf.gather(logits, classes, axis=1, batch_dims=1)


def score_and_probability(logits: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) score and probability of each row's class from (N, C) pre-softmax outputs:
    a softmax over C > 1 logits, a sigmoid of a single one."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(logits))
    if logits.shape[1] == 1:
        score = np.where(classes == 1, logits[:, 0], -logits[:, 0])
        return score, 1 / (1 + np.exp(-score))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return logits[rows, classes], np.exp(log_p[rows, classes])


def grad_cam(a: tf.Tensor, grad_a: tf.Tensor) -> tf.Tensor:
    """relu(sum_k w_k A_k) with w_k the spatial mean of d score / d A_k (Selvaraju et al. 2017): (N, h, w)."""
    weights = tf.reduce_mean(grad_a, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * a, axis=-1))


def grad_cam_plus_plus(a: tf.Tensor, grad_a: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, eqs. 9 and 19) for the score Y = exp(S): (N, h, w).

    With Y = exp(S) the second and third derivatives are exp(S) g^2 and exp(S) g^3
    (g = dS/dA), so alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), in which exp(S) cancels,
    and w_k = sum_ij alpha_ij relu(exp(S) g_ij). exp(S) then scales the whole map by
    one positive number per image, which nothing here sees (maps are scaled per image,
    deletion and rank correlation use ranks), so it is left out: exp of a confident
    logit overflows float32. alpha is only needed where g > 0, and 0 elsewhere, as in
    pytorch-grad-cam; like it (and unlike tf-keras-vis) alpha is not renormalised.
    """
    g2 = tf.square(grad_a)
    denominator = 2.0 * g2 + tf.reduce_sum(a, axis=(1, 2), keepdims=True) * g2 * grad_a
    used = (grad_a > 0) & (denominator > 0)
    alpha = tf.where(used, g2 / tf.where(used, denominator, 1.0), 0.0)
    weights = tf.reduce_sum(alpha * tf.nn.relu(grad_a), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * a, axis=-1))


def _image_spec(input_shape: tuple[int, ...]) -> list[tf.TensorSpec]:
    return [tf.TensorSpec((None, *input_shape), tf.float32), tf.TensorSpec((None,), tf.int32)]


def _compile_gradients(graph: ModelGraph, point: str | None,
                       input_shape: tuple[int, ...]) -> Callable[..., tuple[tf.Tensor, ...]]:
    """Per row: the input gradient of its class score, the score, and Grad-CAM and Grad-CAM++ of the
    layer output at `point` (stacked on the last axis, resized to the input) from the same backward pass."""
    output = graph[graph.output].tensor
    extractor = graph.model_of([output, graph[point].tensor if point else output])

    @tf.function(input_signature=_image_spec(input_shape))
    def gradients(x: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits, a = extractor(x, training=False)
            scores = class_scores(logits, classes)
            total = tf.reduce_sum(scores)
        grad_x, grad_a = tape.gradient(total, [x, a])
        size = tf.shape(x)[1:3]  # the images' own size, also for a model that takes any size
        if not point:
            return grad_x, scores, tf.zeros(tf.concat([tf.shape(x)[:3], [len(CAM_METHODS)]], axis=0))
        cams = tf.stack([grad_cam(a, grad_a), grad_cam_plus_plus(a, grad_a)], axis=-1)
        return grad_x, scores, tf.image.resize(cams, size, method="bilinear")

    return gradients


def _compile_input_gradient(clone: keras.Model, input_shape: tuple[int, ...]) -> Callable[..., tf.Tensor]:
    """d class score / d input through `clone` (for the guided-backprop control)."""

    @tf.function(input_signature=_image_spec(input_shape))
    def gradient(x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(class_scores(clone(x, training=False), classes))
        return tape.gradient(score, x)

    return gradient


class Attributor:
    """Attribution maps of class scores for batches of images, from the network's logits graph.

    Each compiled function is traced once for any batch size. Rows go through in batches of
    `projections.batch_rows`, so memory stays bounded on a CPU and a GPU alike.

    Args:
        model: the classifier (a Keras model or a `Network`, e.g. `Network.randomized` for the sanity check).
        layer_name: the conv layer of Grad-CAM and Grad-CAM++ (read where its units are), or None.
    """

    def __init__(self, model: keras.Model | Network, layer_name: str | None = None) -> None:
        self.layer = layer_name
        self._network = network = Network.of(model)
        self._input_shape = tuple(network.image_shape)
        graph = network.logits_graph
        self._gradients = _compile_gradients(graph, network.read_point(layer_name) if layer_name else None,
                                             self._input_shape)
        logits_model = graph.model(graph.output)

        @tf.function(input_signature=_image_spec(self._input_shape)[:1])
        def logits(x: tf.Tensor) -> tf.Tensor:
            return logits_model(x, training=False)

        self._logits = logits

    @cached_property
    def _guided_gradient(self) -> Callable[..., tf.Tensor]:
        graph = self._network.relu_graph("guided", logits=True)
        return _compile_input_gradient(graph.model(graph.output), self._input_shape)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, C) pre-softmax outputs for images `x`, in bounded batches."""
        step = self._batch_rows(x)
        chunks = [self._logits(tf.constant(x[i : i + step], tf.float32)).numpy() for i in range(0, len(x), step)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)

    def _batch_rows(self, x: np.ndarray) -> int:
        """Rows per gradient call for images like `x` (a model that takes any size is fed them at their size)."""
        return batch_rows(x.shape[1:], self._network.activation_values(x.shape[1:3]))

    def __call__(self, x: np.ndarray, classes: np.ndarray, samples: int = 16, noise: float = 0.15, steps: int = 16,
                 seed: int = 0, control: bool = False, batch_size: int | None = None) -> Attributions:
        """Attributions of `classes[i]` for image `x[i]`.

        Args:
            x: (N, H, W, C) images in [0, 1].
            classes: (N,) the class each image's maps explain.
            samples: SmoothGrad's noisy copies per image.
            noise: std of SmoothGrad's Gaussian noise (images are in [0, 1]).
            steps: Integrated Gradients' path steps (trapezoidal rule, steps + 1 points).
            seed: seed of the noise.
            control: also compute the guided-backprop map (a second, small pass).
            batch_size: rows per gradient call (default: `projections.batch_rows`).

        Returns:
            The maps of every method (Grad-CAM and Grad-CAM++ only with a conv layer).
        """
        if not len(x):
            raise ValueError("no images to explain")
        x = np.asarray(x, np.float32)
        classes = np.asarray(classes, np.int32)
        batch_size = batch_size or self._batch_rows(x)
        per_image = 1 + steps + samples  # the image, the baseline, steps - 1 path points, the noisy copies
        images_per_chunk = max(1, batch_size // per_image)
        rng = np.random.default_rng(seed)
        parts = [self._chunk(x[i : i + images_per_chunk], classes[i : i + images_per_chunk], samples, noise, steps,
                             rng, batch_size) for i in range(0, len(x), images_per_chunk)]
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        maps = {name: merged[name] for name in METHODS if name in merged}
        if control:
            maps[CONTROL] = self.guided_backprop(x, classes, batch_size)
        return Attributions(maps=maps, layer=self.layer, score=merged["score"],
                            baseline_score=merged["baseline_score"], ig_total=merged["ig_total"])

    def _chunk(self, x: np.ndarray, classes: np.ndarray, samples: int, noise: float, steps: int,
               rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        """Every map of a few images from their rows, run in batches of at most `batch_size`."""
        n, shape = len(x), x.shape[1:]
        baseline = integrated_gradients_baseline(x)
        alphas = np.arange(1, steps, dtype=np.float32) / steps
        path = baseline[:, None] + alphas[None, :, None, None, None] * (x - baseline)[:, None]
        noisy = x[:, None] + rng.normal(0, noise, (n, samples, *shape)).astype(np.float32)
        rows = np.concatenate([x[:, None], baseline[:, None], path, noisy], axis=1).reshape(-1, *shape)
        row_classes = np.repeat(classes, 1 + steps + samples)
        outputs = [self._gradients(tf.constant(rows[i : i + batch_size]), tf.constant(row_classes[i : i + batch_size]))
                   for i in range(0, len(rows), batch_size)]
        # Input gradients, scores and CAMs, each as (images, rows per image, ...).
        grads, scores, cams = (np.concatenate([o[k].numpy() for o in outputs]) for k in range(3))
        grads, scores, cams = (v.reshape(n, 1 + steps + samples, *v.shape[1:]) for v in (grads, scores, cams))
        # Trapezoidal rule over alpha = 0, 1/steps, ..., 1: rows 1 (alpha 0), 2.. (interior), 0 (alpha 1).
        mean_gradient = (0.5 * (grads[:, 0] + grads[:, 1]) + grads[:, 2 : 1 + steps].sum(axis=1)) / steps
        ig = (x - baseline) * mean_gradient
        out = {"saliency": np.abs(grads[:, 0]).max(axis=-1),
               "smoothgrad": np.abs(grads[:, 1 + steps :].mean(axis=1)).max(axis=-1),
               "integrated_gradients": ig.sum(axis=-1),
               "score": scores[:, 0], "baseline_score": scores[:, 1], "ig_total": ig.sum(axis=(1, 2, 3))}
        if self.layer:
            out.update({name: cams[:, 0, ..., k] for k, name in enumerate(CAM_METHODS)})
        return out

    def guided_backprop(self, x: np.ndarray, classes: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(N, H, W) max over channels of |guided-backprop gradient| (Springenberg et al. 2015)."""
        step = batch_size or self._batch_rows(x)
        grads = [self._guided_gradient(tf.constant(x[i : i + step], tf.float32),
                                       tf.constant(np.asarray(classes[i : i + step], np.int32))).numpy()
                 for i in range(0, len(x), step)]
        return np.abs(np.concatenate(grads)).max(axis=-1)


def integrated_gradients_baseline(x: np.ndarray) -> np.ndarray:
    """A black image: in the model's [0, 1] space it is "no ink" for MNIST-like data and no
    light for photos, so Integrated Gradients credits each pixel for how far it is from dark."""
    return np.zeros_like(x)


def confident_mistakes(labels: np.ndarray, probs: np.ndarray, limit: int = 8) -> list[int]:
    """Test indices of misclassified images, the most confidently wrong first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = np.argsort(-probs[wrong, predicted[wrong]], kind="stable")
    return [int(i) for i in wrong[order[:limit]]]
