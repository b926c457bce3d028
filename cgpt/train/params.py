"""The ``train:`` section of params.yaml: run name, seed, recipe overrides and loop settings.

``null`` (the default of every recipe key) means "the preset's recipe"; :meth:`cgpt.config.Params.recipe`
resolves them. Validators raise ``ValueError``; :mod:`cgpt.config` turns that into one line.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TrainParams(BaseModel):
    """Training loop settings; ``null`` means "the preset's recipe"."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    run_name: str = "default"
    seed: int = 1337
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    micro_batch_size: int | None = Field(default=None, gt=0)
    seq_len: int | None = Field(default=None, gt=1)
    lr: float | None = Field(default=None, gt=0)
    end_lr_ratio: float | None = Field(default=None, ge=0, le=1)
    warmup_steps: int | None = Field(default=None, ge=0)
    decay: Literal["linear", "cosine"] | None = None
    weight_decay: float | None = Field(default=None, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    adam_eps: float | None = Field(default=None, gt=0)
    optimizer: Literal["cerebras", "torch"] = "cerebras"
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, gt=0)
    log_interval: int = Field(default=1, gt=0)
    eval_interval: int = Field(default=100, gt=0)
    eval_tokens: int = Field(default=32768, gt=0)
    checkpoint_interval: int = Field(default=250, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("expected letters, digits, '_', '.', '-' (it names the folder runs/<run_name>)")
        return v
