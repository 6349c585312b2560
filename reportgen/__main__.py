"""`python -m reportgen build ...`, the same as the `reportgen` command."""

from reportgen.cli import main

main()
