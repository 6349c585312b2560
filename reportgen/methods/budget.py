"""How much of a large model gets full galleries, and how much one gradient batch may hold.

A ResNet50 has 53 conv layers and over 26,000 filters; optimising and paging
every one of them would take hours. The budget picks the layers evenly over
the model's depth (first and last always in) and, in each, the units that are
most active on the test set (or evenly spaced ones), within a total; the seed
models are well inside it and are shown whole. What is left out is listed on
the page.

The batch budget (`batch_rows`, used by feature visualization, projections and
attributions alike) follows the device: a share of the GPU's memory where there
is one, of RAM otherwise, never below what a small CPU machine gets, so an
80 GB GPU runs a 224-px ResNet50 chunk of about 150 slots instead of 4.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from reportgen.model import ChannelStats, ConvUnit

Choice = Literal["activation", "even"]
CHOICES = ("activation", "even")


@dataclass(frozen=True)
class Budget:
    """The most a report shows of a model's conv layers (config table `budget`)."""

    layers: int = 16  # conv layers with full galleries (feature vis, dataset examples, unit pages)
    units: int = 512  # units in all over those layers
    per_layer: int = 256  # and at most this many in one layer (a model's `max_units`)
    choose: Choice = "activation"  # "activation": the most active on the test set; "even": evenly spaced indices
    # What the shown units' extra pictures (a neuron image and a diverse group each, see `pictured`) may compute:
    # images at full steps x the activation values the model computes per image. The MNIST-family models (about
    # 40,000 values per image) fit whole, cats-vs-dogs (1.7 million) gets 128 of its 352 filters, a ResNet50 at
    # 64 px (3 million) 4 in each of 16 layers.
    picture_work: int = 1 << 28


@dataclass
class Plan:
    """What the budget chose: the conv layers with galleries and each one's units (indices)."""

    budget: Budget
    units: dict[str, np.ndarray]  # conv path -> chosen unit indices, in the model's layer order
    channels: dict[str, int]  # conv path -> its number of units, for every conv layer
    left_out_layers: list[str] = field(default_factory=list)

    @property
    def layers(self) -> list[str]:
        return list(self.units)

    def units_left_out(self) -> int:
        return sum(self.channels[path] - len(chosen) for path, chosen in self.units.items())

    def describe(self) -> str:
        """What was left out, in one sentence for the pages ("" when the whole model is shown)."""
        parts = []
        if self.left_out_layers:
            parts.append(f"{len(self.left_out_layers)} of {len(self.channels)} conv layers have no gallery")
        if self.units_left_out():
            how = "most active on the test set" if self.budget.choose == "activation" else "evenly spaced"
            parts.append(f"in the other layers, {sum(map(len, self.units.values())):,} units ({how}) of "
                         f"{sum(self.channels[p] for p in self.units):,} are shown")
        if not parts:
            return ""
        return (f"Budget (layers = {self.budget.layers}, units = {self.budget.units}, per layer = "
                f"{self.budget.per_layer}): " + "; ".join(parts) + ".")


def pictured(plan: Plan, values_per_image: int, images_per_unit: float) -> dict[str, np.ndarray]:
    """Conv path -> the planned units that also get extra pictures, `images_per_unit` full-length images
    each: all of them when they fit `plan.budget.picture_work`, else as many as fit (at least one per layer),
    shared evenly among the layers and spread evenly over each layer's units.

    A neuron image and four diverse images, each a quarter as long, cost 1.25 times a unit's own image; on
    a ResNet50 the filters' own images were already 80% of a default build's time.
    """
    fits = int(plan.budget.picture_work // max(1.0, images_per_unit * values_per_image))
    if fits >= sum(map(len, plan.units.values())):
        return dict(plan.units)
    share = max(1, fits // max(1, len(plan.units)))
    return {path: chosen[evenly(len(chosen), min(share, len(chosen)))] for path, chosen in plan.units.items()}


def plan(units: list[ConvUnit], budget: Budget, stats: dict[str, ChannelStats] | None = None) -> Plan:
    """The layers (evenly over depth) and units (by activity or evenly) that fit `budget`.

    Args:
        units: every conv layer of the model, in order.
        budget: the limits.
        stats: per conv path, the test set's channel statistics; needed when `budget.choose` is "activation".

    Returns:
        The plan.
    """
    channels = {unit.path: unit.channels for unit in units}
    chosen = [units[i] for i in evenly(len(units), budget.layers)]
    share = max(1, budget.units // max(1, len(chosen)))
    picked = {}
    for unit in chosen:
        count = min(unit.channels, budget.per_layer, share)
        if budget.choose == "activation" and stats is not None and count < unit.channels:
            activity = stats[unit.path].max.mean(axis=0)  # mean over the test set of each map's peak
            picked[unit.path] = np.sort(np.argsort(-activity, kind="stable")[:count])
        else:
            picked[unit.path] = evenly(unit.channels, count)
    left_out = [unit.path for unit in units if unit.path not in picked]
    return Plan(budget, picked, channels, left_out)


def evenly(n: int, count: int) -> np.ndarray:
    """`count` of the indices 0..n-1 spread evenly, the first and the last included."""
    if count >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max(count, 1))).astype(int))


# Per gradient batch, at least: input values (~5000 MNIST images, ~60 colour 150x150 ones) and values the network
# computes (256 MB in float32: 22 rows of a ResNet50 at 64x64, which has 3.0 million per image). The seed models stay
# within INPUT_BUDGET's rows.
INPUT_BUDGET = 1 << 22
ACTIVATION_BUDGET = 1 << 26
# Default share of the device's memory for the activations of one batch (a gradient batch holds them about three
# times: forward, kept for the backward pass, and gradients). On a CPU 1% of RAM: a 24 GiB machine stays at
# ACTIVATION_BUDGET, so its results do not change; on a GPU a quarter (20 GB of an 80 GB H100: ~5 billion values,
# 145 rows of a ResNet50 at 224 px).
CPU_SHARE, GPU_SHARE = 0.01, 0.25
UNKNOWN_GPU_MEMORY = 16 << 30  # bytes assumed when a GPU's size cannot be read (nvidia-smi missing)


@dataclass(frozen=True)
class BatchBudget:
    """The most one gradient batch may hold, from the device it runs on."""

    device: str  # "cpu" or "gpu"
    memory: int  # bytes of the device (RAM or the first visible GPU)
    share: float  # of `memory` for one batch's activations
    input_values: int
    activation_values: int

    def record(self) -> dict[str, object]:
        """What report.json says about it."""
        return {"device": self.device, "device_memory_gib": round(self.memory / (1 << 30), 1), "share": self.share,
                "input_values": self.input_values, "activation_values": self.activation_values}


_share_setting: float | None = None  # [build] batch_memory_share; None: CPU_SHARE or GPU_SHARE


def set_batch_memory_share(share: float | None) -> None:
    """The share of the device's memory one batch's activations may take (None: the device's default)."""
    global _share_setting
    if share is not None and not 0 < share <= 1:
        raise ValueError(f"batch memory share must be in (0, 1], got {share}")
    _share_setting = share


def batch_budget() -> BatchBudget:
    """The budget on this process's device with the share in force."""
    device, memory = _device_memory()
    share = _share_setting if _share_setting is not None else (GPU_SHARE if device == "gpu" else CPU_SHARE)
    factor = max(1.0, share * memory / (4 * ACTIVATION_BUDGET))  # float32 values
    return BatchBudget(device, memory, share, int(INPUT_BUDGET * factor), int(ACTIVATION_BUDGET * factor))


def batch_rows(image_shape: tuple[int, ...], activation_values: int | None = None) -> int:
    """Rows per gradient batch for images of this shape through a network that computes `activation_values`
    per image (`Network.activation_values`), so that memory stays bounded on the device (`batch_budget`)
    while small images through small models still go through in one call."""
    budget = batch_budget()
    rows = budget.input_values // int(np.prod(image_shape))
    if activation_values:
        rows = min(rows, budget.activation_values // activation_values)
    return max(1, rows)


@functools.cache
def _device_memory() -> tuple[str, int]:
    """("gpu", the first visible GPU's bytes) when TensorFlow sees a GPU, else ("cpu", the RAM this process
    may use: the machine's, or its cgroup's limit when lower)."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return "gpu", _gpu_memory()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        ram = min(ram, int(limit)) if limit.isdigit() else ram
    except OSError:
        pass
    return "cpu", ram


def _gpu_memory() -> int:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return UNKNOWN_GPU_MEMORY
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_GPU_MEMORY
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    index = int(visible) if visible.isdigit() and int(visible) < len(out) else 0
    return int(out[index]) << 20 if out and out[index].isdigit() else UNKNOWN_GPU_MEMORY
