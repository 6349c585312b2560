"""The FFT parameterisation's colour decorrelation taken from the model's own data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from reportgen.methods.featvis.params import (
    COLOR_CORRELATION,
    FFTParam,
    colour_correlation,
    fourier_profile,
    make_param,
)


def test_the_data_colour_root_squares_to_the_data_covariance_up_to_scale():
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.2]])
    pixels = np.clip(rng.normal(0.5, 0.1, (20_000, 3)) @ mix, 0, 1).reshape(100, 200, 1, 3)
    root = np.array(colour_correlation(pixels))
    covariance = np.cov(pixels.reshape(-1, 3), rowvar=False)
    product = root @ root.T
    assert product / product[0, 0] == pytest.approx(covariance / covariance[0, 0], rel=1e-3, abs=1e-4)
    assert np.max(np.linalg.norm(root, axis=0)) == pytest.approx(1.0)


def test_the_fft_image_uses_the_given_colours_and_inverts():
    root = ((0.6, 0.3, 0.1), (0.3, 0.5, 0.2), (0.1, 0.2, 0.4))
    param = make_param("fft", 16, 16, 3, root)
    assert isinstance(param, FFTParam) and np.allclose(param.correlation, root)
    assert np.allclose(make_param("fft", 16, 16, 3).correlation, COLOR_CORRELATION)
    start = param.init(2, np.random.default_rng(1)) * 50
    images = param.to_image(tf.constant(start)).numpy()
    again = param.to_image(tf.constant(param.from_image(images))).numpy()
    assert again == pytest.approx(images, abs=2e-3)


def test_the_magnitude_constrained_images_have_the_photos_slope_whatever_their_phase():
    """MaCo: the photos' Fourier magnitude is fixed, so any phase gives a photo's slope (power law fields here)."""
    from test_naturalness import power_law_field

    from reportgen.methods.naturalness import median_slope, spectral_slope

    rng = np.random.default_rng(2)
    photos = np.stack([power_law_field(3.0, 64, rng) for _ in range(20)])[..., None].repeat(3, -1) * 0.5 + 0.25
    param = make_param("maco", 64, 64, 3, profile=fourier_profile(photos))
    for seed in range(2):
        images = param.to_image(tf.constant(param.init(6, np.random.default_rng(seed)))).numpy()
        assert median_slope(spectral_slope(images)) == pytest.approx(median_slope(spectral_slope(photos)), abs=0.3)
        assert images.mean() == pytest.approx(photos.mean(), abs=0.05)
    with pytest.raises(ValueError):
        make_param("maco", 64, 64, 3)


def test_a_fixed_spread_keeps_any_spectrum_at_a_photos_contrast_without_clipping():
    """squash "spread": however far gradient ascent drives the spectrum, the image keeps a photo's pixel spread,
    so it cannot buy activation with contrast (every pixel clipped, as the plain clip gives)."""
    from reportgen.methods.featvis.params import PHOTO_SPREAD
    from reportgen.methods.naturalness import saturated_share

    rng = np.random.default_rng(3)
    for scale in (1.0, 100.0):
        start = tf.constant(make_param("fft", 48, 48, 3, decay=1.5).init(4, rng) * scale)
        spread = make_param("fft", 48, 48, 3, decay=1.5, squash="spread").to_image(start).numpy()
        clipped = make_param("fft", 48, 48, 3, decay=1.5).to_image(start).numpy()
        assert spread.std(axis=(1, 2, 3)) == pytest.approx(PHOTO_SPREAD, abs=0.05)
        assert saturated_share(spread).max() < 0.1
    assert saturated_share(clipped).min() > 0.5  # the scale-100 start: the plain clip saturates
    with pytest.raises(ValueError):
        make_param("fft", 8, 8, 3, squash="nonsense")
