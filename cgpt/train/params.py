"""The ``train:`` section of params.yaml: run name, seed, recipe overrides and loop settings.

``null`` (the default of every recipe key) means "the preset's recipe"; :func:`resolve_recipe`
resolves them, and :class:`TrainingSections` (``model:`` + ``train:``) is the view every stage that
builds or describes a model reads. Validators raise ``ValueError``; :mod:`cgpt.config` turns that into one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cgpt.core.sections import Sections
from cgpt.model.params import ModelParams, build_model_config
from cgpt.presets import PRESETS, ModelConfig, Preset, TrainRecipe
from cgpt.train.schedule import batch_sizes


def check_batches_divide_world(
    batches: Iterable[int], world: int, where: str = "", *, layout: str = "", error: type[Exception] = ValueError
) -> None:
    """Every rank takes an equal, contiguous share of each global batch (the same math at any world
    size): raise ``error`` with one line when one of ``batches`` (both of a batch switch) does not
    divide by the world size. ``where`` starts the line (``params.yaml: train.distributed``);
    ``layout`` says where the world size comes from (``2 processes per node x 1 nodes``)."""
    for b in sorted(set(batches)):
        if b % world:
            head = f"{where}: " if where else ""
            source = f" ({layout})" if layout else ""
            raise error(
                f"{head}the global batch of {b} sequences does not divide by the world size {world}{source}; every "
                "rank takes an equal share of each batch: change train.batch_size or the number of processes"
            )


class DistributedParams(BaseModel):
    """``train.distributed``: how many processes train, and how they find each other.

    ``strategy: none`` is one process (today's path, byte for byte). ``ddp`` and ``fsdp`` train
    with ``nproc_per_node x nnodes`` processes that split every global batch: ``dvc repro`` starts
    them itself through torch's elastic launcher; under ``torchrun``/``srun`` they are started for
    it and these counts come from the launcher's environment instead (docs/distributed.md).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    strategy: Literal["none", "ddp", "fsdp"] = "none"
    nproc_per_node: int | Literal["auto"] = 1
    nnodes: int = Field(default=1, gt=0)
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    backend: Literal["auto", "nccl", "gloo"] = "auto"

    @field_validator("nproc_per_node")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("expected a positive number of processes, or auto (one per GPU, 1 on CPU)")
        return v

    @field_validator("rdzv_endpoint")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+?\]?:\d{1,5}", v):
            raise ValueError("expected host:port of the rendezvous (e.g. node0.cluster:29500)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> DistributedParams:
        several = self.nnodes > 1 or self.nproc_per_node == "auto" or self.nproc_per_node > 1
        if self.strategy == "none" and several:
            raise ValueError(
                f"strategy = 'none': nproc_per_node = {self.nproc_per_node!r} and nnodes = {self.nnodes} need "
                "strategy ddp or fsdp"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                f"nnodes = {self.nnodes}: needs rdzv_endpoint (host:port of the first node, the same on every node)"
            )
        return self

    @property
    def launched(self) -> bool:
        """True when training runs as ranks of a process group (ddp/fsdp), whatever their number."""
        return self.strategy != "none"


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
    # auto = bf16 autocast on CUDA (the recipe: bf16 compute, fp32 weights and optimizer state), fp32 on CPU
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, gt=0)
    compile: bool = False
    activation_checkpointing: bool = False
    log_interval: int = Field(default=1, gt=0)
    eval_interval: int = Field(default=100, gt=0)
    eval_tokens: int = Field(default=32768, gt=0)
    checkpoint_interval: int = Field(default=250, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    # a non-finite training loss: error (the stage fails, the default) or stop (the run ends there
    # with the newest checkpoint's weights and diverged_at_step in train_metrics.json: what a family
    # member does, so a diverging member is flagged and the family goes on)
    on_divergence: Literal["error", "stop"] = "error"
    distributed: DistributedParams = DistributedParams()

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("expected letters, digits, '_', '.', '-' (it names the folder runs/<run_name>)")
        return v


#: the ``train:`` keys of the optimisation: the learning-rate schedule and AdamW's settings
SCHEDULE_KEYS = ("lr", "end_lr_ratio", "warmup_steps", "decay", "weight_decay", "grad_clip", "adam_eps")
#: the ``train:`` keys that override the preset's recipe (everything else is a loop setting)
RECIPE_KEYS = ("max_steps", "batch_size", "seq_len", *SCHEDULE_KEYS)


def resolve_recipe(preset: str, train: TrainParams) -> TrainRecipe:
    """The preset's recipe with ``train:``'s overrides.

    ``max_steps`` sets the run's length; unless ``warmup_steps`` is given too, the warm-up
    keeps the preset's share of the run (e.g. 30 of 300 steps -> 2 of 20), and the decay fills
    the rest, so the LR still ends at end_lr on the last step.
    """
    r, t = PRESETS[preset].recipe, train
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


class TrainingSections(Sections):
    """``model:`` and ``train:``, checked together: what a stage that builds, trains or describes the
    model reads, with the resolved views (the preset, the recipe, the model's shape)."""

    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()

    @model_validator(mode="after")
    def _context_fits_positions(self) -> TrainingSections:
        seq_len = self.train.seq_len or self.preset.recipe.seq_len
        n_pos = self.model.n_positions or self.preset.model.n_positions
        if seq_len > n_pos:
            raise ValueError(f"train.seq_len = {seq_len}: must be at most model.n_positions = {n_pos}")
        warm = self.train.warmup_steps
        if warm is not None and self.train.max_steps is not None and warm > self.train.max_steps:
            raise ValueError(f"train.warmup_steps = {warm}: must be at most train.max_steps = {self.train.max_steps}")
        return self

    @model_validator(mode="after")
    def _batch_splits_over_ranks(self) -> TrainingSections:
        d = self.train.distributed
        if d.nproc_per_node == "auto":
            return self  # known at launch: cgpt.train.launch checks it there
        layout = f"nproc_per_node {d.nproc_per_node} x nnodes {d.nnodes}"
        check_batches_divide_world(
            batch_sizes(self.recipe()), d.nproc_per_node * d.nnodes, "train.distributed", layout=layout
        )
        return self

    @property
    def preset(self) -> Preset:
        return PRESETS[self.model.preset]

    def build_model_config(self, vocab_size: int) -> ModelConfig:
        """The preset's shape with overrides applied and the tokenizer's vocabulary size
        (:func:`cgpt.model.params.build_model_config`)."""
        return build_model_config(self.model, vocab_size)

    def recipe(self) -> TrainRecipe:
        """The preset's recipe with train.* overrides (:func:`resolve_recipe`)."""
        return resolve_recipe(self.model.preset, self.train)
