#!/usr/bin/env python3
"""Build the report site: `python generate.py [OPTIONS]` is `reportgen build [OPTIONS]`."""

from reportgen.cli import build_main

if __name__ == "__main__":
    build_main()
