"""Objectives: what to maximise, as functions of a batch's activations.

An objective maps `{layer name: activations}` to one score per batch slot,
shape (B,). Objectives compose like numbers (`channel("conv2", 3) + 0.5 *
layer_mean("conv1")`), and a unit index may be one int for every slot or one
per slot (a list, array or tf.Variable), which is how one optimisation renders
every filter of a layer at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

LOGITS = "(logits)"  # the pseudo-layer of the pre-softmax output (parentheses: no Keras layer name has them)

Activations = dict[str, tf.Tensor]
Units = int | Sequence[int] | tf.Tensor | tf.Variable


class Objective:
    """A per-slot score `fn(activations) -> (B,)` that knows which layers it reads."""

    def __init__(self, fn: Callable[[Activations], tf.Tensor], layers: frozenset[str], name: str) -> None:
        self.fn, self.layers, self.name = fn, layers, name

    def __call__(self, activations: Activations) -> tf.Tensor:
        return self.fn(activations)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return Objective(lambda a: self(a) + other(a), self.layers | other.layers, f"{self.name} + {other.name}")
        return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")

    __radd__ = __add__

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda a: weight * self(a), self.layers, f"{weight} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)


def _per_slot(values: tf.Tensor, units: Units) -> tf.Tensor:
    """values (B, ..., C) -> (B, ...) picking channel units[b] for slot b (or one unit for all)."""
    if isinstance(units, int):
        return values[..., units]
    units = tf.cast(tf.convert_to_tensor(units), tf.int32)
    moved = tf.experimental.numpy.moveaxis(values, -1, 1)  # (B, C, ...)
    return tf.gather(moved, units[:, None], axis=1, batch_dims=1)[:, 0]


def channel(layer: str, units: Units) -> Objective:
    """Mean activation of one feature map over all positions (Lucid's `channel`)."""
    return Objective(lambda a: tf.reduce_mean(_per_slot(a[layer], units), axis=[1, 2]), frozenset({layer}),
                     f"channel({layer}, {units if isinstance(units, int) else '...'})")


def neuron(layer: str, units: Units, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of one map at one position (one unit with one receptive field); without `x` and `y`, the
    map's centre (row H // 2, column W // 2), as `resemblance.map_centre` names it."""

    def score(a: Activations) -> tf.Tensor:
        values = a[layer]
        row = tf.shape(values)[1] // 2 if y is None else y
        col = tf.shape(values)[2] // 2 if x is None else x
        return _per_slot(values[:, row, col], units)

    where = "centre" if x is None and y is None else f"{x}, {y}"
    return Objective(score, frozenset({layer}), f"neuron({layer}, {where})")


def diversity(layer: str, group: int) -> Objective:
    """Lucid's diversity term, per slot: the summed cosine similarity between the slot's Gram matrix at
    `layer` (every channel: the image's style there) and those of the other slots of its group of `group`
    consecutive slots. Subtracted from a unit's objective, it makes a group's images differ in kind, not
    only in position. The batch must hold whole groups.

    The Gram matrices are of each map's deviation from its own mean over positions (the activations'
    covariance): Lucid's plain Gram is dominated by the mean activation wherever a layer mostly answers
    brightness, so a white blob and white stripes score alike and the term has nothing to push on
    (mnist-3conv conv1 at 32 steps: 22 of 24 groups alike with it by its own measure, 2 with the centred one by
    the centred measure or two images the same picture; featvis.ALIKE_SIMILARITY)."""

    def score(a: Activations) -> tf.Tensor:
        grams = tf.reshape(centred_grams(a[layer]), [-1, group, a[layer].shape[-1] ** 2])
        grams = tf.math.l2_normalize(grams, axis=-1, epsilon=1e-10)
        similarity = tf.matmul(grams, grams, transpose_b=True)  # (groups, group, group)
        return tf.reshape(tf.reduce_sum(similarity, axis=-1) - tf.linalg.diag_part(similarity), [-1])

    return Objective(score, frozenset({layer}), f"diversity({layer}, {group})")


def centred_grams(values: tf.Tensor) -> tf.Tensor:
    """(B, ..., C) activations -> (B, C, C): the Gram matrix of each map's deviation from its mean."""
    flat = tf.reshape(values, [tf.shape(values)[0], -1, values.shape[-1]])
    flat = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    return tf.matmul(flat, flat, transpose_a=True)


def relative(objective: Objective) -> Objective:
    """The objective over its own current size (the size is held constant for the gradient): the
    gradient of its log, so a penalty added to it weighs the same for strong and weak units."""

    def score(a: Activations) -> tf.Tensor:
        value = objective(a)
        return value / (tf.stop_gradient(tf.abs(value)) + 1e-3)

    return Objective(score, objective.layers, f"relative({objective.name})")


def layer_mean(layer: str) -> Objective:
    """Mean activation of a whole layer, every map and position: DeepDream's objective."""
    return Objective(lambda a: tf.reduce_mean(a[layer], axis=tf.range(1, tf.rank(a[layer]))), frozenset({layer}),
                     f"layer_mean({layer})")


def class_logit(units: Units) -> Objective:
    """The pre-softmax score of a class. A single sigmoid unit scores class 1 with
    its logit and class 0 with its negation."""

    def score(a: Activations) -> tf.Tensor:
        logits = a[LOGITS]
        if logits.shape[-1] == 1:
            sign = 2.0 * tf.cast(tf.convert_to_tensor(units), tf.float32) - 1.0
            return sign * logits[:, 0]
        return _per_slot(logits, units)

    return Objective(score, frozenset({LOGITS}), "class_logit")


def mean_logit() -> Objective:
    """The mean of all pre-softmax scores: raising every class at once raises it too."""
    return Objective(lambda a: tf.reduce_mean(a[LOGITS], axis=-1), frozenset({LOGITS}), "mean_logit")


def class_margin(units: Units) -> Objective:
    """A class's logit minus the mean of the other classes' logits (a single sigmoid: its signed logit).

    The logit alone also rises with evidence every class shares (more ink anywhere), so its images fill the
    canvas; the margin rewards only what sets the class apart. With C logits the mean of the others is
    (C * mean - own) / (C - 1), so the margin is C / (C - 1) * (own - mean)."""
    own, mean = class_logit(units), mean_logit()

    def score(a: Activations) -> tf.Tensor:
        count = a[LOGITS].shape[-1]
        return own(a) if count == 1 else count / (count - 1) * (own(a) - mean(a))

    return Objective(score, frozenset({LOGITS}), "class_margin")
