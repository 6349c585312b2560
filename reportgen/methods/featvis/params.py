"""Image parameterisations: the variables gradient ascent changes, and how they become images in [0, 1].

Both end in a slightly stretched, clipped sigmoid, so an image can reach exact
black and white, as real [0, 1] images do (a plain sigmoid never quite does,
and first-layer filters that want pure white then fall just short).

`fft` (Lucid's default) optimises a Fourier spectrum scaled by 1/frequency, so
every frequency learns at the same rate and images come out smooth rather
than as high-frequency noise; colour images also get Lucid's fixed colour
decorrelation. `pixel` optimises pixels directly; `smooth` optimises pixels
seen through a small Gaussian blur, so a single pixel cannot change on its own
and strokes come out a few pixels wide, as in the data (class images).
Colour (FFT, MaCo) images may instead take Lucid's plain sigmoid or a photo's fixed pixel spread (`SQUASHES`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Lucid's square root of the ImageNet colour correlation: decorrelated channels -> RGB.
COLOR_CORRELATION = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION /= np.max(np.linalg.norm(COLOR_CORRELATION, axis=0))


def colour_correlation(images: np.ndarray, sample: int = 200_000) -> tuple[tuple[float, ...], ...]:
    """The square root of a dataset's own RGB covariance, scaled as Lucid scales ImageNet's (largest column norm
    1): what `FFTParam` multiplies its decorrelated channels by, so an image's colours vary together as the model's
    photos do rather than as ImageNet's. Returned as nested tuples, so settings holding it stay hashable.

    Args:
        images: (N, H, W, 3) in [0, 1].
        sample: at most this many pixels are read (evenly spaced).
    """
    pixels = np.asarray(images, np.float64).reshape(-1, 3)
    pixels = pixels[:: max(1, len(pixels) // sample)]
    values, vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    root = vectors @ np.diag(np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T
    root /= np.max(np.linalg.norm(root, axis=0))
    return tuple(tuple(round(float(v), 5) for v in row) for row in root)


def to_unit_range(x: tf.Tensor) -> tf.Tensor:
    """Sigmoid stretched by 10% and clipped to [0, 1]. The clip is a relu6 on six times the value:
    one elementwise op forward and back, where clip_by_value's gradient takes four (5% of a colour
    model's render)."""
    return tf.nn.relu6(6.0 * (1.1 * tf.sigmoid(x) - 0.05)) / 6.0


def soft_unit_range(x: tf.Tensor) -> tf.Tensor:
    """Lucid's plain sigmoid at the same slope at grey as `to_unit_range`: it never reaches 0 or 1, and its gradient
    fades toward them, so a pixel is pushed to a pure colour only where the unit asks for it hard."""
    return tf.sigmoid(1.1 * x)


def from_soft_unit_range(images: tf.Tensor) -> tf.Tensor:
    """The inverse of `soft_unit_range` (exact black and white at a finite logit)."""
    p = tf.clip_by_value(tf.cast(images, tf.float32), 0.005, 0.995)
    return (tf.math.log(p) - tf.math.log1p(-p)) / 1.1


def from_unit_range(images: tf.Tensor) -> tf.Tensor:
    """The inverse of `to_unit_range`; exact black and white map to the logits where the clip starts."""
    p = tf.clip_by_value((tf.cast(images, tf.float32) + 0.05) / 1.1, 0.05 / 1.1, 1.05 / 1.1)
    return tf.math.log(p) - tf.math.log1p(-p)


PHOTO_SPREAD = 0.25  # a photo's typical standard deviation of pixel values in [0, 1] (cats-vs-dogs: about 0.25)


def fixed_spread(x: tf.Tensor, contrast: float = 1.0) -> tf.Tensor:
    """Each image scaled to the standard deviation of a photo's pixels, then `to_unit_range`: ReLU units respond
    about linearly to contrast, so gradient ascent left free drives every pixel into the clip; with the spread fixed
    it can only arrange light and colour, as MaCo's fixed magnitude does, but over a spectrum of its own.
    `contrast` scales the spread."""
    centred = x - tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    spread = tf.math.reduce_std(centred, axis=[1, 2, 3], keepdims=True) + 1e-6
    return to_unit_range(centred / spread * (contrast * PHOTO_SPREAD * _LOGIT_GAIN))


# name -> (values, contrast -> images in [0, 1]; its inverse, up to the contrast)
SQUASHES = {"clip": (lambda x, contrast: to_unit_range(contrast * x), from_unit_range),
            "sigmoid": (lambda x, contrast: soft_unit_range(contrast * x), from_soft_unit_range),
            "spread": (fixed_spread, from_unit_range)}


class Parameterization:
    """`init(batch, rng)` makes the variable's starting value; `to_image(param)` turns it into images;
    `from_image(images)` is its inverse, so a multi-scale render can continue from a smaller stage's images."""

    learning_rate = 0.1  # a good Adam step for this parameterisation

    def __init__(self, height: int, width: int, channels: int) -> None:
        self.height, self.width, self.channels = height, width, channels

    def init(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def to_image(self, param: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def from_image(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PixelParam(Parameterization):
    """Pixels in logit space, starting grey."""

    learning_rate = 0.2  # live filters reaching the dataset max, mnist-3conv: 98.5% at 0.1, 99.3% at 0.2

    def init(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0, 0.1, (batch, self.height, self.width, self.channels)).astype(np.float32)

    def to_image(self, param: tf.Tensor) -> tf.Tensor:
        return to_unit_range(param)

    def from_image(self, images: np.ndarray) -> np.ndarray:
        return from_unit_range(images).numpy()


class SmoothPixelParam(PixelParam):
    """Pixels in logit space blurred by a Gaussian of `sigma` pixels (and scaled so a uniform area keeps its
    value range) before the sigmoid. Measured on class images of mnist-3conv (images an independent pixel MLP
    recognises, of 10, six random starts): 8.5 on average with plain pixels, 8.5 with sigma 0.7, but 10 of 10
    with sigma 0.7 against 8 to 10 with plain pixels once the best of several starts is kept (render)."""

    def __init__(self, height: int, width: int, channels: int, sigma: float = 0.7) -> None:
        super().__init__(height, width, channels)
        radius = max(1, int(np.ceil(2 * sigma)))
        taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
        kernel = np.outer(taps, taps) / taps.sum() ** 2
        # Each channel blurred on its own, as a plain conv with a diagonal kernel: on CPU the depthwise conv
        # that does the same took 2.4x as long, forward and back (39% of mnist-3conv's class images).
        self.kernel = tf.constant((kernel[:, :, None, None] * np.eye(channels)).astype(np.float32))
        self.gain = 1.0 + sigma  # the blur averages neighbours away: without it strokes never reach white

    def to_image(self, param: tf.Tensor) -> tf.Tensor:
        return to_unit_range(self.gain * tf.nn.conv2d(param, self.kernel, 1, "SAME"))

    def from_image(self, images: np.ndarray) -> np.ndarray:
        """Approximate (a blur has no exact inverse): the unblurred logits scaled back by the gain."""
        return from_unit_range(images).numpy() / self.gain


class FFTParam(Parameterization):
    """A 1/f-scaled spectrum per channel; colour decorrelated for RGB, plain for grayscale."""

    # Weak filters of a colour model's last conv layer barely leave the grey start at 0.1: cats-vs-dogs
    # conv4 reaches the dataset max for 77% of its live filters at 0.1, 90% at 0.3, and 87% at 1.0.
    learning_rate = 0.3

    def __init__(self, height: int, width: int, channels: int, decay: float = 1.0,
                 correlation: np.ndarray | None = None, squash: str = "clip", contrast: float = 1.0) -> None:
        super().__init__(height, width, channels)
        self.squash, self.unsquash = SQUASHES[squash]
        self.contrast = contrast
        # decorrelated channels -> RGB: the data's own (colour_correlation) or Lucid's ImageNet one
        self.correlation = np.asarray(COLOR_CORRELATION if correlation is None else correlation, np.float32)
        fy = np.fft.fftfreq(height)[:, None]
        fx = np.fft.rfftfreq(width)[None, :]
        frequencies = np.sqrt(fx**2 + fy**2)
        scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay
        scale *= np.sqrt(height * width)  # irfft2d divides by H*W; undo it, as Lucid's fft_image does
        self.scale = tf.constant(scale, tf.complex64)
        self.spectrum_shape = (channels, height, width // 2 + 1)

    def init(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0, 0.01, (batch, *self.spectrum_shape, 2)).astype(np.float32)

    def to_image(self, param: tf.Tensor) -> tf.Tensor:
        spectrum = tf.complex(*tf.unstack(param, axis=-1)) * self.scale  # unstack: slicing's gradient is slow
        image = tf.signal.irfft2d(spectrum, fft_length=[self.height, self.width])  # (B, C, H, W)
        image = tf.transpose(image, [0, 2, 3, 1]) / 4.0
        if self.channels == 3:
            image = tf.tensordot(image, tf.constant(self.correlation.T), axes=1)
        return self.squash(image, self.contrast)

    def from_image(self, images: np.ndarray) -> np.ndarray:
        image = self.unsquash(images) / self.contrast
        if self.channels == 3:
            image = tf.tensordot(image, tf.constant(np.linalg.inv(self.correlation.T)), axes=1)
        spectrum = tf.signal.rfft2d(tf.transpose(image * 4.0, [0, 3, 1, 2])) / self.scale
        return tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)], axis=-1).numpy()


class MagnitudeParam(Parameterization):
    """MaCo (Fel et al. 2023): the Fourier magnitude is fixed to that of the model's own photos and only the
    phase is optimised, so every image has a photo's spread of power over frequencies by construction and gradient
    ascent can only arrange it. The magnitude is the photos' radially averaged amplitude per channel
    (`fourier_profile`), whose ring 0 carries each channel's mean. It has no exact inverse: a multi-scale render
    (`scales`) cannot continue from a smaller stage with it."""

    learning_rate = 0.3

    def __init__(self, height: int, width: int, channels: int, profile: np.ndarray, squash: str = "clip",
                 contrast: float = 1.0) -> None:
        super().__init__(height, width, channels)
        self.squash = SQUASHES[squash][0]
        self.contrast = contrast
        profile = np.asarray(profile, np.float32).reshape(channels, -1)
        rings = _rfft_rings(height, width)
        magnitude = profile[:, np.minimum(rings, profile.shape[1] - 1)]  # (C, H, W//2+1)
        self.magnitude = tf.constant(magnitude, tf.complex64)
        self.spectrum_shape = (channels, height, width // 2 + 1)
        self.dc = tf.constant((rings == 0).astype(np.float32))

    def init(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-np.pi, np.pi, (batch, *self.spectrum_shape)).astype(np.float32)

    def to_image(self, param: tf.Tensor) -> tf.Tensor:
        phase = param * (1.0 - self.dc)  # the mean keeps phase 0: it stays the photos' mean colour
        spectrum = self.magnitude * tf.exp(tf.complex(tf.zeros_like(phase), phase))
        image = tf.transpose(tf.signal.irfft2d(spectrum, fft_length=[self.height, self.width]), [0, 2, 3, 1])
        # about the photo's own values (contrast 1), softly clipped
        return self.squash(_LOGIT_GAIN * (image - 0.5), self.contrast)

    def from_image(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError("the magnitude-constrained parameterisation takes no starting images (scales)")


_LOGIT_GAIN = 1 / 0.275  # to_unit_range's slope at grey is 1.1 / 4: this keeps a pixel's offset from grey


def fourier_profile(images: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """Per channel, the mean Fourier amplitude of `images` (N, H, W, C) in [0, 1] on each ring of radial
    frequency (one step of 1/min(H, W) each), in irfft2d's scale: what `MagnitudeParam` fixes. Nested tuples, so
    settings holding it stay hashable.
    """
    images = np.asarray(images, np.float64)
    height, width = images.shape[1:3]
    amplitude = np.abs(np.fft.rfft2(np.moveaxis(images, -1, 1))).mean(axis=0)  # (C, H, W//2+1)
    rings = _rfft_rings(height, width)
    counts = np.bincount(rings.ravel())
    profile = [np.bincount(rings.ravel(), weights=channel.ravel()) / np.maximum(counts, 1) for channel in amplitude]
    return tuple(tuple(round(float(v), 4) for v in channel) for channel in profile)


def _rfft_rings(height: int, width: int) -> np.ndarray:
    """(H, W//2+1) ring index of each rfft2 bin: radial frequency in steps of 1/min(H, W)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.rint(np.sqrt(fx**2 + fy**2) * min(height, width)).astype(np.int64)


def make_param(kind: str, height: int, width: int, channels: int,
               correlation: tuple[tuple[float, ...], ...] | None = None, decay: float = 1.0,
               profile: tuple[tuple[float, ...], ...] | None = None, squash: str = "clip",
               contrast: float = 1.0) -> Parameterization:
    """`kind` is "fft", "pixel", "smooth", "auto" or "auto-smooth". "auto": decorrelated FFT for colour
    (smoother patterns, and more cats-vs-dogs filters reach the dataset max than with pixels), pixels for
    grayscale (on fashion-2conv's first layer pixels reach 67% of filters, FFT 41%). "auto-smooth" (class
    images): FFT for colour, smoothed pixels for grayscale. `correlation`: the FFT's colour correlation (the
    data's own, `colour_correlation`); None: ImageNet's. `decay`: the FFT's spectrum scaling 1/f^decay (Lucid's
    1; larger favours coarse structure, as a photo's spectrum does). "maco": `MagnitudeParam` with `profile`
    (`fourier_profile` of the model's photos). `squash`, `contrast`: how FFT and MaCo values become [0, 1]
    (SQUASHES; "spread" fixes each image's pixel spread to a photo's)."""
    if squash not in SQUASHES:
        raise ValueError(f"unknown squash {squash!r} ({', '.join(SQUASHES)})")
    if kind == "auto":
        kind = "fft" if channels == 3 else "pixel"
    if kind == "auto-smooth":
        kind = "fft" if channels == 3 else "smooth"
    if kind == "smooth":
        return SmoothPixelParam(height, width, channels)
    if kind == "maco":
        if profile is None:
            raise ValueError("the 'maco' parameterization needs the photos' Fourier profile (fourier_profile)")
        return MagnitudeParam(height, width, channels, np.array(profile), squash, contrast)
    if kind == "fft":
        return FFTParam(height, width, channels, decay,
                        correlation=None if correlation is None else np.array(correlation), squash=squash,
                        contrast=contrast)
    if kind == "pixel":
        return PixelParam(height, width, channels)
    raise ValueError(f"unknown parameterization {kind!r} (fft, pixel, smooth, maco, auto or auto-smooth)")
