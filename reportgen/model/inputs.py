"""The range of pixel values a model was trained on, and the map from reportgen's [0, 1] images to it.

Everything in reportgen works on RGB (or grey) images in [0, 1]. Many models expect
something else: keras.applications models and the keras.io tutorials put a
`Rescaling(1/255)` or a `Normalization` inside the model and are trained on
[0, 255]; others were trained on [-1, 1]. Fed [0, 1], such a model silently
gives wrong predictions (Lucid: "Incorrect image_value_range is the most common
cause of feature visualization bugs"). The range is read from the layers at
the model's start, nested bases included, or given by the user.

Transfer-learning code often preprocesses outside the model instead, with
`keras.applications.<family>.preprocess_input`: the modes "caffe" (BGR, ImageNet
means subtracted from [0, 255]), "tf" ([-1, 1]) and "torch" (ImageNet means and
deviations on [0, 1]), or its own per-channel mean and deviation. An `InputRange`
holds all of these as one map, applied inside every graph reportgen derives, so
the pictures themselves stay RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from reportgen.inputs.config import preprocess_error, preprocess_problem
from reportgen.model.graph import INPUT, ModelGraph
from reportgen.util.errors import ReportgenError

# Layers that may stand between the input and the first Rescaling/Normalization without changing pixel values
# at inference: augmentation (identity then), resizing and cropping.
AUGMENTATION_NAMES = ("AugMix", "RandAugment", "CutMix", "MixUp")
VALUE_PRESERVING = (keras.layers.Resizing, keras.layers.CenterCrop, keras.layers.Identity,
                    keras.layers.ZeroPadding2D, keras.layers.Cropping2D)
COMMON_TOPS = (1.0, 255.0)  # a detected top within 5% of one of these is taken to be it


@dataclass(frozen=True)
class InputRange:
    """What the model takes for reportgen's [0, 1] RGB images, and how that was decided.

    Each pixel value v becomes `v * (high - low) + low`, so black is `low` and white `high`; then, for
    `channels="bgr"`, the channel order is reversed; then each channel c becomes `(x - mean[c]) / std[c]`
    (one `mean` or `std` value applies to every channel). A plain range has mean 0 and std 1.

    Attributes:
        low: The value of black, before the mean is subtracted.
        high: The value of white, before the mean is subtracted.
        source: How this was decided, said on the page, e.g. "detected: Rescaling(scale=0.00392, offset=0) at
            layer 'rescaling'".
        channels: "rgb", or "bgr" for models trained on images in Caffe's order.
        mean: Subtracted per channel, in the model's channel order (one value: from every channel).
        std: Divides each channel after the mean is subtracted, in the model's channel order.
        mode: None for a plain range; "caffe", "tf" or "torch" for keras.applications' `preprocess_input`
            modes; "custom" for a per-channel mean and deviation given by the user.
    """

    low: float
    high: float
    source: str
    channels: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    mode: str | None = None

    @property
    def is_unit(self) -> bool:
        """Whether the model takes reportgen's images as they are."""
        return (self.low, self.high) == (0.0, 1.0) and not self.is_per_channel

    @property
    def is_per_channel(self) -> bool:
        """Whether the map reorders channels or treats them differently (more than a scalar range)."""
        return self.channels != "rgb" or any(self.mean) or any(s != 1.0 for s in self.std)

    def to_model(self, images: Any) -> Any:
        """[0, 1] RGB images mapped to what the model takes.

        Args:
            images: (..., C) numpy array, TensorFlow tensor or symbolic Keras tensor, in [0, 1].

        Returns:
            The same kind of array or tensor, as `preprocess_input` (or the model's own range) gives it.

        Raises:
            ReportgenError: The means or deviations are given for another number of channels than `images` has.
        """
        if self.is_unit:
            return images
        x = images if (self.low, self.high) == (0.0, 1.0) else images * (self.high - self.low) + self.low
        if not self.is_per_channel:
            return x
        self._check_channels(images.shape[-1])
        numpy = isinstance(x, np.ndarray)
        if self.channels == "bgr":
            x = x[..., ::-1] if numpy else keras.ops.flip(x, axis=-1)
        dtype = x.dtype if numpy else keras.backend.standardize_dtype(x.dtype)
        if any(self.mean):
            x = x - np.asarray(self.mean, dtype)
        if any(s != 1.0 for s in self.std):
            x = x / np.asarray(self.std, dtype)
        return x

    def _check_channels(self, count: int | None) -> None:
        for name, values in (("means", self.mean), ("deviations", self.std)):
            if len(values) > 1 and count is not None and len(values) != count:
                given = f'preprocess "{self.mode}"' if self.mode in KERAS_MODES else "preprocess"
                raise ReportgenError(f"{given} has {len(values)} channel {name}, but the model takes images with "
                                     f"{count} channel{'s' if count != 1 else ''}: give one value per channel, "
                                     "or one for all (e.g. preprocess = { mean = 0.5, std = 0.25 })")

    def text(self) -> str:
        """The map in words, e.g. "[0, 255] in BGR order, minus the means [103.939, 116.779, 123.68] per channel"."""
        words = f"[{self.low:g}, {self.high:g}]"
        if self.channels == "bgr":
            words += " in BGR order"
        centred, scaled = any(self.mean), any(s != 1.0 for s in self.std)
        if centred and scaled:
            words += f", minus {_values('mean', self.mean)} and divided by {_values('deviation', self.std)}"
        elif centred:
            words += f", minus {_values('mean', self.mean)}"
        elif scaled:
            words += f", divided by {_values('deviation', self.std)}"
        return words + (" per channel" if len(self.mean) > 1 or len(self.std) > 1 else "")

    def preprocess_record(self) -> dict[str, Any] | None:
        """The preprocessing as report.json stores it (None for a plain range)."""
        if self.mode is None:
            return None
        return {"mode": self.mode, "low": self.low, "high": self.high, "channels": self.channels,
                "mean": list(self.mean), "std": list(self.std), "text": self.text()}


def _values(name: str, values: tuple[float, ...]) -> str:
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"the {name}s [{', '.join(f'{v:g}' for v in values)}]"


# keras.applications.imagenet_utils.preprocess_input(x * 255, mode=...) for x in [0, 1]
KERAS_MODES: dict[str, dict[str, Any]] = {
    "caffe": {"low": 0.0, "high": 255.0, "channels": "bgr", "mean": (103.939, 116.779, 123.68)},
    "tf": {"low": -1.0, "high": 1.0},
    "torch": {"low": 0.0, "high": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}
GIVEN = "given in the config or on the command line"


def given_input(input_range: tuple[float, float] | list[float] | None,
                preprocess: str | Mapping[str, Any] | None) -> InputRange | None:
    """The map the user gave (as `input_range` or `preprocess`), or None to detect it from the model.

    Raises:
        ReportgenError: Both are given.
    """
    if input_range is not None and preprocess is not None:
        raise ReportgenError("give either input_range or preprocess, not both: preprocess includes the range")
    if preprocess is not None:
        return preprocessing(preprocess)
    return None if input_range is None else given_range(input_range)


def preprocessing(setting: str | Mapping[str, Any]) -> InputRange:
    """The map of a `preprocess` setting (checked as the config checks it).

    Args:
        setting: "caffe", "tf" or "torch" (keras.applications' `preprocess_input` modes), or a mapping with any
            of `scale` (the value of white before the mean is subtracted, default 1), `mean` and `std` (one
            number, or one per channel in the model's channel order) and `channels` ("rgb" or "bgr").

    Raises:
        ReportgenError: An unknown mode or a malformed mapping.
    """
    if isinstance(setting, str):
        if setting not in KERAS_MODES:
            raise ReportgenError(preprocess_error(setting))
        return InputRange(**KERAS_MODES[setting], mode=setting,
                          source=f'keras.applications\' preprocess_input mode "{setting}", {GIVEN}')
    if not isinstance(setting, Mapping) or preprocess_problem(dict(setting)):
        raise ReportgenError(preprocess_error(setting))
    return InputRange(0.0, float(setting.get("scale", 1.0)), f"preprocess {GIVEN}",
                      channels=setting.get("channels", "rgb"), mean=_floats(setting.get("mean", 0.0)),
                      std=_floats(setting.get("std", 1.0)), mode="custom")


def _floats(value: float | list[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else (float(value),)


def is_augmentation(layer: keras.Operation) -> bool:
    """Random augmentation layers, which are the identity at inference."""
    name = type(layer).__name__
    return name.startswith("Random") or name in AUGMENTATION_NAMES


def given_range(values: tuple[float, float] | list[float]) -> InputRange:
    low, high = (float(v) for v in values)
    return InputRange(low, high, GIVEN)


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
