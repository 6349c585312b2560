"""Benchmark: what snapshots add to training, and what "Learning over time" adds to the report.

    python bench/timeline.py [--model mnist-3conv] [--snapshots 1,2,3,4]

Trains the configured model (cached by reportgen like a build, in a scratch cache unless --cache is given) with
its snapshots, timing the snapshot saving apart from the training; then times every section of the report on
it, the timeline apart from the others (and its test passes and feature visualization apart), and prints the
timeline's share of the report's own time (goal: under a third).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from reportgen.inputs import training
from reportgen.inputs.config import BuildOptions, load_config
from reportgen.inputs.data import load_dataset
from reportgen.model import Network
from reportgen.sections import SECTION_BUILDERS
from reportgen.sections.context import ModelContext
from reportgen.util.imaging import PngWriter

REPO = Path(__file__).resolve().parent.parent


class TimedSaver(training.SnapshotSaver):
    """The build's snapshot saver, with the seconds it spends saving."""

    seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        TimedSaver.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-3conv")
    parser.add_argument("--snapshots", help="epochs, e.g. 1,2,4 (default: the build's default)")
    parser.add_argument("--cache", help="a cache folder (default: a scratch one, so the model is trained here)")
    args = parser.parse_args()

    config = load_config(REPO / "reportgen.toml")
    spec = config.model(args.model)
    if args.snapshots:
        spec = dataclasses.replace(spec, snapshots=[int(e) for e in args.snapshots.split(",")])
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(args.cache) if args.cache else Path(scratch) / "cache"
        options = BuildOptions(out=Path(scratch) / "site", cache_dir=cache, seed=config.seed)
        data = load_dataset(spec.dataset)
        training.SnapshotSaver = TimedSaver  # load_or_train makes its saver from this name
        trained = training.load_or_train(spec, data, cache, options.seed)
        print(f"{spec.name}: {len(trained.snapshots)} snapshots (epochs {sorted(trained.snapshots)})")
        if trained.source == "trained":
            print(f"  training {trained.seconds:7.2f} s, of which saving snapshots {TimedSaver.seconds:5.2f} s "
                  f"({TimedSaver.seconds / trained.seconds:.1%})")
        network = Network(trained.model)
        timings: dict[str, float] = {}
        with PngWriter(background=True) as writer:
            ctx = ModelContext(spec=spec, network=network, data=data, out_dir=Path(scratch) / "out",
                               history=trained.history, seed=options.seed, cache_dir=cache, writer=writer,
                               snapshots=trained.snapshots)
            start = time.perf_counter()
            _ = ctx.test_pass
            timings["test pass"] = time.perf_counter() - start
            built = {}
            for step in SECTION_BUILDERS:
                start = time.perf_counter()
                built[step.name] = step.run(ctx, built)
                timings[step.name] = time.perf_counter() - start
        timeline = timings.pop("learning over time")
        own = sum(timings.values())
        parts = (built["learning over time"].handoff or {}).get("seconds", {})
        print(f"  report without the timeline {own:7.2f} s")
        print(f"  timeline                    {timeline:7.2f} s ({timeline / own:.2f} of the report's own time; "
              "goal: under 0.33)")
        for name, seconds in parts.items():
            if name != "total":
                print(f"    {name:<26}{seconds:7.2f} s")


if __name__ == "__main__":
    main()
