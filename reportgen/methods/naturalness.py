"""Naturalness: how the power of an image spreads over spatial frequencies, as one number.

The power spectrum of a photograph falls off as a power of spatial frequency: about 1/f^2 for a scene at
full resolution, steeper once the camera's optics, JPEG compression and the resize to the model's input
take off the finest detail (the cats-vs-dogs photos at 64 to 128 px measure about -3 here). White noise is
flat (slope 0), and the saturated high-frequency patterns of naive gradient ascent lie in between (about
-1 to -1.5). A picture whose slope is near its dataset's photos has its detail spread over scales as they
do: a number a noise pattern cannot reach. It does not say that the picture shows anything, only that it
is not made of pixel-scale noise.

    from reportgen.methods.naturalness import spectral_slope
    spectral_slope(images)        # (N,) one slope per image (N, H, W, C) in [0, 1]
"""

from __future__ import annotations

import numpy as np

MIN_SIDE = 8  # a smaller image has too few frequency rings for a slope
# The radial frequencies (cycles per pixel) the line is fitted over: from the second ring (the first holds
# what the window leaks of the mean) to Nyquist, 0.5.
LOWEST_RING = 2


def spectral_slope(images: np.ndarray) -> np.ndarray:
    """The spectral slope of each image: the least-squares slope of log power against log spatial
    frequency, of the grey image's Hann-windowed, radially averaged power spectrum.

    Each image is made grey (the mean of its channels), its mean subtracted, multiplied by a 2-D Hann
    window (so the image's borders do not add a cross of false high frequencies), Fourier transformed;
    the power |F|^2 is averaged over rings of one frequency step each, from the second ring to Nyquist,
    and a line is fitted to log10(power) against log10(frequency), every ring weighted alike.
    Natural photos give about -3, white noise 0. An image with no variation at all (a uniform canvas)
    has no spectrum: its slope is NaN.

    Args:
        images: (N, H, W, C) or (N, H, W) in any range; H and W at least MIN_SIDE.

    Returns:
        (N,) float64 slopes, NaN for uniform images.

    Raises:
        ValueError: images smaller than MIN_SIDE a side.
    """
    images = np.asarray(images, np.float64)
    if images.ndim == 4:
        images = images.mean(axis=-1)
    if images.ndim != 3:
        raise ValueError(f"expected images (N, H, W[, C]), got shape {images.shape}")
    count, height, width = images.shape
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE} px a side for a spectral slope, got {height}x{width}")
    grey = images - images.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.fft2(grey * window)) ** 2  # (N, H, W)
    rings, frequencies = _rings(height, width)
    wanted = (rings >= LOWEST_RING) & (rings <= _nyquist_ring(height, width))
    ring_ids = rings[wanted]
    totals = np.zeros((count, ring_ids.max() + 1))
    np.add.at(totals.T, ring_ids, power.reshape(count, -1)[:, wanted.ravel()].T)
    members = np.bincount(ring_ids, minlength=ring_ids.max() + 1)
    used = np.nonzero(members)[0]
    mean_power = totals[:, used] / members[used]
    x = np.log10(frequencies[used])
    slopes = np.full(count, np.nan)
    alive = np.all(mean_power > 0, axis=1) & (grey.reshape(count, -1).std(axis=1) > 1e-9)
    if alive.any():
        y = np.log10(mean_power[alive])
        xc = x - x.mean()
        slopes[alive] = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return slopes


SATURATED = 0.02  # a pixel within this of 0 or 1 in any channel is clipped (saturated)


def saturated_share(images: np.ndarray) -> np.ndarray:
    """The share of each image's pixels that are clipped: some channel within SATURATED of 0 or 1 (images in
    [0, 1]). The slope's blind spot: a picture of a few large flat blobs of pure colour has a photo's slope (its
    power sits at low frequencies) but not a photo's look; photos clip only in highlights and shadows.

    Args:
        images: (N, H, W, C) or (N, H, W) in [0, 1].

    Returns:
        (N,) shares in [0, 1].
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    clipped = np.any((images <= SATURATED) | (images >= 1 - SATURATED), axis=-1)
    return clipped.reshape(len(images), -1).mean(axis=1)


def median_slope(slopes: np.ndarray | list[float]) -> float | None:
    """The median of the slopes that exist (uniform images have none); None when none does."""
    values = np.asarray(slopes, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None


def _rings(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) ring index of each FFT bin (radial frequency in steps of the coarser side's frequency step),
    and each ring's centre frequency in cycles per pixel."""
    step = 1.0 / min(height, width)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    rings = np.rint(np.sqrt(fx**2 + fy**2) / step).astype(np.int64)
    return rings, np.arange(rings.max() + 1) * step


def _nyquist_ring(height: int, width: int) -> int:
    """The ring at 0.5 cycles per pixel: the corners beyond it are sampled only along diagonals."""
    return min(height, width) // 2
