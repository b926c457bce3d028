"""A training run set up: the resolved model, recipe and device (:class:`RunSetup`), from any params
object with the ``model:`` and ``train:`` sections (:class:`RunParams`), and what is checked before
anything is allocated (precision, memory per rank).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from cgpt.core.errors import TrainingError
from cgpt.core.fsutil import sha256_file
from cgpt.data.tokens import read_index
from cgpt.devices import resolve_device
from cgpt.presets import ModelConfig, TrainRecipe
from cgpt.train.checkpoint import model_config_to_dict
from cgpt.train.distributed import DistContext
from cgpt.train.params import SCHEDULE_KEYS, TrainParams
from cgpt.train.perf import GIB, device_memory, estimate_memory

log = logging.getLogger("cgpt.train")


class PresetChoice(Protocol):
    """The ``model:`` section, as far as a run needs it: the preset's name."""

    @property
    def preset(self) -> str: ...


class RunParams(Protocol):
    """What a run is made from: a stage's params (the ``model:`` and ``train:`` sections, the
    resolved recipe and the model's shape for the tokenizer's vocabulary)."""

    @property
    def model(self) -> PresetChoice: ...

    @property
    def train(self) -> TrainParams: ...

    def recipe(self) -> TrainRecipe: ...

    def build_model_config(self, vocab_size: int) -> ModelConfig: ...


@dataclass(frozen=True)
class RunSetup:
    """Everything the loop needs: the resolved model and recipe, the ``train:`` section, the data's
    tokenizer and the device to run on (resolved from ``train.device``)."""

    model_config: ModelConfig
    recipe: TrainRecipe
    train: TrainParams
    tokenizer_sha256: str
    preset: str = ""
    device: str = "cpu"
    tokens_digest: str = ""  # the token data's version (its index.json): other data, other weights

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to be resumed by it: the model, the data, and
        every setting of the optimization except its length. So raising ``train.max_steps``
        continues from the last checkpoint (the schedule is recomputed for the new length), while a
        changed learning rate, warm-up, decay, seed, batch, precision or token data starts over (the
        old checkpoints are set aside, and taken back when the configuration returns) instead of
        quietly returning a model trained otherwise."""
        t = self.train
        return {
            "model_config": model_config_to_dict(self.model_config),
            "tokenizer_sha256": self.tokenizer_sha256,
            **({"tokens_digest": self.tokens_digest} if self.tokens_digest else {}),
            "seed": t.seed,
            "seq_len": self.recipe.seq_len,
            "batch_size": self.recipe.batch_size,
            "optimization": {
                "preset": self.preset,
                **t.model_dump(include={*SCHEDULE_KEYS, "optimizer", "precision"}),
            },  # fmt: skip
        }

    def resolved_train(self, world_size: int = 1) -> dict[str, Any]:
        """The ``train:`` section as it runs: every ``null`` (the preset's value) and ``auto`` replaced
        by what is used, e.g. ``device: cpu``, ``precision: fp32``, ``lr: 0.0006``, ``max_steps: 60``
        (the MLflow run's ``train.*`` params say what ran, not what params.yaml left open). The
        run's name and parallel layout are left out (the run's name and tags say those)."""
        t, r = self.train, self.recipe
        share = r.batch_size // max(world_size, 1)
        return {
            **t.model_dump(exclude={"run_name", "distributed"}),
            "max_steps": r.optimizer_steps(),
            "batch_size": r.batch_size,
            "micro_batch_size": min(t.micro_batch_size or share, share),
            "seq_len": r.seq_len,
            "lr": r.peak_lr,
            "end_lr_ratio": float(f"{r.end_lr / r.peak_lr:.12g}") if r.peak_lr else 0.0,  # 0.1, not 0.0999...
            "warmup_steps": r.warmup_steps,
            "decay": r.decay,
            "weight_decay": r.weight_decay,
            "grad_clip": r.grad_clip,
            "adam_eps": r.eps,
            "precision": resolve_precision(t.precision, self.device),
            "device": self.device,
            "threads": t.threads or torch.get_num_threads(),
        }

    def fingerprint_key(self) -> str:
        """A short stable id of :meth:`fingerprint` (names the MLflow run this training belongs to)."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def setup_from_params(params: RunParams, tokens_dir: Path, device: str | None = None) -> RunSetup:
    """The run of ``params`` on the data in ``tokens_dir``; ``device`` is this rank's (``cuda:1``)
    when a distributed launch chose it, else ``train.device`` resolved."""
    index = read_index(tokens_dir)
    t = params.train
    if t.threads:
        torch.set_num_threads(t.threads)
    return RunSetup(
        model_config=params.build_model_config(int(index["vocab_size"])),
        recipe=params.recipe(),
        train=t,
        tokenizer_sha256=str(index.get("tokenizer_sha256", "")),
        preset=params.model.preset,
        device=device or resolve_device(t.device),
        tokens_digest=sha256_file(tokens_dir / "index.json")[:16],
    )


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: the recipe's bf16 autocast on CUDA (fp32 weights and optimizer state); fp32 on CPU,
    where bf16 matmuls are slow and the default pipeline's bytes must not change."""
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def check_memory(setup: RunSetup, precision: str, share: int, ctx: DistContext) -> None:
    """Print the memory estimate per rank; stop with one line before allocating when it cannot fit."""
    cfg, tp = setup.model_config, setup.train
    micro = min(tp.micro_batch_size or share, share)
    est = estimate_memory(
        cfg,
        micro_batch=micro,
        seq_len=setup.recipe.seq_len,
        precision=precision,
        strategy=ctx.strategy,
        world_size=ctx.world_size,
        activation_checkpointing=tp.activation_checkpointing,
        device_type=torch.device(setup.device).type,
    )
    capacity, where = device_memory(setup.device, ctx.local_world_size)
    layout = f"{ctx.strategy} over {ctx.world_size} ranks" if ctx.active else "one process"
    if ctx.is_main:
        log.info(
            "memory per rank: %s for micro-batch %d x %d, %s, %s; %.1f GiB on %s",
            est.describe(),
            micro,
            setup.recipe.seq_len,
            precision,
            layout,
            capacity / GIB,
            where,
        )
    if ctx.any(est.total > capacity):
        raise TrainingError(
            f"{setup.preset or 'the model'} does not fit: {est.describe()} per rank ({layout}, micro-batch {micro}, "
            f"{precision}) but {where} has {capacity / GIB:.1f} GiB; use strategy fsdp over more devices, a smaller "
            "train.micro_batch_size or train.activation_checkpointing: true"
        )
