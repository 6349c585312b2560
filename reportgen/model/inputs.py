"""The range of pixel values a model was trained on, and the map from reportgen's [0, 1] images to it.

Everything in reportgen works on images in [0, 1]. Many models expect
something else: keras.applications models and the keras.io tutorials put a
`Rescaling(1/255)` or a `Normalization` inside the model and are trained on
[0, 255]; others were trained on [-1, 1]. Fed [0, 1], such a model silently
gives wrong predictions (Lucid: "Incorrect image_value_range is the most common
cause of feature visualization bugs"). The range is read from the layers at
the model's start, nested bases included, or given by the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from .graph import INPUT, ModelGraph

# Layers that may stand between the input and the first Rescaling/Normalization without changing pixel values
# at inference: augmentation (identity then), resizing and cropping.
AUGMENTATION_NAMES = ("AugMix", "RandAugment", "CutMix", "MixUp")
VALUE_PRESERVING = (keras.layers.Resizing, keras.layers.CenterCrop, keras.layers.Identity,
                    keras.layers.ZeroPadding2D, keras.layers.Cropping2D)
COMMON_TOPS = (1.0, 255.0)  # a detected top within 5% of one of these is taken to be it


@dataclass(frozen=True)
class InputRange:
    """Pixel values from `low` (black) to `high` (white), and how that was decided."""

    low: float
    high: float
    source: str  # said on the page, e.g. "detected: Rescaling(scale=0.00392, offset=0) at layer 'rescaling'"

    @property
    def is_unit(self) -> bool:
        return (self.low, self.high) == (0.0, 1.0)

    def to_model(self, images: Any) -> Any:
        """[0, 1] images (numpy or a tensor) mapped to the model's range."""
        return images if self.is_unit else images * (self.high - self.low) + self.low

    def text(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


def is_augmentation(layer: keras.Operation) -> bool:
    """Random augmentation layers, which are the identity at inference."""
    name = type(layer).__name__
    return name.startswith("Random") or name in AUGMENTATION_NAMES


def given_range(values: tuple[float, float] | list[float]) -> InputRange:
    low, high = (float(v) for v in values)
    return InputRange(low, high, "given in the config or on the command line")


def detect_input_range(graph: ModelGraph) -> InputRange:
    """The range the model's first Rescaling or Normalization layer expects, else [0, 1].

    The walk follows the single chain of layers from the input, through augmentation, resizing and into
    nested models, and stops at the first layer that computes anything else.
    """
    path = INPUT
    while True:
        consumers = graph.consumers(path)
        if len(consumers) != 1:
            break
        node = consumers[0]
        layer = node.layer
        if isinstance(layer, keras.layers.Rescaling):
            return _rescaling_range(layer, node.path)
        if isinstance(layer, keras.layers.Normalization):
            return _normalization_range(layer, node.path)
        if not (is_augmentation(layer) or isinstance(layer, VALUE_PRESERVING)):
            break
        path = node.path
    return InputRange(0.0, 1.0, "default: no Rescaling or Normalization layer at the model's start")


def _rescaling_range(layer: keras.layers.Rescaling, path: str) -> InputRange:
    """[0, top] such that scale * top + offset = 1: Rescaling(1/255) -> 255, Rescaling(1/127.5, -1) -> 255."""
    scale = float(np.mean(layer.scale))
    offset = float(np.mean(layer.offset))
    top = (1.0 - offset) / scale if scale > 0 else 1.0
    top = _snap(top)
    return InputRange(0.0, top, f"detected: Rescaling(scale={scale:.4g}, offset={offset:g}) at layer {path!r}")


def _normalization_range(layer: keras.layers.Normalization, path: str) -> InputRange:
    """A Normalization adapted on [0, 255] images has means of tens to hundreds; on [0, 1], below 1."""
    mean = float(np.max(np.asarray(layer.mean)))
    top = 255.0 if mean > 1.5 else 1.0
    return InputRange(0.0, top, f"detected: Normalization with mean up to {mean:.3g} at layer {path!r}")


def _snap(top: float) -> float:
    for common in COMMON_TOPS:
        if abs(top - common) <= 0.05 * common:
            return common
    return top
