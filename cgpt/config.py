"""The typed schema of params.yaml: one section per stage, validated once, before any stage runs.

A bad value stops everything with one line naming the key, the value and what was expected::

    params.yaml: model.n_head = 5: must divide model.d_model = 192

The data sections are defined next to the code that consumes them (``cgpt/data/params_*.py``)
and composed here, so this file stays the single entry point for configuration.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cgpt.data.params_clean import CleanParams, TokenizeParams
from cgpt.data.params_download import DownloadParams
from cgpt.errors import ConfigError
from cgpt.presets import PRESETS, ModelConfig, Preset, TrainRecipe

_STRICT = ConfigDict(extra="forbid", validate_default=True)


class ModelParams(BaseModel):
    """A preset plus optional shape overrides (``null`` keeps the preset's value)."""

    model_config = _STRICT
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
    def _heads_divide_width(self) -> "ModelParams":
        base = PRESETS[self.preset].model
        d = self.d_model or base.d_model
        h = self.n_head or base.n_head
        if d % h:
            raise ValueError(f"n_head = {h}: must divide model.d_model = {d}")
        return self


class TrainParams(BaseModel):
    """Training loop settings; ``null`` means "the preset's recipe"."""

    model_config = _STRICT
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


class EvaluateParams(BaseModel):
    model_config = _STRICT
    splits: list[Literal["val", "test"]] = ["val", "test"]
    batch_size: int = Field(default=8, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)


class ExportParams(BaseModel):
    model_config = _STRICT
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sample_prompt: str = "ROMEO:"
    sample_tokens: int = Field(default=40, ge=0)


class TrackingParams(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    experiment: str = Field(default="cgpt", min_length=1)


class Params(BaseModel):
    model_config = _STRICT
    download: DownloadParams = DownloadParams()
    clean: CleanParams = CleanParams()
    tokenize: TokenizeParams = TokenizeParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _context_fits_positions(self) -> "Params":
        preset = PRESETS[self.model.preset]
        seq_len = self.train.seq_len or preset.recipe.seq_len
        n_pos = self.model.n_positions or preset.model.n_positions
        if seq_len > n_pos:
            raise ValueError(f"train.seq_len = {seq_len}: must be at most model.n_positions = {n_pos}")
        warm = self.train.warmup_steps
        if warm is not None and self.train.max_steps is not None and warm > self.train.max_steps:
            raise ValueError(f"train.warmup_steps = {warm}: must be at most train.max_steps = {self.train.max_steps}")
        return self

    # ---- resolved views -------------------------------------------------------------------

    @property
    def preset(self) -> Preset:
        return PRESETS[self.model.preset]

    def build_model_config(self, vocab_size: int) -> ModelConfig:
        """The preset's shape with overrides applied and the tokenizer's vocabulary size."""
        overrides = {k: v for k, v in self.model.model_dump(exclude={"preset"}).items() if v is not None}
        if "d_model" in overrides and "d_ffn" not in overrides:
            overrides["d_ffn"] = 4 * overrides["d_model"]
        return replace(self.preset.model, vocab_size=vocab_size, **overrides)

    def recipe(self) -> TrainRecipe:
        """The preset's recipe with train.* overrides.

        ``max_steps`` sets the run's length; unless ``warmup_steps`` is given too, the warm-up
        keeps the preset's share of the run (e.g. 30 of 300 steps -> 2 of 20), and the decay fills
        the rest, so the LR still ends at end_lr on the last step.
        """
        r, t = self.preset.recipe, self.train
        peak = t.lr if t.lr is not None else r.peak_lr
        ratio = t.end_lr_ratio if t.end_lr_ratio is not None else r.end_lr / r.peak_lr
        total = t.max_steps if t.max_steps is not None else r.total_steps
        if t.warmup_steps is not None:
            warm = t.warmup_steps
        elif t.max_steps is not None:
            warm = round(r.warmup_steps * total / r.total_steps)
        else:
            warm = r.warmup_steps
        changed = {
            "peak_lr": peak,
            "end_lr": peak * ratio,
            "warmup_steps": warm,
            "decay_steps": total - warm,
            "batch_size": t.batch_size or r.batch_size,
            "seq_len": t.seq_len or r.seq_len,
            "decay": t.decay or r.decay,
            "weight_decay": t.weight_decay if t.weight_decay is not None else r.weight_decay,
            "grad_clip": t.grad_clip or r.grad_clip,
            "eps": t.adam_eps or r.eps,
        }
        if t.max_steps is not None or t.batch_size is not None:
            changed["batch_switch"] = None  # a custom length or batch replaces the 13B switch
        return replace(r, **changed)


def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc} (value {value!r}); check the spelling against the README's params reference"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: {loc} is required"
    if not loc:
        return f"{source}: {msg}"
    if isinstance(value, (dict, list)):  # a check across several keys of one section
        return f"{source}: {loc}.{msg}" if re.match(r"^[\w.\[\]]+ = ", msg) else f"{source}: {loc}: {msg}"
    return f"{source}: {loc} = {value!r}: {msg}"


def parse_params(raw: dict[str, Any] | None, source: str = "params.yaml", root: Path | None = None) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` with one line on the first problem.

    ``root`` is where relative paths in the params start (default: the working directory).
    """
    try:
        return Params.model_validate(raw or {}, context={"root": root or Path.cwd()})
    except ValidationError as exc:
        errors = exc.errors()
        line = _format_error(errors[0], source)
        if len(errors) > 1:
            line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(line) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (download, clean, ...), got {type(raw).__name__}")
    return parse_params(raw, str(path), root=path.resolve().parent)
