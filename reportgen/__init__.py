"""reportgen: static report sites that show what a Keras CNN has learned."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the progress log

__version__ = "0.1.0"


from reportgen.util.errors import ReportgenError

__all__ = ["ReportCallback", "ReportgenError", "build_report"]


def __getattr__(name: str):
    """`reportgen.build_report` and `reportgen.ReportCallback` without importing TensorFlow for every
    `import reportgen`."""
    if name == "build_report":
        from reportgen.api import build_report

        return build_report
    if name == "ReportCallback":
        from reportgen.callback import ReportCallback

        return ReportCallback
    raise AttributeError(f"module 'reportgen' has no attribute {name!r}")
