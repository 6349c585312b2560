"""Is an attribution map faithful to the model? The deletion test, for every method at once.

Zeroing the pixels a map ranks highest should hurt the prediction more than
zeroing as many random pixels. Every method's variant and the shared random
baseline go through one batched pass; methods are then ranked by the mean
logit drop with their top pixels removed (the logit still moves when the
probability is saturated at 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reportgen.methods.attribution import score_and_probability

SIGNIFICANCE = 2.0  # standard errors: a difference smaller than this is not told apart from noise (about 95%)


@dataclass
class Deletion:
    """Class score and probability before and after zeroing a fraction of the pixels, per image."""

    score: np.ndarray  # (N,) pre-softmax score of each image's class
    probability: np.ndarray  # (N,)
    score_drop_top: dict[str, np.ndarray]  # method -> (N,) score drop when its top pixels are zeroed
    probability_drop_top: dict[str, np.ndarray]
    score_drop_random: np.ndarray  # (N,) mean drop over random pixel sets of the same size, shared by all methods
    probability_drop_random: np.ndarray


def deletion_pixels(maps: dict[str, np.ndarray], fraction: float, trials: int,
                    seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flat indices of the pixels to zero: each method's top `fraction` per image,
    (N, count), and `trials` random sets per image, (N, trials, count), shared by every method.
    Equal map values are ordered at random, so flat regions are not cut in raster order."""
    n, h, w = next(iter(maps.values())).shape
    count = max(1, round(fraction * h * w))
    rng = np.random.default_rng(seed)
    tie_break = rng.random((n, h * w))
    top = {name: np.lexsort((tie_break, -m.reshape(n, -1).astype(np.float64)), axis=-1)[:, :count]
           for name, m in maps.items()}
    random_sets = np.argsort(rng.random((n, trials, h * w)), axis=-1)[..., :count]
    return top, random_sets


def deletion_test(logits: Callable[[np.ndarray], np.ndarray], x: np.ndarray, classes: np.ndarray,
                  maps: dict[str, np.ndarray], fraction: float = 0.2, trials: int = 4, seed: int = 0) -> Deletion:
    """Zero (all channels of) each method's top pixels and the shared random pixel sets.

    Args:
        logits: images -> (N, C) pre-softmax outputs (e.g. `Attributor.logits`).
        x: (N, H, W, C) images.
        classes: (N,) the class whose score and probability are followed.
        maps: method -> (N, H, W) attribution maps; higher ranks first.
        fraction: share of the pixels zeroed.
        trials: random pixel sets per image.
        seed: seed of the random sets and of the tie-break.

    Returns:
        The drops, in one pass over [originals, each method's variants, random variants].
    """
    n = len(x)
    top, random_sets = deletion_pixels(maps, fraction, trials, seed)
    variants = [_zeroed(x, pixels) for pixels in top.values()]
    variants.append(_zeroed(np.repeat(x, trials, axis=0), random_sets.reshape(n * trials, -1)))
    everything = np.concatenate([x, *variants])
    row_classes = np.concatenate([np.tile(classes, 1 + len(top)), np.repeat(classes, trials)])
    score, probability = score_and_probability(logits(everything), row_classes)
    by_method = {name: slice(n * (1 + k), n * (2 + k)) for k, name in enumerate(top)}
    random_rows = slice(n * (1 + len(top)), None)
    return Deletion(
        score=score[:n], probability=probability[:n],
        score_drop_top={name: score[:n] - score[s] for name, s in by_method.items()},
        probability_drop_top={name: probability[:n] - probability[s] for name, s in by_method.items()},
        score_drop_random=score[:n] - score[random_rows].reshape(n, trials).mean(axis=1),
        probability_drop_random=probability[:n] - probability[random_rows].reshape(n, trials).mean(axis=1))


def _zeroed(x: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Copies of `x` with the flat pixel indices of each row set to 0 in every channel."""
    n, h, w, c = x.shape
    out = x.reshape(n, h * w, c).copy()
    np.put_along_axis(out, pixels[..., None], 0.0, axis=1)
    return out.reshape(x.shape)


@dataclass
class MethodFaithfulness:
    """One method's deletion summary over a set of images."""

    logit_drop_top: float  # mean logit drop with the method's top pixels zeroed
    logit_drop_random: float  # the same with random pixels (the same for every method)
    probability_drop_top: float
    probability_drop_random: float
    top_beats_random: float  # share of images whose top-pixel logit drop exceeds the random one
    margin: float  # mean of (top - random) logit drop
    margin_se: float  # its standard error over the images
    beats_random: bool  # margin > SIGNIFICANCE standard errors


def summarize(deletion: Deletion, methods: list[str],
              rows: np.ndarray | slice = slice(None)) -> dict[str, MethodFaithfulness]:
    """Per method, the deletion numbers over the images `rows`."""
    random_drop = deletion.score_drop_random[rows]
    out = {}
    for name in methods:
        margin = deletion.score_drop_top[name][rows] - random_drop
        se = _standard_error(margin)
        out[name] = MethodFaithfulness(
            logit_drop_top=float(deletion.score_drop_top[name][rows].mean()),
            logit_drop_random=float(random_drop.mean()),
            probability_drop_top=float(deletion.probability_drop_top[name][rows].mean()),
            probability_drop_random=float(deletion.probability_drop_random[rows].mean()),
            top_beats_random=float(np.mean(margin > 0)), margin=float(margin.mean()), margin_se=se,
            beats_random=bool(margin.mean() > SIGNIFICANCE * se))
    return out


def most_faithful(deletion: Deletion, methods: list[str]) -> list[str]:
    """The methods that hurt the prediction most when their top pixels go, best first.

    The leader is the method with the largest mean logit drop among those that beat
    random (mean margin over random above SIGNIFICANCE standard errors). Every other
    method that beats random and whose per-image drops trail the leader's by less than
    SIGNIFICANCE standard errors of the paired difference is tied with it. An empty
    list says no method beats random.
    """
    summary = summarize(deletion, methods)
    candidates = sorted((m for m in methods if summary[m].beats_random), key=lambda m: -summary[m].logit_drop_top)
    if not candidates:
        return []
    leader = candidates[0]
    tied = []
    for name in candidates[1:]:
        gap = deletion.score_drop_top[leader] - deletion.score_drop_top[name]
        if gap.mean() <= SIGNIFICANCE * _standard_error(gap):
            tied.append(name)
    return [leader, *tied]


def _standard_error(values: np.ndarray) -> float:
    """Standard error of the mean (0 for fewer than two values)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
