"""What the data stages share: their statistics go to ``metrics/<stage>.json`` and to MLflow.

A stage's statistics are split in two: the facts about the data (documents, tokens, bytes per
source), a DVC metrics file that the same inputs always give byte for byte, and the ``timing``
of this execution (seconds, rates, bytes downloaded, cache hits) in ``metrics/<stage>.timing.json``,
which dvc.yaml lists as a top-level metric rather than a stage output. Names that come from the
data (Pile subsets) are made safe as keys (:mod:`cgpt.keys`).
"""

from __future__ import annotations

from typing import Any

from cgpt.config import Params
from cgpt.fsutil import write_json_atomic
from cgpt.keys import safe_keys
from cgpt.stages.project import Project
from cgpt.tracking import publish_stage_stats


def publish_data_stats(project: Project, params: Params, stage: str, stats: dict[str, Any]) -> None:
    """Write ``metrics/<stage>.json`` and ``metrics/<stage>.timing.json``; log both to MLflow."""
    facts = safe_keys({k: v for k, v in stats.items() if k != "timing"})
    timing = safe_keys(stats.get("timing", {}))
    write_json_atomic(project.metrics / f"{stage}.json", facts)
    write_json_atomic(project.metrics / f"{stage}.timing.json", timing)
    section = getattr(params, stage).model_dump(mode="json")
    publish_stage_stats(project.root, params.tracking, stage, section, {**facts, "timing": timing})
