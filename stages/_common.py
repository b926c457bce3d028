"""What every stage script shares: the project root, params, metrics files and MLflow handles.

Stages run as ``python -m stages.<name>`` with the project root as working directory (DVC runs
``cmd`` from dvc.yaml's folder; ``cgpt <stage>`` does the same), so relative paths in params.yaml
mean the same everywhere. (Run as modules, not scripts: a script's folder goes first on sys.path,
and ``stages/tokenize.py`` would then shadow the standard library's ``tokenize``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cgpt.config import Params, load_params
from cgpt.fsutil import write_json_atomic
from cgpt.tracking import publish_stage_stats

ROOT = Path.cwd()
DATA = ROOT / "data"
METRICS = ROOT / "metrics"


def params() -> Params:
    return load_params(ROOT / "params.yaml")


def run_dir(p: Params) -> Path:
    return ROOT / "runs" / p.train.run_name


def publish_data_stats(p: Params, stage: str, stats: dict[str, Any]) -> None:
    """Write ``metrics/<stage>.json`` (a DVC metrics file) and log the same numbers to MLflow."""
    write_json_atomic(METRICS / f"{stage}.json", stats)
    section = getattr(p, stage).model_dump(mode="json")
    publish_stage_stats(ROOT, p.tracking.experiment, stage, section, stats, enabled=p.tracking.enabled)
