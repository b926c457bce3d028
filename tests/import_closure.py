"""The cgpt source files a module imports, directly or not (what a DVC stage must depend on)."""

from __future__ import annotations

import ast
from pathlib import Path

from paths import REPO


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


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of nodes under ``if TYPE_CHECKING:``: imported for annotations only, never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def imported_modules(path: Path) -> set[str]:
    """Every cgpt module a file imports anywhere it runs (top level, inside functions, ``from x import
    module``), not what ``if TYPE_CHECKING:`` imports for annotations only."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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


def covering_deps(closure: set[Path], root: Path = REPO) -> list[str]:
    """The fewest dvc.yaml deps that cover ``closure`` exactly: a folder where every source file
    (``*.py``) below it is in the closure (a folder dep hashes all of them, and the data files the
    code reads beside them, e.g. cgpt/export/licenses/), else the files themselves."""
    chosen: list[Path] = []
    folders = sorted({p for f in closure for p in f.parents if p != Path(".")}, key=lambda p: len(p.parts))
    covered: set[Path] = set()
    for folder in folders:
        if any(folder == c or c in folder.parents for c in chosen):
            continue
        files = {f.relative_to(root) for f in (root / folder).rglob("*.py") if "__pycache__" not in f.parts}
        if files and files <= closure:
            chosen.append(folder)
            covered |= files
    return sorted([str(p) for p in chosen] + [str(f) for f in closure - covered])


def file_deps(closure: set[Path], root: Path = REPO) -> list[str]:
    """:func:`covering_deps` without folders of code: the files themselves, and a data folder the code
    reads (no ``*.py`` in it, e.g. cgpt/export/licenses/). For family/dvc.yaml, whose code deps are
    ``../`` paths: the root's .dvcignore (``__pycache__/``) does not apply to a DVC subrepo, so a
    folder dep there would hash Python's bytecode and stale every member whenever it changes."""
    out: list[str] = []
    for dep in covering_deps(closure, root):
        path = root / dep
        if path.is_file():
            out.append(dep)
            continue
        out += [str(f.relative_to(root)) for f in sorted(path.rglob("*.py")) if "__pycache__" not in f.parts]
        out += [
            str(d.relative_to(root))
            for d in sorted(path.rglob("*"))
            if d.is_dir()
            and d.name != "__pycache__"
            and not any(d.glob("*.py"))
            and not any(x.name == "__pycache__" for x in [d, *d.parents])
        ]
    return sorted(out)


if __name__ == "__main__":  # the code deps dvc.yaml should list for each stage
    import re
    import sys

    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"]
        m = re.search(r"python -m stages\.(\w+)(?: (\w+))?", cmd)
        if not m:
            sys.exit(f"{name}: unexpected command {cmd!r}")
        entry = [REPO / "stages" / f"{m.group(1)}.py", REPO / "cgpt" / "stages" / f"{m.group(1)}.py"]
        if m.group(2) and not m.group(2).startswith("$"):
            entry.append(REPO / "cgpt" / "stages" / f"{m.group(2)}.py")
        print(f"{name}:")
        print("\n".join(f"  - {d}" for d in covering_deps(import_closure(*entry))))
