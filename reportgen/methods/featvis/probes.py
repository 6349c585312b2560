"""Probes: from a batch of images to the activations an objective reads.

A layer probe runs the model up to the target layer's input, then the target
layer itself in two halves: its linear part (with the BatchNormalization that
follows a conv in modern blocks) and its activation, so the render
can optimise the pre-activation for the first (warm-up) steps and for any map
that is still zero everywhere: such a ReLU unit has zero gradient and would
never start (Lucid's redirected ReLU has the same purpose). While optimising,
the activation also keeps a little of its negative side (`leak`), so positions
that are off still pull the image toward turning them on: a first-layer filter
then tiles its pattern over the whole canvas instead of settling where it
first fired. The proof numbers are always measured on the plain activation. The user's model is only
read, never changed. Where every layer up to the target takes any input size
(a fully convolutional trunk), the probe does too, so large colour models are
optimised on a small canvas instead of the full input.

A filter gallery needs one map per batch slot, so a probe given `channels`
(one unit per slot) computes only that map: a plain Conv2D with each slot's
own kernel (one small matmul per slot), any other layer in full and then the
slot's channel picked. (A grouped convolution would do the same, but its input
gradient exists on CPU only where TensorFlow uses oneDNN, which it does not on
CPUs without AVX-512.) The activation, the leak and the gradient then touch one map per
slot, not C.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from reportgen.methods.featvis.objectives import LOGITS, Units
from reportgen.model import INPUT, Network, Node
from reportgen.model.surgery import per_channel_affine, with_activation

PLAIN, OPTIMISE, WARM_UP = 0, 1, 2


@dataclass
class Probe:
    """`fn(images, phase)` -> {name: activations}; `any_size` says whether images may differ from
    `input_shape`. `phase` (an int tensor) is PLAIN for the activation the proof numbers use,
    OPTIMISE for the leaky activation (and the pre-activation of a map that is zero everywhere),
    WARM_UP for the pre-activation everywhere."""

    fn: Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]
    input_shape: tuple[int, int, int]
    any_size: bool


@dataclass(frozen=True)
class LayerPath:
    """What a layer probe runs: the model up to the layer's input, the layer's linear part, the per-channel
    affine of a BatchNormalization after it (None without one), and its activation. Building it copies
    weights, so probes of one layer with different `channels` share it."""

    layer: keras.layers.Layer
    upstream: Callable[..., tf.Tensor]
    linear: keras.layers.Layer
    affine: tuple[np.ndarray, np.ndarray] | None
    activation: Callable[[tf.Tensor], tf.Tensor]
    input_shape: tuple[int, int, int]
    any_size: bool


def layer_path(model: keras.Model | Network, layer_name: str) -> LayerPath:
    """The path to a conv layer's units (read after its BatchNormalization and activation, as
    `model.units` defines them) or to a dense layer's. Where every layer up to it takes any input size,
    the path does too, so large colour models are optimised on a small canvas."""
    network = Network.of(model)
    node, affine, activation = _target(network, layer_name)
    source = node.inputs[0]
    any_size = network.any_size_graph.available(node.path)
    graph = network.any_size_graph if any_size else network.graph
    if source == INPUT and network.input_range.is_unit:
        upstream = lambda x, training=False: x  # noqa: E731
    else:
        upstream = graph.model_of(graph.image if source == INPUT else graph[source].tensor)
    own = getattr(node.layer, "activation", None)
    linear = node.layer if own is None or own is keras.activations.linear else with_activation(node.layer, "linear")
    return LayerPath(node.layer, upstream, linear, affine, activation, network.image_shape, any_size)


def _target(network: Network, name: str) -> tuple[Node, tuple[np.ndarray, np.ndarray] | None, Callable]:
    """The node a probe computes, the BatchNormalization affine after it, and the activation after that."""
    unit = next((u for u in network.units if u.path == name), None)
    if unit is None:
        node = network.graph[name]
        return node, None, getattr(node.layer, "activation", None) or keras.activations.linear
    affine = per_channel_affine(unit.pre.layer) if unit.pre is not unit.conv else None
    return unit.conv, affine, unit.activation


def layer_probe(model: keras.Model | Network, layer_name: str, leak: float = 0.0, channels: Units | None = None,
                path: LayerPath | None = None) -> Probe:
    """Activations of one layer (conv or dense); `leak` is the share of the pre-activation's
    negative side that OPTIMISE keeps. With `channels` (one unit per slot, e.g. a tf.Variable the
    render fills) the layer's output has a single channel: slot b's map of unit channels[b].
    `path` reuses a `layer_path` already built for this layer."""
    path = path or layer_path(model, layer_name)
    layer, upstream, linear, activation = path.layer, path.upstream, path.linear, path.activation
    per_slot = channels is not None and _is_plain_conv(layer) and not isinstance(activation, keras.layers.PReLU)

    def fn(images: tf.Tensor, phase: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = upstream(images, training=False)  # training=False: augmentation layers stay off
        if per_slot:
            pre = _affine(_own_kernel_conv(layer, inputs, channels), path.affine, channels)
            post = activation(pre)
        else:
            pre = _affine(linear(inputs), path.affine)
            post = activation(pre)
            if channels is not None:
                pre, post = _own_channel(pre, channels), _own_channel(post, channels)
        silent = tf.reduce_max(post, axis=list(range(1, len(post.shape) - 1)), keepdims=True) <= 0
        # How much of (pre - post) to add back, per map: all of it while warming up or for a silent
        # map, `leak` of it while optimising, none for the proof numbers.
        share = tf.where((phase == WARM_UP) | ((phase == OPTIMISE) & silent), 1.0,
                         tf.where(phase == OPTIMISE, leak, 0.0))
        return {layer_name: post + share * (pre - post)}

    return Probe(fn, path.input_shape, path.any_size)


def _affine(values: tf.Tensor, affine: tuple[np.ndarray, np.ndarray] | None, channels: Units | None = None
            ) -> tf.Tensor:
    """The BatchNormalization after a conv, at inference: per channel, or per slot's own channel."""
    if affine is None:
        return values
    scale, shift = (tf.constant(a) for a in affine)
    if channels is not None:
        units = tf.convert_to_tensor(channels)
        scale, shift = (tf.reshape(tf.gather(a, units), [-1, 1, 1, 1]) for a in (scale, shift))
    return values * scale + shift


def _is_plain_conv(layer: keras.layers.Layer) -> bool:
    return (isinstance(layer, keras.layers.Conv2D) and layer.groups == 1 and layer.data_format == "channels_last"
            and layer.padding in ("same", "valid"))


def _own_kernel_conv(layer: keras.layers.Conv2D, inputs: tf.Tensor, channels: Units) -> tf.Tensor:
    """(B, H, W, Cin) -> (B, H', W', 1): slot b convolved with kernel channels[b] only."""
    units = tf.convert_to_tensor(channels)
    kernels = tf.gather(layer.kernel, units, axis=3)  # (kh, kw, Cin, B): slot b uses kernel channels[b]
    out = _matmul_conv(layer, inputs, kernels)
    return out + tf.reshape(tf.gather(layer.bias, units), [-1, 1, 1, 1]) if layer.use_bias else out


def _matmul_conv(layer: keras.layers.Conv2D, inputs: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """Each slot's pixels times its own kernel's kh*kw taps (one batched matmul: per slot (H*W, Cin)
    by (Cin, kh*kw)), then a fixed one-hot conv that shifts each tap's map into place and sums them."""
    rows, cols = layer.kernel_size
    depth = inputs.shape[-1]
    shape = tf.shape(inputs)
    taps = tf.transpose(tf.reshape(kernels, [rows * cols, depth, -1]), [2, 1, 0])  # (B, Cin, kh*kw)
    maps = tf.matmul(tf.reshape(inputs, [shape[0], -1, depth]), taps)
    maps = tf.reshape(maps, [shape[0], shape[1], shape[2], rows * cols])
    place = tf.constant(np.eye(rows * cols, dtype=np.float32).reshape(rows, cols, rows * cols, 1))
    return tf.nn.conv2d(maps, place, layer.strides, layer.padding.upper(), dilations=layer.dilation_rate)


def _own_channel(values: tf.Tensor, channels: Units) -> tf.Tensor:
    """(B, ..., C) -> (B, ..., 1): channel channels[b] of slot b (a one-hot product: no transpose)."""
    one_hot = tf.one_hot(tf.convert_to_tensor(channels), values.shape[-1], dtype=values.dtype)
    one_hot = tf.reshape(one_hot, [-1] + [1] * (len(values.shape) - 2) + [values.shape[-1]])
    return tf.reduce_sum(values * one_hot, axis=-1, keepdims=True)


def logit_probe(model: keras.Model | Network) -> Probe:
    """The model's pre-softmax (or pre-sigmoid) output, on a copy with a linear last activation."""
    network = Network.of(model)
    logits = network.logits_model()
    return Probe(lambda images, phase: {LOGITS: logits(images, training=False)}, network.image_shape, False)
