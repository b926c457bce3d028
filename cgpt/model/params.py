"""The ``model:`` section of params.yaml: a preset plus optional shape overrides."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cgpt.presets import PRESETS


class ModelParams(BaseModel):
    """A preset plus optional shape overrides (``null`` keeps the preset's value)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    preset: str = "cpu-small"
    n_layer: int | None = Field(default=None, gt=0)
    d_model: int | None = Field(default=None, gt=0)
    n_head: int | None = Field(default=None, gt=0)
    d_ffn: int | None = Field(default=None, gt=0)
    n_positions: int | None = Field(default=None, gt=0)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset; expected one of {', '.join(PRESETS)}")
        return v

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelParams:
        base = PRESETS[self.preset].model
        d = self.d_model or base.d_model
        h = self.n_head or base.n_head
        if d % h:
            raise ValueError(f"n_head = {h}: must divide model.d_model = {d}")
        return self
