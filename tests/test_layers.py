"""The package's folders are layers, and no import runs upward (docs/architecture.md draws them).

A module may import from its own folder and from the folders below it, never from one above: entry points
(the modules at the package's top) use the build, the build runs the sections, the sections call the methods,
the methods read the model through the model module, which reads the inputs, and every layer may use the
helpers in `util`. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reportgen"
LAYERS = ["util", "inputs", "model", "methods", "sections", "build", ""]  # bottom first; "" is the package's top


def layer_of(module: str) -> str:
    """reportgen.methods.featvis.render -> "methods"; reportgen.cli -> "" (an entry point)."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else ""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every reportgen import in a file, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found += [(node.lineno, name if (PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").exists()
                       or (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists() else target)
                      for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module.split(".")[0] == "reportgen"]


def test_every_folder_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {""}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_upward(path):
    own = LAYERS.index(layer_of(module_name(path)))
    upward = [f"line {line}: {module} ({layer_of(module) or 'top'})" for line, module in imported_modules(path)
              if LAYERS.index(layer_of(module)) > own and module != "reportgen"]
    assert not upward, f"{path.relative_to(PACKAGE)} ({layer_of(module_name(path)) or 'top'}) imports upward: {upward}"
