"""One function per pipeline stage: validated params + a project -> the stage's outputs and metrics.

``dvc repro`` runs them through the thin entry points ``stages/<name>.py`` (``python -m
stages.<name>``); the ``cgpt`` command and the Prefect flows call the same functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from cgpt.core.project import Project
from cgpt.core.runtime import run_main
from cgpt.core.sections import Sections

STAGES = ("sources", "download", "clean", "tokenize", "train", "evaluate", "export")


def stage_function(stage: str) -> Callable[[Project], object]:
    """``cgpt.stages.<stage>.run``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"cgpt.stages.{stage}").run


def stage_params(stage: str) -> type[Sections]:
    """``cgpt.stages.<stage>.StageParams``: the sections of params.yaml the stage reads."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"cgpt.stages.{stage}").StageParams


def main(stage: str, root: str | Path = ".") -> None:
    """Run one stage as a command: one ``error:`` line and exit status 2 on a user mistake."""
    run_main(lambda: stage_function(stage)(Project.at(root)))
