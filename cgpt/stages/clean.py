"""Stage clean: ``data/raw/`` -> ``data/clean/`` (ftfy NFC, filters, dedup), ``metrics/clean.json``."""

from __future__ import annotations

import time
from typing import Any

from cgpt.data.clean.cleaner import clean
from cgpt.project import Project
from cgpt.stages.data_stats import publish_data_stats


def run(project: Project) -> dict[str, Any]:
    params = project.params()
    started = time.time()
    stats = clean(params.clean, project.raw, project.clean)
    publish_data_stats(project, params, "clean", stats, started=started)
    return stats
