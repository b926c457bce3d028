"""The ``model:`` section of params.yaml: a preset plus optional shape and parameterization overrides."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cgpt.presets import MUP_BASE_INIT_STD, MUP_EMBEDDINGS_SCALE, PRESETS, SP_INIT_STD, ModelConfig


class ModelParams(BaseModel):
    """A preset plus optional overrides (``null`` keeps the preset's value).

    Shape: ``n_layer``, ``d_model``, ``n_head``, ``d_ffn`` (4·d_model unless given), ``n_positions``.
    Parameterization (spec sections 1.3/1.4): ``parameterization: mup`` turns any shape into a muP
    model (embeddings x ``embeddings_scale``, scores QKᵀ/d_head, logits x ``output_mult``/m with
    m = d_model / ``mup_base_width``, hidden LR x 1/m, init σ_base/√m); the muP hyperparameters
    default to the Cerebras-GPT ones (σ_base 0.08, base width 256, embeddings x 10, output
    multiplier 1). ``init_std`` is σ in SP and σ_base in muP. A muP sweep
    (``flows/mup_sweep.py``) tunes ``init_std``, ``output_mult`` and the LR on a proxy of width
    ``mup_base_width``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    preset: str = "cpu-small"
    n_layer: int | None = Field(default=None, gt=0)
    d_model: int | None = Field(default=None, gt=0)
    n_head: int | None = Field(default=None, gt=0)
    d_ffn: int | None = Field(default=None, gt=0)
    n_positions: int | None = Field(default=None, gt=0)
    parameterization: Literal["sp", "mup"] | None = None
    init_std: float | None = Field(default=None, gt=0)
    output_mult: float | None = Field(default=None, gt=0)
    mup_base_width: int | None = Field(default=None, gt=0)
    embeddings_scale: float | None = Field(default=None, gt=0)

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
        if self.resolved_parameterization == "sp" and self.mup_base_width is not None:
            raise ValueError(
                f"mup_base_width = {self.mup_base_width}: only used with parameterization: mup "
                f"(the preset {self.preset} is SP); remove it or set parameterization: mup"
            )
        return self

    @property
    def resolved_parameterization(self) -> Literal["sp", "mup"]:
        return self.parameterization or PRESETS[self.preset].model.parameterization


def build_model_config(model: ModelParams, vocab_size: int) -> ModelConfig:
    """The preset's shape with the ``model:`` overrides applied and the tokenizer's vocabulary size.

    Switching an SP preset to ``parameterization: mup`` takes the Cerebras-GPT muP defaults
    (σ_base 0.08, embeddings x 10, output layers σ_base/√m/√(2L)) unless ``init_std`` /
    ``embeddings_scale`` say otherwise; switching a muP preset to SP takes the SP ones (σ 0.02,
    embeddings x 1, output layers σ/√(2L))."""
    base = PRESETS[model.preset].model
    overrides = {k: v for k, v in model.model_dump(exclude={"preset", "parameterization"}).items() if v is not None}
    if "d_model" in overrides and "d_ffn" not in overrides:
        overrides["d_ffn"] = 4 * overrides["d_model"]
    kind = model.resolved_parameterization
    if kind != base.parameterization:
        mup = kind == "mup"
        base = replace(
            base,
            parameterization=kind,
            init_std=MUP_BASE_INIT_STD if mup else SP_INIT_STD,
            embeddings_scale=MUP_EMBEDDINGS_SCALE if mup else 1.0,
            output_init_std=None,
        )
    return replace(base, vocab_size=vocab_size, **overrides)
