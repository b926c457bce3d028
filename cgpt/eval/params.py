"""The ``evaluate:`` section of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    splits: list[Literal["val", "test"]] = ["val", "test"]
    batch_size: int = Field(default=8, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
