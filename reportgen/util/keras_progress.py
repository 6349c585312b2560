"""Progress bars for Keras' own training loop (`fit`), as callbacks: count, rate and ETA of the
epochs and batches, from `progress.Bar`."""

from __future__ import annotations

from typing import Any

import keras

from reportgen.util import progress


class FitProgress(keras.callbacks.Callback):
    """A bar over the epochs, with the last epoch's metrics, and one over the batches of each epoch.

    Args:
        label: What is being trained, at the start of the epochs' line.
    """

    async_safe = True  # Keras may call the batch hook from a worker thread; Bar.update takes a lock

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._epochs = progress.bar(self.params.get("epochs"), self.label, unit="epoch")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        label = f"{self.label}, epoch {epoch + 1}/{self.params.get('epochs')}"
        self._batches = progress.bar(self.params.get("steps"), label, unit="batch", leave=False)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches.update()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches.close()
        self._epochs.set_postfix_str(metrics_text(logs))
        self._epochs.update()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._epochs.close()


def metrics_text(logs: dict[str, Any] | None) -> str:
    """`loss=0.1234 accuracy=0.9612 ...`: the numbers of a Keras logs dict."""
    return " ".join(f"{key}={value:.4f}" for key, value in (logs or {}).items() if isinstance(value, float))
