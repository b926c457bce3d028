"""Stage download: the sources in params.yaml -> ``data/raw/`` (+ manifest.json), ``metrics/download.json``."""

from __future__ import annotations

import time
from typing import Any

from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.raw import download
from cgpt.stages.data_stats import publish_data_stats
from cgpt.tracking.params import TrackingParams


class StageParams(Sections):
    """What the download stage reads of params.yaml."""

    download: DownloadParams = DownloadParams()
    tracking: TrackingParams = TrackingParams()


def run(project: Project) -> dict[str, Any]:
    params = project.load(StageParams)
    started = time.time()
    stats = download(params.download, project.raw)
    publish_data_stats(project, params, "download", stats, started=started)
    return stats
