"""The ``tracking:`` section of params.yaml (kept apart from :mod:`cgpt.tracking`, which imports MLflow)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrackingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    experiment: str = Field(default="cgpt", min_length=1)
