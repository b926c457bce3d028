"""Stage clean: ``data/raw/`` -> ``data/clean/`` (ftfy NFC, filters, dedup), ``metrics/clean.json``."""

from __future__ import annotations

import time
from typing import Any

from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams
from cgpt.stages.data_stats import publish_data_stats
from cgpt.tracking.params import TrackingParams


class StageParams(Sections):
    """What the clean stage reads of params.yaml."""

    clean: CleanParams = CleanParams()
    tracking: TrackingParams = TrackingParams()


def run(project: Project) -> dict[str, Any]:
    params = project.load(StageParams)
    started = time.time()
    stats = clean(params.clean, project.raw, project.clean)
    publish_data_stats(project, params, "clean", stats, started=started)
    return stats
