"""Resemblance: does a unit's neuron image look like the test images that excite that unit?

The neuron image (the input that maximises the central unit of a filter's map) is cropped to that
unit's receptive field and compared with the mean of the filter's top test crops, and with the mean
of as many random test images cropped at the same positions: a visualization that means something
resembles the first more than the second. Both comparisons are the cosine similarity of mean-centred
pixels, over the pixels inside the image in both pictures (a receptive field may hang over the border).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from reportgen.model import ReceptiveField


@dataclass(frozen=True)
class Resemblance:
    """A unit's neuron image against its top test crops and against random ones."""

    top: float | None  # cosine with the mean of the top crops; None when a picture is flat
    random: float | None  # cosine with the mean of random test images cropped at the same positions

    @property
    def beats_random(self) -> bool:
        return self.top is not None and (self.random is None or self.top > self.random)


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity of two same-shaped pictures after subtracting each one's mean, over the pixels
    finite in both (NaN marks a pixel outside the image); None when either is flat there."""
    both = np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return None
    a, b = a[both] - a[both].mean(), b[both] - b[both].mean()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm > 1e-12 else None


def map_centre(field: ReceptiveField) -> np.ndarray:
    """(1, 2) the (y, x) of the unit the neuron objective maximises: row H // 2, column W // 2 of the map."""
    return np.array([[field.output_size[0] // 2, field.output_size[1] // 2]])


def central_crops(field: ReceptiveField, images: np.ndarray, fill: float, capped: bool = True) -> np.ndarray:
    """Images (N, H, W, C) cropped to the receptive field of their map's central unit (see `map_centre`), the
    part outside an image `fill` (see ReceptiveField.crop for `capped`)."""
    return field.crop(images, np.repeat(map_centre(field), len(images), axis=0), fill=fill, capped=capped)


def random_test_ids(count: int, k: int, seed: int, layer: int, unit: int) -> np.ndarray:
    """`k` distinct test-image ids, from (seed, layer, unit) alone."""
    return np.random.default_rng([seed, layer, unit]).choice(count, size=min(k, count), replace=False)


def unit_resemblance(neuron_image: np.ndarray, neuron_field: ReceptiveField, x: np.ndarray,
                     data_field: ReceptiveField, top_ids: np.ndarray, positions: np.ndarray,
                     random_ids: np.ndarray) -> Resemblance:
    """The neuron image's resemblance to a unit's top crops and to random crops.

    Args:
        neuron_image: (H, W, C) the image maximising the central unit of the filter's map.
        neuron_field: the layer's receptive field on that image's canvas.
        x: (N, H', W', C) the test images.
        data_field: the layer's receptive field on the test images.
        top_ids: (k,) the filter's top test images; `positions` (k, 2) the (y, x) of their maximal unit.
        random_ids: test images cropped at the same positions, pairwise, for the baseline.

    Returns:
        The two cosines.
    """
    # Crops in the field's own coordinates: the neuron image's canvas may be smaller than the test images (a model
    # that takes any size is optimised at FeatVisSettings.max_size), and a deep layer's field larger than both.
    # Only the part of the field on the neuron image's canvas is compared: elsewhere its crop has no pixels.
    neuron_window, data_window = (_on_canvas(field, neuron_field) for field in (neuron_field, data_field))
    crop = central_crops(neuron_window, neuron_image[None].astype(np.float32), fill=np.nan, capped=False)[0]
    means = [_mean(data_window.crop(x.astype(np.float32, copy=False), positions[: len(ids)], fill=np.nan, ids=ids,
                                    capped=False)) for ids in (top_ids, random_ids)]
    return Resemblance(centred_cosine(crop, means[0]), centred_cosine(crop, means[1]))


def _on_canvas(field: ReceptiveField, neuron_field: ReceptiveField) -> ReceptiveField:
    """`field` narrowed to the rows and columns of the field that the neuron image's central unit sees on its
    canvas (at most the canvas, where the whole field of a deep layer can be over 800 px)."""
    first = [start + centre * jump for start, centre, jump in
             zip(neuron_field.start, map_centre(neuron_field)[0], neuron_field.jump)]
    low = [max(0, -f) for f in first]
    high = [min(size, canvas - f) for size, canvas, f in zip(neuron_field.size, neuron_field.input_size, first)]
    return replace(field, start=tuple(s + lo for s, lo in zip(field.start, low)),
                               size=tuple(max(1, hi - lo) for lo, hi in zip(low, high)))


def _mean(crops: np.ndarray) -> np.ndarray:
    """The mean crop over the crops that have each pixel inside their image (NaN where none has)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(crops, axis=0) / np.isfinite(crops).sum(axis=0)
