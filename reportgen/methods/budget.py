"""How much of a large model gets full galleries: which conv layers, and which units of each.

A ResNet50 has 53 conv layers and over 26,000 filters; optimising and paging
every one of them would take hours. The budget picks the layers evenly over
the model's depth (first and last always in) and, in each, the units that are
most active on the test set (or evenly spaced ones), within a total; the seed
models are well inside it and are shown whole. What is left out is listed on
the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
