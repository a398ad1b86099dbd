"""The layering of ARCHITECTURE.md, checked on every import of every module (ast, no imports run).

Every import counts, at module level or inside a function: the layer table below, the run
store's one door to Beam (``apache_beam.io.filesystems``), and no import cycle anywhere in the
package (a function-level import that closes a circle is still a circle).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mnist_batch"
BASE = {
    "constants",
    "config",
    "errors",
    "preprocess",
    "decoding",
    "metrics",
    "tables",
    "files",
    "labels",
    "model_card",
    "jsonfmt",
    "curves",
    "synthetic",
    "trust",
    "review",
}
ALLOWED = {
    "base": BASE,
    "models": BASE | {"models"},
    "data": BASE | {"data"},
    "training": BASE | {"models", "data", "training"},
    "runstore": BASE | {"runstore"},
    "scoring": BASE | {"models", "runstore", "scoring"},
    "inprocess": BASE | {"models", "runstore", "scoring", "inprocess"},
    "predict": BASE | {"models"},
    "report": BASE | {"report"},
    "evaluation": BASE | {"models", "data", "training", "runstore", "scoring", "report", "evaluation"},
    "monitoring": BASE | {"runstore", "report", "monitoring"},
}
"""Layer -> the ``mnist_batch`` subpackages and base modules it may import (cli: anything)."""
NEVER_AT_ALL = {
    "training": {"apache_beam"},
    "data": {"apache_beam"},
    "base": {"apache_beam", "tensorflow", "keras"},
    "monitoring": {"apache_beam", "tensorflow", "keras"},
    "runstore": {"tensorflow", "keras"},
    "inprocess": {"apache_beam", "tensorflow", "keras"},
}
NEVER_AT_IMPORT = {"models": {"apache_beam", "tensorflow", "keras"}, "scoring": {"tensorflow", "keras"}}
"""Third-party packages a layer never imports, or never at module level (lazily only)."""
ONLY_DOOR = {
    "runstore": ("apache_beam", ("apache_beam.io.filesystems", "apache_beam.io.aws", "apache_beam.utils.retry"))
}
"""Layer -> (package, the modules of it the layer may import): the run store reaches Beam through its
filesystems, and its S3 filesystem's client and retries (``runstore/beam_s3.py`` bounds them)."""
BEAM_FREE_SCORING = {
    f"mnist_batch.scoring.{name}"
    for name in (
        "aggregate",
        "attempt",
        "decode_pool",
        "errors",
        "labels",
        "listing",
        "options",
        "preflight",
        "progress",
        "read",
        "runners",
        "summary",
        "teardown",
    )
}
"""The scoring side's Beam-free modules (Beam only inside a function, for a remote place or a runner):
the pure functions under its DoFns and the shared launch sequence, which the in-process engine runs."""


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


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) not in ("cli", "api", "__init__", "__main__"))
"""Every module but the front doors (``cli/``, the public ``api``), which may import anything."""


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
        if layer == "inprocess" and name.startswith("mnist_batch.scoring"):
            assert name in BEAM_FREE_SCORING, f"the in-process engine imports only Beam-free scoring modules: {name}"
        if layer in ONLY_DOOR and parts[0] == ONLY_DOOR[layer][0]:
            doors = ONLY_DOOR[layer][1]
            assert name.startswith(doors), f"{layer} reaches {parts[0]} only through {doors}: {name}"


def test_every_layer_is_known():
    assert {layer_of(p) for p in MODULES} <= set(ALLOWED)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ALL_MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: pathlib.Path) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it: ``from a.b import c`` is ``a.b.c``
    when ``c`` is a module, else ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in ALL_MODULES else node.module
                for a in node.names
            }
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the checks here read absolute ones)")
    own = module_name(path) if PACKAGE in path.parents else None
    return {name for name in found if name in ALL_MODULES and name != own}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(path) for name, path in ALL_MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated last), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        on_path.discard(path.pop())
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    # A circle closed inside a function (as launch <-> pipeline once was) is seen.
    src = tmp_path / "m.py"
    src.write_text("import mnist_batch.tables\n\ndef f():\n    from mnist_batch.scoring import launch\n")
    assert {"mnist_batch.tables", "mnist_batch.scoring.launch"} <= imported_modules(src)


NEVER_REACH = {
    "mnist_batch.training": ("mnist_batch.scoring",),
    "mnist_batch.scoring": ("mnist_batch.training", "mnist_batch.inprocess"),
    "mnist_batch.inprocess": ("mnist_batch.training",),
    "mnist_batch.monitoring": ("mnist_batch.scoring", "mnist_batch.training"),
    "mnist_batch.report": ("mnist_batch.scoring", "mnist_batch.training"),
    "mnist_batch.runstore": ("mnist_batch.scoring", "mnist_batch.training"),
    "mnist_batch.models": ("mnist_batch.scoring", "mnist_batch.training"),
}
"""Module prefix -> what it never reaches, directly or through any chain of imports (a package's
``__init__`` re-exporting a module counts: importing the package runs it)."""


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others; importing ``a.b.c`` also runs ``a.b``."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        parents = {".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 1)}
        for nxt in (graph.get(name, set()) | parents) - seen:
            if nxt in graph:
                seen.add(nxt)
                todo.append(nxt)
    return seen - {start}


@pytest.mark.parametrize("prefix", sorted(NEVER_REACH))
def test_no_layer_reaches_a_forbidden_side_through_another_module(prefix):
    graph = import_graph()
    for name in sorted(m for m in graph if m == prefix or m.startswith(prefix + ".")):
        bad = sorted(m for m in reached(graph, name) if m.startswith(NEVER_REACH[prefix]))
        assert not bad, f"{name} reaches {bad}"


def module_level_graph() -> tuple[dict[str, set[str]], set[str]]:
    """The package's imports made when a module is imported (module level only), and the modules that
    import Beam at module level themselves."""
    graph, beam = {}, set()
    for name, path in ALL_MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set()
        for node in tree.body:  # module level: a function's imports run only when it is called
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            beam |= {name} if any(n.split(".")[0] == "apache_beam" for n in names) else set()
            found |= {n for n in names if n in ALL_MODULES and n != name}
        graph[name] = found
    return graph, beam


BEAM_FREE = sorted(BEAM_FREE_SCORING | {m for m in ALL_MODULES if m.startswith("mnist_batch.inprocess")})


@pytest.mark.parametrize("name", BEAM_FREE)
def test_beam_free_modules_never_import_beam_when_imported(name):
    """Importing the in-process engine (or a scoring module it runs) imports no module that imports
    Beam at module level, through any chain (``tests/test_inprocess.py`` checks ``sys.modules`` too)."""
    graph, beam = module_level_graph()
    bad = sorted(m for m in reached(graph, name) | {name} if m in beam)
    assert not bad, f"importing {name} imports Beam through {bad}"


def test_the_beam_free_check_sees_a_chain():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set()}
    assert "p.c" in reached(graph, "p.a")


def test_reach_follows_re_exports():
    """monitoring -> report.plots (re-exporting training.curves' function) reaches training: seen."""
    graph = {
        "p.monitoring.page": {"p.report.plots"},
        "p.report": {"p.report.plots"},
        "p.report.plots": {"p.training.curves"},
        "p.training": set(),
        "p.training.curves": set(),
    }
    assert reached(graph, "p.monitoring.page") == {"p.report", "p.report.plots", "p.training", "p.training.curves"}


def test_monitoring_and_runs_command_reach_the_store_without_scoring():
    for name, imported in import_graph().items():
        if name.startswith(("mnist_batch.monitoring", "mnist_batch.cli.runs_cmd", "mnist_batch.runstore")):
            assert not any(m.startswith("mnist_batch.scoring") for m in imported), f"{name} imports {imported}"


def test_the_module_map_names_every_module_and_only_modules_that_exist():
    import re

    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^\| `([a-z_]+/[a-z0-9_]+\.py)` \|", text, flags=re.MULTILINE))
    assert named, "no module map"
    for module in named:
        assert (PACKAGE / module).is_file(), f"ARCHITECTURE.md names {module}, which does not exist"
    for folder in ("runstore", "scoring", "inprocess", "monitoring"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            if path.name != "__init__.py":
                assert f"{folder}/{path.name}" in named, f"ARCHITECTURE.md's module map lacks {folder}/{path.name}"
    assert not re.search(r"\| \d[\d,]* \|", text), "line counts in the module map go stale: leave them out"


def test_one_answer_to_is_this_path_remote():
    """``files.is_remote`` is the one test (a ``file://`` URI is local); no module asks ``"://" in path``."""
    import re

    by_hand = re.compile(r"""["']://["']\s+(not\s+)?in\b""")
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "files.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if by_hand.search(line)
    ]
    assert not found, found


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def too_big() -> set[str]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            found.add(name)
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                found.add(f"{name}:{node.name}")
    return found


def test_small_rooms():
    """No module over 400 lines, no function over 80 (ARCHITECTURE.md, "Small rooms")."""
    assert not too_big(), f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: {too_big()}"
