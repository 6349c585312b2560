"""Benchmark: a rebuild with nothing changed (every model already built and up to date).

    python bench/rebuild.py [--out site]

Runs `python generate.py` once to make sure the site is current, then times
three more runs of the whole command (process start included) and prints them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(out: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "generate.py"), "--out", out, "-q"], check=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="site")
    args = parser.parse_args()
    print(f"first run (builds whatever is missing): {run(args.out):.1f} s")
    times = [run(args.out) for _ in range(3)]
    print("no-change rebuilds: " + ", ".join(f"{t:.2f} s" for t in times) + f" (best {min(times):.2f} s)")


if __name__ == "__main__":
    main()
