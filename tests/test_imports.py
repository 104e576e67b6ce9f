"""The import graph: no cycle; reporting/ imports neither workflows/ nor handlers/, workflows/ no handlers/."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segdino_monai"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at the top or inside functions (lazy imports count too).

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg`` (its ``__init__``).
    """
    modules = _modules()

    def target(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [target(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                found = [target(f"{base}.{alias.name}") or target(base) for alias in node.names]
            else:
                continue
            graph[name].update(f for f in found if f and f != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and "segdino_monai.handlers.segmentation_report" in graph  # the whole package was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    graph = import_graph()
    graph["segdino_monai.reporting.page"].add("segdino_monai.handlers.segmentation_report")  # the report's writer
    cycle = find_cycle(graph)
    assert cycle is not None and "segdino_monai.handlers.segmentation_report" in cycle


def _imports_from(graph: dict[str, set[str]], package: str, others: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules of ``package`` that import from any of ``others``, with those imports."""
    found = {
        module: sorted(d for d in deps if d.startswith(others))
        for module, deps in graph.items()
        if module.startswith(package)
    }
    return {module: deps for module, deps in found.items() if deps}


def test_reporting_imports_nothing_from_workflows_or_handlers():
    graph = import_graph()
    assert len([m for m in graph if m.startswith("segdino_monai.reporting")]) >= 7
    assert _imports_from(graph, "segdino_monai.reporting", ("segdino_monai.workflows", "segdino_monai.handlers")) == {}


def test_workflows_import_nothing_from_handlers_or_tools():
    graph = import_graph()
    assert _imports_from(graph, "segdino_monai.workflows", ("segdino_monai.handlers", "segdino_monai.tools")) == {}
