"""Helpers of tests/unit/train/test_distributed.py: ranks as spawned processes on gloo, and a stage-level mini project.

Kept outside the test module so the spawned ranks import it without pytest's collection.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
import yaml
from processes import free_port

from cgpt.train.distributed import start_rank
from cgpt.train.loop import train
from cgpt.train.setup import RunSetup


def _rank(rank: int, world: int, port: int, strategy: str, setup: RunSetup, tokens: Path, run: Path, out: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    ctx, _ = start_rank(strategy, "gloo", "cpu", threads=1)
    try:
        result = train(setup, tokens, run, progress=False, ctx=ctx)
        state = result.state_dict()  # collective under FSDP only at the end of train(); here plain
        if ctx.is_main:
            torch.save(
                {"history": result.history, "state": state, "resumed": result.resumed_from_step, "speed": result.speed},
                out,
            )
    finally:
        ctx.close()


def train_ranks(world: int, strategy: str, setup: RunSetup, tokens: Path, run: Path) -> dict[str, Any]:
    """``train()`` as ``world`` gloo ranks (one thread each); rank 0's history, full weights, resume step."""
    out = run.parent / f"{run.name}.result.pt"
    mp.start_processes(
        _rank,
        args=(world, free_port(), strategy, setup, tokens, run, out),
        nprocs=world,
        start_method="spawn",
    )
    return torch.load(out, weights_only=False)


def losses(history: list[dict[str, Any]]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in history if "loss" in r}


def max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


MINI_PARAMS: dict[str, Any] = {
    "model": {"preset": "cpu-tiny", "n_layer": 1, "d_model": 32, "n_head": 2, "d_ffn": 64, "n_positions": 32},
    "train": {
        "max_steps": 12,
        "batch_size": 4,
        "micro_batch_size": 1,
        "seq_len": 16,
        "lr": 1e-2,
        "warmup_steps": 2,
        "log_interval": 3,
        "eval_interval": 6,
        "eval_tokens": 256,
        "checkpoint_interval": 6,
        "keep_checkpoints": 5,
        "seed": 5,
    },
    "tracking": {"enabled": False},
}


def mini_project(root: Path, tokens_writer: Any, distributed: dict[str, Any] | None = None) -> Path:
    """A project with params.yaml and data/tokens only: enough for the train stage, no DVC."""
    root.mkdir(parents=True, exist_ok=True)
    params = {k: dict(v) for k, v in MINI_PARAMS.items()}
    if distributed:
        params["train"]["distributed"] = distributed
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tokens_writer(root / "data" / "tokens")
    return root
