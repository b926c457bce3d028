"""Stage download: the sources in params.yaml -> ``data/raw/`` (+ manifest.json), ``metrics/download.json``."""

from __future__ import annotations

from typing import Any

from cgpt.core.project import Project
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.raw import download
from cgpt.stages.data_stats import DataStageParams, run_data_stage


class StageParams(DataStageParams):
    """What the download stage reads of params.yaml: its section (and ``tracking:``)."""

    download: DownloadParams = DownloadParams()


def run(project: Project) -> dict[str, Any]:
    return run_data_stage(project, StageParams, "download", lambda section: download(section, project.raw))
