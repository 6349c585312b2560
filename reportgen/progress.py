"""Progress lines on stderr for the long steps, so a build never looks stuck."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import keras

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def log(message: str) -> None:
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def step(label: str) -> Iterator[None]:
    """Log `label`, run the block, then log how long it took."""
    log(f"  {label} ...")
    start = time.perf_counter()
    yield
    log(f"  {label}: done in {time.perf_counter() - start:.1f}s")


class EpochLogger(keras.callbacks.Callback):
    """One line per training epoch: loss, accuracy and time."""

    def __init__(self, name: str, epochs: int) -> None:
        super().__init__()
        self.name, self.epochs = name, epochs

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        numbers = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if isinstance(v, float))
        log(f"  [{self.name}] epoch {epoch + 1}/{self.epochs} {numbers} ({time.perf_counter() - self._start:.1f}s)")
