"""Probes: from a batch of images to the activations an objective reads.

A layer probe runs the model up to the target layer's input, then the target
layer itself in two halves, its linear part and its activation, so the render
can optimise the pre-activation for the first (warm-up) steps and for any map
that is still zero everywhere: such a ReLU unit has zero gradient and would
never start (Lucid's redirected ReLU has the same purpose). While optimising,
the activation also keeps a little of its negative side (`leak`), so positions
that are off still pull the image toward turning them on: a first-layer filter
then tiles its pattern over the whole canvas instead of settling where it
first fired. The proof numbers are always measured on the plain activation. The user's model is only
read, never changed. For a plain chain of layers the probe takes images of any
size, so large colour models are optimised on a canvas about the size of the
deepest receptive field instead of the full input.

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

from ..dataset_examples import layer_chain
from ..projections import chain_model, logit_model
from .objectives import LOGITS, Units

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
    """What a layer probe runs: the model up to the layer's input, the layer's linear part and its
    activation. Building it copies weights, so probes of one layer with different `channels` share it."""

    layer: keras.layers.Layer
    upstream: Callable[..., tf.Tensor]
    linear: keras.layers.Layer
    activation: Callable[[tf.Tensor], tf.Tensor]
    input_shape: tuple[int, int, int]
    any_size: bool


def layer_path(model: keras.Model, layer_name: str) -> LayerPath:
    layer = model.get_layer(layer_name)
    chain = layer_chain(model, layer_name)
    colours = model.input_shape[-1]
    if chain is not None and len(chain) == 1:
        upstream, any_size = (lambda x, training=False: x), True
    elif chain is not None:
        upstream, any_size = chain_model(chain[:-1], (None, None, colours), [chain[-2].name]), True
    else:
        upstream, any_size = keras.Model(model.input, layer.input), False
    activation = getattr(layer, "activation", None)
    if activation is None:  # nothing to warm up: the layer as it is
        linear, activation = layer, keras.activations.linear
    else:
        config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear"}
        linear = layer.__class__.from_config(config)
        linear.build(tuple(layer.input.shape))
        linear.set_weights(layer.get_weights())
    return LayerPath(layer, upstream, linear, activation, tuple(model.input_shape[1:]), any_size)


def layer_probe(model: keras.Model, layer_name: str, leak: float = 0.0, channels: Units | None = None,
                path: LayerPath | None = None) -> Probe:
    """Activations of one layer (conv or dense); `leak` is the share of the pre-activation's
    negative side that OPTIMISE keeps. With `channels` (one unit per slot, e.g. a tf.Variable the
    render fills) the layer's output has a single channel: slot b's map of unit channels[b].
    `path` reuses a `layer_path` already built for this layer."""
    path = path or layer_path(model, layer_name)
    layer, upstream, linear, activation = path.layer, path.upstream, path.linear, path.activation

    def fn(images: tf.Tensor, phase: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = upstream(images, training=False)  # training=False: augmentation layers stay off
        if channels is None:
            pre = linear(inputs)
        elif _is_plain_conv(layer):
            pre = _own_kernel_conv(layer, inputs, channels)
        else:
            pre = _own_channel(linear(inputs), channels)
        post = activation(pre)
        silent = tf.reduce_max(post, axis=list(range(1, len(post.shape) - 1)), keepdims=True) <= 0
        # How much of (pre - post) to add back, per map: all of it while warming up or for a silent
        # map, `leak` of it while optimising, none for the proof numbers.
        share = tf.where((phase == WARM_UP) | ((phase == OPTIMISE) & silent), 1.0,
                         tf.where(phase == OPTIMISE, leak, 0.0))
        return {layer_name: post + share * (pre - post)}

    return Probe(fn, path.input_shape, path.any_size)


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


def logit_probe(model: keras.Model) -> Probe:
    """The model's pre-softmax (or pre-sigmoid) output, on a clone with a linear last activation."""
    logits = logit_model(model)
    return Probe(lambda images, phase: {LOGITS: logits(images, training=False)}, tuple(model.input_shape[1:]), False)
