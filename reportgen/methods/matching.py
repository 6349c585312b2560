"""Which filter of one model does the work of which filter of another: a one-to-one matching by correlation.

Li et al. 2015 ("Convergent Learning: Do different neural networks learn the same representations?") compare
two networks layer by layer: the Pearson correlation of every filter of A with every filter of B over the
activations of the same inputs at the same positions, then the one-to-one assignment that maximises the summed
correlation (the Hungarian method, scipy's linear_sum_assignment). A filter whose best match correlates highly
computes nearly the same feature in both; a low one has no counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

MATCHED_CORRELATION = 0.5  # a pair whose correlation reaches this counts as the same feature in both models
MATCH_IMAGES = 500  # test images whose activations (every position) the correlations are computed over


@dataclass
class Matching:
    """A one-to-one matching of A's filters to B's."""

    a: np.ndarray  # (K,) filter indices in A, ascending
    b: np.ndarray  # (K,) the filter of B each is matched to
    correlation: np.ndarray  # (K,) the pair's correlation
    threshold: float = MATCHED_CORRELATION

    @property
    def share_matched(self) -> float:
        """The share of pairs whose correlation reaches the threshold."""
        return float(np.mean(self.correlation >= self.threshold)) if len(self.correlation) else 0.0


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ca, Cb) Pearson correlations between the channels of two activation arrays of the same inputs.

    Args:
        a: (..., Ca) activations, every leading axis a sample (image and position).
        b: (..., Cb) the same samples' activations in the other model.

    Returns:
        The correlations; a channel that never varies (a dead filter) correlates 0 with everything.
    """
    x = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
    y = np.asarray(b, np.float64).reshape(-1, b.shape[-1])
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples against {len(y)}: the activations must be of the same inputs")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    sx, sy = np.sqrt((x * x).sum(axis=0)), np.sqrt((y * y).sum(axis=0))
    product = x.T @ y
    scale = np.outer(sx, sy)
    return np.divide(product, scale, out=np.zeros_like(product), where=scale > 1e-12)


def match_filters(a: np.ndarray, b: np.ndarray, threshold: float = MATCHED_CORRELATION) -> Matching:
    """The one-to-one matching of A's channels to B's with the largest summed correlation (Li et al. 2015).

    Args:
        a: (..., Ca) activations of A's layer.
        b: (..., Cb) activations of B's layer on the same inputs; with Ca != Cb, min(Ca, Cb) pairs are made.
        threshold: the correlation from which a pair counts as matched (`Matching.share_matched`).
    """
    corr = correlation_matrix(a, b)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return Matching(rows, cols, corr[rows, cols], threshold)
