"""The render loop: batched gradient ascent on an image parameterisation.

One batch slot per unit: every filter of a layer (or every class) is
optimised in one run, in chunks of at most `chunk_size` slots so memory stays
bounded. All steps of a chunk run inside one `tf.function` with a fixed input
signature, traced once per renderer and never per unit. Each slot's gradient
is normalised on its own before the Adam update, so strongly and weakly
responding units move at the same pace in the same batch. A unit's starting
image comes from (seed, unit) and the random transforms from (seed, stage)
alone, so rendering it in a batch or on its own gives the same image.

Several sets of units can share one optimisation (`stack`): the filters of
every layer and the classes then cost one compiled loop, and one set of
transform and Adam ops per step, instead of one per layer.

With several `scales` the render runs in stages: the first optimises a
coarse image (upsampled to the canvas before the model sees it), and each
later stage continues from the previous stage's images at a finer
resolution, so large patterns form before fine detail is added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from reportgen.methods.featvis.objectives import Objective
from reportgen.methods.featvis.params import make_param
from reportgen.methods.featvis.probes import OPTIMISE, PLAIN, WARM_UP, Probe
from reportgen.methods.featvis.regularizers import Regularizer, blur, l2, saturation, total_variation
from reportgen.methods.featvis.transforms import standard_transforms

IDENTITY_DRAW = 0.5  # the uniform draw every standard transform maps to "no change"


@dataclass(frozen=True)
class FeatVisSettings:
    """How images are optimised. The defaults give clean strokes on 28x28 MNIST models.

    Measured on the four seed models (share of live filters whose image beats the best test
    image): a 16-step pre-activation warm-up pushed first-layer images to flat black or white
    (fashion-2conv conv1 67% with it, 92% without); zoom and rotation blur the fine periodic
    patterns first layers want (98% with jitter alone); the leak adds a few points more.
    """

    # In all, shared among the scales. At 64 instead of 128 steps, as many live filters reach the dataset max
    # (mnist-3conv 98.5%, mnist-oip 100%, fashion-2conv 98.4% against 100%) and as many class images are recognised
    # (10, 10 and 9 of 10, against 9, 10 and 9), for 2.1 s less on mnist-3conv.
    steps: int = 64
    learning_rate: float | None = None  # None: the parameterisation's own (pixel 0.2, FFT 0.3)
    param: str = "auto"  # "fft", "pixel" or "auto" (FFT for colour, pixel for grayscale: see params.make_param)
    warmup_steps: int = 0  # first steps on the pre-activation everywhere (maps dead everywhere always get it)
    leak: float = 0.1  # share of the negative pre-activation kept while optimising (see probes)
    zoom: float = 0.0  # random zoom by up to ±zoom at every step (0.05 is Lucid-like), on top of jitter
    degrees: float = 0.0  # random turn by up to ±degrees at every step
    scales: tuple[float, ...] = (1.0,)  # multi-scale: e.g. (0.5, 1.0) optimises at half size, then full
    settle_steps: int = 0  # last steps without random transforms: the image settles on the exact grid
    # Units per optimisation (a diverse group counts as one), fewer where memory asks for it (projections.batch_rows).
    # Each optimisation is traced on its own: mnist-3conv's 136 neuron images and 136 diverse groups took 0.3 s
    # more in two optimisations than in one.
    chunk_size: int = 512
    max_size: int = 48  # largest canvas for layers of a model that takes any input size
    color_correlation: tuple[tuple[float, ...], ...] | None = None  # FFT colour decorrelation; None: ImageNet's
    fft_decay: float = 1.0  # the FFT parameterisation's spectrum scaling 1/f^decay (params.FFTParam)
    fourier_profile: tuple[tuple[float, ...], ...] | None = None  # param "maco": the photos' (params.fourier_profile)
    squash: str = "clip"  # FFT/MaCo colour images into [0, 1]: "clip" (stretched, clipped sigmoid) or "sigmoid"
    contrast: float = 1.0  # FFT/MaCo: the image's values are multiplied by this before the squash
    saturation: float = 0.0  # weight of the penalty on pixels near 0 or 1 (regularizers.saturation)
    total_variation: float = 0.02
    l2: float = 0.05  # pulls what the unit ignores back to grey: colour images were blown out without it
    blur: float = 0.0
    l2_target: tuple[float, ...] | None = None  # what `l2` pulls toward, per channel; None: mid-grey
    objective: str = "logit"  # classes: "logit" (the class's logit) or "margin" (objectives.class_margin)
    starts: int = 1  # random starts per unit; the one whose final objective (with penalties) is highest is kept
    # Weight of Lucid's diversity term against the unit's relative objective (objectives.relative), for the
    # images of one unit rendered as a group. Groups that came out alike (featvis.ALIKE_SIMILARITY, SAME_PICTURE)
    # at 16 steps, of mnist-3conv's 136, mnist-oip's 210 and fashion-2conv's 128: weight 1: 4, 0, 0 (median
    # activation 0.58, 0.42, 0.46 of the filter's own image); 2: 1, 0, 0 (0.47, 0.33, 0.39); 3: 1, 0, 0 (0.42, 0.28,
    # 0.34).
    diversity: float = 2.0
    picture_steps: int | None = None  # steps of the neuron images and diverse groups; None: a quarter of `steps`
    regularizers: tuple[Regularizer, ...] = field(default=(), compare=False)  # extra plug-ins

    @classmethod
    def from_config(cls, values: dict) -> FeatVisSettings:
        """Settings from a model's `feature_vis` config table (already checked by reportgen.inputs.config); its
        `classes` table is for `for_classes`."""
        return cls(**_parsed({key: value for key, value in values.items() if key != "classes"}))

    def for_classes(self, overrides: dict | None = None) -> FeatVisSettings:
        """Class images' settings: these, then CLASS_PRESET, then `overrides` (a config's `feature_vis.classes`)."""
        return dataclasses.replace(self, **{**CLASS_PRESET, **_parsed(overrides or {})})

    def quick(self) -> FeatVisSettings:
        """A fast variant for smoke runs: a quarter of the steps."""
        return dataclasses.replace(self, steps=max(16, self.steps // 4), warmup_steps=min(8, self.warmup_steps))

    def for_pictures(self) -> FeatVisSettings:
        """The settings of the neuron images' and diverse groups' optimisations: `picture_steps`. They need
        to show a pattern and to differ, not to reach the last bit of activation, which the filter's own image
        does. On mnist-3conv (filters at 128 steps), 16 steps instead of 32 took feature visualization from
        15.0 s to 12.3 s; the neuron images resemble their top crops as often (98.5% of live filters either way;
        mnist-oip 97.6%, fashion-2conv 98.4% against 97.7%) and as many diverse groups differ (see `diversity`)."""
        steps = self.picture_steps or max(8, self.steps // 4)
        return dataclasses.replace(self, steps=steps, warmup_steps=min(self.warmup_steps, steps),
                                   settle_steps=min(self.settle_steps, steps))

    def stages(self) -> list[tuple[float, int]]:
        """(scale, steps) per stage: the steps split evenly, the last stage taking the remainder."""
        if not self.scales or any(not 0 < scale <= 1 for scale in self.scales):
            raise ValueError(f"scales must be in (0, 1], got {self.scales}")
        share = self.steps // len(self.scales)
        last = self.steps - share * (len(self.scales) - 1)
        return [(scale, share) for scale in self.scales[:-1]] + [(self.scales[-1], last)]

    def all_regularizers(self) -> list[Regularizer]:
        toward = 0.5 if self.l2_target is None else self.l2_target
        weights = [(total_variation, self.total_variation), (lambda w: l2(w, toward), self.l2), (blur, self.blur),
                   (saturation, self.saturation)]
        return [make(w) for make, w in weights if w > 0] + list(self.regularizers)


# Class images: what made an independent pixel MLP recognise them (mnist-3conv: 4 of 10 classes with the filters'
# settings, 9 to 10 of 10 with these; see the README). The margin objective stops evidence every class shares from
# filling the canvas; a strong pull toward the data's background colour (`l2_target`) keeps only the strokes the
# class needs; smoothed pixels give strokes a few pixels wide; of 4 random starts the one with the highest
# objective is kept. `l2` here is per unit of logit margin: the feature-vis section multiplies it by the median
# margin of the model's test images (about 16 for the MNIST seed models), since a model's logits may have any scale.
CLASS_PRESET = {"param": "auto-smooth", "l2": 6.0, "objective": "margin", "starts": 4}


def _parsed(values: dict) -> dict:
    """Config values as FeatVisSettings fields take them (lists as tuples)."""
    values = dict(values)
    if "scales" in values:
        values["scales"] = tuple(float(scale) for scale in values["scales"])
    return values


@dataclass
class RenderResult:
    images: np.ndarray  # (N, H, W, C) in [0, 1]
    values: np.ndarray  # (N,) the objective on the final images, untransformed


@dataclass
class Part:
    """A set of units in a shared optimisation: the probe and objective that read their per-slot
    unit indices from `slots` (e.g. `class_logit(slots)`), one entry per batch slot."""

    probe: Probe
    objective: Objective
    slots: tf.Variable
    # Its slots see their images untransformed. A neuron objective names one position: jitter would move the
    # image under it and smear the unit's pattern over the jitter's span, which is all of a first layer's
    # 3x3 receptive field (mnist-oip conv1: 31% of neuron images resembled their top crops more than random
    # crops with jitter, 100% without).
    steady: bool = False
    # Its slots' random starts, as a multiple of the parameterisation's own spread (see Renderer.start).
    start_spread: float = 1.0


def stack(parts: Sequence[Part]) -> tuple[Probe, Objective]:
    """One probe and objective for parts side by side in one batch: each part takes the next
    `len(part.slots)` slots, its probe sees only their images and its objective scores them."""
    sizes = [int(part.slots.shape[0]) for part in parts]

    def probe_fn(images: tf.Tensor, phase: tf.Tensor) -> dict[str, tf.Tensor]:
        return {f"{i}/{name}": values for i, (part, own) in enumerate(zip(parts, tf.split(images, sizes)))
                for name, values in part.probe.fn(own, phase).items()}

    def score(activations: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat([part.objective({key.split("/", 1)[1]: values for key, values in activations.items()
                                          if key.startswith(f"{i}/")}) for i, part in enumerate(parts)], axis=0)

    probe = Probe(probe_fn, parts[0].probe.input_shape, all(part.probe.any_size for part in parts))
    layers = frozenset(f"{i}/{name}" for i, part in enumerate(parts) for name in part.objective.layers)
    return probe, Objective(score, layers, " | ".join(part.objective.name for part in parts))


class Renderer:
    """Compiles the ascent for one probe, objective and canvas; `run` renders any number of units.

    `slots` is the variable (or, for stacked parts, the variables in batch order) the objective
    reads its per-slot unit indices from (e.g. `channel(layer, slots)`); `run` fills it chunk by chunk.
    """

    def __init__(self, probe: Probe, objective: Objective, size: tuple[int, int], settings: FeatVisSettings,
                 slots: tf.Variable | Sequence[tf.Variable], batch: int, scale: float = 1.0, steps: int | None = None,
                 stage: int = 0, steady: np.ndarray | None = None, spread: np.ndarray | None = None) -> None:
        self.probe, self.objective, self.settings, self.slots = probe, objective, settings, slots
        self.size, self.steps, self.stage = size, steps or settings.steps, stage
        self.param_size = (max(2, round(size[0] * scale)), max(2, round(size[1] * scale)))
        self.param = make_param(settings.param, *self.param_size, probe.input_shape[-1], settings.color_correlation,
                                settings.fft_decay, settings.fourier_profile, settings.squash, settings.contrast)
        self.transform = standard_transforms(max(size), settings.zoom, settings.degrees)
        self.regularizers = settings.all_regularizers()
        self.learning_rate = settings.learning_rate or self.param.learning_rate
        self.batch = batch
        # (batch,) True where a slot's image skips the random transforms (see Part.steady)
        self.steady = None if steady is None or not np.any(steady) else tf.constant(np.asarray(steady, bool))
        self.spread = None if spread is None else np.asarray(spread, np.float32)  # (batch,) see Part.start_spread
        param_shape = self.param.init(1, np.random.default_rng(0)).shape[1:]
        self._optimise = tf.function(self._ascent, autograph=False, input_signature=[  # the loop is explicit
            tf.TensorSpec([batch, *param_shape], tf.float32),
            tf.TensorSpec([self.steps + 1, self.transform.draws], tf.float32),
        ])

    def _image(self, param: tf.Tensor) -> tf.Tensor:
        """The canvas-sized image of a parameter (upsampled when this stage is coarser)."""
        images = self.param.to_image(param)
        if self.param_size != tuple(self.size):
            images = tf.image.resize(images, self.size, method="bilinear")
        return images

    def _ascent(self, start: tf.Tensor, uniforms: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`steps` steps, then one more pass, untransformed and PLAIN, whose images and scores are the
        result: the loop's last iteration rather than a pass of its own, so the probe is traced once."""
        def body(step: tf.Tensor, param: tf.Tensor, m: tf.Tensor, v: tf.Tensor, *_: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return (step + 1, *self.step(param, m, v, step, uniforms[step]))

        images = tf.zeros([self.batch, *self.size, self.probe.input_shape[-1]])
        start = (tf.constant(0), start, tf.zeros_like(start), tf.zeros_like(start), images, tf.zeros([self.batch]))
        *_, images, scores = tf.while_loop(lambda step, *_: step <= self.steps, body, start)
        return images, scores

    def step(self, param: tf.Tensor, m: tf.Tensor, v: tf.Tensor, step: tf.Tensor,
             uniforms: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """One Adam step of gradient ascent on every slot: transform, probe, normalise, update. Also
        returns the images before the update and their scores (PLAIN once `step` reaches `steps`)."""
        beta1, beta2 = 0.9, 0.999
        with tf.GradientTape() as tape:
            tape.watch(param)
            images = self._image(param)
            phase = tf.where(step >= self.steps, PLAIN, tf.where(step < self.settings.warmup_steps, WARM_UP, OPTIMISE))
            moved = self.transform(images, uniforms)
            if self.steady is not None:
                moved = tf.where(self.steady[:, None, None, None], images, moved)
            scores = self.objective(self.probe.fn(moved, phase))
            penalty = tf.add_n([r(images) for r in self.regularizers]) if self.regularizers else 0.0
            total = tf.reduce_sum(scores - penalty)
        grad = tape.gradient(total, param)
        grad = grad / (tf.reduce_mean(tf.abs(grad), axis=list(range(1, len(param.shape))), keepdims=True) + 1e-8)
        t = tf.cast(step, tf.float32) + 1.0
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * tf.square(grad)
        param = param + self.learning_rate * (m / (1 - beta1**t)) / (tf.sqrt(v / (1 - beta2**t)) + 1e-8)
        return param, m, v, images, scores

    def run(self, units: np.ndarray, seed: int, start_images: np.ndarray | None = None,
            attempts: np.ndarray | None = None) -> RenderResult:
        """Render `units`; from random parameters (`attempts`: which of its unit's random starts each slot
        takes, 0 for all by default), or continuing from `start_images` (canvas-sized)."""
        images, values = [], []
        attempts = np.zeros(len(units), np.int64) if attempts is None else np.asarray(attempts)
        for start in range(0, len(units), self.batch):
            chunk = np.asarray(units[start : start + self.batch])
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - len(chunk))]).astype(np.int32)
            own_attempts = attempts[start : start + self.batch]
            own_attempts = np.concatenate([own_attempts, np.repeat(own_attempts[-1:], self.batch - len(chunk))])
            self._fill_slots(padded)
            if start_images is None:
                starts = np.stack([self.start(int(unit), seed, int(k)) for unit, k in zip(padded, own_attempts)])
                if self.spread is not None:
                    starts *= self.spread.reshape(-1, *[1] * (starts.ndim - 1))
            else:
                given = start_images[start : start + self.batch]
                starts = self.param.from_image(tf.image.resize(np.concatenate(
                    [given, np.repeat(given[-1:], self.batch - len(given), axis=0)]), self.param_size))
            with _without_grappler():
                out_images, out_values = self._optimise(tf.constant(starts), tf.constant(self.uniforms(seed)))
            images.append(out_images.numpy()[: len(chunk)])
            values.append(out_values.numpy()[: len(chunk)])
        return RenderResult(np.concatenate(images), np.concatenate(values))

    def _fill_slots(self, units: np.ndarray) -> None:
        offset = 0
        for variable in _as_list(self.slots):
            variable.assign(units[offset : offset + variable.shape[0]])
            offset += variable.shape[0]

    def start(self, unit: int, seed: int, attempt: int = 0) -> np.ndarray:
        """A unit's starting parameters, from (seed, unit, stage) alone; its further random starts
        (`attempt` 1, 2, ...) add the attempt to that."""
        key = [seed, unit, self.stage] + ([attempt] if attempt else [])
        return self.param.init(1, np.random.default_rng(key))[0]

    def uniforms(self, seed: int) -> np.ndarray:
        """The transforms' draws for every step and the final pass, (steps + 1, draws), from (seed, stage)."""
        draws = np.random.default_rng([seed, self.stage]).random((self.steps + 1, self.transform.draws), np.float32)
        draws[self.steps - self.settings.settle_steps :] = IDENTITY_DRAW  # settle steps, and the final pass
        return draws


def render_units(probe: Probe, objective: Objective, size: tuple[int, int], settings: FeatVisSettings,
                 slots: tf.Variable | Sequence[tf.Variable], units: np.ndarray, seed: int,
                 attempts: np.ndarray | None = None, steady: np.ndarray | None = None,
                 spread: np.ndarray | None = None, renderers: list[Renderer] | None = None) -> RenderResult:
    """Every unit in `units`, stage by stage (one stage unless `settings.scales` asks for more); `attempts`
    say which of its unit's random starts each slot takes (see Renderer.run), `steady` which slots skip
    the transforms, `spread` how far each slot's random start spreads (Part.start_spread).

    `renderers`: the stages' compiled loops of an earlier call with the same probe, objective, slots and
    settings, reused instead of traced again (an empty list is filled). Fewer units than slots are padded
    (see Renderer.run), so every chunk of one layer and kind runs through one traced loop."""
    batch = sum(int(variable.shape[0]) for variable in _as_list(slots))
    renderers = [] if renderers is None else renderers
    result = None
    for stage, (scale, steps) in enumerate(settings.stages()):
        if len(renderers) == stage:
            renderers.append(Renderer(probe, objective, size, settings, slots, batch, scale, steps, stage, steady,
                                      spread))
        result = renderers[stage].run(units, seed, None if result is None else result.images, attempts)
    return result


def penalties(settings: FeatVisSettings, images: np.ndarray) -> np.ndarray:
    """(N,) the regularizers' total on final images: what the ascent subtracted from each objective."""
    regularizers = settings.all_regularizers()
    if not regularizers:
        return np.zeros(len(images), np.float32)
    return tf.add_n([r(tf.constant(images)) for r in regularizers]).numpy()


@contextmanager
def _without_grappler() -> Iterator[None]:
    """On CPU, runs the loop without Grappler's graph rewrites. There they do not make the steps
    faster, take 0.1 s to apply, and leave oneDNN's rewrite of max-pool gradients to chance: in
    about one build of six the loop fell back to TensorFlow's own MaxPoolGrad, eight times slower.
    The switch is process-wide while the loop runs, and restored after. A GPU keeps the rewrites
    (its layout rewrites matter there)."""
    if tf.config.list_logical_devices("GPU"):
        yield
        return
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def _as_list(slots: tf.Variable | Sequence[tf.Variable]) -> list[tf.Variable]:
    return [slots] if isinstance(slots, tf.Variable) else list(slots)
