"""What the data stages share: their statistics go to ``metrics/<stage>.json`` (the family's tokenize
stage: ``family/metrics/``) and to MLflow.

A stage's statistics are split in two: the facts about the data (documents, tokens, bytes per
source), a DVC metrics file that the same inputs always give byte for byte, and the ``timing``
of this execution (seconds, rates, bytes downloaded, cache hits) in ``metrics/<stage>.timing.json``,
which dvc.yaml lists as a top-level metric rather than a stage output. Names that come from the
data (Pile subsets) are made safe as keys (:mod:`cgpt.keys`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cgpt.core.fsutil import sha256_file, write_json_atomic
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.keys import safe_keys
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import publish_stage_stats
from cgpt.tracking.store import check_tracking


class DataStageParams(Sections):
    """What every data stage reads of params.yaml besides its own section: where its statistics are
    recorded (``tracking:``). Each stage's ``StageParams`` adds its section."""

    tracking: TrackingParams = TrackingParams()


def run_data_stage(
    project: Project,
    view: type[DataStageParams],
    stage: str,
    work: Callable[[Any], dict[str, Any]],
    writes: Callable[[Any], list[Path]] | None = None,
) -> dict[str, Any]:
    """A data stage: its sections of params.yaml, ``work(section)`` timed, its statistics written
    (``metrics/<stage>.json``) and published (MLflow) — all while holding the locks of what it
    writes (:mod:`cgpt.core.locks`): its output folder (``data/<raw|clean|tokens>``, or the family's
    ``family/tokens``: :func:`output_record`'s folder in ``project``'s layout) and whatever else
    ``writes(section)`` names."""
    params = project.load(view)
    section = getattr(params, stage)
    output = output_record(project, stage).parent
    with writing(output, *(writes(section) if writes else [])):
        check_tracking(project.root, params.tracking)  # an unreachable store: one line before any work
        started = time.time()
        stats = work(section)
        publish_data_stats(project, params, stage, stats, started=started)
    return stats


def output_record(project: Project, stage: str) -> Path:
    """The file each data stage writes last, listing (with sha256s) everything it produced."""
    return {
        "download": project.raw / "manifest.json",
        "clean": project.clean / "manifest.json",
        "tokenize": project.tokens / "index.json",
    }[stage]


def publish_data_stats(project: Project, params: Any, stage: str, stats: dict[str, Any], *, started: float) -> None:
    """Write ``metrics/<stage>.json`` and ``metrics/<stage>.timing.json``; log both to MLflow as a run
    timed from ``started`` and tagged with the digest of what the stage produced. ``params``: the
    stage's view of params.yaml (its own section and ``tracking``)."""
    facts = safe_keys({k: v for k, v in stats.items() if k != "timing"})
    timing = safe_keys(stats.get("timing", {}))
    write_json_atomic(project.metrics / f"{stage}.json", facts)
    write_json_atomic(project.metrics / f"{stage}.timing.json", timing)
    section = getattr(params, stage).model_dump(mode="json")
    digest = file_digest(output_record(project, stage))
    publish_stage_stats(
        project.root, params.tracking, stage, section, {**facts, "timing": timing}, started=started, digest=digest
    )


def file_digest(path: Path) -> str:
    """A short content version of a stage's output record (which lists the sha256 of every file)."""
    return sha256_file(path)[:16]
