"""Array-to-picture helpers: normalise, colour, resize and tile with numpy.

Every grid in the report is composed here as one array and saved as one PNG,
so a layer with 128 maps costs one file write, not 128 matplotlib axes.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import matplotlib
import numpy as np
from PIL import Image


def near_square(n: int) -> tuple[int, int]:
    """Rows and columns of the most nearly square grid that holds `n` tiles."""
    if n <= 0:
        return 0, 0
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    return rows, cols


def normalize_each(maps: np.ndarray, axis: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """Scale every map on its own to [0, 1]; a constant map becomes all zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=axis, keepdims=True)
    span = maps.max(axis=axis, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def colorize(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB float images of that shape + (3,)."""
    return matplotlib.colormaps[cmap](np.clip(values, 0, 1))[..., :3].astype(np.float32)


def as_rgb(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 1 or 3) images in [0, 1] as (..., H, W, 3)."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images


def resize_nearest(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of the two axes before the last (…, H, W, C).

    Small maps (7x7) are blown up into crisp blocks rather than blurred.
    """
    h, w = images.shape[-3], images.shape[-2]
    rows = (np.arange(height) * h // height).clip(0, h - 1)
    cols = (np.arange(width) * w // width).clip(0, w - 1)
    return images[..., rows, :, :][..., cols, :]


def tile_size(h: int, w: int, target: int = 48, largest: int = 96) -> tuple[int, int]:
    """Display size for an (h, w) map: small maps are enlarged by a whole factor
    up to about `target` pixels, large ones shrunk to at most `largest`."""
    if max(h, w) > largest:
        scale = largest / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    factor = max(1, target // max(h, w))
    return h * factor, w * factor


MAGNIFIED = 112  # pixels a small picture is shown at: 4x for 28 px


def magnified(h: int, w: int) -> tuple[int, int]:
    """Display size of an (h, w) picture on a page: small ones enlarged by a whole factor to about
    MAGNIFIED pixels (the page scales them nearest-neighbour), larger ones at their own size."""
    return tile_size(h, w, target=MAGNIFIED, largest=max(h, w, MAGNIFIED))


def tile_grid(
    tiles: np.ndarray,
    cols: int | None = None,
    pad: int = 2,
    background: float = 1.0,
) -> np.ndarray:
    """Lay (N, H, W, C) tiles out row-major in one (rows*H', cols*W', C) array."""
    tiles = np.asarray(tiles, dtype=np.float32)
    n, h, w, c = tiles.shape
    if cols is None:
        _, cols = near_square(n)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), background, np.float32)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = tiles[i]
    return grid


def maps_to_tiles(maps: np.ndarray, cmap: str = "viridis", size: tuple[int, int] | None = None,
                  scaled: bool = False) -> np.ndarray:
    """(N, H, W) activation maps -> (N, H', W', 3) coloured tiles, each normalised on its own (`scaled`:
    the maps are in [0, 1] already)."""
    tiles = colorize(maps if scaled else normalize_each(maps))
    if size is None:
        size = tile_size(maps.shape[-2], maps.shape[-1])
    return resize_nearest(tiles, *size)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] image to uint8, dropping a singleton channel axis."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """Write a float [0, 1] (H, W), (H, W, 1) or (H, W, 3) image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)  # optimize=True: 3% smaller, 10x slower


class PngWriter:
    """Writes PNGs (`save_png`) in the foreground, or with `background=True` on a thread of its own, so that
    encoding and creating the files overlap the model's work: a mnist-3conv report writes 2,244 PNGs, which
    took 2.3 s in the foreground. Pillow and the file system release the GIL while they work. Used as a
    context manager, it returns only once every file is written, and raises the first write that failed
    (unless the block itself failed), so nothing writes into a folder after its build gave it up."""

    def __init__(self, background: bool = False) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="png") if background else None
        self._pending: list[Future] = []

    def save(self, path: Path, image: np.ndarray) -> None:
        """Write `image` (float [0, 1]) to `path`; its pixels are copied now, so the caller may reuse it."""
        if self._pool is None:
            save_png(path, image)
        else:
            self._pending.append(self._pool.submit(save_png, path, np.array(image)))

    def wait(self) -> None:
        """Return once every file asked for is written; raise the first failure."""
        pending, self._pending = self._pending, []
        errors = [future.exception() for future in pending]
        failure = next((error for error in errors if error is not None), None)
        if failure is not None:
            raise failure

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.wait()
        except Exception:
            if kind is None:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend an (H, W) heatmap in [0, 1] over an (H, W, C) image in [0, 1]."""
    heat = resize_nearest(heat[..., None], *image.shape[:2])[..., 0] if heat.shape != image.shape[:2] else heat
    return (1 - alpha) * as_rgb(image) + alpha * colorize(heat, cmap)
