"""Stage download: the sources in params.yaml -> ``data/raw/`` (+ manifest.json), ``metrics/download.json``."""

from __future__ import annotations

from typing import Any

from cgpt.core.project import Project
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.raw import cache_dir_for, download
from cgpt.stages.data_stats import DataStageParams, run_data_stage


class StageParams(DataStageParams):
    """What the download stage reads of params.yaml: its section (and ``tracking:``)."""

    download: DownloadParams = DownloadParams()


def run(project: Project) -> dict[str, Any]:
    # the download cache is written too (partial downloads resume there), and download.cache_dir may
    # be a folder that several checkouts share: its lock keeps two downloads off one .part file
    return run_data_stage(
        project,
        StageParams,
        "download",
        lambda section: download(section, project.raw),
        writes=lambda section: [cache_dir_for(section, project.raw)],
    )
