"""The package's shape, checked from its source: one-way imports and one place that parses TFLite.

* No import cycle among `edgemnv2.*` and `edgemnv2_converters.*` modules, counting every import
  statement wherever it runs (module level, inside functions and methods): a cycle that only a
  function-level import hides is still two stages that depend on each other. Imports under
  `if TYPE_CHECKING:` never run and only name types for annotations; they are not counted.
* At most three modules use the flatbuffer schema themselves (`tflite`, `flatbuffers` or a generated
  `schema_py_generated`, or call a `GetRootAs*` accessor); everything else reads `edgemnv2.tflite`.

`python tests/test_architecture.py` (or `pytest -s tests/test_architecture.py`) prints both figures.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"edgemnv2": ROOT / "edgemnv2", "edgemnv2_converters": ROOT / "converters"}
SCHEMA_MODULES_MAX = 3


def modules() -> dict[str, Path]:
    """Dotted module name → source file, for every module of the two packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of the tree except those under `if TYPE_CHECKING:`."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
            else:
                pending.append(child)
    return nodes


def _imported(tree: ast.AST, name: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) of every import statement that runs, relative ones resolved."""
    found = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (a `from pkg import sub` of a submodule counts as sub)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for module, names in _imported(tree, name, path.name == "__init__.py"):
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            targets.update(subs)
            if module in known and (len(subs) < len(names) or not names):
                targets.add(module)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), to print."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return [start]


def schema_modules() -> list[str]:
    """Modules that import the flatbuffer schema packages or call a generated GetRootAs accessor."""
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = {module.split(".")[0] for module, _ in _imported(tree, name, path.name == "__init__.py")}
        imports |= {module for module, _ in _imported(tree, name, path.name == "__init__.py")
                    if module.endswith("schema_py_generated")}
        accessors = any(isinstance(n, ast.Attribute) and n.attr.startswith("GetRootAs") for n in ast.walk(tree))
        if {"tflite", "flatbuffers"} & imports or any(m.endswith("schema_py_generated") for m in imports) or accessors:
            found.append(name)
    return found


def report() -> str:
    """The two figures the issue asks for, as lines."""
    graph = import_graph()
    found, schema = cycles(graph), schema_modules()
    return "\n".join([
        f"import graph: {len(graph)} modules, {sum(map(len, graph.values()))} imports "
        f"(function-level included), {len(found)} cycles",
        *(" -> ".join(c) for c in found),
        f"modules parsing the TFLite flatbuffer schema: {len(schema)} (max {SCHEMA_MODULES_MAX}): {', '.join(schema)}"])


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    print(f"\nimport graph: {len(graph)} modules, {len(found)} cycles")
    assert len(graph) > 50, "the checker found too few modules to be looking at the package"
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_function_level_imports_count_and_type_checking_ones_do_not() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
                     "def f():\n    from .c import x\n    import edgemnv2.d\n")
    assert sorted(m for m, _ in _imported(tree, "edgemnv2.a", False)) == ["edgemnv2.c", "edgemnv2.d", "typing"]


def test_at_most_three_modules_parse_the_tflite_schema() -> None:
    found = schema_modules()
    print(f"\nmodules parsing the TFLite schema: {len(found)}: {', '.join(found)}")
    assert len(found) <= SCHEMA_MODULES_MAX, f"{len(found)} modules use the flatbuffer schema: {found}"
    assert "edgemnv2.tflite.reader" in found   # the checker sees the one that does


if __name__ == "__main__":
    print(report())
