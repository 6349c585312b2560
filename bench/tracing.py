"""Time spent tracing `tf.function`s: Python running a function to build its graph.

    with TraceClock() as clock:
        ...
    print(clock.seconds, clock.traces)

Wraps TensorFlow's graph builder (`func_graph_from_py_func`) while the block runs and adds up the
outermost calls (a trace that traces another function counts once).
"""

from __future__ import annotations

import time
from types import TracebackType

from tensorflow.python.framework import func_graph


class TraceClock:
    """Seconds and number of outermost traces while the `with` block runs."""

    def __init__(self) -> None:
        self.seconds, self.traces, self._depth = 0.0, 0, 0
        self.by_name: dict[str, list[float]] = {}  # function name -> seconds of each outermost trace
        self._original = func_graph.func_graph_from_py_func

    def __enter__(self) -> TraceClock:
        original = self._original

        def timed(*args: object, **kwargs: object) -> object:
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    seconds = time.perf_counter() - start
                    self.seconds += seconds
                    self.traces += 1
                    self.by_name.setdefault(str(args[0] if args else kwargs.get("name")), []).append(seconds)

        func_graph.func_graph_from_py_func = timed
        return self

    def largest(self, count: int = 5) -> str:
        """The functions whose traces took longest, for a report line."""
        ranked = sorted(self.by_name.items(), key=lambda item: -sum(item[1]))[:count]
        return ", ".join(f"{name} {sum(times):.2f} s ({len(times)}x)" for name, times in ranked)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        func_graph.func_graph_from_py_func = self._original
