"""What the model's output means, and how it becomes one probability per class.

A classifier ends in a softmax, a single sigmoid unit, or no activation at all
(logits, trained `from_logits=True`). Every table in a report shows
probabilities in [0, 1] that sum to 1 over the classes, so each kind is turned
into that here; the class images optimise the pre-activation score (the logit)
in every case, from the graph `surgery.linear_output` makes.
"""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np

from reportgen.model.graph import ModelGraph

OutputKind = Literal["softmax", "sigmoid", "logits", "multi-sigmoid"]
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


def final_activation(layer: keras.Operation) -> str:
    """The name of the activation a layer ends in ("linear" when it has none)."""
    if type(layer).__name__ == "Softmax":  # the keras.layers.Softmax layer and the keras.ops.softmax op
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "linear") if activation is not None else "linear"


def output_kind(graph: ModelGraph) -> OutputKind:
    """softmax, sigmoid (one unit), multi-sigmoid (one sigmoid per class) or logits (anything else)."""
    node = graph[graph.output]
    activation = final_activation(node.layer)
    units = node.shape[-1]
    if activation == "softmax":
        return "softmax"
    if activation == "sigmoid":
        return "sigmoid" if units == 1 else "multi-sigmoid"
    return "logits"


def class_count(graph: ModelGraph) -> int:
    """Classes the output stands for: a single unit is a binary classifier."""
    return max(2, int(graph[graph.output].shape[-1]))


def to_probabilities(values: np.ndarray, kind: OutputKind, logits: np.ndarray | None = None) -> np.ndarray:
    """(N, classes) probabilities from the model's outputs `values`.

    A single unit (sigmoid or logit) becomes [1 - p, p]; multi-class logits are softmaxed; one sigmoid per
    class is softmaxed from its `logits` (the pre-sigmoid scores), which keeps their order and sums to 1.
    """
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    if kind == "softmax":
        return values
    if kind == "multi-sigmoid":
        return softmax(np.asarray(logits, np.float64))
    if values.shape[1] == 1:
        p = values[:, 0] if kind == "sigmoid" else 1.0 / (1.0 + np.exp(-values[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    return softmax(values)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
