"""Random transforms applied to the image at every step, inside TensorFlow.

A pattern that still drives the unit after a small shift, zoom and turn is a
pattern of the unit, not an artefact of one pixel grid. Each transform draws
its randomness from uniforms that the render loop precomputes from (seed,
stage, step): every slot of a batch moves the same way at a step, so a unit
gets the same image whether it is rendered alone or in a batch of 64, the same
image on every run, and the shift is one `tf.roll` of the whole batch (a
per-slot shift costs a gather or a resampling, several times the price).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Transform:
    """`fn(images, uniforms)` with `uniforms` of shape (draws,) in [0, 1), shared by the batch."""

    draws: int
    fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

    def __call__(self, images: tf.Tensor, uniforms: tf.Tensor) -> tf.Tensor:
        return self.fn(images, uniforms)


def _affine(images: tf.Tensor, rows: list[tf.Tensor], fill_mode: str) -> tf.Tensor:
    """Apply one inverse map to every image: output (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    zero = tf.zeros_like(rows[0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.stack([*rows, zero, zero])[None], output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode)


def jitter(pixels: int) -> Transform:
    """Shift the images by a whole number of pixels, up to `pixels` each way, wrapping around (a roll)."""

    def apply(images: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        shift = tf.cast(tf.floor(u * (2 * pixels + 1)), tf.int32) - pixels
        return tf.roll(images, shift=[shift[1], shift[0]], axis=[1, 2])

    return Transform(2, apply)


def scale_and_rotate(scale: tuple[float, float], degrees: float) -> Transform:
    """Zoom the images by a factor in `scale` and turn them by up to `degrees`, about their centre."""

    def apply(images: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        zoom = scale[0] + (scale[1] - scale[0]) * u[0]
        angle = (2 * u[1] - 1) * degrees * math.pi / 180
        cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
        cy = (tf.cast(tf.shape(images)[1], tf.float32) - 1) / 2
        cx = (tf.cast(tf.shape(images)[2], tf.float32) - 1) / 2
        return _affine(images, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy], "REFLECT")

    return Transform(2, apply)


def compose(transforms: list[Transform]) -> Transform:
    """Apply in order, each reading its own columns of the uniforms."""

    def apply(images: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        start = 0
        for transform in transforms:
            images = transform(images, u[start : start + transform.draws])
            start += transform.draws
        return images

    return Transform(sum(t.draws for t in transforms), apply)


def standard_transforms(size: int, zoom: float = 0.0, degrees: float = 0.0) -> Transform:
    """Jitter scaled to the image (1 px at 14 px, 2 at 28, 4 at 64), then, when asked for, a zoom by up
    to `zoom` (0.05: ±5%) and a turn by up to `degrees`."""
    if zoom <= 0 and degrees <= 0:
        return jitter(max(1, size // 14))
    return compose([jitter(max(1, size // 14)), scale_and_rotate((1 - zoom, 1 + zoom), degrees)])
