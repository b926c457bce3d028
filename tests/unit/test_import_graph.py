"""The house's floors: cgpt's modules import each other without a circle, and no private name
(``_x``) crosses a module boundary (what another room needs is public API)."""

from __future__ import annotations

import ast
from pathlib import Path

from import_closure import imported_modules, module_file
from paths import REPO

SOURCES = sorted(p for root in ("cgpt", "flows", "stages") for p in (REPO / root).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """cgpt module -> the cgpt modules it imports (anywhere it runs; packages' __init__ not counted
    as an edge of their own submodules)."""
    graph: dict[str, set[str]] = {}
    for path in (p for p in SOURCES if p.is_relative_to(REPO / "cgpt")):
        name = module_name(path)
        targets = {module_name(f) for m in imported_modules(path) if (f := module_file(m)) is not None}
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a list of modules, first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_a_circle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_crosses_a_module():
    crossings = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("cgpt", "flows"):
                crossings += [
                    f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert crossings == []


def test_lower_floors_never_import_higher_ones():
    """The stages sit above the library; the library's rooms take their own sections, never the whole
    params file; the scaling-law math knows nothing of the project's family or of MLflow."""
    upward = []
    for module, targets in import_graph().items():
        for target in targets:
            if target.startswith("cgpt.stages") and not module.startswith(("cgpt.stages", "cgpt.cli")):
                upward.append(f"{module} -> {target}")
            lib = ("cgpt.data", "cgpt.model", "cgpt.train", "cgpt.eval", "cgpt.export", "cgpt.scaling")
            if target == "cgpt.config" and module.startswith(lib):
                upward.append(f"{module} -> {target}")
            if module.startswith("cgpt.scaling") and target.startswith(("cgpt.family", "cgpt.tracking")):
                upward.append(f"{module} -> {target}")
    assert upward == []
