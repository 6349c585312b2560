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


def _total_variation(images: tf.Tensor) -> tf.Tensor:
    dy = tf.reduce_mean(tf.abs(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


def _l2(images: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(images - 0.5), axis=[1, 2, 3])


def _blur_distance(images: tf.Tensor) -> tf.Tensor:
    channels = images.shape[-1]
    kernel = tf.constant([[1, 2, 1], [2, 4, 2], [1, 2, 1]], tf.float32) / 16.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")
    return tf.reduce_mean(tf.square(images - blurred), axis=[1, 2, 3])


def total_variation(weight: float) -> Regularizer:
    """Penalise differences between neighbouring pixels: fewer speckles."""
    return Regularizer("total_variation", weight, _total_variation)


def l2(weight: float) -> Regularizer:
    """Penalise distance from mid-grey: no saturated backgrounds."""
    return Regularizer("l2", weight, _l2)


def blur(weight: float) -> Regularizer:
    """Penalise distance from the image's own 3x3 blur: softer edges."""
    return Regularizer("blur", weight, _blur_distance)
