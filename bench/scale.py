"""Benchmark: building on Ray, and feature-visualization chunk throughput on a large model.

    python bench/scale.py [--models 4] [--skip-models] [--skip-chunks] [--sizes 64 224] [--steps 8]

(a) N tiny saved models (`--quick`) built by `reportgen build` in a new process, serially and with
`--ray local` (a private Ray started by the build: its start-up, one TensorFlow import per worker, the
tasks). On a 2-core machine Ray gains nothing: the figure is its overhead.

(b) ResNet50 (random weights: the arithmetic does not depend on them) at each size: two chunks of filters of
one stage-4 conv layer, each the slot count the device's batch budget gives (`methods.budget`), through
`visualize_model` as the report runs them. Prints the slots, the tracing (once for both chunks), the seconds per
step and the image-steps per second, and what an 80 GB GPU's budget would give per chunk (from the budget's
formula, not measured).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tracing import TraceClock  # bench/tracing.py

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-chunks", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if not args.skip_models:
        models(args.models)
    if not args.skip_chunks:
        for size in args.sizes:
            chunks(size, args.steps)


def models(count: int) -> None:
    """(a): the same tiny zoo built serially and on a private local Ray."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        rng = np.random.default_rng(0)
        x = rng.random((60, 12, 12, 1), dtype=np.float32)
        y = np.arange(60) % 3
        np.savez(project / "data.npz", x_test=x, y_test=y, class_names=np.array(["a", "b", "c"]))
        entries = []
        for seed in range(count):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((12, 12, 1))
            h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
            h = keras.layers.MaxPooling2D()(h)
            h = keras.layers.Conv2D(6, 3, activation="relu", name="conv_b")(h)
            h = keras.layers.Flatten()(h)
            outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(5, activation="relu")(h))
            keras.Model(inputs, outputs).save(project / f"m{seed}.keras")
            entries.append(f'[[models]]\nname = "m{seed}"\nmodel_file = "m{seed}.keras"\ndataset = "npz:data.npz"\n')
        (project / "reportgen.toml").write_text('[build]\ncache_dir = ".cache"\n\n' + "\n".join(entries))
        timings = {}
        for label, extra in [("serial (in process)", []), ("--ray local", ["--ray", "local"])]:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "reportgen", "build", "--quick", "-q", "--force", "--out",
                            str(project / label.split()[0].strip("-")), *extra], cwd=project, check=True,
                           env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
            timings[label] = time.perf_counter() - start
    print(f"(a) {count} tiny models, --quick, `reportgen build` in a new process, {os.cpu_count()} cores")
    for label, seconds in timings.items():
        print(f"  {label:<22} {seconds:6.1f} s")
    serial = timings["serial (in process)"]
    print(f"  Ray's overhead here: {timings['--ray local'] - serial:+.1f} s")


def chunks(size: int, steps: int) -> None:
    """(b): two budget-sized chunks of one ResNet50 stage-4 layer's filters."""
    import keras

    from reportgen.methods import budget
    from reportgen.methods.featvis import DIVERSITY_IMAGES, FeatVisSettings, visualize_model
    from reportgen.model import Network

    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    network = Network(model)
    layer = next(unit for unit in network.units if unit.path.startswith("conv4"))
    values = network.activation_values((size, size))
    slots = max(DIVERSITY_IMAGES, budget.batch_rows((size, size, 3), values))
    settings = FeatVisSettings(steps=steps, max_size=size)
    visualize_model(model, {layer.path: [0]}, FeatVisSettings(steps=1, max_size=size))  # TensorFlow warmed up
    with TraceClock() as clock:
        start = time.perf_counter()
        visualize_model(model, {layer.path: np.arange(min(layer.channels, 2 * slots))}, settings)
        seconds = time.perf_counter() - start
    images = min(layer.channels, 2 * slots)
    working = seconds - clock.seconds
    gpu = int(budget.GPU_SHARE * (80 << 30) / 4 // values)
    device = budget.batch_budget()
    print(f"(b) ResNet50 at {size} px, layer {layer.path} ({layer.channels} filters), {values / 1e6:.1f} M activation "
          f"values per image; budget on this {device.device} ({device.memory / 2**30:.0f} GiB): "
          f"{slots} slots per chunk")
    print(f"  2 chunks of {slots} slots x {steps} steps: {seconds:.1f} s, of which tracing {clock.seconds:.1f} s "
          f"({clock.traces} traces); {working / (2 * steps):.2f} s per chunk-step, "
          f"{images * steps / working:.1f} image-steps/s")
    print(f"  an 80 GB GPU's budget (share {budget.GPU_SHARE}) would give {gpu} slots per chunk "
          "(formula, not measured)")


if __name__ == "__main__":
    main()
