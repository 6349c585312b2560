"""Progress off a terminal (CI logs, pipes): plain lines, spaced in time, a final line with the rate;
and `-q`: nothing on stderr but errors."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from conftest import tiny_cnn
from user_models import reportgen_process

from reportgen.model import Network
from reportgen.util import progress
from reportgen.util.keras_progress import FitProgress

RATE = re.compile(r"\d+(\.\d+)?(s/\w+|\w+/s)")  # "12.3batch/s" or "4.56s/epoch", as tqdm writes a rate


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def loud():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress, "_clock", fake)
    return fake


def test_off_a_terminal_a_bar_is_plain_lines_at_most_one_per_interval_and_a_final_one(capsys, clock):
    with progress.bar(40, "optimising", unit="step") as steps:
        for i in range(40):
            clock.now += 0.5  # 20 s in all: a line every 5 s, not one per step
            steps.set_postfix_str(f"chunk {i // 10 + 1}/4")
            steps.update()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "\r" not in captured.err and "\x1b" not in captured.err
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["    optimising"] * 4  # at 5, 10 and 15 s, then the final one
    assert [re.search(r"(\d+)/40", line).group(1) for line in lines] == ["10", "20", "30", "40"]
    assert RATE.search(lines[-1]) and "step" in lines[-1]
    assert "<00:00" in lines[-1] and lines[-1].endswith("chunk 4/4]")


def test_a_short_loop_prints_only_its_final_line_and_an_inner_one_nothing(capsys, clock):
    with progress.bar(3, "pages", unit="page") as pages, progress.bar(5, "inner", leave=False) as inner:
        for _ in range(5):
            inner.update()
        for _ in range(3):
            pages.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("    pages: 100% 3/3") and RATE.search(lines[0])


def test_quiet_silences_bars_steps_and_log_lines(capsys, clock):
    progress.set_quiet(True)
    with progress.step("loading"), progress.bar(10, "batches") as batches:
        progress.log("a line")
        for _ in range(10):
            clock.now += 10
            batches.update()
    assert capsys.readouterr().err == ""


def test_training_and_prediction_show_epochs_batches_and_metrics(capsys, clock):
    model = tiny_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    y = np.arange(64) % 3
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[FitProgress("training tiny")])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1  # the epochs' final line; each epoch's batch bar was shorter than an interval
    assert lines[0].startswith("    training tiny: 100% 2/2") and "epoch" in lines[0]
    assert re.search(r"loss=\d\.\d{4}", lines[0]) and "accuracy=" in lines[0]

    probabilities = Network(model).probabilities(np.concatenate([x] * 10), batch_size=128, progress_label="predicting")
    assert probabilities.shape == (640, 3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("    predicting: 100% 5/5") and "batch" in lines[0]


def test_quiet_build_prints_only_the_error(tmp_path):
    """A saved model, built by the command line in a new process as a user runs it."""
    keras.Sequential([keras.Input((20,)), keras.layers.Dense(10, activation="softmax")]).save(tmp_path / "flat.keras")
    args = ["build", "--model-file", str(tmp_path / "flat.keras"), "--dataset", "mnist", "--out", str(tmp_path / "s")]
    for quiet in (False, True):
        result = reportgen_process(*args, *(["-q"] if quiet else []))
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("Error: ") and "is not an image" in lines[-1]
        if quiet:
            assert lines == lines[-1:]
        else:
            assert "  loading data and model ..." in lines  # the same build shows its steps without -q
