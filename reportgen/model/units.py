"""Which outputs of a model are its units, and which layers the activation grids show.

A filter of a conv layer is one unit. In modern blocks the conv is linear and
followed by BatchNormalization and an activation (ResNet, MobileNet,
EfficientNet); the unit a user means is then the activated output, so a
`ConvUnit` names both the conv and the point where its units are read. The
galleries, dataset examples and feature visualization all read that point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from reportgen.model.graph import ModelGraph, Node
from reportgen.model.inputs import is_augmentation
from reportgen.model.surgery import plain_activation

CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D,
              keras.layers.Conv2DTranspose)
ACTIVATION_TYPES = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
                    keras.layers.PReLU)
POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
GLOBAL_POOL_TYPES = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
MERGE_TYPES = (keras.layers.Add, keras.layers.Concatenate)


@dataclass(frozen=True)
class ConvUnit:
    """A conv layer and where its units are read.

    `point` is the activated output (the conv itself, or the BatchNormalization and activation after it);
    `pre` is the same before the activation, and `activation` maps `pre` to `point`.
    """

    conv: Node
    pre: Node
    point: Node
    activation: Callable

    @property
    def path(self) -> str:
        """The conv's path: the name the report uses for the layer."""
        return self.conv.path

    @property
    def channels(self) -> int:
        return int(self.point.shape[-1])

    @property
    def read_at(self) -> str:
        """Where the units are read, in words, for the pages ("" when at the conv's own output)."""
        if self.point is self.conv:
            return ""
        after = [type(node.layer).__name__ for node in self.after_conv]
        return f"read after {' and '.join(after)} ({self.point.path})"

    @property
    def after_conv(self) -> list[Node]:
        """The BatchNormalization and activation nodes between the conv and the point, in order."""
        nodes = []
        if self.pre is not self.conv:
            nodes.append(self.pre)
        if self.point is not self.pre:
            nodes.append(self.point)
        return nodes


def conv_units(graph: ModelGraph) -> list[ConvUnit]:
    """Every conv-like layer of the model (nested ones included), in call order, each with its read point."""
    units = []
    for node in graph.nodes.values():
        if isinstance(node.layer, CONV_TYPES) and node.tensor is not None and len(node.shape) == 4:
            units.append(_unit(graph, node))
    return units


def _unit(graph: ModelGraph, conv: Node) -> ConvUnit:
    own = getattr(conv.layer, "activation", None)
    if own is not None and getattr(own, "__name__", "linear") != "linear":
        return ConvUnit(conv, conv, conv, plain_activation(own))
    pre = conv
    after = _only_consumer(graph, conv)
    if after is not None and isinstance(after.layer, keras.layers.BatchNormalization):
        pre, after = after, _only_consumer(graph, after)
    if after is not None and isinstance(after.layer, ACTIVATION_TYPES):
        return ConvUnit(conv, pre, after, plain_activation(after.layer))
    return ConvUnit(conv, pre, pre, keras.activations.linear)


def _only_consumer(graph: ModelGraph, node: Node) -> Node | None:
    consumers = graph.consumers(node.path)
    return consumers[0] if len(consumers) == 1 and consumers[0].tensor is not None else None


def grid_nodes(graph: ModelGraph, units: list[ConvUnit]) -> list[Node]:
    """The nodes the activation grids show, in call order: each conv unit's read point, pooling, residual adds
    and concatenations, global pooling and dense layers (augmentation is the identity at inference: skipped)."""
    points = {unit.point.path for unit in units}
    shown = []
    for node in graph.nodes.values():
        if node.tensor is None or is_augmentation(node.layer):
            continue
        spatial = len(node.shape) == 4
        if (node.path in points or (spatial and isinstance(node.layer, POOL_TYPES + MERGE_TYPES))
                or isinstance(node.layer, (*GLOBAL_POOL_TYPES, keras.layers.Dense))):
            shown.append(node)
    return shown


def conv_kernel(layer: keras.layers.Layer) -> np.ndarray:
    """A conv layer's weights as one (kh, kw, inputs, filters) kernel, whatever its kind: a depthwise conv's
    filter sees one input channel (inputs = 1), a separable conv's is its depthwise and pointwise kernels
    combined, and a transposed conv's axes are put in the same order."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = layer.depthwise_kernel.numpy()  # (kh, kw, cin, multiplier)
        pointwise = layer.pointwise_kernel.numpy()[0, 0]  # (cin * multiplier, filters)
        cin, multiplier = depthwise.shape[2:]
        return np.einsum("hwcm,cmf->hwcf", depthwise, pointwise.reshape(cin, multiplier, -1))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.numpy()  # (kh, kw, cin, multiplier): output channel c * multiplier + m
        return kernel.reshape(*kernel.shape[:2], 1, -1)
    kernel = layer.kernel.numpy()
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return np.swapaxes(kernel, 2, 3)  # stored as (kh, kw, filters, inputs)
    return kernel
