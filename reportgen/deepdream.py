"""Multi-octave DeepDream: amplify what a layer already sees in a photo.

Per octave (smallest first): gradient ascent on the objective with the gradient
divided by its mean magnitude and a random roll each step, then upscale and
re-add the detail the downscaling lost. The ascent loop is one `tf.function`
whose input signature has free spatial dims, so octaves never retrace.

Zoo models have fixed input sizes, so octaves above the input size run on the
model traced on an input of any size, up to the target layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from . import progress
from .errors import ReportgenError
from .model import Network

DEFAULT_PHOTO = "chelsea"  # skimage.data sample images ship inside the wheel: no download
GRAY = np.array([0.299, 0.587, 0.114], np.float32)
MAX_OCTAVE = 512  # pixels, caps the cost of the largest octave


def load_photo(path: str | Path | None = None) -> np.ndarray:
    """A photo as (H, W, 3) float32 in [0, 1]: the user's file, or scikit-image's cat."""
    if path is None:
        import skimage.data

        return np.asarray(getattr(skimage.data, DEFAULT_PHOTO)(), np.float32)[..., :3] / 255.0
    try:
        with Image.open(Path(path).expanduser()) as image:
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ReportgenError(f"dream image {str(path)!r} could not be read: {reason}") from None


def fit_photo(photo: np.ndarray, channels: int, aspect: float = 1.0) -> np.ndarray:
    """Centre-crop the photo to the model's aspect ratio (height / width) and
    convert it to the model's channels (grey by luminance)."""
    h, w = photo.shape[:2]
    if h / w > aspect:
        keep = round(w * aspect)
        photo = photo[(h - keep) // 2 : (h - keep) // 2 + keep]
    else:
        keep = round(h / aspect)
        photo = photo[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    if channels == 1:
        return (photo @ GRAY)[..., None]
    if channels != 3:
        raise ReportgenError(f"DeepDream needs a 1- or 3-channel model input, not {channels} channels")
    return photo


def dream_extractor(model: keras.Model | Network, layer_names: list[str]) -> tuple[keras.Model, bool]:
    """A model from an image to the named conv layers' units, and whether it takes any size.

    It is the model traced on an input of free size when every named layer can be reached that way
    (a fully convolutional trunk), else the model at its own input size.
    """
    network = Network.of(model)
    points = [network.read_point(name) for name in layer_names]
    graph = network.any_size_graph
    any_size = all(graph.available(point) for point in points)
    graph = graph if any_size else network.graph
    return keras.Model(graph.input, [graph[point].tensor for point in points]), any_size


@dataclass
class Dream:
    """The dreams of one batch (one row per objective), octave by octave."""

    sizes: list[tuple[int, int]]
    images: list[np.ndarray]  # per octave, (N, h, w, C) in [0, 1]
    before: np.ndarray  # (octaves, N) objective at the start of each octave's ascent
    after: np.ndarray  # (octaves, N) objective at its end
    fully_convolutional: bool = True


class DeepDream:
    """Gradient ascent on a weighted mix of layer energies, for a batch of objectives.

    Row n's objective is sum over layers l and channels c of
    weights[l][n, c] * mean over space of A_l[n, :, :, c] ** 2 (the L2 energy
    DeepDream amplifies); one map is a one-hot weight row, a whole layer a flat one.
    """

    def __init__(self, model: keras.Model | Network, layer_names: list[str]) -> None:
        self.network, self.layer_names = Network.of(model), list(layer_names)
        self.extractor, self.fully_convolutional = dream_extractor(self.network, self.layer_names)
        self.input_size = tuple(self.network.image_shape[:2])
        image = tf.TensorSpec((None, None, None, self.network.image_shape[-1]), tf.float32)
        weights = [tf.TensorSpec((None, self.network.graph[self.network.read_point(n)].tensor.shape[-1]), tf.float32)
                   for n in self.layer_names]
        scalar = tf.TensorSpec((), tf.float32)
        count = tf.TensorSpec((), tf.int32)
        self._objective = tf.function(self._energy, input_signature=[image, weights])
        self._ascend = tf.function(self._ascent, input_signature=[image, weights, count, scalar, count, count])

    def channel_energy(self, image: np.ndarray) -> list[np.ndarray]:
        """Per layer, (N, C) spatial mean of each map's squared activation."""
        return [e.numpy() for e in self._channel_energy(tf.constant(image, tf.float32))]

    def _channel_energy(self, image: tf.Tensor) -> list[tf.Tensor]:
        outputs = self.extractor(image, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.reduce_mean(tf.square(_trim(a)), axis=(1, 2)) for a in outputs]

    def _energy(self, image: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
        """(N,) objective of each row."""
        return tf.add_n([tf.reduce_sum(w * e, axis=1) for e, w in zip(self._channel_energy(image), weights)])

    def _ascent(self, image: tf.Tensor, weights: list[tf.Tensor], steps: tf.Tensor, step_size: tf.Tensor,
                jitter: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        for i in tf.range(steps):
            shift = tf.random.stateless_uniform((2,), seed=tf.stack([seed, i]), minval=-jitter, maxval=jitter + 1,
                                                dtype=tf.int32)
            rolled = tf.roll(image, shift, axis=(1, 2))
            with tf.GradientTape() as tape:
                tape.watch(rolled)
                energy = tf.reduce_sum(self._energy(rolled, weights))
            grad = tf.roll(tape.gradient(energy, rolled), -shift, axis=(1, 2))
            grad /= tf.reduce_mean(tf.abs(grad), axis=(1, 2, 3), keepdims=True) + 1e-8
            image = tf.clip_by_value(image + step_size * grad, 0.0, 1.0)
        return image

    def octave_sizes(self, photo_size: tuple[int, int], octaves: int = 4, scale: float = 1.4) -> list[tuple[int, int]]:
        """Sizes from one octave below the model's input size upwards, capped by
        the photo's own size; only the input size when the copy is not fully convolutional."""
        if not self.fully_convolutional:
            return [self.input_size]  # type: ignore[list-item]
        base = self.input_size if None not in self.input_size else photo_size
        top = max(max(base), min(max(photo_size), MAX_OCTAVE))
        sizes = []
        for k in range(-1, octaves - 1):
            size = (round(base[0] * scale**k), round(base[1] * scale**k))
            if max(size) <= top and self._large_enough(size) and size not in sizes:
                sizes.append(size)
        return sizes or [tuple(base)]  # type: ignore[list-item]

    def _large_enough(self, size: tuple[int, int]) -> bool:
        """Every target layer still has a map of at least one pixel at this input size."""
        for name in self.layer_names:
            rf = self.network.receptive_field(self.network.read_point(name), input_size=size)
            if rf is not None and min(rf.output_size) < 1:
                return False
        return True

    def dream(self, photo: np.ndarray, weights: list[np.ndarray], octaves: int = 4, scale: float = 1.4,
              steps: int = 12, step_size: float = 0.01, seed: int = 0) -> Dream:
        """Dream on `photo` (H, W, C) in [0, 1], one row per objective row of `weights`."""
        n = len(weights[0])
        weights_t = [tf.constant(w, tf.float32) for w in weights]
        sizes = self.octave_sizes(photo.shape[:2], octaves, scale)
        # Detail finer than the largest octave is never used: a huge photo costs nothing extra.
        original = resize(tf.constant(photo[None], tf.float32), sizes[-1])
        image = tf.repeat(resize(original, sizes[0]), n, axis=0)
        images, before, after = [], [], []
        for i, size in enumerate(sizes):
            if i:
                # Upscale and re-add the detail that shrinking the photo to the previous octave lost.
                lost = resize(original, size) - resize(resize(original, sizes[i - 1]), size)
                image = tf.clip_by_value(resize(image, size) + lost, 0.0, 1.0)
            before.append(self._objective(image, weights_t).numpy())
            jitter = max(1, min(size) // 16)
            image = self._ascend(image, weights_t, tf.constant(steps), tf.constant(step_size, tf.float32),
                                 tf.constant(jitter), tf.constant(seed * 1000 + i))
            after.append(self._objective(image, weights_t).numpy())
            images.append(image.numpy())
            progress.log(f"    deepdream octave {i + 1}/{len(sizes)} {size[0]}x{size[1]}: objective "
                         f"{float(np.mean(before[-1])):.4g} -> {float(np.mean(after[-1])):.4g}")
        return Dream(sizes, images, np.array(before), np.array(after), self.fully_convolutional)


def _trim(a: tf.Tensor) -> tf.Tensor:
    """Drop a 2-pixel border of maps larger than 10 pixels, where the roll's seams
    and zero padding would otherwise dominate."""
    h, w = tf.shape(a)[1], tf.shape(a)[2]
    by = tf.where(h > 10, 2, 0)
    bx = tf.where(w > 10, 2, 0)
    return a[:, by : h - by, bx : w - bx]


def resize(image: tf.Tensor | np.ndarray, size: tuple[int, int]) -> tf.Tensor:
    """Resize (N, H, W, C) images; antialiased, so shrinking a photo does not alias."""
    return tf.image.resize(image, size, method="bilinear", antialias=True)
