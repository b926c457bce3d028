"""The ``tracking:`` section of params.yaml (kept apart from :mod:`cgpt.tracking.runs`, which imports MLflow)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrackingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    experiment: str = Field(default="cgpt", min_length=1)
    system_metrics: bool = True  # CPU/memory/disk (GPU with nvidia-ml-py) of training runs, under system/
    registered_model: str | None = Field(default="cgpt", min_length=1)  # each export is a new version; null: none
