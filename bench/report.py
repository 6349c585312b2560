"""Benchmark: one model's whole report, training excluded, timed per section.

    python bench/report.py [--model mnist-3conv] [--quick]
    python bench/report.py --model-file my.keras --dataset mnist [--quick]

Trains (or loads from the cache) the model, or reads the model file, first,
then times the pass over the test set (predictions and every conv channel's
statistics) and every section builder on it, and prints a table and the total,
with the share of it spent tracing `tf.function`s (Python building graphs, timed
around TensorFlow's graph builder, outermost calls only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tracing import TraceClock  # bench/tracing.py

from reportgen.build.pipeline import load_model_and_data
from reportgen.inputs.config import BuildOptions, ModelSpec, load_config
from reportgen.sections import SECTION_BUILDERS
from reportgen.sections.context import ModelContext
from reportgen.util.imaging import PngWriter

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-3conv")
    parser.add_argument("--model-file", help="a saved Keras model instead of a configured one")
    parser.add_argument("--dataset", default="mnist", help="the model file's dataset")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    config = load_config(REPO / "reportgen.toml")
    if args.model_file:
        spec = ModelSpec(name=Path(args.model_file).stem, dataset=args.dataset, model_file=args.model_file)
    else:
        spec = config.model(args.model)
    options = BuildOptions(out=Path(tempfile.gettempdir()), cache_dir=config.resolve(config.cache_dir),
                           seed=config.seed, quick=args.quick)
    trained, network, data = load_model_and_data(spec, options)

    timings: list[tuple[str, float]] = []
    clock = TraceClock()
    with clock, tempfile.TemporaryDirectory() as out, PngWriter(background=True) as writer:
        ctx = ModelContext(spec=spec, network=network, data=data, out_dir=Path(out), history=trained.history,
                           seed=config.seed, quick=args.quick, cache_dir=None if spec.model_file else options.cache_dir,
                           writer=writer)  # as the build does
        start = time.perf_counter()
        _ = ctx.test_pass
        timings.append((f"pass over {len(data.x_test):,} test images", time.perf_counter() - start))
        built = {}
        for step in SECTION_BUILDERS:
            start = time.perf_counter()
            built[step.name] = step.run(ctx, built)
            timings.append((step.name, time.perf_counter() - start))
        start = time.perf_counter()
        writer.wait()
        timings.append(("PNG files still being written", time.perf_counter() - start))

    width = max(len(name) for name, _ in timings)
    print(f"{spec.name}{' (quick)' if args.quick else ''}: report without training")
    for name, seconds in timings:
        print(f"  {name:<{width}}  {seconds:7.2f} s")
    total = sum(s for _, s in timings)
    print(f"  {'total':<{width}}  {total:7.2f} s")
    print(f"  tracing: {clock.seconds:.2f} s in {clock.traces} traces, {clock.seconds / total:.0%} of the total")
    print(f"  longest traces: {clock.largest()}")


if __name__ == "__main__":
    main()
