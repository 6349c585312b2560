"""The package as people install it: an sdist, a wheel built from that sdist, installed (not editable)
into a fresh virtualenv, and a --quick report built by its `reportgen` command from another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tiny_cnn

import reportgen

REPO = Path(__file__).resolve().parent.parent
# What a source build reads: the rest of the checkout (tests, site, caches, build leftovers) stays out.
SOURCE_FILES = ["pyproject.toml", "README.md", "reportgen"]

pytestmark = pytest.mark.slow


def run(command: list, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """Run a command with no trace of the checkout on its import path; fail with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build` on a clean copy of the sources: an sdist, then a wheel built from it."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(REPO / name, source / name)
    run([sys.executable, "-m", "build", "--outdir", work / "dist", source], cwd=work, timeout=600)
    return work / "dist"


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Iterator[Path]:
    """A fresh virtualenv (no system site-packages) with only the wheel and its dependencies, from the package
    index pip is set up with; its bin/ folder. No bytecode: it skips compiling TensorFlow's thousands of files."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(root, with_pip=True, system_site_packages=False)
    wheel = next(dist.glob("reportgen-*.whl"))
    run([root / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
         wheel], cwd=root.parent, timeout=900)
    yield root / "bin"
    shutil.rmtree(root, ignore_errors=True)  # about 2 GB with TensorFlow: pytest would otherwise keep three


def test_sdist_carries_the_templates_and_the_stylesheet(dist):
    with tarfile.open(next(dist.glob("reportgen-*.tar.gz"))) as sdist:
        names = {Path(name).relative_to(Path(name).parts[0]).as_posix() for name in sdist.getnames()}
    shipped = {path.relative_to(REPO).as_posix() for path in (REPO / "reportgen" / "templates").rglob("*")
               if path.is_file()}
    assert "reportgen/templates/style.css" in shipped
    assert shipped <= names


def test_the_installed_wheel_builds_a_report_from_another_folder(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([installed / "python", "-c", "import reportgen; print(reportgen.__file__)"], cwd=elsewhere, timeout=60)
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout, where.stdout
    version = run([installed / "reportgen", "--version"], cwd=elsewhere, timeout=60)
    assert reportgen.__version__ in version.stdout

    tiny_cnn(input_shape=(28, 28, 1), num_classes=10).save(tmp_path / "tiny.keras")
    site = tmp_path / "site"
    run([installed / "reportgen", "build", "--quick", "--model-file", tmp_path / "tiny.keras", "--dataset", "mnist",
         "--name", "tiny", "--out", site, "-q"], cwd=elsewhere, timeout=900)
    assert (site / "index.html").is_file() and (site / "index.md").is_file()
    page = (site / "tiny" / "index.html").read_text(encoding="utf-8")
    assert 'href="../style.css"' in page
    shipped_css = (REPO / "reportgen" / "templates" / "style.css").read_text(encoding="utf-8")
    assert (site / "style.css").read_text(encoding="utf-8") == shipped_css
    assert not list(elsewhere.iterdir())  # nothing written into the working folder (the cache follows --out's config)


NOTEBOOK = """
import keras
import numpy as np
import reportgen

(x, y), (x_test, y_test) = keras.datasets.mnist.load_data()
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                          keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(4),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x[:3000, ..., None], y[:3000], epochs=3, batch_size=32, verbose=0)
report = reportgen.build_report(model, (x_test[:300], y_test[:300]), "site", name="notebook", quick=True)
own = np.mean(model.predict(x_test[:300, ..., None], verbose=0).argmax(axis=1) == y_test[:300])
print("accuracy", report["metrics"]["test_accuracy"], own)
"""


def test_the_installed_wheel_builds_a_report_from_a_notebook_style_script(installed, tmp_path):
    (tmp_path / "notebook.py").write_text(NOTEBOOK, encoding="utf-8")
    result = run([installed / "python", "notebook.py"], cwd=tmp_path, timeout=900)
    reported, own = (float(v) for v in result.stdout.split("accuracy")[-1].split())
    assert reported == pytest.approx(own, abs=1e-6) and own > 0.5
    assert (tmp_path / "site" / "notebook" / "index.html").is_file()
    assert "feature visualization" in result.stderr  # progress lines (not a terminal: plain ones)
