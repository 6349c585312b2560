"""Benchmark: the feature-visualization engine against the arithmetic its convolutions need.

    python bench/featvis_bound.py [--model mnist-3conv] [--steps 128] [--repeats 3]

Renders every filter of every conv layer of the (cached or trained) model in one `visualize_model` call, as the
report does, and prints its time (best of `--repeats`, each with its tracing share) next to the arithmetic
bound: the FLOPs of the convolutions each slot runs, forward and input gradient (2 x forward), over all steps,
divided by a large float32 matmul's measured rate on this machine. The ratio is how far the engine is from
doing nothing but its convolutions at the machine's best rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tracing import TraceClock  # bench/tracing.py

from reportgen.inputs.config import load_config
from reportgen.inputs.data import load_dataset
from reportgen.inputs.training import load_or_train
from reportgen.methods.featvis import FeatVisSettings, visualize_model
from reportgen.model import Network

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-3conv")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=FeatVisSettings.chunk_size,
                        help="units per optimisation: small values show what sharing one traced loop saves")
    args = parser.parse_args()

    config = load_config(REPO / "reportgen.toml")
    spec = config.model(args.model)
    model = load_or_train(spec, load_dataset(spec.dataset), config.resolve(config.cache_dir), config.seed).model
    network = Network(model)
    layers = {unit.path: unit.channels for unit in network.units}
    settings = FeatVisSettings(steps=args.steps, chunk_size=args.chunk_size)

    visualize_model(model, {next(iter(layers)): [0]}, FeatVisSettings(steps=2))  # TensorFlow warmed up, untimed
    runs = []
    for _ in range(args.repeats):
        with TraceClock() as clock:
            start = time.perf_counter()
            visualize_model(model, dict.fromkeys(layers), settings, seed=0)
            runs.append((time.perf_counter() - start, clock.seconds, clock.traces))
    seconds, tracing, traces = min(runs)

    forward = conv_flops(model)  # per image, cumulative up to each conv layer
    flops = sum(2 * forward[name] * count * args.steps for name, count in layers.items())
    rate = matmul_flops()
    bound = flops / rate
    print(f"{spec.name}: {sum(layers.values())} filters ({', '.join(f'{n} {c}' for n, c in layers.items())}), "
          f"{args.steps} steps, at most {args.chunk_size} per optimisation")
    print(f"  engine (visualize_model, best of {args.repeats}): {seconds:.2f} s, of which tracing {tracing:.2f} s "
          f"in {traces} traces "
          f"(all runs: {', '.join(f'{s:.2f}' for s, *_ in runs)} s)")
    print(f"  convolutions forward + input gradient: {flops / 1e9:.1f} GFLOP; large matmul {rate / 1e9:.0f} GFLOP/s "
          f"-> arithmetic bound {bound:.2f} s")
    print(f"  engine / bound: {seconds / bound:.1f}x (goal: 2.5x); without tracing {(seconds - tracing) / bound:.1f}x")


def conv_flops(model: keras.Model) -> dict[str, int]:
    """Conv layer name -> multiply-adds x 2 of every convolution from the input up to and including it, per image
    (a sequential stack: each conv layer's cost is its output size x kernel size x input channels)."""
    total, cumulative = 0, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += 2 * h * w * c_out * kh * kw * c_in
            cumulative[layer.name] = total
    return cumulative


def matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large float32 matmul: about the most this machine's TensorFlow computes."""
    a = tf.random.uniform((size, size))
    multiply = tf.function(lambda x: tf.matmul(x, x))
    multiply(a).numpy()
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            multiply(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


if __name__ == "__main__":
    main()
