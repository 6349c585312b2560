"""Conformance matrix: one member of every keras.applications family, built from its saved file as a user would.

    python bench/conformance.py                                  # all 15 families
    python bench/conformance.py --families MobileNet,InceptionV3 # a subset (names as in FAMILIES)
    python bench/conformance.py --debug                          # a failing build prints its traceback
    python bench/conformance.py --keep /tmp/conformance          # keep the models, data and sites there

Each family's member is made at random init (`weights=None`) with 3 classes at the smallest input size it
accepts (found by constructing it at growing sizes, never hard-coded), and saved to a `.keras` file. A
child process then runs `python -m reportgen build --quick --config C --out O -q`, exactly as a user would
from a fresh shell (so nothing Keras reserved in this process can hide a bug), with a small budget and
300 real images: MNIST digits 0, 1 and 2 from `keras.datasets.mnist`, written as an `.npz` of RGB uint8
images already at the model's size (so no resizing stands between the model and reportgen).

A build counts as ok when it exits 0 and its report.json holds the model's own numbers: the test accuracy
and the confusion matrix equal what `model.predict` gives on the same images fed as the family expects
([0, 255] for families with their own Rescaling/Normalization inside: EfficientNet, EfficientNetV2,
ConvNeXt, MobileNetV3; [0, 1] for the rest), and every section either shows something or says on the page
why it cannot. Peak memory is the child's own maximum resident set size (what `/usr/bin/time -v` reports).
The script prints a Markdown table (family, input, parameters, seconds, peak MB, result) and exits 1 when
any family fails. Set KERAS_HOME to a folder whose datasets/ holds mnist.npz to run offline.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DIGITS = (0, 1, 2)
PER_CLASS = 100  # test images per digit: enough for a confusion matrix, few enough for a short build
BUDGET = "budget = { layers = 2, units = 8 }"  # keeps each build short: two layers' galleries, 8 units each
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Family:
    """A keras.applications family: the member that stands for it, and whether it takes [0, 255] itself."""

    name: str
    make: Callable[..., keras.Model]
    preprocessing_inside: bool = False  # a Rescaling/Normalization at its start: fed [0, 255]

    @property
    def scale(self) -> float:
        """What the model's input is, times [0, 1] images."""
        return 255.0 if self.preprocessing_inside else 1.0


apps = keras.applications
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("VGG16", apps.VGG16),
    Family("ResNet50V2", apps.ResNet50V2),
    Family("ResNet50", apps.ResNet50),
    Family("InceptionV3", apps.InceptionV3),
    Family("InceptionResNetV2", apps.InceptionResNetV2),
    Family("Xception", apps.Xception),
    Family("MobileNet", apps.MobileNet),
    Family("MobileNetV2", apps.MobileNetV2),
    Family("MobileNetV3Small", apps.MobileNetV3Small, preprocessing_inside=True),
    Family("MobileNetV3Large", apps.MobileNetV3Large, preprocessing_inside=True),
    Family("DenseNet121", apps.DenseNet121),
    Family("NASNetMobile", apps.NASNetMobile),
    Family("EfficientNetB0", apps.EfficientNetB0, preprocessing_inside=True),
    Family("EfficientNetV2B0", apps.EfficientNetV2B0, preprocessing_inside=True),
    Family("ConvNeXtTiny", apps.ConvNeXtTiny, preprocessing_inside=True),
)}


@dataclass
class Row:
    """One family's line of the table."""

    family: str
    size: int = 0
    parameters: int = 0
    seconds: float = 0.0
    peak_mb: float = 0.0
    result: str = "not run"


@dataclass
class Build:
    """What one child `reportgen build` did."""

    code: int
    seconds: float
    peak_mb: float
    stderr: str

    @property
    def error(self) -> str:
        """The build's one `Error:` line (or the last line it printed, when it died without one)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error:")]
        return (errors or lines or [f"exit {self.code}, nothing on stderr"])[-1]


def construct(family: Family, size: int) -> keras.Model:
    """The family's member at random init, `size` x `size` RGB input, 3 classes."""
    keras.utils.set_random_seed(0)
    return family.make(weights=None, input_shape=(size, size, 3), classes=len(DIGITS))


def smallest_input(family: Family, start: int = 8, stop: int = 300) -> int:
    """The smallest square size the family constructs at and runs one image through.

    Keras refuses sizes below a family's minimum when it builds the graph (a size check, or a negative
    dimension in some layer), so trying sizes upwards finds the minimum from the model itself."""
    for size in range(start, stop):
        try:
            model = construct(family, size)
            model(np.zeros((1, size, size, 3), np.float32), training=False)
        except Exception:  # refused: a size check, a negative dimension, an op that cannot run at this size
            continue
        finally:
            keras.backend.clear_session()
        return size
    raise ValueError(f"{family.name} accepts no input between {start} and {stop} pixels")


def digits_npz(folder: Path, size: int) -> Path:
    """MNIST test digits 0-2 as RGB uint8 at `size` x `size`, saved as reportgen's `npz:` dataset."""
    path = folder / f"digits-{size}.npz"
    if path.exists():
        return path
    import tensorflow as tf

    _, (x_test, y_test) = keras.datasets.mnist.load_data()
    keep = np.concatenate([np.flatnonzero(y_test == d)[:PER_CLASS] for d in DIGITS])
    grey = tf.image.resize(x_test[keep, ..., None].astype(np.float32), (size, size)).numpy()
    images = np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8), 3, axis=-1)
    np.savez(path, x_test=images, y_test=y_test[keep].astype(np.int64),
             class_names=np.array([f"digit {d}" for d in DIGITS]), name=np.array("MNIST digits 0-2"))
    return path


def model_input(images: np.ndarray, family: Family) -> np.ndarray:
    """uint8 images as the family expects them, by the same float32 steps reportgen takes
    ([0, 1] first, then times the top of the model's range)."""
    unit = images.astype(np.float32) / 255.0
    return unit * np.float32(family.scale) if family.scale != 1.0 else unit


def own_numbers(model: keras.Model, images: np.ndarray, labels: np.ndarray, family: Family) -> tuple[float, np.ndarray]:
    """The model's own test accuracy and confusion matrix (rows: true class, columns: predicted)."""
    predicted = np.asarray(model.predict(model_input(images, family), batch_size=64, verbose=0)).argmax(axis=1)
    confusion = np.zeros((len(DIGITS), len(DIGITS)), int)
    np.add.at(confusion, (labels, predicted), 1)
    return float(np.mean(predicted == labels)), confusion


def write_config(folder: Path, name: str, model_file: Path, dataset: Path) -> Path:
    """The config a user would write for this model: its file, the digits, a small budget."""
    config = folder / f"{name}.toml"
    config.write_text(f'[[models]]\nname = "{name}"\nmodel_file = "{model_file}"\ndataset = "npz:{dataset}"\n'
                      f"{BUDGET}\n", encoding="utf-8")
    return config


# Runs its arguments as a child and writes the child's peak resident kB to $PEAK_FILE, as `/usr/bin/time -v` would.
# Why a launcher: a process started straight from this one inherits this one's peak at exec (Linux keeps the
# high-water mark of the memory it replaces), so its ru_maxrss would never read below this process's own size.
PEAK_LAUNCHER = ("import os, subprocess, sys\n"
                 "child = subprocess.Popen(sys.argv[1:])\n"
                 "_, status, usage = os.wait4(child.pid, 0)\n"
                 "open(os.environ['PEAK_FILE'], 'w').write(str(usage.ru_maxrss))\n"
                 "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_build(config: Path, out: Path, debug: bool = False, timeout_s: float = BUILD_TIMEOUT_S) -> Build:
    """`python -m reportgen build --quick` in a new process; its wall seconds and its own peak memory."""
    command = [sys.executable, "-m", "reportgen", "build", "--quick", "--config", str(config), "--out", str(out),
               "-q", *(["--debug"] if debug else [])]
    peak_file = out.parent / f"{out.name}.peak"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PEAK_FILE": str(peak_file)}
    start = time.perf_counter()
    # A session of its own, so that a timeout ends the build as well as the launcher.
    child = subprocess.Popen([sys.executable, "-c", PEAK_LAUNCHER, *command], env=env, cwd=config.parent,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stderr = child.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stderr = child.communicate()[1] + f"\nError: no result after {timeout_s:.0f} s (killed)"
    code = child.returncode
    seconds = time.perf_counter() - start
    peak_mb = int(peak_file.read_text()) / 1024 if peak_file.exists() else 0.0  # ru_maxrss is in kB on Linux
    return Build(code, seconds, peak_mb, stderr)


def section_problems(report: dict[str, Any], page: str) -> list[str]:
    """Sections that neither show anything nor say on the page why not."""
    problems = []
    for section in report["sections"]:
        shown = section["figures"] or section["tables"] or section["pages"]
        if not shown and not section["notes"]:
            problems.append(f"section {section['id']!r} is empty and says nothing")
        for note in [] if shown else section["notes"]:
            if html.escape(note, quote=False) not in page and html.escape(note) not in page:
                problems.append(f"section {section['id']!r}: its note is not on the page: {note[:80]!r}")
    return problems


def report_problems(site: Path, name: str, accuracy: float, confusion: np.ndarray) -> list[str]:
    """What in the built report differs from the model's own numbers or leaves a section unexplained."""
    report = json.loads((site / name / "report.json").read_text(encoding="utf-8"))
    page = (site / name / "index.html").read_text(encoding="utf-8")
    problems = []
    stored = report["metrics"]["test_accuracy"]
    if abs(stored - accuracy) > 1e-6:  # stored to 6 places
        problems.append(f"test accuracy {stored} where the model has {accuracy:.6f}")
    sections = {s["id"]: s for s in report["sections"]}
    matrix = np.array(sections["confusion"]["data"]["confusion_matrix"])
    if matrix.shape != confusion.shape or (matrix != confusion).any():
        problems.append(f"confusion matrix {matrix.tolist()} where the model's is {confusion.tolist()}")
    return problems + section_problems(report, page)


@dataclass
class Member:
    """A family's member saved to a file, with its test images and what the model itself says on them."""

    family: Family
    size: int
    parameters: int
    model_file: Path
    dataset: Path
    accuracy: float
    confusion: np.ndarray

    @property
    def name(self) -> str:
        return self.family.name.lower()


def prepare(family: Family, work: Path) -> Member:
    """Make the family's member at its smallest input, save it, write its digits and take its own numbers."""
    size = smallest_input(family)
    model = construct(family, size)
    model_file = work / f"{family.name.lower()}-{size}.keras"
    model.save(model_file)
    dataset = digits_npz(work, size)
    with np.load(dataset) as arrays:
        accuracy, confusion = own_numbers(model, arrays["x_test"], arrays["y_test"], family)
    member = Member(family, size, model.count_params(), model_file, dataset, accuracy, confusion)
    del model
    keras.backend.clear_session()  # this process holds no model while the child builds
    return member


def build_member(member: Member, work: Path, debug: bool = False) -> tuple[Build, Path]:
    """The user's build of the saved member in a new process; the build and the site folder it wrote."""
    site = work / f"site-{member.name}"
    return run_build(write_config(work, member.name, member.model_file, member.dataset), site, debug), site


def conform(family: Family, work: Path, debug: bool = False) -> Row:
    """Make, save and build one family's member; check the report against the model's own numbers."""
    member = prepare(family, work)
    build, site = build_member(member, work, debug)
    row = Row(family.name, member.size, member.parameters, build.seconds, build.peak_mb)
    if build.code != 0:
        row.result = build.error
        if debug:
            print(build.stderr, file=sys.stderr)
        return row
    problems = report_problems(site, member.name, member.accuracy, member.confusion)
    row.result = "ok" if not problems else "wrong: " + "; ".join(problems)
    return row


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| family | input | parameters | seconds | peak MB | result |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        result = r.result.replace("|", "\\|")
        lines.append(f"| {r.family} | {r.size}x{r.size} | {r.parameters:,} | {r.seconds:.0f} | {r.peak_mb:,.0f} "
                     f"| {result} |")
    return "\n".join(lines)


def chosen_families(names: str | None) -> list[Family]:
    """`--families A,B` as Family objects, in the order given (all of them by default)."""
    if not names:
        return list(FAMILIES.values())
    unknown = [n for n in names.split(",") if n not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    return [FAMILIES[n] for n in names.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated family names (default: all 15)")
    parser.add_argument("--debug", action="store_true", help="pass --debug on and print a failing build's stderr")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    families = chosen_families(args.families)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for family in families:
            rows.append(conform(family, work, args.debug))
            r = rows[-1]
            print(f"{r.family} {r.size}px: {r.seconds:.0f} s, peak {r.peak_mb:.0f} MB, {r.result}", flush=True)
    print()
    print(table(rows))
    if any(r.result != "ok" for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
