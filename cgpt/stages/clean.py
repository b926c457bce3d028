"""Stage clean: ``data/raw/`` -> ``data/clean/`` (ftfy NFC, filters, dedup), ``metrics/clean.json``."""

from __future__ import annotations

from typing import Any

from cgpt.core.project import Project
from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams
from cgpt.stages.data_stats import DataStageParams, run_data_stage


class StageParams(DataStageParams):
    """What the clean stage reads of params.yaml: its section (and ``tracking:``)."""

    clean: CleanParams = CleanParams()


def run(project: Project) -> dict[str, Any]:
    return run_data_stage(project, StageParams, "clean", lambda section: clean(section, project.raw, project.clean))
