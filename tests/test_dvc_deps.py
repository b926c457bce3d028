"""dvc.yaml's code deps cover each stage's import closure inside cgpt/, so `dvc repro` never misses a code change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from import_closure import REPO, import_closure

STAGE_CMD = re.compile(r"python -m stages\.(\w+)(?: (\w+))?")


def stage_entry_files(cmd: str) -> list[Path]:
    """The files a stage command starts from: stages/<name>.py and the cgpt.stages function it calls;
    a family member's stage (``python -m stages.member train <name>``) also runs the single-model
    stage function it names (called by name, so the import graph does not show it)."""
    m = STAGE_CMD.search(cmd)
    assert m, f"unexpected stage command {cmd!r}"
    files = [REPO / "stages" / f"{m.group(1)}.py", REPO / "cgpt" / "stages" / f"{m.group(1)}.py"]
    if m.group(2):
        files.append(REPO / "cgpt" / "stages" / f"{m.group(2)}.py")
    return files


def uncovered(stage: dict) -> list[str]:
    """Files of the stage's import closure that no dep (a file, or a folder above it) covers."""
    deps = [Path(d if isinstance(d, str) else next(iter(d))) for d in stage.get("deps", [])]
    closure = import_closure(*stage_entry_files(stage["cmd"]))
    return sorted(str(f) for f in closure if not any(f == d or d in f.parents for d in deps))


def load_stages() -> dict[str, dict]:
    """dvc.yaml's stages; a ``foreach`` group (the family's member stages) as its ``do`` template."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage["do"] if "foreach" in stage else stage for name, stage in stages.items()}


@pytest.mark.parametrize("name", list(load_stages()))
def test_deps_cover_the_import_closure(name):
    missing = uncovered(load_stages()[name])
    assert missing == [], f"dvc.yaml stage {name} misses code deps: {missing}"


def test_every_stage_dep_exists():
    for name, stage in load_stages().items():
        for d in stage.get("deps", []):
            path = d if isinstance(d, str) else next(iter(d))
            if path.startswith(("cgpt", "stages")):
                assert (REPO / path).exists(), f"{name}: dep {path} does not exist"


def test_a_removed_dep_is_caught():
    stage = load_stages()["train"]
    trimmed = {**stage, "deps": [d for d in stage["deps"] if d != "cgpt/train"]}
    missing = uncovered(trimmed)
    assert "cgpt/train/loop.py" in missing and "cgpt/train/optim.py" in missing
