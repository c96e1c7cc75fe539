"""The package's modules import each other as a DAG: no import cycles, lazy imports included.

Read from the source with ``ast`` (nothing is imported), so an import hidden inside a
function, which Python would tolerate at run time, still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mystocks_otel

PACKAGE_DIR = Path(mystocks_otel.__file__).parent
PACKAGE = PACKAGE_DIR.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path, name: str) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in its body."""
    name = module_name(path)
    found: set[str] = set()

    def add(target: str) -> None:
        # ``from .x import y`` names the module x.y when y is a submodule, else x itself.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path, name)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if not base.split(".")[0] == PACKAGE:
                continue
            for alias in node.names:
                add(f"{base}.{alias.name}")
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None for a DAG (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph.get(child, ()))))
    return None


def test_the_package_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 20 and "mystocks_otel._internal.runtime" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_core_layers_point_one_way():
    graph = import_graph()
    # recorders is the public face over the runtime; the runtime never reaches back up.
    internal = "mystocks_otel._internal"
    assert f"{internal}.runtime" in graph[f"{internal}.recorders"]
    assert f"{internal}.recorders" not in graph[f"{internal}.runtime"]
    for module in ("integrations.redis", "integrations.sqlalchemy", "integrations.fastapi",
                   "_internal.health", "_internal.system"):
        reached = graph[f"mystocks_otel.{module}"]
        assert not reached & {f"{internal}.runtime", f"{internal}.recorders"}, module
    # The process state is the bottom: it reaches only the classes of what it keeps.
    assert graph[f"{internal}.state"] <= {f"{internal}.{m}" for m in (
        "instruments", "health", "system", "export_health", "app_metrics")}


def test_lazy_and_relative_imports_are_seen(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import thing\n")
    modules = {f"{PACKAGE}", f"{PACKAGE}.a", f"{PACKAGE}.sub", f"{PACKAGE}.sub.b"}
    global PACKAGE_DIR
    saved, PACKAGE_DIR = PACKAGE_DIR, package
    try:
        graph = {module_name(p): imports_of(p, modules) for p in package.rglob("*.py")}
    finally:
        PACKAGE_DIR = saved
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.sub.b"}
    assert graph[f"{PACKAGE}.sub.b"] == {f"{PACKAGE}.a"}
    assert find_cycle(graph) in ([f"{PACKAGE}.a", f"{PACKAGE}.sub.b", f"{PACKAGE}.a"],
                                 [f"{PACKAGE}.sub.b", f"{PACKAGE}.a", f"{PACKAGE}.sub.b"])
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": set()}) is None
