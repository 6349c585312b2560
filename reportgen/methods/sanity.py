"""The model-randomisation sanity check (Adebayo et al. 2018): does a map depend on what the model learned?

A copy of the model (`Network.randomized`) has its top layers re-initialised (cascading randomisation
from the output down to the last conv layer). A method whose maps on the
trained model and on that copy still rank the pixels alike shows the image,
not the model, and fails.
"""

from __future__ import annotations

import keras
import numpy as np
from scipy.stats import rankdata

from reportgen.model import INPUT, Network

# A mean Spearman correlation at or above this fails: 0.7 is the usual line of a "strong" monotone
# relation (independent maps score 0, a map that ignores the model 1). The paper gives no number; the
# control calibrates it: on mnist-3conv guided backprop, which the paper shows failing, keeps 0.76 with
# the top three layers re-initialised, the plain gradient, which it shows passing, 0.51.
SANITY_THRESHOLD = 0.7


def cascade_layers(model: keras.Model | Network, first: str | None = None) -> list[str]:
    """Paths of the layers with weights from `first` (default: the first layer with weights) to the
    output, the output first: the layers Adebayo's cascading randomisation re-initialises (see
    `Network.randomized`). Layers inside a nested base count one by one."""
    graph = Network.of(model).graph
    weighted = [node.path for node in graph.nodes.values()
                if node.path != INPUT and ":" not in node.path and getattr(node.layer, "weights", None)]
    if first is not None and first not in weighted:
        raise ValueError(f"no layer with weights at {first!r}")
    start = weighted.index(first) if first is not None else 0
    return weighted[start:][::-1]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) Spearman correlation of each pair of maps a[i], b[i] (ties get average ranks).
    A constant map has no ranking, so its correlation is taken as 0, not undefined."""
    a = rankdata(np.asarray(a, np.float64).reshape(len(a), -1), axis=1)
    b = rankdata(np.asarray(b, np.float64).reshape(len(b), -1), axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(norm > 0, (a * b).sum(axis=1) / np.where(norm > 0, norm, 1.0), 0.0)


def passes(correlations: np.ndarray, threshold: float = SANITY_THRESHOLD) -> bool:
    """Whether a method's maps changed enough when the model was randomised (mean correlation below threshold)."""
    return bool(np.mean(correlations) < threshold)
