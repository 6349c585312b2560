"""Benchmark: whole `reportgen build` runs of large models from their saved files, time and peak memory.

    python bench/large_models.py                       # ResNet50 and EfficientNetB0, --quick and default
    python bench/large_models.py --model resnet50 --mode quick

Each model is `keras.applications.<Model>(weights=None)` at 64x64 with 3 classes, trained for a few
steps on MNIST digits 0-2 written as a folder dataset (so it is above chance), saved as `.keras`, and
built by the CLI in a child process exactly as a user would:
`reportgen build --model-file M --dataset folder:D [--quick] --out O`. Training and saving are not
timed. Peak memory is the child's maximum resident set size (what `/usr/bin/time -v` reports).
Goals on a 2-core CPU: --quick in 10 minutes or less, default in 30 or less, peak under 6 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conformance import PEAK_LAUNCHER
from user_models import digit_folders, folder, train  # the tests' own digit folders and training

SIZE = 64
DIGITS = (0, 1, 2)
MODELS = {"resnet50": keras.applications.ResNet50, "efficientnetb0": keras.applications.EfficientNetB0}
MODES = ("quick", "default")


def trained_model(name: str, spec: str, path: Path) -> None:
    """The architecture with random weights, a hundred steps on the digits, saved to `path`."""
    keras.utils.set_random_seed(0)
    model = MODELS[name](weights=None, input_shape=(SIZE, SIZE, 3), classes=len(DIGITS))
    scale = 255.0 if name == "efficientnetb0" else 1.0  # EfficientNet rescales [0, 255] itself
    x, y, _, _ = folder(spec, (SIZE, SIZE, 3), scale)
    train(model, x, y, steps=100)
    model.save(path)


def timed_build(model_file: Path, spec: str, mode: str, out: Path) -> tuple[float, float, int]:
    """Wall seconds and peak resident GB of one CLI build in a child process, and its exit code."""
    command = [sys.executable, "-m", "reportgen", "build", "--model-file", str(model_file), "--dataset", spec,
               "--out", str(out)] + (["--quick"] if mode == "quick" else [])
    peak_file = out.parent / f"{out.name}.peak"
    start = time.perf_counter()
    # Through conformance's launcher: a build started straight from this process would report this process's peak.
    code = subprocess.call([sys.executable, "-c", PEAK_LAUNCHER, *command],
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PEAK_FILE": str(peak_file)})
    seconds = time.perf_counter() - start
    return seconds, int(peak_file.read_text()) / 1024**2, code  # ru_maxrss is in kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), action="append", help="default: both")
    parser.add_argument("--mode", choices=MODES, action="append", help="default: both")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = digit_folders(work / "digits", DIGITS)
        for name in args.model or list(MODELS):
            model_file = work / f"{name}-64.keras"
            trained_model(name, spec, model_file)
            for mode in args.mode or list(MODES):
                seconds, peak_gb, code = timed_build(model_file, spec, mode, work / f"site-{name}-{mode}")
                rows.append((name, mode, seconds, peak_gb, code))
                print(f"{name} {mode}: {seconds / 60:.1f} min, peak {peak_gb:.2f} GB, exit {code}", flush=True)
    print(f"\n{'model':<16}{'build':<9}{'minutes':>8}{'peak GB':>9}  exit")
    for name, mode, seconds, peak_gb, code in rows:
        print(f"{name:<16}{mode:<9}{seconds / 60:>8.1f}{peak_gb:>9.2f}  {code}")
    if any(code for *_, code in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
