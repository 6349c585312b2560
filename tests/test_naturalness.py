"""The spectral slope: white noise is flat, a 1/f^a field has slope -a, real photos are near -3."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reportgen.inputs.data import load_dataset
from reportgen.methods.naturalness import MIN_SIDE, median_slope, spectral_slope


def power_law_field(exponent: float, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random grey image whose power spectrum falls as 1/f^exponent."""
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    frequency = np.sqrt(fx**2 + fy**2)
    frequency[0, 0] = 1.0
    spectrum = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))) / frequency ** (exponent / 2)
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.min()) / (field.max() - field.min())


def test_white_noise_is_flat():
    noise = np.random.default_rng(0).random((8, 96, 96, 3))
    assert np.all(np.abs(spectral_slope(noise)) < 0.2)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_a_power_law_field_has_its_exponent_as_slope(exponent):
    rng = np.random.default_rng(int(exponent))
    fields = np.stack([power_law_field(exponent, 128, rng) for _ in range(6)])[..., None]
    assert median_slope(spectral_slope(fields)) == pytest.approx(-exponent, abs=0.15)


def test_real_photos_are_near_minus_three():
    data = load_dataset("cats_vs_dogs", image_size=(128, 128))
    slopes = spectral_slope(data.x_test[:: len(data.x_test) // 40])
    assert -3.5 <= median_slope(slopes) <= -2.5
    assert np.mean((slopes > -4.0) & (slopes < -2.0)) > 0.9


def test_colour_and_grey_give_the_slope_of_the_grey_image():
    rng = np.random.default_rng(3)
    grey = power_law_field(2.0, 64, rng)
    assert spectral_slope(np.repeat(grey[None, ..., None], 3, -1))[0] == pytest.approx(spectral_slope(grey[None])[0])


def test_a_uniform_image_has_no_slope_and_tiny_images_are_refused():
    assert np.isnan(spectral_slope(np.full((1, 32, 32, 3), 0.4))[0])
    assert median_slope([np.nan, np.nan]) is None
    with pytest.raises(ValueError):
        spectral_slope(np.zeros((1, MIN_SIDE - 1, 32, 3)))


def test_a_saturated_high_frequency_pattern_is_far_from_photos():
    """What naive gradient ascent makes: a fine checkerboard of saturated colours, slope well above -2."""
    y, x = np.mgrid[:96, :96]
    pattern = ((x // 2 + y // 2) % 2).astype(float)
    noisy = np.clip(pattern + np.random.default_rng(1).normal(0, 0.2, pattern.shape), 0, 1)
    assert spectral_slope(noisy[None])[0] > -1.5


def test_the_slope_does_not_depend_on_the_value_range(tmp_path):
    """The same number for a picture in [0, 255] as in [0, 1]: a slope, not a level."""
    photo = np.random.default_rng(4).random((64, 64, 3))
    Image.fromarray((photo * 255).astype(np.uint8)).save(tmp_path / "x.png")
    loaded = np.asarray(Image.open(tmp_path / "x.png"), np.float32)
    assert spectral_slope(loaded[None])[0] == pytest.approx(spectral_slope(loaded[None] / 255.0)[0])


def test_clipped_blobs_have_a_photo_slope_but_not_a_photo_share_of_clipped_pixels():
    """The slope's blind spot, and the number that sees it: large pure-colour blobs are steep, and all clipped."""
    from reportgen.methods.naturalness import saturated_share

    blobs = (power_law_field(3.0, 96, np.random.default_rng(5)) > 0.5).astype(float)[None, ..., None].repeat(3, -1)
    assert spectral_slope(blobs)[0] < -1.8 and saturated_share(blobs)[0] == 1.0
    photos = load_dataset("cats_vs_dogs", image_size=(96, 96)).x_test[::50]
    assert np.median(saturated_share(photos)) < 0.2
