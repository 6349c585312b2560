"""Progress lines on stderr for the long steps, so a build never looks stuck."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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

