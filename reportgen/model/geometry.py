"""Which input pixels a unit sees: receptive fields from the layer configs, through branches too.

The field of a node comes from its inputs' fields: a conv or pool widens it
by its kernel and multiplies the jump by its stride, padding shifts it,
pointwise layers keep it, and a merge (an Add of a residual block, a
Concatenate) covers the union of its spatial inputs. An input broadcast over
space (a squeeze-and-excitation gate of shape 1x1) carries no position and is
left out, so a unit's field is where its *pattern* comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from reportgen.model.graph import INPUT, ModelGraph, Node
from reportgen.model.inputs import VALUE_PRESERVING, is_augmentation

POINTWISE_TYPES = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU,
    keras.layers.Softmax, keras.layers.BatchNormalization, keras.layers.LayerNormalization,
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.Rescaling, keras.layers.Normalization, keras.layers.Identity,
)
WINDOW_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
MERGE_TYPES = (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average,
               keras.layers.Maximum, keras.layers.Minimum, keras.layers.Concatenate)


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a unit of a layer can see, per axis (rows, cols).

    The unit at output index o covers input pixels [start + o * jump, start + o * jump + size) on that
    axis; parts of the box may lie outside the image (padding).
    """

    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1), half-open, unclipped."""
        y0 = self.start[0] + y * self.jump[0]
        x0 = self.start[1] + x * self.jump[1]
        return y0, y0 + self.size[0], x0, x0 + self.size[1]

    @property
    def crop_size(self) -> tuple[int, int]:
        """The size of `crop`'s boxes: the field's, except on an axis where the field is larger than the image
        (deep layers of large models at small inputs), where it is the image's."""
        return min(self.size[0], self.input_size[0]), min(self.size[1], self.input_size[1])

    def _spans(self, positions: np.ndarray, capped: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Input rows (N, size_y) and cols (N, size_x) under each of (N, 2) unit positions; when `capped`, an
        axis the field overhangs spans the whole image instead (see `crop_size`)."""
        positions = np.asarray(positions).reshape(-1, 2)
        spans = []
        for axis in range(2):
            if capped and self.crop_size[axis] < self.size[axis]:
                spans.append(np.broadcast_to(np.arange(self.crop_size[axis]), (len(positions), self.crop_size[axis])))
            else:
                first = self.start[axis] + positions[:, axis] * self.jump[axis]
                spans.append(first[:, None] + np.arange(self.size[axis]))
        return spans[0], spans[1]

    def masks(self, positions: np.ndarray) -> np.ndarray:
        """(N, H, W) boolean: True on the input pixels each unit can see."""
        rows, cols = self._spans(positions)
        in_rows = (np.arange(self.input_size[0]) >= rows[:, :1]) & (np.arange(self.input_size[0]) <= rows[:, -1:])
        in_cols = (np.arange(self.input_size[1]) >= cols[:, :1]) & (np.arange(self.input_size[1]) <= cols[:, -1:])
        return in_rows[:, :, None] & in_cols[:, None, :]

    def mask(self, y: int, x: int) -> np.ndarray:
        """(H, W) boolean: True on the input pixels the unit at (y, x) can see."""
        return self.masks(np.array([[y, x]]))[0]

    def crop(self, images: np.ndarray, positions: np.ndarray, fill: float = 0.5,
             ids: np.ndarray | None = None, capped: bool = True) -> np.ndarray:
        """Crops around (N, 2) unit positions, (N, *crop_size, C), from images[ids[i]] (images[i] without
        `ids`); the part outside the image is `fill`. Only the crops are gathered, never a padded copy of the
        images. A field larger than the image is cropped to the whole image on that axis: EfficientNetB0's last
        conv layer sees 851 px of a 64 px input, and crops of that size were mostly fill (1.8 GB for 72).
        With `capped` False every crop is the whole field, (N, *size, C): crops of images of different sizes
        then line up pixel for pixel in the field's own coordinates."""
        rows, cols = self._spans(positions, capped=capped)
        ids = np.arange(len(rows)) if ids is None else np.asarray(ids)
        h, w = images.shape[1:3]
        out = images[ids[:, None, None], rows.clip(0, h - 1)[:, :, None], cols.clip(0, w - 1)[:, None, :]]
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        out[~inside] = fill
        return out


@dataclass(frozen=True)
class _Field:
    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]
    extent: tuple[int, int]  # the map's height and width


def receptive_field(graph: ModelGraph, path: str, input_size: tuple[int, int] | None = None) -> ReceptiveField | None:
    """The receptive field of the units of node `path` for images of `input_size` (default: the model's).

    None when a node on the way has no exact pixel geometry (a Flatten, a Dense, a resize, a non-default data
    format), since then no box can be stated.
    """
    if input_size is None:
        input_size = tuple(graph.input.shape[1:3])  # type: ignore[assignment]
    if input_size is None or None in input_size:
        return None
    fields: dict[str, _Field | None] = {INPUT: _Field((1, 1), (0, 0), (1, 1), tuple(input_size))}  # type: ignore[arg-type]
    for node in _ancestors(graph, path):
        sources = [source for source in node.inputs if not _broadcast(graph, source, node)]
        fields[node.path] = _field(node, [fields.get(source) for source in sources])
    field = fields.get(path)
    if field is None:
        return None
    return ReceptiveField(field.jump, field.start, field.size, tuple(input_size), field.extent)  # type: ignore[arg-type]


def _ancestors(graph: ModelGraph, path: str) -> list[Node]:
    """`path` and every node it depends on, in call order."""
    needed, stack = set(), [path]
    while stack:
        current = stack.pop()
        if current in needed or current == INPUT:
            continue
        needed.add(current)
        stack.extend(graph[current].inputs)
    return [node for node in graph.nodes.values() if node.path in needed]


def _broadcast(graph: ModelGraph, source: str, node: Node) -> bool:
    """An input of a merge that is 1x1 while the merge's output is larger: a gate broadcast over space."""
    if source == INPUT or not isinstance(node.layer, MERGE_TYPES) or len(node.shape) != 4:
        return False
    shape = graph[source].shape
    return len(shape) == 4 and tuple(shape[1:3]) == (1, 1) and tuple(node.shape[1:3]) != (1, 1)


def _field(node: Node, inputs: list[_Field | None]) -> _Field | None:
    layer = node.layer
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if isinstance(layer, MERGE_TYPES):
        return _union(inputs)
    if len(inputs) != 1 or inputs[0] is None:
        return None
    field = inputs[0]
    if isinstance(layer, POINTWISE_TYPES) or is_augmentation(layer) or isinstance(layer, keras.layers.Identity):
        return field
    if isinstance(layer, WINDOW_TYPES):
        return _windowed(field, *_window(layer))
    if isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
        return _padded(field, layer)
    if isinstance(layer, VALUE_PRESERVING):
        return None  # a resize or centre crop moves pixels in ways a box cannot follow
    return None


def _union(fields: list[_Field | None]) -> _Field | None:
    if not fields or any(f is None for f in fields):
        return None
    jumps = {f.jump for f in fields}
    if len(jumps) != 1:
        return None
    start = tuple(min(f.start[a] for f in fields) for a in range(2))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in range(2))
    return _Field(fields[0].jump, start, (end[0] - start[0], end[1] - start[1]), fields[0].extent)  # type: ignore[arg-type]


def _pair(value: int | tuple | list) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window(layer: keras.layers.Layer) -> tuple[tuple[int, int], tuple[int, int], str]:
    """Effective kernel size (dilation included), strides and padding of a conv or pool."""
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        kernel, strides, dilation = _pair(layer.pool_size), _pair(layer.strides or layer.pool_size), (1, 1)
    else:
        kernel, strides, dilation = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    return effective, strides, layer.padding  # type: ignore[return-value]


def _windowed(field: _Field, kernel: tuple[int, int], strides: tuple[int, int], padding: str) -> _Field:
    jump, start, size, extent = list(field.jump), list(field.start), list(field.size), list(field.extent)
    for a in range(2):
        if padding == "same":
            out = -(-extent[a] // strides[a])
            left = max((out - 1) * strides[a] + kernel[a] - extent[a], 0) // 2
        else:
            out = (extent[a] - kernel[a]) // strides[a] + 1
            left = 0
        start[a] -= left * jump[a]
        size[a] += (kernel[a] - 1) * jump[a]
        jump[a] *= strides[a]
        extent[a] = out
    return _Field(tuple(jump), tuple(start), tuple(size), tuple(extent))  # type: ignore[arg-type]


def _padded(field: _Field, layer: keras.layers.Layer) -> _Field:
    padding = isinstance(layer, keras.layers.ZeroPadding2D)
    amounts = layer.padding if padding else layer.cropping
    sign = 1 if padding else -1
    start, extent = list(field.start), list(field.extent)
    for a in range(2):
        before, after = _pair(amounts[a])
        start[a] -= sign * before * field.jump[a]
        extent[a] += sign * (before + after)
    return _Field(field.jump, tuple(start), field.size, tuple(extent))  # type: ignore[arg-type]


def crops_are_exact(graph: ModelGraph, path: str) -> bool:
    """True when a unit's value is computed exactly from its receptive-field crop alone: a single chain of
    pointwise layers and `valid` windows from the input (no padding anywhere, so the crop's borders are the
    image's own pixels and strides stay aligned)."""
    for node in _ancestors(graph, path):
        if len(node.inputs) != 1:
            return False
        layer = node.layer
        if not (isinstance(layer, POINTWISE_TYPES) or is_augmentation(layer)
                or (isinstance(layer, WINDOW_TYPES) and layer.padding == "valid")):
            return False
    return True
