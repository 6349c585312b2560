"""Benchmark: the batched feature-visualization engine against one unit at a time.

    python bench/featvis.py [--model mnist-3conv] [--single-sample 6]

On the trained model (cached after the first run), times (a) every filter of
every conv layer plus every class with the batched engine, in one optimisation as the report runs it, and (b) the same
objectives, settings and step count optimised one unit at a time: eagerly step
by step (as tf-keras-vis does); as the keras.io example does it (a compiled step
called once per step from Python, traced again for every unit because the unit
index is a Python int), both reading the whole layer and slicing the unit's
channel as they do; as a new optimisation per unit; and through the engine's
own compiled loop reused for every unit. (b) is timed on `--single-sample` units per layer and per class
set (half of them for the slow eager runs) and extrapolated, which the output
says. Prints the ratios, ms per unit-step, the arithmetic rate against a large
matmul's (how much room batching has left), and the proof numbers of the batched run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from reportgen.inputs.config import load_config
from reportgen.inputs.data import load_dataset
from reportgen.inputs.training import load_or_train
from reportgen.methods.featvis import (
    LOGITS,
    FeatVisSettings,
    Renderer,
    canvas_size,
    channel,
    class_logit,
    unit_part,
    visualize_classes,
    visualize_filters,
    visualize_model,
)
from reportgen.methods.featvis.probes import layer_probe, logit_probe
from reportgen.model import Network

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-3conv")
    parser.add_argument("--single-sample", type=int, default=6, help="units per layer timed one at a time")
    args = parser.parse_args()

    config = load_config(REPO / "reportgen.toml")
    spec = config.model(args.model)
    data = load_dataset(spec.dataset)
    model = load_or_train(spec, data, config.resolve(config.cache_dir), config.seed).model
    settings = FeatVisSettings(steps=128)  # the README's comparison was measured at 128 steps
    network = Network(model)
    layers = [unit.path for unit in network.units]
    sizes = {unit.path: unit.channels for unit in network.units}
    classes = network.num_classes
    units = sum(sizes.values()) + classes

    visualize_filters(model, layers[0], [0], settings, 0)  # warm TensorFlow up once, outside the timings
    start = time.perf_counter()
    results = visualize_model(model, {**dict.fromkeys(layers), LOGITS: None}, settings, seed=0)  # as the report does
    batched = time.perf_counter() - start
    class_result = results.pop(LOGITS)

    fresh, compiled, eager, stepwise, flops = 0.0, 0.0, 0.0, 0.0, 0
    network = Network.of(model)
    for name, probe, make_objective, count in [
        *((n, layer_probe(model, n, settings.leak), lambda s, n=n: channel(n, s), sizes[n]) for n in layers),
        (LOGITS, logit_probe(model), class_logit, classes),
    ]:
        sample = np.arange(min(args.single_sample, count))
        start = time.perf_counter()
        for unit in sample:  # a new optimisation per unit, as calling visualize_filters([unit]) does
            if name == LOGITS:
                visualize_classes(model, [unit], settings, 0)
            else:
                visualize_filters(model, name, [unit], settings, 0)
        fresh += (time.perf_counter() - start) * count / len(sample)
        start = time.perf_counter()
        for unit in sample:
            step_by_step(probe, make_objective(int(unit)), canvas_size(network, probe, settings), settings, int(unit))
        stepwise += (time.perf_counter() - start) * count / len(sample)
        part = unit_part(model, name, 1, settings)  # the engine's own probe and objective, one slot
        engine = Renderer(part.probe, part.objective, canvas_size(network, part.probe, settings), settings, part.slots,
                          batch=1)
        engine.run(sample[:1], 0)  # traced once, outside the timing
        flops += step_flops(engine) * count * settings.steps
        start = time.perf_counter()
        for unit in sample:
            engine.run(np.array([unit]), 0)
        compiled += (time.perf_counter() - start) * count / len(sample)
        slots = tf.Variable([0])
        peer = Renderer(probe, make_objective(slots), canvas_size(network, probe, settings), settings, slots, batch=1)
        tf.config.run_functions_eagerly(True)  # the peer's loop, run eagerly step by step as tf-keras-vis does
        start = time.perf_counter()
        for unit in sample[: max(1, len(sample) // 2)]:
            peer.run(np.array([unit]), 0)
        eager += (time.perf_counter() - start) * count / max(1, len(sample) // 2)
        tf.config.run_functions_eagerly(False)

    stats = network.channel_stats([network.read_point(name) for name in layers], data.x_test)
    stats = {name: stats[network.read_point(name)] for name in layers}
    reached, live_total = 0, 0
    for name, result in results.items():
        live = stats[name].max.max(axis=0) > 0
        reached += int(np.sum((result.activation >= stats[name].mean.max(axis=0))[live]))
        live_total += int(live.sum())

    print(f"{spec.name}: {units} units ({', '.join(f'{n} {s}' for n, s in sizes.items())}, {classes} classes), "
          f"{settings.steps} steps each")
    unit_steps = units * settings.steps
    rows = [("batched engine", batched), ("one at a time, eager steps (tf-keras-vis)", eager),
            ("one at a time, compiled step (keras.io)", stepwise),
            ("one at a time, new optimisation each", fresh), ("one at a time, one compiled loop", compiled)]
    for label, seconds in rows:
        print(f"  {label + ':':<40} {seconds:7.2f} s  ({1000 * seconds / unit_steps:.3f} ms/unit-step)"
              + ("" if seconds is batched else f"  {seconds / batched:5.1f}x slower"))
    print(f"  (one-at-a-time runs timed on {args.single_sample} units per layer and extrapolated)")
    print(f"  arithmetic: {flops / 1e9:.0f} GFLOP in all (TensorFlow's count of the engine's steps); the batched "
          f"engine computes {flops / batched / 1e9:.0f} GFLOP/s, a large matmul on this machine {matmul_gflops():.0f}")
    print(f"  live filters reaching the best test image's mean activation: {reached}/{live_total} "
          f"({reached / max(live_total, 1):.1%})")
    print(f"  class images: lowest probability of their own class {class_result.probability.min():.4f}")


def step_by_step(probe, objective, size: tuple[int, int], settings: FeatVisSettings, unit: int) -> np.ndarray:
    """One unit the keras.io way: a new `tf.function` step per unit, called once per step from Python."""
    slots = tf.Variable([unit])
    renderer = Renderer(probe, objective, size, settings, slots, batch=1)
    step = tf.function(renderer.step)
    uniforms = renderer.uniforms(0)
    param = tf.constant(renderer.start(unit, 0)[None])
    m = v = tf.zeros_like(param)
    for i in range(settings.steps):
        param, m, v, _, _ = step(param, m, v, tf.constant(i), tf.constant(uniforms[i]))
    return param.numpy()


def step_flops(renderer: Renderer) -> int:
    """Floating-point operations of one step for one unit, as TensorFlow's profiler counts them."""
    param = tf.TensorSpec(renderer.param.init(1, np.random.default_rng(0)).shape, tf.float32)
    graph = tf.function(renderer.step).get_concrete_function(
        param, param, param, tf.TensorSpec([], tf.int32), tf.TensorSpec([renderer.transform.draws], tf.float32)
    ).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large float32 matmul: about the most this machine's TensorFlow computes."""
    a = tf.random.uniform((size, size))
    multiply = tf.function(lambda x: tf.matmul(x, x))
    multiply(a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        multiply(a).numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


if __name__ == "__main__":
    main()
