"""reportgen.toml: which models to report on, validated up front with clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen.util.errors import ReportgenError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = "reportgen.toml"
DEFAULT_TEMPLATES = "templates"  # beside the config: the user's templates, overriding the package's file by file


@dataclass
class ModelSpec:
    """One model to report on: where it comes from, its data, and what to show."""

    name: str
    dataset: str
    architecture: str | None = None  # a name from reportgen.inputs.zoo
    model_file: str | None = None  # or a saved .keras / .h5 model
    epochs: int = 3
    batch_size: int = 128
    samples: str | list[int] = "per-class"  # "per-class" or test-set indices
    compare_classes: list[int] = field(default_factory=list)  # two class ids, or empty for the most confused pair
    max_units: int = 256  # per-layer cap on units drawn (the rest are listed)
    dream_image: str | None = None
    dream_size: int = 512  # DeepDream: pixels on the photo's long side, the size of the final dream
    description: str = ""
    feature_vis: dict[str, Any] = field(default_factory=dict)  # FeatVisSettings overrides, e.g. {steps = 256}
    input_range: list[float] | None = None  # pixel values the model was trained on, e.g. [0, 255]; None: detected
    preprocess: str | dict[str, Any] | None = None  # preprocessing outside the model: "caffe", "tf", "torch" or a table
    budget: dict[str, Any] = field(default_factory=dict)  # Budget overrides for large models, e.g. {layers = 8}
    output: str | None = None  # the output to report on, by its layer's name, for a model with several
    imports: list[str] = field(default_factory=list)  # modules or .py files with the model's custom classes
    trust_model_code: bool = False  # load with Keras' safe mode off: Lambda layers run code stored in the file
    snapshots: list[int] | None = None  # epochs whose weights training keeps for "Learning over time"; None: default
    checkpoints: str | None = None  # a model file's snapshots: a folder of ModelCheckpoint files, epoch in the name

    @property
    def slug(self) -> str:
        from reportgen.util.slugs import slugify

        return slugify(self.name)

    def cache_folder(self, cache_dir: Path, seed: int, quick: bool) -> Path:
        """Where training caches this model: one folder per spec hash and seed."""
        return cache_dir / f"{self.slug}-{self.fingerprint(seed, quick)}"

    def fingerprint(self, seed: int, quick: bool) -> str:
        """A short hash of everything that changes the trained weights."""
        keys = {"dataset": self.dataset, "architecture": self.architecture, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": seed, "quick": quick}
        if self.model_file:
            keys["model_file"] = str(self.model_file)
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Config:
    """The whole config file: build settings and the models."""

    models: list[ModelSpec]
    out: str = "site"
    cache_dir: str = ".cache/reportgen"
    seed: int = 0
    root: Path = field(default_factory=Path.cwd)  # the folder relative paths are resolved against
    templates: str | None = None  # the user's template folder (default: templates/ beside the config, if present)
    from_file: bool = False  # read from a config file (not the empty config of a folder without one)
    # Where the build runs (see reportgen.build.executor): "local" in this process, or "ray"; with Ray, each
    # model build takes these shares of a node.
    executor: str = "local"
    ray_address: str = "auto"  # "auto" (a running cluster, else a private one), "local", or HOST:PORT
    cpus_per_model: int = 1
    gpus_per_model: float = 0.0
    # "model": one Ray task per model build; "chunk": the models one after another here, each one's feature-
    # visualization chunks spread over Ray actors (one per cpus_per_model CPUs, or per gpus_per_model GPUs)
    granularity: str = "model"
    batch_memory_share: float | None = None  # of the device's memory per gradient batch (methods.budget)
    compares: list[tuple[str, str]] = field(default_factory=list)  # [[compare]] a = "...", b = "...": compare pages

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    def templates_folder(self) -> Path | None:
        """The folder whose templates override the package's: `[build] templates` (it must exist), else a
        templates/ folder beside the config file, else None (also without a config file: a templates/ folder
        that merely sits in the working directory is not taken)."""
        if self.templates is not None:
            folder = self.resolve(self.templates)
            if not folder.is_dir():
                raise ReportgenError(f"'build.templates': folder not found: {folder}")
            return folder
        default = self.root / DEFAULT_TEMPLATES
        return default if self.from_file and default.is_dir() else None

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.models) or "none"
        raise ReportgenError(f"no model named {name!r} in the config (known: {known})")


@dataclass
class BuildOptions:
    """How one `reportgen build` runs (from the config and the command line)."""

    out: Path
    cache_dir: Path
    seed: int = 0
    quick: bool = False
    retrain: bool = False  # train again even when cached
    force: bool = False  # rebuild pages even when nothing changed
    templates: Path | None = None  # the user's template folder, overriding the package's file by file
    executor: str = "local"  # "local" or "ray" (reportgen.build.executor)
    ray_address: str = "auto"
    cpus_per_model: int = 1
    gpus_per_model: float = 0.0
    granularity: str = "model"  # with Ray: "model" or "chunk" (see Config)
    batch_memory_share: float | None = None  # None: the device's default (methods.budget)
    compares: list[tuple[str, str]] = field(default_factory=list)  # pairs of models whose compare page is built


BUILD_KEYS = {"out": str, "cache_dir": str, "seed": int, "templates": str, "executor": str, "ray_address": str,
              "cpus_per_model": int, "gpus_per_model": float, "granularity": str, "batch_memory_share": float}
EXECUTORS = ("local", "ray")
GRANULARITIES = ("model", "chunk")
# The FeatVisSettings a config may set, with their types (checked here, before TensorFlow is imported).
FEATURE_VIS_KEYS = {"steps": int, "warmup_steps": int, "settle_steps": int, "param": str, "learning_rate": float,
                    "leak": float, "zoom": float, "degrees": float, "scales": list, "total_variation": float,
                    "l2": float, "blur": float, "chunk_size": int, "diversity": float, "picture_steps": int,
                    "squash": str}
# Class images (`feature_vis.classes`) take the same keys and these (FeatVisSettings.for_classes).
CLASS_FEATURE_VIS_KEYS = {**FEATURE_VIS_KEYS, "objective": str, "starts": int}
CLASS_OBJECTIVES = ("logit", "margin")
PARAMETERIZATIONS = ("auto", "fft", "pixel", "smooth", "auto-smooth")
SQUASHES = ("clip", "sigmoid", "spread")  # params.SQUASHES: how colour (FFT) images become [0, 1]
BUDGET_KEYS = {"layers": int, "units": int, "choose": str, "picture_work": int}
BUDGET_CHOICES = ("activation", "even")
PREPROCESS_MODES = ("caffe", "tf", "torch")  # keras.applications.imagenet_utils.preprocess_input's modes
PREPROCESS_KEYS = ("scale", "mean", "std", "channels")
PREPROCESS_FORMS = ('"caffe", "tf" or "torch" (the modes of keras.applications\' preprocess_input), or a table such as '
                    '{ scale = 255, mean = [123.68, 116.78, 103.94], std = [58.4, 57.1, 57.4], channels = "rgb" } '
                    '(every key optional: scale, the value of white before the mean, above 0; mean and std, one '
                    'number or one per channel in the model\'s order, std above 0; channels, "rgb" or "bgr")')
MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelSpec)}
# A plain key's check comes from its annotation: `int` keys are counts (at least 1), `str` and `str | None`
# keys strings. Keys of any other type need their own branch in _check_field.
MODEL_KEY_TYPES = {name: hint if hint in (int, float) else str
                   for name, hint in typing.get_type_hints(ModelSpec).items() if hint in (int, float, str, str | None)}


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file; a missing default file gives an empty config."""
    if path is None:
        path = Path(DEFAULT_CONFIG)
        if not path.exists():
            return Config(models=[])
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportgenError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ReportgenError(f"{path}: not valid TOML ({exc})") from None
    config = parse_config(raw, source=str(path), root=path.resolve().parent)
    config.from_file = True
    return config


def parse_config(raw: dict[str, Any], source: str, root: Path) -> Config:
    unknown = set(raw) - {"build", "models", "compare"}
    if unknown:
        raise ReportgenError(f"{source}: unknown key {sorted(unknown)[0]!r} (expected [build], [[models]] and "
                             "[[compare]])")
    build = raw.get("build", {})
    if not isinstance(build, dict):
        raise ReportgenError(f"{source}: [build] must be a table")
    for key, value in build.items():
        if key not in BUILD_KEYS:
            raise ReportgenError(f"{source}: unknown key 'build.{key}' (known: {', '.join(BUILD_KEYS)})")
        _check_type(value, BUILD_KEYS[key], f"'build.{key}'", source)
        _check_build_value(key, value, source)
    models_raw = raw.get("models", [])
    if not isinstance(models_raw, list):
        raise ReportgenError(f"{source}: 'models' must be an array of tables ([[models]])")
    models = [parse_model(m, source, i) for i, m in enumerate(models_raw)]
    names = [m.name for m in models]
    for name in names:
        if names.count(name) > 1:
            raise ReportgenError(f"{source}: model name {name!r} is used twice")
    compares = parse_compares(raw.get("compare", []), source)
    for pair in compares:
        for name in pair:
            if name.rsplit("@", 1)[0] not in names and name not in names:
                raise ReportgenError(f"{source}: [[compare]] names {name!r}, which is not a model of the config "
                                     f"(known: {', '.join(names) or 'none'})")
    return Config(models=models, root=root, compares=compares, **build)


def parse_compares(raw: Any, source: str) -> list[tuple[str, str]]:
    """`[[compare]]` entries: `a` and `b`, each a model's name or `NAME@N` (its N-th earlier build)."""
    if not isinstance(raw, list):
        raise ReportgenError(f"{source}: 'compare' must be an array of tables ([[compare]] a = \"...\", b = \"...\")")
    pairs = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) != {"a", "b"} or not all(
                isinstance(v, str) and v.strip() for v in entry.values()):
            raise ReportgenError(f"{source}: compare[{i}] must have exactly the keys a and b, each a model's name "
                                 "(or NAME@1 for its build before the current one)")
        pairs.append((entry["a"], entry["b"]))
    return pairs


def _check_build_value(key: str, value: Any, source: str) -> None:
    """The ranges of the executor and batch keys of [build]."""
    if key == "executor" and value not in EXECUTORS:
        raise ReportgenError(f"{source}: 'build.executor' must be one of {', '.join(EXECUTORS)}, not {value!r}")
    if key == "granularity" and value not in GRANULARITIES:
        raise ReportgenError(f"{source}: 'build.granularity' must be one of {', '.join(GRANULARITIES)}, not {value!r}")
    if key == "cpus_per_model" and value < 1:
        raise ReportgenError(f"{source}: 'build.cpus_per_model' must be at least 1, not {value}")
    if key == "gpus_per_model" and value < 0:
        raise ReportgenError(f"{source}: 'build.gpus_per_model' must be at least 0, not {value}")
    if key == "batch_memory_share" and not 0 < value <= 1:
        raise ReportgenError(f"{source}: 'build.batch_memory_share' must be above 0 and at most 1, not {value}")


def parse_model(raw: Any, source: str, index: int) -> ModelSpec:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ReportgenError(f"{source}: {where} must be a table")
    for key in ("name", "dataset"):
        if key not in raw:
            raise ReportgenError(f"{source}: {where} is missing the required key {key!r}")
    where = f"model {raw['name']!r}"
    for key, value in raw.items():
        if key not in MODEL_FIELDS:
            raise ReportgenError(f"{source}: unknown key {key!r} in {where} (known: {', '.join(MODEL_FIELDS)})")
        _check_field(key, value, where, source)
    spec = ModelSpec(**raw)
    if bool(spec.architecture) == bool(spec.model_file):
        raise ReportgenError(f"{source}: {where} needs exactly one of 'architecture' or 'model_file'")
    if spec.input_range is not None and spec.preprocess is not None:
        raise ReportgenError(f"{source}: {where} sets both 'input_range' and 'preprocess': keep one (preprocess "
                             "includes the range)")
    if spec.compare_classes and len(spec.compare_classes) != 2:
        raise ReportgenError(f"{source}: 'compare_classes' in {where} must list two class ids")
    if not spec.name.strip():
        raise ReportgenError(f"{source}: {where} has an empty name")
    return spec


def _check_field(key: str, value: Any, where: str, source: str) -> None:
    if key == "samples":
        if value == "per-class" or (isinstance(value, list) and all(_is_int(v) for v in value)):
            return
        raise ReportgenError(f"{source}: 'samples' in {where} must be \"per-class\" or a list of test-set indices")
    if key == "feature_vis":
        _check_feature_vis(value, where, source)
        return
    if key == "budget":
        _check_budget(value, where, source)
        return
    if key == "input_range":
        if (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)
                and value[0] < value[1]):
            return
        raise ReportgenError(f"{source}: 'input_range' in {where} must be two numbers, low < high, e.g. [0, 255]")
    if key == "preprocess":
        if preprocess_problem(value):
            raise ReportgenError(f"{source}: {preprocess_error(value, where)}")
        return
    if key == "imports":
        if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
            return
        raise ReportgenError(f"{source}: 'imports' in {where} must be a list of module names or .py files, "
                             'e.g. ["my_layers", "src/blocks.py"]')
    if key == "trust_model_code":
        if isinstance(value, bool):
            return
        raise ReportgenError(f"{source}: 'trust_model_code' in {where} must be true or false, not {value!r}")
    if key == "snapshots":
        if isinstance(value, list) and value and all(_is_int(v) and v >= 1 for v in value):
            return
        raise ReportgenError(f"{source}: 'snapshots' in {where} must be a list of epochs (1 or more), "
                             "e.g. [1, 2, 4, 8]")
    if key == "compare_classes":
        if isinstance(value, list) and all(_is_int(v) for v in value):
            return
        raise ReportgenError(f"{source}: 'compare_classes' in {where} must be a list of class ids")
    expected = MODEL_KEY_TYPES[key]
    _check_type(value, expected, f"'{key}' in {where}", source)
    if expected is int and value < 1:
        raise ReportgenError(f"{source}: '{key}' in {where} must be at least 1, not {value}")


def preprocess_problem(value: Any) -> str | None:
    """What is wrong with a `preprocess` setting (see PREPROCESS_FORMS), or None."""
    if isinstance(value, str):
        return None if value in PREPROCESS_MODES else f"unknown mode {value!r}"
    if not isinstance(value, dict):
        return f"not {type(value).__name__} ({value!r})"
    if not value:
        return "an empty table"
    unknown = [key for key in value if key not in PREPROCESS_KEYS]
    if unknown:
        return f"unknown key {unknown[0]!r}"
    if "scale" in value and not (_is_number(value["scale"]) and value["scale"] > 0):
        return f"scale {value['scale']!r} is not a number above 0"
    lengths = []
    for key, positive in (("mean", False), ("std", True)):
        if key not in value:
            continue
        setting = value[key]
        numbers = list(setting) if isinstance(setting, (list, tuple)) else [setting]
        if not numbers or not all(_is_number(v) and (v > 0 or not positive) for v in numbers):
            above = " above 0" if positive else ""
            return f"{key} {setting!r} is not one number{above} or a list of one per channel"
        if len(numbers) > 1:
            lengths.append(len(numbers))
    if len(set(lengths)) > 1:
        return f"mean and std give {lengths[0]} and {lengths[1]} channels"
    if value.get("channels", "rgb") not in ("rgb", "bgr"):
        return f"channels {value['channels']!r} is not \"rgb\" or \"bgr\""
    return None


def preprocess_error(value: Any, where: str = "") -> str:
    """One line: what is wrong with a `preprocess` setting, and the forms it may take."""
    label = f"'preprocess' in {where}" if where else "preprocess"
    return f"{label}: {preprocess_problem(value) or 'malformed'}; it must be {PREPROCESS_FORMS}"


def _check_feature_vis(value: Any, where: str, source: str, prefix: str = "feature_vis") -> None:
    if not isinstance(value, dict):
        raise ReportgenError(f"{source}: '{prefix}' in {where} must be a table, e.g. {{ steps = 256 }}")
    known = FEATURE_VIS_KEYS if prefix == "feature_vis" else CLASS_FEATURE_VIS_KEYS
    for key, setting in value.items():
        label = f"'{prefix}.{key}' in {where}"
        if key == "classes" and prefix == "feature_vis":
            _check_feature_vis(setting, where, source, "feature_vis.classes")
            continue
        if key not in known:
            raise ReportgenError(f"{source}: unknown key {label} (known: {', '.join(known)})")
        _check_type(setting, known[key], label, source)
        if key == "param" and setting not in PARAMETERIZATIONS:
            raise ReportgenError(f"{source}: {label} must be one of {', '.join(PARAMETERIZATIONS)}, not {setting!r}")
        if key == "squash" and setting not in SQUASHES:
            raise ReportgenError(f"{source}: {label} must be one of {', '.join(SQUASHES)}, not {setting!r}")
        if key == "objective" and setting not in CLASS_OBJECTIVES:
            raise ReportgenError(f"{source}: {label} must be one of {', '.join(CLASS_OBJECTIVES)}, not {setting!r}")
        if key == "scales" and not (setting and all(_is_number(s) and 0 < s <= 1 for s in setting)):
            raise ReportgenError(f"{source}: {label} must list scales in (0, 1], e.g. [0.5, 1.0]")
        least = 1 if key in ("steps", "chunk_size", "starts") else 0
        if key not in ("param", "scales", "objective") and setting < least:
            raise ReportgenError(f"{source}: {label} must be at least {least}, not {setting}")
        if key == "learning_rate" and setting == 0:
            raise ReportgenError(f"{source}: {label} must be more than 0")


def _check_budget(value: Any, where: str, source: str) -> None:
    if not isinstance(value, dict):
        raise ReportgenError(f"{source}: 'budget' in {where} must be a table, e.g. {{ layers = 8, units = 256 }}")
    for key, setting in value.items():
        label = f"'budget.{key}' in {where}"
        if key not in BUDGET_KEYS:
            raise ReportgenError(f"{source}: unknown key {label} (known: {', '.join(BUDGET_KEYS)})")
        _check_type(setting, BUDGET_KEYS[key], label, source)
        if key == "choose" and setting not in BUDGET_CHOICES:
            raise ReportgenError(f"{source}: {label} must be one of {', '.join(BUDGET_CHOICES)}, not {setting!r}")
        if key != "choose" and setting < 1:
            raise ReportgenError(f"{source}: {label} must be at least 1, not {setting}")


def _check_type(value: Any, expected: type, label: str, source: str) -> None:
    checks = {int: _is_int, float: _is_number}
    ok = checks[expected](value) if expected in checks else isinstance(value, expected)
    if not ok:
        raise ReportgenError(f"{source}: {label} must be {expected.__name__}, not {type(value).__name__} ({value!r})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)
