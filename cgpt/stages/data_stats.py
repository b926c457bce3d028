"""What the data stages share: their statistics go to ``metrics/<stage>.json`` and to MLflow."""

from __future__ import annotations

from typing import Any

from cgpt.config import Params
from cgpt.fsutil import write_json_atomic
from cgpt.stages.project import Project
from cgpt.tracking import publish_stage_stats


def publish_data_stats(project: Project, params: Params, stage: str, stats: dict[str, Any]) -> None:
    """Write ``metrics/<stage>.json`` (a DVC metrics file) and log the same numbers to MLflow."""
    write_json_atomic(project.metrics / f"{stage}.json", stats)
    section = getattr(params, stage).model_dump(mode="json")
    publish_stage_stats(project.root, params.tracking, stage, section, stats)
