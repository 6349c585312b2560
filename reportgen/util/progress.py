"""Progress on stderr for the long steps, so a build never looks stuck.

A long loop is a `bar`: on a terminal a live tqdm bar with count, rate and ETA; anywhere else (CI logs,
pipes, files) plain lines that tqdm formats the same way, at most one every `PLAIN_INTERVAL_S` seconds
plus a final one, with no carriage returns or colour codes. `set_quiet(True)` (`reportgen build -q`)
silences bars, steps and log lines alike; errors are the CLI's to print.
"""

from __future__ import annotations

import io
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from tqdm import tqdm

PLAIN_INTERVAL_S = 5.0  # the least time between two plain lines of one bar
PLAIN_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
PLAIN_FORMAT_UNSIZED = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # when the total is not known

_quiet = False
_clock = time.monotonic  # what the plain lines are spaced by (tests swap in a fake clock)


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) every bar, step and log line."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def log(message: str) -> None:
    """One line on stderr; on a terminal it is printed above the live bars instead of through them."""
    if not _quiet:
        tqdm.write(message, file=sys.stderr)
        sys.stderr.flush()


@contextmanager
def step(label: str) -> Iterator[None]:
    """Log `label`, run the block, then log how long it took."""
    log(f"  {label} ...")
    start = time.perf_counter()
    yield
    log(f"  {label}: done in {time.perf_counter() - start:.1f}s (peak memory so far {peak_memory_gb():.1f} GB)")


def peak_memory_gb() -> float:
    """The process's largest resident set so far (what `/usr/bin/time -v` reports at the end)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2  # bytes on macOS, kB on Linux


class Bar:
    """Count, rate and ETA of one long loop. Call `update` after each unit of work (from any thread)
    and `close` at the end, or use it as a context manager.

    Args:
        total: How many units the loop has (None when not known: count and rate only).
        label: What the loop does, at the start of every line (indented like a step's lines).
        unit: The name of one unit of work ("epoch", "batch", "page", "step", ...).
        leave: Keep the finished bar on a terminal and print the final plain line elsewhere;
            False for inner loops whose outer bar says enough.
        quiet: Show nothing (a short pass that is part of a larger step), as `set_quiet` does for all bars.
    """

    def __init__(self, total: int | None, label: str, unit: str = "step", leave: bool = True,
                 quiet: bool = False) -> None:
        stream = sys.stderr
        quiet = quiet or _quiet
        self._live = not quiet and stream.isatty()
        self._plain = not quiet and not self._live
        self._leave = leave
        self._lock = threading.Lock()
        self._tqdm = tqdm(
            total=total, desc=f"    {label}", unit=unit, leave=leave, disable=quiet,
            file=stream if self._live else io.StringIO(),  # plain lines are printed here, not by tqdm
            delay=0 if self._live else math.inf,  # a plain bar never draws itself
            dynamic_ncols=self._live, smoothing=0.3 if self._live else 0,  # plain: the ETA uses the average rate
            bar_format=None if self._live else (PLAIN_FORMAT if total else PLAIN_FORMAT_UNSIZED),
        )
        self._last_line = _clock()  # a plain bar's first line comes after an interval: short loops print one line

    def update(self, n: int = 1) -> None:
        """`n` more units done."""
        with self._lock:
            self._tqdm.update(n)
            unfinished = not self._tqdm.total or self._tqdm.n < self._tqdm.total  # the last line is close's
            if self._plain and unfinished and _clock() - self._last_line >= PLAIN_INTERVAL_S:
                self._print_line()

    def set_postfix_str(self, text: str) -> None:
        """Text after the rate (e.g. the latest loss), shown from the next line or redraw on."""
        self._tqdm.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """Finish the bar: a live one stays (or goes, with leave=False); a plain one prints its final line."""
        with self._lock:
            if self._plain and self._leave and not self._tqdm.disable:
                self._print_line()
            self._tqdm.close()

    def _print_line(self) -> None:
        print(str(self._tqdm), file=sys.stderr, flush=True)
        self._last_line = _clock()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def bar(total: int | None, label: str, unit: str = "step", leave: bool = True, quiet: bool = False) -> Bar:
    """A progress bar for one long loop (see `Bar`): `with progress.bar(n, "rendering") as pages: ...`."""
    return Bar(total, label, unit, leave, quiet)
