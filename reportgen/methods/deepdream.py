"""Multi-octave DeepDream at the photo's own resolution.

The photo is fitted to a long side (`ModelSpec.dream_size`, 512 px by default)
at its own aspect ratio. Octaves run from a small copy up to that full size;
per octave: gradient ascent on the objective (the gradient divided by its mean
magnitude, a random roll every step), then the result is enlarged to the next
size and the detail that shrinking the photo lost is added back, so the photo
stays under the dream. The ascent loop is one `tf.function` with free spatial dims, so octaves
never retrace.

A model whose layers take any input size dreams on the whole image. A model
that only takes its own input size dreams on tiles of that size, all tiles of
all rows in one batch; the random roll moves the seams every step (the tiled
gradient of the TensorFlow DeepDream tutorial).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from reportgen.model import Network
from reportgen.util import progress
from reportgen.util.errors import ReportgenError

DEFAULT_PHOTO = "chelsea"  # skimage.data sample images ship inside the wheel: no download
GRAY = np.array([0.299, 0.587, 0.114], np.float32)


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


def fit_photo(photo: np.ndarray, channels: int, long_side: int, min_side: int = 1) -> np.ndarray:
    """The photo at its own aspect ratio with `long_side` pixels on its long side
    (and at least `min_side` on its short side), in the model's channels (grey by luminance).

    Args:
        photo: (H, W, 3) in [0, 1].
        channels: the model's input channels, 1 or 3.
        long_side: pixels on the long side of the result.
        min_side: the least pixels on the short side (a tiled model's tile side).

    Returns:
        (h, w, channels) float32 in [0, 1].

    Raises:
        ReportgenError: when the model takes neither 1 nor 3 channels.
    """
    if channels not in (1, 3):
        raise ReportgenError(f"DeepDream needs a 1- or 3-channel model input, not {channels} channels")
    h, w = photo.shape[:2]
    scale = max(long_side / max(h, w), min_side / min(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    fitted = np.clip(resize(photo[None], size)[0].numpy(), 0.0, 1.0)
    return fitted @ GRAY[:, None] if channels == 1 else fitted


def dream_extractor(model: keras.Model | Network, layer_names: list[str]) -> tuple[keras.Model, bool]:
    """A model from an image to the named layers' outputs (a conv layer's where its units are read), and
    whether it takes any size.

    It is the network traced on an input of free size when every named layer can be reached that way
    (a fully convolutional trunk, branches and residual adds included), else the network at its own
    input size (dreamed on tiles of that size).
    """
    network = Network.of(model)
    points = [network.read_point(name) for name in layer_names]
    graph = network.any_size_graph
    any_size = all(graph.available(point) for point in points)
    graph = graph if any_size else network.graph
    return graph.model_of([graph[point].tensor for point in points]), any_size


def similarity(photo: np.ndarray, dream: np.ndarray) -> float:
    """Structural similarity (SSIM) of a dream to its photo, both (H, W, C) in [0, 1]:
    a grey image's one channel, a colour image's mean over its three channels."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(photo, dream, data_range=1.0, channel_axis=-1))


def tile_starts(length: int | tf.Tensor, tile: int) -> tf.Tensor:
    """Starts of tiles of `tile` pixels that cover [0, length): a grid of
    tile-wide steps, the last one moved back to end at the edge (it overlaps)."""
    count = (length + tile - 1) // tile
    return tf.minimum(tf.range(count) * tile, length - tile)


def to_tiles(image: tf.Tensor, tile: tuple[int, int]) -> tf.Tensor:
    """(N, H, W, C) -> (N * T, th, tw, C): the T tiles covering each image, row-major.
    A gather, so the gradient of overlapping tiles adds up on the shared pixels."""
    rows = tile_starts(tf.shape(image)[1], tile[0])[:, None] + tf.range(tile[0])
    cols = tile_starts(tf.shape(image)[2], tile[1])[:, None] + tf.range(tile[1])
    tiles = tf.gather(tf.gather(image, rows, axis=1), cols, axis=3)  # (N, ny, th, nx, tw, C)
    tiles = tf.transpose(tiles, (0, 1, 3, 2, 4, 5))
    return tf.reshape(tiles, (-1, tile[0], tile[1], tf.shape(image)[3]))


@dataclass
class Dream:
    """The dreams of one batch (one row per objective), octave by octave."""

    sizes: list[tuple[int, int]]
    images: list[np.ndarray]  # per octave, (N, h, w, C) in [0, 1]; the last one is the photo's size
    before: np.ndarray  # (octaves, N) objective at the start of each octave's ascent
    after: np.ndarray  # (octaves, N) objective at its end
    photo_objective: np.ndarray  # (N,) the objective of the fitted photo itself, at the final size
    tiled: bool = False

    @property
    def final(self) -> np.ndarray:
        """(N, H, W, C) the finished dreams, at the fitted photo's size."""
        return self.images[-1]


class DeepDream:
    """Gradient ascent on a weighted mix of layer energies, for a batch of objectives.

    Row n's objective is sum over layers l and channels c of
    weights[l][n, c] * mean over space of A_l[n, :, :, c] ** 2 (the L2 energy
    DeepDream amplifies); one map is a one-hot weight row, a whole layer a flat one.
    On tiles, the spatial mean runs over every tile of the image.
    """

    def __init__(self, model: keras.Model | Network, layer_names: list[str], tiled: bool | None = None) -> None:
        """`tiled`: None dreams on the whole image when the extractor takes any
        size and on tiles of the model's input size otherwise; True forces tiles."""
        self.network, self.layer_names = Network.of(model), list(layer_names)
        self.extractor, any_size = dream_extractor(self.network, self.layer_names)
        self.channels = [int(output.shape[-1]) for output in self.extractor.outputs]
        self.input_size: tuple[int | None, int | None] = tuple(self.network.image_shape[:2])  # type: ignore[assignment]
        self.tiled = (not any_size) if tiled is None else tiled
        if not any_size and not self.tiled:
            raise ValueError("this model only takes its own input size: dream on tiles")
        if self.tiled and None in self.input_size:
            raise ValueError("tiles need a model with a fixed input size")
        image = tf.TensorSpec((None, None, None, self.network.image_shape[-1]), tf.float32)
        weights = [tf.TensorSpec((None, channels), tf.float32) for channels in self.channels]
        scalar = tf.TensorSpec((), tf.float32)
        count = tf.TensorSpec((), tf.int32)
        # No autograph: the loop is an explicit while_loop, and converting Keras's layer code costs a second.
        self._objective = tf.function(self._energy, input_signature=[image, weights], autograph=False)
        self._gradient = tf.function(self._shifted_gradient, input_signature=[image, weights, count, count],
                                     autograph=False)
        self._ascend = tf.function(self._ascent, input_signature=[image, weights, count, scalar, count, count],
                                   autograph=False)

    @property
    def tile_size(self) -> tuple[int, int]:
        return self.input_size  # type: ignore[return-value]

    def channel_energy(self, image: np.ndarray) -> list[np.ndarray]:
        """Per layer, (N, C) spatial mean of each map's squared activation."""
        return [e.numpy() for e in self._channel_energy(tf.constant(image, tf.float32))]

    def objective(self, image: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
        """(N,) each row's objective on (N, H, W, C) images."""
        return self._objective(tf.constant(image, tf.float32), [tf.constant(w, tf.float32) for w in weights]).numpy()

    def gradient(self, image: np.ndarray, weights: list[np.ndarray], shift: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The gradient of the summed objective with the image rolled by `shift`
        (mapped back to the unrolled image): one ascent step's raw direction."""
        return self._gradient(tf.constant(image, tf.float32), [tf.constant(w, tf.float32) for w in weights],
                              tf.constant(shift[0]), tf.constant(shift[1])).numpy()

    def _channel_energy(self, image: tf.Tensor) -> list[tf.Tensor]:
        batch = tf.shape(image)[0]
        if self.tiled:
            image = to_tiles(image, self.tile_size)
        outputs = self.extractor(image, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        energies = [tf.reduce_mean(tf.square(_trim(a)), axis=(1, 2)) for a in outputs]
        if self.tiled:  # (N * T, C) -> (N, C): every tile counts the same
            energies = [tf.reduce_mean(tf.reshape(e, (batch, -1, tf.shape(e)[-1])), axis=1) for e in energies]
        return energies

    def _energy(self, image: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
        """(N,) objective of each row."""
        return tf.add_n([tf.reduce_sum(w * e, axis=1) for e, w in zip(self._channel_energy(image), weights)])

    def _shifted_gradient(self, image: tf.Tensor, weights: list[tf.Tensor], dy: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
        shift = tf.stack([dy, dx])
        rolled = tf.roll(image, shift, axis=(1, 2))
        with tf.GradientTape() as tape:
            tape.watch(rolled)
            energy = tf.reduce_sum(self._energy(rolled, weights))
        return tf.roll(tape.gradient(energy, rolled), -shift, axis=(1, 2))

    def _ascent(self, image: tf.Tensor, weights: list[tf.Tensor], steps: tf.Tensor, step_size: tf.Tensor,
                jitter: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        def step(i: tf.Tensor, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            shift = tf.random.stateless_uniform((2,), seed=tf.stack([seed, i]), minval=-jitter, maxval=jitter + 1,
                                                dtype=tf.int32)
            grad = self._shifted_gradient(image, weights, shift[0], shift[1])
            grad /= tf.reduce_mean(tf.abs(grad), axis=(1, 2, 3), keepdims=True) + 1e-8
            return i + 1, tf.clip_by_value(image + step_size * grad, 0.0, 1.0)

        return tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), image))[1]

    def octave_sizes(self, photo_size: tuple[int, int], octaves: int = 4, scale: float = 1.4) -> list[tuple[int, int]]:
        """`octaves` sizes, each `scale` times the one before, ending at the photo's
        size; sizes too small for the model (a tile, or a 1-pixel map of a target layer) are left out."""
        sizes: list[tuple[int, int]] = []
        for k in range(octaves - 1, -1, -1):
            size = self.dream_size((round(photo_size[0] / scale**k), round(photo_size[1] / scale**k)))
            if size is not None and size not in sizes:
                sizes.append(size)
        return sizes or [tuple(photo_size)]  # type: ignore[list-item]

    def dream_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """`size` or the nearest larger size the dream can run at (see `Network.accepted_size`); None when it
        is too small: smaller than a tile, or than any size the model computes on."""
        if self.tiled:
            return size if size[0] >= self.tile_size[0] and size[1] >= self.tile_size[1] else None
        return self.network.accepted_size(size)

    def jitter(self, size: tuple[int, int]) -> int:
        """The largest roll per step: a tile side on tiles (the seams land
        anywhere), a 16th of the image otherwise (enough to break the pooling grid)."""
        return max(self.tile_size) if self.tiled else max(1, min(size) // 16)

    def dream(self, photo: np.ndarray, weights: list[np.ndarray], octaves: int = 4, scale: float = 1.4,
              steps: int | list[int] = 12, step_size: float = 0.01, seed: int = 0) -> Dream:
        """Dream on `photo` (H, W, C) in [0, 1] at its own size, one row per objective row of `weights`.

        Args:
            photo: the fitted photo; the final dream has its size.
            weights: per target layer, (N, channels) objective weights.
            octaves: how many sizes, the last one the photo's.
            scale: the size ratio of consecutive octaves.
            steps: ascent steps per octave, or one count per octave (smallest first).
            step_size: the mean absolute pixel change per step.
            seed: seeds the random rolls.

        Returns:
            The dream of every row at every octave, with the objective around each octave.
        """
        if self.tiled and (photo.shape[0] < self.tile_size[0] or photo.shape[1] < self.tile_size[1]):
            raise ValueError(f"a photo of {photo.shape[:2]} px is smaller than a {self.tile_size} tile")
        n = len(weights[0])
        weights_t = [tf.constant(w, tf.float32) for w in weights]
        if not isinstance(steps, int) and len(steps) != octaves:
            raise ValueError(f"{len(steps)} step counts for {octaves} octaves")
        sizes = self.octave_sizes(photo.shape[:2], octaves, scale)
        # Octaves too small for the model are the smallest ones: they drop out with their steps.
        steps_per_octave = [steps] * len(sizes) if isinstance(steps, int) else list(steps)[octaves - len(sizes):]
        original = tf.constant(photo[None], tf.float32)
        photo_objective = self._objective(tf.repeat(original, n, axis=0), weights_t).numpy()
        image = tf.repeat(resize(original, sizes[0]), n, axis=0)
        images, before, after = [], [], []
        octave_bar = progress.bar(len(sizes), "deepdream", unit="octave")
        for i, size in enumerate(sizes):
            if i:
                # Enlarge and re-add the detail that shrinking the photo to the previous octave lost.
                lost = resize(original, size) - resize(resize(original, sizes[i - 1]), size)
                image = tf.clip_by_value(resize(image, size) + lost, 0.0, 1.0)
            before.append(self._objective(image, weights_t).numpy())
            image = self._ascend(image, weights_t, tf.constant(steps_per_octave[i]), tf.constant(step_size, tf.float32),
                                 tf.constant(self.jitter(size)), tf.constant(seed * 1000 + i))
            after.append(self._objective(image, weights_t).numpy())
            images.append(image.numpy())
            progress.log(f"    deepdream octave {i + 1}/{len(sizes)} {size[0]}x{size[1]}: objective "
                         f"{float(np.mean(before[-1])):.4g} -> {float(np.mean(after[-1])):.4g}")
            octave_bar.update()
        octave_bar.close()
        return Dream(sizes, images, np.array(before), np.array(after), photo_objective, self.tiled)


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
