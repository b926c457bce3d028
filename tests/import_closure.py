"""The cgpt source files a module imports, directly or not (what a DVC stage must depend on)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_file(name: str, root: Path = REPO) -> Path | None:
    """``cgpt.a.b`` -> cgpt/a/b.py or cgpt/a/b/__init__.py (None when it is not a cgpt module)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str, root: Path) -> list[Path]:
    """Importing ``cgpt.a.b`` runs cgpt/__init__.py and cgpt/a/__init__.py first."""
    parts = name.split(".")
    return [p for i in range(1, len(parts)) if (p := root.joinpath(*parts[:i], "__init__.py")).is_file()]


def imported_modules(path: Path) -> set[str]:
    """Every cgpt module a file imports anywhere (top level, inside functions, ``from x import module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "cgpt")
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "cgpt"
        ):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # kept only when it is a module
    return found


def import_closure(*entry_files: Path, root: Path = REPO) -> set[Path]:
    """The cgpt files reachable from ``entry_files`` by imports (paths relative to ``root``)."""
    seen: set[Path] = set()
    todo = [Path(f) for f in entry_files]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in imported_modules(f):
            target = module_file(name, root)
            if target is not None:
                todo.append(target)
                todo.extend(_package_inits(name, root))
    return {f.resolve().relative_to(root) for f in seen}
