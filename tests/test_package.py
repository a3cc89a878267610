"""The shape of the package: every core reachable, one privacy rule, and no import cycles."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import thrifty

PACKAGE = Path(thrifty.__file__).resolve().parent
CORES = ("collective", "coreset", "diloco", "hamming", "optim", "schedule", "steps")


@pytest.mark.parametrize("core", CORES)
def test_every_core_is_reachable_from_the_top_level_package(core: str) -> None:
    assert getattr(thrifty, core) is importlib.import_module(f"thrifty.{core}")
    assert core in thrifty.__all__


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_implementation_modules_are_private() -> None:
    # A subpackage's public names are what its __init__ exports; every module behind it is
    # private. A public module inside a subpackage is itself a subpackage it exports.
    public = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) < 2 or path.name == "__init__.py":
            continue
        if any(part.startswith("_") for part in relative.parts):
            continue
        public.append(str(relative))
    assert not public, f"public modules inside subpackages: {sorted(public)}"


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs, at any depth (function-local ones too), but not those under
    ``if TYPE_CHECKING:``, which only the type checker follows."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _runs(importer: str, target: str) -> set[str]:
    """The modules that importing ``target`` from ``importer`` runs: ``a.b.c`` runs
    ``a/__init__`` and ``a/b/__init__`` first, unless the importer lives inside them."""
    parts = target.split(".")
    prefixes = (".".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return {p for p in prefixes if p != importer and not importer.startswith(f"{p}.")}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths) | {"thrifty._native"}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for candidate in candidates:
                target = owner(candidate)
                if target is not None and target.startswith("thrifty") and target != name:
                    targets |= _runs(name, target)
                    break
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    graph = _import_graph()
    assert "thrifty.steps._path" in graph["thrifty.steps"]
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_importing_a_module_runs_the_packages_above_it() -> None:
    assert _runs("t.a._x", "t.b._y") == {"t.b", "t.b._y"}
    assert _runs("t.a._x", "t.a._z") == {"t.a._z"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
