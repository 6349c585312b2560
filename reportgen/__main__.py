"""`python -m reportgen build ...`, the same as the `reportgen` command."""

from .cli import main

main()
