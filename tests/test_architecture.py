"""The layering of ARCHITECTURE.md, checked on every import of every module (ast, no imports run)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mnist_batch"
BASE = {"constants", "config", "errors", "preprocess", "metrics", "tables", "files", "labels", "model_card", "jsonfmt"}
ALLOWED = {
    "base": BASE,
    "models": BASE | {"models"},
    "data": BASE | {"data"},
    "training": BASE | {"models", "data", "training"},
    "scoring": BASE | {"models", "scoring"},
    "predict": BASE | {"models"},
    "report": BASE | {"report", "training"},
    "evaluation": BASE | {"models", "data", "training", "scoring", "report", "evaluation"},
    "monitoring": BASE | {"scoring", "report", "monitoring"},
}
"""Layer -> the ``mnist_batch`` subpackages and base modules it may import (cli: anything)."""
NEVER_AT_ALL = {
    "training": {"apache_beam"},
    "data": {"apache_beam"},
    "base": {"apache_beam", "tensorflow", "keras"},
    "monitoring": {"tensorflow", "keras"},
}
NEVER_AT_IMPORT = {"models": {"apache_beam", "tensorflow", "keras"}, "scoring": {"tensorflow", "keras"}}
"""Third-party packages a layer never imports, or never at module level (lazily only)."""


def layer_of(path: pathlib.Path) -> str:
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return "base" if part in BASE else part


def imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """``(module, at module level)`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [(name, id(node) in top) for name in names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) not in ("cli", "__init__", "__main__"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    layer = layer_of(path)
    for name, at_module_level in imports(path):
        parts = name.split(".")
        if parts[0] == "mnist_batch" and len(parts) > 1:
            assert parts[1] in ALLOWED[layer], f"{layer} must not import {name}"
        assert parts[0] not in NEVER_AT_ALL.get(layer, ()), f"{layer} must never import {name}"
        if at_module_level:
            assert parts[0] not in NEVER_AT_IMPORT.get(layer, ()), f"{layer} imports {name} at module level"


def test_every_layer_is_known():
    assert {layer_of(p) for p in MODULES} <= set(ALLOWED)
