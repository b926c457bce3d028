"""The ``export:`` section of params.yaml (dtype names map to torch dtypes in :mod:`cgpt.export.hf`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sample_prompt: str | None = None  # null: the first words of the validation split
    sample_tokens: int = Field(default=40, ge=0)
    # the weights' licence, a Hub licence id (any case; SPDX ids work): card front matter, LICENSE, LICENSE.txt
    license: str = Field(default="apache-2.0", min_length=1)
