"""Reading a user's model file: the formats reportgen takes, Keras 2 files mended, dtype policies, user code.

reportgen reads Keras `.keras` and `.h5` files. Before Keras deserializes one, its stored config is read
(never run) and mended where Keras 2 wrote what Keras 3 refuses (a list-valued BatchNormalization
`axis`, `groups` on depthwise and transposed convolutions, `/` in layer names, ...) and where a mixed
precision policy would make reportgen compute in float16; the mended config is written into a copy of the
file, which Keras' own `keras.models.load_model` then reads. Every failure is one `ReportgenError` line.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from reportgen.inputs.training import TrainedModel, history_path, read_history
from reportgen.util.errors import ReportgenError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
OTHER_FORMATS = {
    ".pb": "a TensorFlow graph (.pb)",
    ".tflite": "a TensorFlow Lite model",
    ".onnx": "an ONNX model",
    ".pt": "a PyTorch file",
    ".pth": "a PyTorch file",
    ".json": "a model's config without its weights",
}
HOW_TO_SAVE = ('reportgen reads Keras .keras and .h5 files: load the model in Keras and save it with '
               'model.save("model.keras")')
LOW_PRECISION = ("float16", "bfloat16")
DEPTHWISE_CLASSES = ("DepthwiseConv1D", "DepthwiseConv2D")
SEPARABLE_CLASSES = ("SeparableConv1D", "SeparableConv2D")
TRANSPOSE_CLASSES = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
# Keys Keras 2 stored on separable convolutions that the layer never used (Keras 3 refuses them).
UNUSED_SEPARABLE_KEYS = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
# Where a functional config refers to layers by name.
LAYER_REFERENCE_KEYS = ("inbound_nodes", "input_layers", "output_layers", "keras_history")
UNSAFE_CLASSES = ("Lambda",)
KERAS2_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


@dataclass
class ModelFile:
    """A model read from a file, with what reading it took."""

    model: keras.Model
    dtype_policy: str = "float32"  # the policy it was saved under; reportgen computes in float32
    mended: list[str] = field(default_factory=list)  # what was changed in the stored config, in words
    trusted_code: bool = False  # loaded with Keras' safe mode off (--trust-model-code)


def read_model_file(path: Path, imports: Sequence[str] = (), trust_code: bool = False) -> ModelFile:
    """Load a user's `.keras` or `.h5` file as Keras 3 reads it, mended where Keras 2 wrote otherwise.

    Args:
        path: The model file.
        imports: Modules (dotted names) or `.py` files that define the model's custom classes, imported first.
        trust_code: Load with Keras' safe mode off, so `Lambda` layers (code stored in the file) load.

    Returns:
        The model, read in float32, with the dtype policy it was saved under and what was mended.

    Raises:
        ReportgenError: One line naming the cause and the fix.
    """
    check_model_path(path)
    import_user_code(imports)
    stored = read_stored_config(path)
    config, mended, policy = mend_config(stored)
    custom_objects = keras_application_classes(config)
    try:
        if config == stored:
            model = _load(path, custom_objects, trust_code)
        else:
            with tempfile.TemporaryDirectory(prefix="reportgen-model-") as folder:
                model = _load(write_config_copy(path, config, Path(folder)), custom_objects, trust_code)
    except ReportgenError:
        raise
    except Exception as exc:
        raise ReportgenError(f"{path}: {explain_load_failure(exc, config, trust_code)}") from None
    if not isinstance(model, keras.Model):
        raise ReportgenError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return ModelFile(model, policy, mended, trust_code)


def _load(path: Path, custom_objects: dict[str, Any], trust_code: bool) -> Any:
    return keras.models.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=not trust_code)


def check_model_path(path: Path) -> None:
    """A one-line error for a path that is not a Keras model file (missing, a folder, another format)."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "variables").is_dir():
            raise ReportgenError(f"{path}: is a TensorFlow SavedModel folder (model.export or tf.saved_model), "
                                 f"which Keras cannot load back as a model; {HOW_TO_SAVE}")
        raise ReportgenError(f"{path}: is a folder, not a model file; {HOW_TO_SAVE}")
    if not path.exists():
        raise ReportgenError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in OTHER_FORMATS:
        raise ReportgenError(f"{path}: is {OTHER_FORMATS[suffix]}; {HOW_TO_SAVE}")
    if suffix not in KERAS_SUFFIXES:
        raise ReportgenError(f"{path}: not a Keras model file (expected .keras or .h5); {HOW_TO_SAVE}")


def import_user_code(imports: Sequence[str]) -> None:
    """Import each module (a dotted name, found from the current folder too) or `.py` file, so the custom
    classes it registers with `@keras.saving.register_keras_serializable` are known before a model loads."""
    for name in imports:
        try:
            if name.endswith(".py") or "/" in name or "\\" in name:
                _import_file(Path(name).expanduser())
            else:
                if "" not in sys.path and str(Path.cwd()) not in sys.path:
                    sys.path.append(str(Path.cwd()))
                importlib.import_module(name)
        except ReportgenError:
            raise
        except Exception as exc:
            raise ReportgenError(f"--import {name}: could not be imported ({type(exc).__name__}: "
                                 f"{one_line(str(exc))})") from None


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise ReportgenError(f"--import {path}: file not found (give a module name or the path of a .py file)")
    resolved = str(path.resolve())
    if any(getattr(module, "__file__", None) == resolved for module in list(sys.modules.values())):
        return
    module_name = path.stem if path.stem not in sys.modules else f"reportgen_user_{abs(hash(resolved))}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ReportgenError(f"--import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    if str(path.resolve().parent) not in sys.path:
        sys.path.append(str(path.resolve().parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def read_stored_config(path: Path) -> dict[str, Any]:
    """The model config a `.keras` (config.json in the zip) or `.h5` (its model_config attribute) stores."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "config.json" not in archive.namelist():
                    raise ReportgenError(f"{path}: could not be loaded as a Keras model (a zip without config.json); "
                                         f"{HOW_TO_SAVE}")
                return json.loads(archive.read("config.json"))
        import h5py

        if not h5py.is_hdf5(path):
            raise ReportgenError(f"{path}: could not be loaded as a Keras model (neither a .keras zip nor an HDF5 "
                                 f"file); {HOW_TO_SAVE}")
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("model_config")
        if stored is None:
            raise ReportgenError(f"{path}: holds weights only (model.save_weights), not a model; save the whole "
                                 'model with model.save("model.keras")')
        return json.loads(stored.decode("utf-8") if isinstance(stored, bytes) else stored)
    except ReportgenError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ReportgenError(f"{path}: could not be read as a Keras model file ({one_line(str(exc))})") from None


def write_config_copy(path: Path, config: dict[str, Any], folder: Path) -> Path:
    """A copy of the model file in `folder` with `config` in place of the stored one."""
    target = folder / path.name
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy_:
            for item in source.infolist():
                data = json.dumps(config).encode() if item.filename == "config.json" else source.read(item)
                copy_.writestr(item, data)
        return target
    import h5py

    shutil.copyfile(path, target)
    with h5py.File(target, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    return target


def mend_config(stored: dict[str, Any]) -> tuple[dict[str, Any], list[str], str]:
    """The stored config with what Keras 3 refuses from Keras 2 mended and every layer computing in float32.

    Returns:
        The mended config (a copy), what was changed for Keras 3 in words, and the dtype policy the model
        was saved under ("float32" when none other).
    """
    config = copy.deepcopy(stored)
    changes: Counter[str] = Counter()
    policies: Counter[str] = Counter()
    renamed = {}
    for layer in layer_configs(config):
        class_name, settings = layer["class_name"], layer["config"]
        if class_name.startswith("Custom>") and class_name[len("Custom>"):] in KERAS_APPLICATION_CLASSES:
            layer["class_name"] = class_name = class_name[len("Custom>"):]
            changes[f"{class_name} read as Keras' own"] += 1
        policy = _policy_name(settings.get("dtype"))
        if policy and (policy.startswith("mixed_") or policy in LOW_PRECISION):
            policies[policy] += 1
            settings["dtype"] = "float32"
        axis = settings.get("axis")
        if class_name == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
            settings["axis"] = axis[0]
            changes["BatchNormalization axis [n] -> n"] += 1
        if class_name in (*DEPTHWISE_CLASSES, *SEPARABLE_CLASSES, *TRANSPOSE_CLASSES) and settings.get("groups") == 1:
            del settings["groups"]
            changes[f"{class_name} groups = 1 dropped"] += 1
        if class_name in SEPARABLE_CLASSES and any(key in settings for key in UNUSED_SEPARABLE_KEYS):
            for key in UNUSED_SEPARABLE_KEYS:
                settings.pop(key, None)
            changes[f"{class_name} unused kernel_* settings dropped"] += 1
        if layer is not config and _unwrap_single_io(settings):
            changes["nested model's one input and output unwrapped from a list"] += 1
        name = settings.get("name")
        if isinstance(name, str) and "/" in name:
            renamed[name] = name.replace("/", "_")
    if renamed:
        taken = {layer["config"].get("name") for layer in layer_configs(config)}
        for old, new in renamed.items():
            while new in taken:
                new += "_"
            taken.add(new)
            renamed[old] = new
        _rename_layers(config, renamed)
        changes["'/' in layer names -> '_'"] = len(renamed)
    mended = [f"{change} ({count} layer{'s' if count > 1 else ''})" for change, count in changes.items()]
    policy = policies.most_common(1)[0][0] if policies else "float32"
    return config, mended, policy


def layer_configs(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer's serialized form ({"class_name", "config"}) in a model config, nested models included."""
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str) and isinstance(config.get("config"), dict) \
                and "name" in config["config"]:
            yield config
        for value in config.values():
            yield from layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from layer_configs(value)


def _unwrap_single_io(settings: dict[str, Any]) -> bool:
    """Keras 2 stored a nested model's one input and output as one-item lists, which makes Keras 3 pass a list
    on to the next layer: store them as the single tensors Keras 3 writes."""
    changed = False
    for key in ("input_layers", "output_layers"):
        value = settings.get(key)
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list) and len(value[0]) == 3 \
                and isinstance(value[0][0], str):
            settings[key] = value[0]
            changed = True
    return changed


def _policy_name(dtype: Any) -> str | None:
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict) and isinstance(dtype.get("config"), dict):
        name = dtype["config"].get("name")
        return name if isinstance(name, str) else None
    return None


def _rename_layers(config: Any, renamed: dict[str, str], in_reference: bool = False) -> Any:
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "name" and isinstance(value, str) and value in renamed:
                config[key] = renamed[value]
            else:
                config[key] = _rename_layers(value, renamed, in_reference or key in LAYER_REFERENCE_KEYS)
    elif isinstance(config, list):
        return [_rename_layers(value, renamed, in_reference) for value in config]
    elif in_reference and isinstance(config, str):
        return renamed.get(config, config)
    return config


def _keras_application_classes() -> dict[str, Any]:
    """Keras' own helper layers of keras.applications that Keras 2 stored as custom objects."""
    classes: dict[str, Any] = {}
    for module, names in (("keras.src.applications.convnext", ("LayerScale", "StochasticDepth")),
                          ("keras.src.applications.inception_resnet_v2", ("CustomScaleLayer",))):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        classes.update({name: getattr(imported, name) for name in names if hasattr(imported, name)})
    return classes


KERAS_APPLICATION_CLASSES = _keras_application_classes()


def keras_application_classes(config: dict[str, Any]) -> dict[str, Any]:
    """The keras.applications helper classes the config uses (Keras' code, not the file's)."""
    used = {layer["class_name"] for layer in layer_configs(config)}
    return {name: cls for name, cls in KERAS_APPLICATION_CLASSES.items() if name in used}


def explain_load_failure(exc: BaseException, config: dict[str, Any], trust_code: bool = False) -> str:
    """Why Keras could not load the (mended) config, and what to do, in one line."""
    text = one_line(str(exc), limit=None)
    layers = list(layer_configs(config))
    unsafe = [layer["config"]["name"] for layer in layers if layer["class_name"] in UNSAFE_CLASSES]
    if unsafe and not trust_code and re.search(r"safe_mode|arbitrary code|Lambda", text):
        return (f"layer {_names(unsafe)} is a Lambda layer: loading it runs Python code stored in the file, which "
                "Keras refuses by default (safe mode); if you trust the file, pass --trust-model-code (or "
                "trust_model_code = true in the model's entry in reportgen.toml)")
    missing = missing_classes(text, layers)
    keras2_ops = [name for name in missing if name in KERAS2_OP_LAYERS]
    if keras2_ops:
        return (f"the model uses {_names(keras2_ops)}: a TensorFlow function called on a Keras tensor in Keras 2 "
                "(e.g. tf.nn.relu(x)), which Keras 3 cannot read; replace it with a Keras layer or wrap it in a "
                "registered custom Layer, and save the model again")
    if missing:
        return (f"the model uses {_names(missing)}, which Keras does not know in this process: pass --import "
                "MODULE_OR_FILE (or imports = [...] in the model's entry in reportgen.toml) naming the code that "
                "defines it with @keras.saving.register_keras_serializable()")
    return f"could not be loaded as a Keras model ({keras_reason(text)})"


def missing_classes(message: str, layers: list[dict[str, Any]]) -> list[str]:
    """The class names Keras could not find, from its message or, failing that, the config's layers."""
    found = re.findall(r"(?:Unknown [a-z ]+|Could not locate (?:class|function))\s*:?\s*'([^']+)'", message)
    if not found and re.search(r"could not be deserialized|Could not locate|Unknown", message):
        found = [layer["class_name"] for layer in layers if not _known_class(layer)]
    return list(dict.fromkeys(name.split(">")[-1] for name in found))


def _known_class(layer: dict[str, Any]) -> bool:
    class_name = layer["class_name"]
    if class_name in ("Functional", "Sequential", "Model") or hasattr(keras.layers, class_name):
        return True
    registered = layer.get("registered_name") or class_name
    return keras.saving.get_registered_object(registered) is not None or class_name in KERAS_APPLICATION_CLASSES


def keras_reason(message: str) -> str:
    """The informative part of a Keras loading error: the innermost cause, with the class it concerns,
    config dumps left out, cut at a sentence's end."""
    text = _without_long_dicts(message)
    classes = re.findall(r"deserializing class '([^']+)'", message)
    inner = text.rsplit("Exception encountered:", 1)[-1].strip()
    if classes and classes[-1] not in inner:
        inner = f"{classes[-1]}: {inner}"
    return _first_sentences(inner)


def _without_long_dicts(text: str, longest: int = 60) -> str:
    depth, start = 0, 0
    pieces: list[str] = []
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                pieces.append(text[start:i])
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                block = text[start:i + 1]
                pieces.append(block if len(block) <= longest else "{...}")
                start = i + 1
    pieces.append(text[start:])
    return re.sub(r"\s*(?:config|Full object config)\s*[=:]\s*\{\.\.\.\}\.?", "", "".join(pieces)).strip()


def _first_sentences(text: str, limit: int = 300) -> str:
    if len(text) <= limit:
        return text.rstrip(".")
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s+[A-Z`])", text[:limit])]
    return text[:ends[-1]].rstrip(".") if ends else text[:limit].rsplit(" ", 1)[0] + " ..."


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:6])
    return shown + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def one_line(text: str, limit: int | None = 300) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if limit is None else flat[:limit]


def image_input_size(model: keras.Model) -> tuple[int | None, int | None] | None:
    """The (height, width) of the model's one image input (None where free), or None when it is not an image;
    several inputs are an error."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        return None
    if len(inputs) > 1:
        described = ", ".join(f"{_tensor_name(t)} {tuple(t.shape)}" for t in inputs)
        raise ReportgenError(f"the model has {len(inputs)} inputs ({described}); reportgen reports on image "
                             "classifiers with one image input")
    if not inputs or len(inputs[0].shape) != 4:
        return None
    return inputs[0].shape[1], inputs[0].shape[2]


def choose_output(model: keras.Model, num_classes: int, name: str | None = None) -> tuple[keras.Model, str | None]:
    """The model cut to its classifier output when it has several (or `name` picks one).

    Args:
        model: The loaded model.
        num_classes: The dataset's class count.
        name: The output to use, by its layer's name (None: the one classifier whose size matches).

    Returns:
        The model (a new `keras.Model` on the chosen output when it has several) and the chosen output's name
        (None when the model has one output and no name was given).

    Raises:
        ReportgenError: No single classifier output, or `name` names none; the message lists the outputs.
    """
    try:
        outputs = list(model.outputs or [])
    except (AttributeError, ValueError):
        return model, None
    if len(outputs) <= 1 and name is None:
        return model, None
    names = [_tensor_name(t) for t in outputs]
    if name is not None:
        if name not in names:
            raise ReportgenError(f"the model has no output named {name!r}; its outputs: {_describe(outputs)}")
        chosen = names.index(name)
    else:
        classifiers = [i for i, t in enumerate(outputs) if _is_classifier(t, num_classes)]
        probabilistic = [i for i in classifiers if _activation(outputs[i]) in ("softmax", "sigmoid")]
        if len(classifiers) == 1 or len(probabilistic) == 1:
            chosen = (classifiers if len(classifiers) == 1 else probabilistic)[0]
        else:
            found = "none" if not classifiers else f"{len(classifiers)}"
            raise ReportgenError(f"the model has {len(outputs)} outputs ({_describe(outputs)}) and {found} of them "
                                 f"is a classifier of the dataset's {num_classes} classes: choose one with "
                                 "--output NAME (output = \"NAME\" in reportgen.toml, output= in build_report)")
    if len(outputs) == 1:
        return model, names[0]
    return keras.Model(model.inputs, outputs[chosen], name=model.name), names[chosen]


def _tensor_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None) if history is not None else None
    return getattr(operation, "name", None) or str(getattr(tensor, "name", "?"))


def _activation(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "linear") if activation is not None else "linear"


def _is_classifier(tensor: Any, num_classes: int) -> bool:
    if len(tensor.shape) != 2:
        return False
    size, activation = tensor.shape[-1], _activation(tensor)
    if size == 1:
        return num_classes == 2 and activation in ("sigmoid", "linear")
    return size == num_classes and activation in ("softmax", "sigmoid", "linear")


def _describe(outputs: Sequence[Any]) -> str:
    return ", ".join(f"{_tensor_name(t)!r} {tuple(t.shape)}" for t in outputs)


def load_model_file(path: Path, imports: Sequence[str] = (), trust_code: bool = False) -> TrainedModel:
    """A user's saved model (.keras or .h5), read as `read_model_file` reads it.

    Args:
        path: The model file.
        imports: Modules or `.py` files defining its custom classes, imported first.
        trust_code: Load with Keras' safe mode off (Lambda layers run code stored in the file).

    Raises:
        ReportgenError: One line naming the cause and the fix, for every way it can fail.
    """
    read = read_model_file(path, imports, trust_code)
    return TrainedModel(read.model, read_history(history_path(path)), "file", 0.0, path,
                        dtype_policy=read.dtype_policy, mended=read.mended, trusted_code=read.trusted_code)
