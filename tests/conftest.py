"""Shared fixtures: an offline Keras cache, and a tiny model with a fake report context."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

if "KERAS_HOME" not in os.environ and SHARED_DATASETS.is_dir():
    # Keras writes keras.json into KERAS_HOME, so point it at a scratch folder that links the read-only data.
    _home = Path(tempfile.mkdtemp(prefix="reportgen-keras-"))
    (_home / "datasets").symlink_to(SHARED_DATASETS)
    os.environ["KERAS_HOME"] = str(_home)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from reportgen.inputs.config import ModelSpec  # noqa: E402
from reportgen.inputs.data import Dataset  # noqa: E402
from reportgen.model import Network  # noqa: E402
from reportgen.sections.context import ModelContext  # noqa: E402


def tiny_cnn(input_shape=(12, 12, 1), num_classes: int = 3, seed: int = 0) -> keras.Model:
    """Two small conv layers, a pool and two dense layers: every layer type the report shows."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(name="pool_a")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def tiny_dataset(input_shape=(12, 12, 1), num_classes: int = 3, n: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *input_shape), dtype=np.float32)
    y = np.arange(n) % num_classes
    return Dataset("tiny", x, y, x.copy(), y.copy(), [f"class {i}" for i in range(num_classes)])


@pytest.fixture
def tiny_context(tmp_path) -> ModelContext:
    model = tiny_cnn()
    data = tiny_dataset()
    spec = ModelSpec(name="tiny", dataset="mnist", architecture="mnist_3conv", compare_classes=[0, 1])
    network = Network(model)
    return ModelContext(spec=spec, network=network, data=data, out_dir=tmp_path)


def generate(work: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python generate.py --quick` for mnist-3conv into work/site, the way a user runs it."""
    return subprocess.run(
        [sys.executable, str(REPO / "generate.py"), "--config", str(work / "reportgen.toml"),
         "--model", "mnist-3conv", "--quick", "--out", str(work / "site"), *extra],
        capture_output=True, text=True, timeout=900, env=env,
    )


@pytest.fixture(scope="session")
def quick_mnist_site(tmp_path_factory) -> Path:
    """A real --quick report of mnist-3conv from real MNIST, built once for every test that reads it."""
    work = tmp_path_factory.mktemp("build")
    shutil.copy(REPO / "reportgen.toml", work / "reportgen.toml")  # so the model cache lands in tmp
    result = generate(work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stderr  # progress was shown
    return work / "site"
