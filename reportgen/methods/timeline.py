"""Learning over time: a model's snapshots, one at a time, and the measures of how its pictures change.

The timeline loads each snapshot's weights into the model, copies the model with them (so no derived model
made from other weights is reused) and calls the same engines as the report; the weights the model had are put
back afterwards, whatever happens. The measures here are plain numpy on what those engines
return.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from reportgen.util.errors import ReportgenError

# A picture has stopped changing when its Pearson correlation (over pixels) with the next snapshot's picture is at
# least this, from that snapshot on: 0.9 keeps the same strokes in the same places with small shifts in contrast.
STABLE_CORRELATION = 0.9


@contextlib.contextmanager
def snapshot_weights(model: keras.Model, path: Path) -> Iterator[tuple[keras.Model, bool]]:
    """The model with the weights of the snapshot at `path` (.weights.h5, or a ModelCheckpoint .keras) inside
    the block, and whether they are the model's own (the last snapshot usually is); its own weights come back
    when the block ends.

    Raises:
        ReportgenError: The snapshot does not fit the model (another architecture, a corrupt file).
    """
    own = [np.array(w) for w in model.get_weights()]
    try:
        try:
            model.load_weights(str(path))
        except Exception as exc:
            raise ReportgenError(f"snapshot {path.name} does not fit the model ({' '.join(str(exc).split())[:200]})"
                                 ) from None
        same = all(np.array_equal(a, b) for a, b in zip(own, model.get_weights()))
        yield model, same
    finally:
        model.set_weights(own)


def image_correlations(images: np.ndarray) -> np.ndarray:
    """The Pearson correlation over pixels of each unit's image with its image at the next snapshot.

    Args:
        images: (E, N, H, W, C): N units' images at E snapshots.

    Returns:
        (E - 1, N): row k compares snapshot k with k + 1. Two flat images count as 1 when they are equal and 0
        when not (a correlation is undefined without variance).
    """
    flat = np.asarray(images, np.float64).reshape(*images.shape[:2], -1)
    a, b = flat[:-1], flat[1:]
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    norms = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    flat_pair = norms < 1e-12
    same = np.abs(flat[:-1] - flat[1:]).max(axis=-1) < 1e-6
    out = np.divide((a * b).sum(-1), norms, out=np.zeros(norms.shape), where=~flat_pair)
    out[flat_pair] = same[flat_pair].astype(float)
    return out


def settled_epochs(epochs: Sequence[int], correlations: np.ndarray,
                   threshold: float = STABLE_CORRELATION) -> list[int | None]:
    """Per unit, the snapshot epoch after which its picture stops changing: the earliest epoch from which every
    next snapshot's picture correlates at least `threshold` with the one before; None when the last step still
    changes it (or there is one snapshot only).

    Args:
        epochs: the E snapshot epochs, ascending.
        correlations: (E - 1, N) from `image_correlations`.
        threshold: the least correlation that counts as unchanged.
    """
    settled = []
    for column in np.asarray(correlations).T:
        stable = column >= threshold
        if not len(stable) or not stable[-1]:
            settled.append(None)
            continue
        k = len(stable)
        while k > 0 and stable[k - 1]:
            k -= 1
        settled.append(int(epochs[k]))
    return settled


def first_epochs(epochs: Sequence[int], flags: np.ndarray) -> list[int | None]:
    """Per unit, the first snapshot epoch at which `flags` (E, N) is true, or None."""
    flags = np.asarray(flags, bool)
    return [int(epochs[int(np.argmax(column))]) if column.any() else None for column in flags.T]
