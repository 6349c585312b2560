"""`build_report`: a model's report from Python, for a model trained in a notebook and data in memory.

    import reportgen
    report = reportgen.build_report(model, (x_test, y_test), out="site", name="my-cnn")
    report["metrics"]["test_accuracy"]

The model and the data are written to a temporary folder (a `.keras` file and an `.npz`) and built by
the same `build_site` as `reportgen build --model-file M --dataset npz:D`, so the site is the CLI's,
written atomically, and the user's model object is never changed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.inputs.config import BuildOptions, ModelSpec, parse_model
from reportgen.inputs.data import as_images_and_labels
from reportgen.util import progress
from reportgen.util.errors import ReportgenError
from reportgen.util.slugs import slugify

DATA_FORMS = ("(x_test, y_test), (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)), "
              "a tf.data.Dataset of (image, label) batches, or a dataset spec such as 'mnist'")


def build_report(model: Any, data: Any, out: str | Path = "site", *, name: str | None = None,
                 class_names: Sequence[str] | None = None, quick: bool = False,
                 input_range: tuple[float, float] | None = None,
                 preprocess: str | dict[str, Any] | None = None, seed: int = 0,
                 budget: dict[str, Any] | None = None, dream_image: str | Path | None = None,
                 history: dict[str, list[float]] | None = None, description: str = "",
                 output: str | None = None, quiet: bool = False,
                 templates: str | Path | None = None, checkpoints: str | Path | None = None) -> Report:
    """Build the report of one trained model into the site folder `out`, as `reportgen build` does.

    Args:
        model: A `keras.Model` (Sequential, Functional, nested bases welcome) or the path of a `.keras` /
            `.h5` file.
        data: The test data: `(x_test, y_test)` numpy arrays, `(x_train, y_train, x_test, y_test)` (the
            training arrays are not needed and are ignored), Keras' `((x_train, y_train), (x_test, y_test))`,
            a `tf.data.Dataset` of `(images, labels)` batches, or a dataset spec (`"mnist"`,
            `"folder:PATH"`, ...). Images are (N, H, W) or (N, H, W, C) in the range the model was trained
            on; labels are class indices or one-hot rows.
        out: The site folder: created, or one reportgen wrote before (anything else is refused).
        name: The report's name (default: the model's name or file name).
        class_names: Names of the classes, in label order (arrays only; default "0", "1", ...).
        quick: Shortened visualizations, for a first look.
        input_range: The pixel values of black and white the model was trained on, e.g. (0, 255). Default:
            detected from a Rescaling or Normalization layer at the model's start; for arrays with no such
            layer, the range the arrays are in (uint8 or above 1.5: [0, 255]; below 0: [-1, 1]; else [0, 1]).
        preprocess: The preprocessing the model's images went through outside the model, instead of
            `input_range`: "caffe", "tf" or "torch" for `keras.applications.<family>.preprocess_input` in that
            mode, or a dict with any of `scale` (the value of white, default 1), `mean` and `std` (one number or
            one per channel, in the model's channel order) and `channels` ("rgb" or "bgr"): the model is fed
            `(x * scale - mean) / std`, channels reordered first. Give the images as they were before
            preprocessing (e.g. uint8 or [0, 255] for `preprocess_input`).
        seed: Seed of every random start, so a rebuild draws the same pictures.
        budget: How much of a large model gets galleries, e.g. `{"layers": 8, "units": 256}` (see README).
        dream_image: A photo for DeepDream (default: scikit-image's sample cat).
        history: `model.fit(...).history`, to show the training curves.
        description: A paragraph for the top of the page.
        output: For a model with several outputs, the classifier output to report on, by its layer's name
            (default: the one output whose size is the number of classes).
        quiet: No progress output.
        templates: A folder of your own templates, overriding the package's file by file (see README, "Your own
            templates"), as `[build] templates` does.
        checkpoints: A folder of the model's weights during training (ModelCheckpoint's `.keras` files or
            `.weights.h5`, the epoch in each name), shown in "Learning over time".

    Returns:
        The report record, as written to `out/<name>/report.json`: a dict (a `Report`) whose `page` is the path of
        the model's `index.html`; as the last value of a Jupyter cell it shows that page inline.

    Raises:
        ReportgenError: A bad argument, or a model or dataset reportgen cannot report on; the message is one
            line that says what to fix. Nothing in `out` has changed.
    """
    from reportgen.build.site import build_site

    was_quiet = progress.is_quiet()
    progress.set_quiet(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="reportgen-api-") as folder:
            spec = model_spec(model, data, Path(folder), name=name, class_names=class_names,
                              input_range=input_range, preprocess=preprocess, budget=budget, dream_image=dream_image,
                              history=history, description=description, output=output,
                              checkpoints=checkpoints)
            options = BuildOptions(out=Path(out), cache_dir=Path(folder) / "cache", seed=seed, quick=quick,
                                   templates=None if templates is None else Path(templates).expanduser())
            (report,) = build_site([spec], options)
    finally:
        progress.set_quiet(was_quiet)
    return Report(report, Path(out) / report["model"]["slug"] / "index.html")


class Report(dict):
    """A model's report record (report.json's content, a plain dict to index) that knows its page: `page` (also
    `path`) is the model's `index.html`. In Jupyter it shows that page inline, in an iframe, with a link to open
    it; nothing is served: the notebook server serves the file (a page under the notebook's folder is given by a
    relative address, one elsewhere by a file:// URL, which a browser may refuse to embed)."""

    def __init__(self, record: dict[str, Any], page: str | Path):
        super().__init__(record)
        self.page = Path(page)

    @property
    def path(self) -> Path:
        return self.page

    def page_url(self) -> str:
        """The page's address for the notebook's browser: relative to the working directory when under it."""
        page = self.page.resolve()
        try:
            return page.relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return page.as_uri()

    def _repr_html_(self) -> str:
        from html import escape

        src = escape(self.page_url(), quote=True)
        name = escape(str(self.get("model", {}).get("name", self.page.parent.name)))
        # the markup of IPython.display.IFrame, without depending on IPython
        return (f'<iframe width="100%" height="600" src="{src}" frameborder="0" allowfullscreen '
                f'title="reportgen report of {name}"></iframe>\n'
                f'<p><a href="{src}" target="_blank">Open the report of {name}</a> ({escape(str(self.page))})</p>')

    def __reduce__(self):  # pickles and copies as a Report with its page
        return (type(self), (dict(self), self.page))


def model_spec(model: Any, data: Any, folder: Path, *, name: str | None = None,
               class_names: Sequence[str] | None = None, input_range: tuple[float, float] | None = None,
               preprocess: str | dict[str, Any] | None = None,
               budget: dict[str, Any] | None = None, dream_image: str | Path | None = None,
               history: dict[str, list[float]] | None = None, description: str = "",
               output: str | None = None, checkpoints: str | Path | None = None) -> ModelSpec:
    """The `ModelSpec` of a model and data given in Python, their files written into `folder`; the
    arguments are checked as a config file's entry is."""
    name = name if name is not None else _model_name(model)
    if not str(name).strip():
        raise ReportgenError("name must not be empty")
    model_file = _model_file(model, folder / slugify(str(name)), history)
    if isinstance(data, str):
        if class_names is not None:
            raise ReportgenError(f"class_names go with arrays: dataset {data!r} names its own classes")
        dataset = data
    else:
        dataset, data_range = _arrays_file(data, folder / "data.npz", class_names)
        if input_range is None and preprocess is None and data_range != (0.0, 1.0):
            input_range = data_range
    values = {"name": str(name), "dataset": dataset, "model_file": str(model_file), "description": description,
              "input_range": None if input_range is None else list(input_range),
              "preprocess": _plain(preprocess),
              "budget": dict(budget or {}), "dream_image": None if dream_image is None else str(dream_image),
              "output": output, "checkpoints": None if checkpoints is None else str(checkpoints)}
    return parse_model({key: value for key, value in values.items() if value is not None}, "build_report", 0)


def _plain(preprocess: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """A preprocess dict as a config holds it (lists, not tuples or arrays)."""
    if not isinstance(preprocess, dict):
        return preprocess
    numeric = (tuple, list, np.ndarray, np.generic)
    return {key: np.asarray(value).tolist() if isinstance(value, numeric) else value
            for key, value in preprocess.items()}


def _model_name(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return Path(model).stem
    return str(getattr(model, "name", "") or "model")


def _model_file(model: Any, stem: Path, history: dict[str, list[float]] | None) -> Path:
    """The user's file as it is, or a live model saved (with its history) as `stem`.keras."""
    import json

    import keras

    from reportgen.inputs.training import history_path

    if isinstance(model, (str, Path)):
        if history is not None:
            raise ReportgenError("history goes with a live model; beside a file, save it as <file>.history.json")
        return Path(model).expanduser()
    if not isinstance(model, keras.Model):
        raise ReportgenError(f"model must be a keras.Model or the path of a .keras or .h5 file, "
                             f"not {type(model).__name__}")
    path = stem.with_suffix(".keras")
    try:
        model.save(path)
    except Exception as exc:
        raise ReportgenError(f"the model could not be saved for the report ({' '.join(str(exc).split())[:200]})"
                             ) from None
    if history:
        history_path(path).write_text(json.dumps({k: [float(v) for v in vs] for k, vs in history.items()}),
                                      encoding="utf-8")
    return path


def _arrays_file(data: Any, path: Path, class_names: Sequence[str] | None) -> tuple[str, tuple[float, float]]:
    """Test images and labels written as an `.npz` dataset in [0, 1]; returns its spec and the images' range."""
    images, labels, kind = test_arrays(data)
    read = as_images_and_labels(images, labels, kind)
    images = read.images
    low, high = value_range(images)
    # uint8 is kept as bytes (the loader divides by 255); anything else is mapped to [0, 1]
    scaled = images if images.dtype == np.uint8 else np.clip((images.astype(np.float32) - low) / (high - low), 0, 1)
    labels, classes = read.labels, read.classes
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(classes)]
    if len(names) < classes:
        raise ReportgenError(f"class_names has {len(names)} names but the labels go up to {classes - 1}")
    np.savez(path, x_test=scaled, y_test=labels, class_names=np.array(names),
             name=np.array(f"{kind} ({len(labels):,} test images)"))
    return f"npz:{path}", (low, high)


def test_arrays(data: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, what they came from) out of any form `build_report` takes."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return (*_from_tf_data(data), "tf.data.Dataset")
    if isinstance(data, (tuple, list)):
        if len(data) == 2 and all(isinstance(part, (tuple, list)) and len(part) == 2 for part in data):
            data = data[1]  # Keras' load_data(): ((x_train, y_train), (x_test, y_test))
        elif len(data) == 4:
            data = data[2:]
        if len(data) == 2:
            return np.asarray(data[0]), np.asarray(data[1]), "numpy arrays"
    raise ReportgenError(f"data must be {DATA_FORMS}; got {type(data).__name__}")


def _from_tf_data(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every (images, labels) pair of the dataset, batched or not, as two arrays."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ReportgenError("a tf.data.Dataset for build_report must yield (images, labels) pairs")
    if not _is_batched(spec[0].shape, spec[1].shape):
        dataset = dataset.batch(256)
    images, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        images.append(x)
        labels.append(y.reshape(len(y), -1))
    if not images:
        raise ReportgenError("the tf.data.Dataset given to build_report is empty")
    return np.concatenate(images), np.concatenate(labels)


def _is_batched(image_shape: Any, label_shape: Any) -> bool:
    """Whether a dataset's elements are batches: (N, H, W, C) images, or (N, H, W) gray ones beside labels with
    an unknown or matching first dimension; one image is (H, W) or (H, W, C) beside an index or a one-hot row."""
    if image_shape.rank != 3:
        return image_shape.rank == 4
    if label_shape.rank in (0, 2):
        return label_shape.rank == 2
    if image_shape[0] is None or label_shape[0] is None:
        return True
    return image_shape[0] == label_shape[0] and image_shape[-1] not in (1, 3)


def value_range(images: np.ndarray) -> tuple[float, float]:
    """The pixel values of black and white these images use: [0, 255], [-1, 1] or [0, 1]."""
    if images.ndim not in (3, 4) or not len(images):
        raise ReportgenError(f"images must be an array (N, H, W) or (N, H, W, C), not of shape {images.shape}")
    if images.dtype == np.uint8:
        return 0.0, 255.0
    if not np.issubdtype(images.dtype, np.number):
        raise ReportgenError(f"images must be numbers, not {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if low >= 0 and high <= 1.0:
        return 0.0, 1.0
    if low >= 0 and high <= 255.0:
        return 0.0, 255.0
    if low >= -1.0 and high <= 1.0:
        return -1.0, 1.0
    raise ReportgenError(f"images range from {low:g} to {high:g}: pass input_range=(black, white), the values "
                         "the model was trained to take for a black and a white pixel, or, for images that went "
                         "through preprocess_input, the images before it with preprocess=\"caffe\", \"tf\" or "
                         "\"torch\"")


def labels_as_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """Class indices (N,) from indices, (N, 1) columns or one-hot rows (the rules of `as_images_and_labels`)."""
    return as_images_and_labels(np.zeros((count, 1, 1), np.uint8), labels, "labels").labels
