"""Regularizers: penalties subtracted from the objective, one value per image.

Each is a small named plug-in with a weight; the names label their terms in
the render's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Regularizer:
    name: str
    weight: float
    fn: Callable[[tf.Tensor], tf.Tensor]  # images (B, H, W, C) -> (B,)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.weight * self.fn(images)


def _mean_neighbour_difference(images: tf.Tensor, axis: int) -> tf.Tensor:
    """Mean |difference| of pixels next to each other along `axis`. Written with a roll whose
    wrapped-around row is masked out, because slicing's gradient is several times slower."""
    size = images.shape[axis]
    mask = tf.reshape(tf.range(size) > 0, [size if a == axis else 1 for a in range(4)])
    differences = tf.abs(images - tf.roll(images, 1, axis)) * tf.cast(mask, images.dtype)
    return tf.reduce_sum(differences, axis=[1, 2, 3]) / float((size - 1) * images.shape[1:].num_elements() // size)


def _total_variation(images: tf.Tensor) -> tf.Tensor:
    return _mean_neighbour_difference(images, 1) + _mean_neighbour_difference(images, 2)


def _l2_toward(target: float | tuple[float, ...]) -> Callable[[tf.Tensor], tf.Tensor]:
    """Mean squared distance from `target`: one value for every channel or one per channel."""
    goal = tf.constant(target, tf.float32)
    return lambda images: tf.reduce_mean(tf.square(images - goal), axis=[1, 2, 3])


def _blur_distance(images: tf.Tensor) -> tf.Tensor:
    channels = images.shape[-1]
    kernel = tf.constant([[1, 2, 1], [2, 4, 2], [1, 2, 1]], tf.float32) / 16.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")
    return tf.reduce_mean(tf.square(images - blurred), axis=[1, 2, 3])


def total_variation(weight: float) -> Regularizer:
    """Penalise differences between neighbouring pixels: fewer speckles."""
    return Regularizer("total_variation", weight, _total_variation)


def l2(weight: float, target: float | tuple[float, ...] = 0.5) -> Regularizer:
    """Penalise distance from `target` (mid-grey by default; a colour per channel): no saturated backgrounds.
    Class images pull toward the data's own background colour instead (see FeatVisSettings.l2_target)."""
    return Regularizer("l2", weight, _l2_toward(target))


def blur(weight: float) -> Regularizer:
    """Penalise distance from the image's own 3x3 blur: softer edges."""
    return Regularizer("blur", weight, _blur_distance)


SATURATION_BAND = 0.1  # pixels closer than this to 0 or 1 are penalised by `saturation`


def _saturation(images: tf.Tensor) -> tf.Tensor:
    """Mean squared depth of each channel value into the band within SATURATION_BAND of 0 or 1, in band units."""
    excess = tf.nn.relu(tf.abs(images - 0.5) - (0.5 - SATURATION_BAND)) / SATURATION_BAND
    return tf.reduce_mean(tf.square(excess), axis=[1, 2, 3])


def saturation(weight: float) -> Regularizer:
    """Penalise values near pure black, white or colour: no clipped blobs (naturalness.saturated_share)."""
    return Regularizer("saturation", weight, _saturation)
