"""The ``tracking:`` section of params.yaml (kept apart from :mod:`cgpt.tracking.runs`, which imports MLflow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrackingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    experiment: str = Field(default="cgpt", min_length=1)
    system_metrics: bool = True  # CPU/memory/disk (GPU with nvidia-ml-py) of training runs, under system/
    registered_model: str | None = Field(default="cgpt", min_length=1)  # a version per distinct weights; null: none
    # an unreachable store (checked in seconds before each stage works): record in the project's own
    # store meanwhile and say so (fallback), or stop the stage before any work (error)
    on_unavailable: Literal["fallback", "error"] = "fallback"
