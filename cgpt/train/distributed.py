"""Training as several processes: the process group, the model wrapped for DDP or FSDP2, and the
few collectives the loop needs.

The math does not depend on the number of ranks. Every rank computes the same global batch of
update ``s`` (a pure function of the step, :mod:`cgpt.train.sampler`) and takes its contiguous
share; it accumulates gradients over micro-batches of ``train.micro_batch_size`` sequences with
the weight ``micro / global batch x world size``, and DDP's all-reduce (FSDP's reduce-scatter)
averages over the ranks, so the gradient is the single-process one up to the order of fp32
additions. Gradient clipping uses the global norm (DDP: every rank holds the reduced gradients;
FSDP: the DTensor norm, reduced over the shards). The logged loss is the sum of the ranks' shares.

* ``ddp``: every rank holds the whole model and optimizer; ``DistributedDataParallel`` all-reduces
  gradients in buckets while the backward runs (``no_sync`` on all but the last micro-batch).
* ``fsdp``: FSDP2's ``fully_shard`` on every block and on the root; parameters, gradients and
  AdamW state are DTensors sharded over the ranks, each block is all-gathered for its forward and
  backward. The model is built on the meta device and rank 0's CPU init (the same values one
  process draws from ``train.seed``) is broadcast into the shards, so no rank but rank 0 ever
  holds the whole model, and the initial weights are identical at any world size.

Precision is torch autocast in all three strategies (bf16 compute, fp32 weights, gradients and
optimizer state), so they run the same arithmetic; FSDP gathers fp32 weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cgpt.core.errors import CgptError, ConfigError, TrainingError
from cgpt.core.runtime import available_cores
from cgpt.devices import resolve_device
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.train.validation import window_starts

T = TypeVar("T")
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class PeerFailed(TrainingError):
    """Another rank failed at a step all ranks take together; that rank reports the cause."""

    cgpt_kind = "peer"


def in_launched_rank() -> bool:
    """True inside a process started by torchrun / torch's elastic launcher / srun with torch's env."""
    return all(k in os.environ for k in RANK_ENV)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; the default is one process, no process group."""

    strategy: str = "none"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""
    device: str = "cpu"

    @property
    def active(self) -> bool:
        """A process group exists (ddp or fsdp, whatever the world size)."""
        return self.strategy != "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: the sum over ranks (the tensor itself with one process)."""
        if self.active and self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop request, a failure)."""
        if not self.active or self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.active or self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active or self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only (file moves, checkpoint writes) and make its failure every
        rank's: a :class:`CgptError` is raised with the same line everywhere, so all ranks stop
        together instead of waiting for rank 0 at the next collective."""
        if not self.active or self.world_size == 1:
            return fn()
        result: T | None = None
        failure: tuple[str, str] | None = None
        original: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except CgptError as exc:
                failure, original = ("user", str(exc)), exc
            except Exception as exc:
                failure, original = ("bug", f"{type(exc).__name__}: {str(exc)[:200]}"), exc
        failure = self.broadcast(failure)
        if failure is None:
            return result
        if original is not None:
            raise original
        if failure[0] == "user":
            raise TrainingError(failure[1])
        raise PeerFailed(f"rank 0 failed ({failure[1]}); its traceback is in its output")

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = DistContext()


def start_rank(strategy: str, backend: str, device_setting: str, threads: int | None) -> tuple[DistContext, str]:
    """Join the job this process was launched into (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
    rendezvous in the environment, as torchrun and torch's elastic launcher set them).

    Returns the context and this rank's device: ``cuda:<local rank>`` on GPUs, ``cpu`` otherwise
    (with the node's cores split between its ranks unless ``train.threads`` is set).
    """
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if strategy == "none":
        if world > 1:
            raise ConfigError(
                f"params.yaml: train.distributed.strategy = 'none' but {world} processes were launched "
                f"(WORLD_SIZE={world}); set strategy ddp or fsdp"
            )
        return SINGLE, resolve_device(device_setting)
    device = resolve_device(device_setting)
    if device.startswith("cuda"):
        count = torch.cuda.device_count()
        if local_world > count:
            raise TrainingError(
                f"{local_world} ranks on this node but {count} CUDA device(s) visible; set "
                f"train.distributed.nproc_per_node to at most {count} (or auto)"
            )
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl" and not device.startswith("cuda"):
        raise ConfigError("params.yaml: train.distributed.backend = 'nccl' needs CUDA devices; use auto or gloo")
    if device == "cpu" and not threads:
        torch.set_num_threads(max(1, available_cores() // max(local_world, 1)))
    dist.init_process_group(backend=backend, device_id=torch.device(device) if device.startswith("cuda") else None)
    ctx = DistContext(strategy, rank, world, local_rank, local_world, backend, device)
    return ctx, device


# ---- the model ---------------------------------------------------------------------------------


def _checkpoint_blocks(model: GPT) -> None:
    """Activation checkpointing: each block keeps only its input for the backward and recomputes
    the rest (about a third more compute for a fraction of the activation memory). The wrapper's
    state-dict hooks keep the parameter names, so checkpoints are the same with or without it."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.h):
        model.h[i] = checkpoint_wrapper(block, preserve_rng_state=False)  # no dropout: no RNG to replay


def build_model(
    cfg: ModelConfig,
    seed: int,
    device: str,
    ctx: DistContext,
    *,
    compile: bool = False,
    activation_checkpointing: bool = False,
) -> tuple[GPT, nn.Module]:
    """(the model, the module to call for training): the same GPT, or its DDP wrapper.

    One process: ``torch.manual_seed(seed); GPT(cfg)`` exactly as before. ``compile`` compiles the
    whole model with one process, each block with DDP/FSDP (so gradient communication can still
    overlap the backward).
    """
    if ctx.sharded:
        return _build_fsdp(cfg, seed, device, ctx, compile, activation_checkpointing)
    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    if activation_checkpointing:
        _checkpoint_blocks(model)
    if ctx.strategy == "none":
        if compile:
            model.compile()
        return model, model
    if compile:
        for block in model.h:
            block.compile()
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = torch.device(device)
    ddp = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None, gradient_as_bucket_view=True)
    return model, ddp


def _build_fsdp(
    cfg: ModelConfig, seed: int, device: str, ctx: DistContext, compile: bool, activation_checkpointing: bool
) -> tuple[GPT, nn.Module]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    with torch.device("meta"):
        model = GPT(cfg)
    if activation_checkpointing:
        _checkpoint_blocks(model)
    if compile:
        for block in model.h:
            block.compile()
    mesh = init_device_mesh(torch.device(device).type, (ctx.world_size,))
    last = len(model.h) - 1
    for i, block in enumerate(model.h):
        fully_shard(block, mesh=mesh, reshard_after_forward=i < last)  # the last is needed again at once
    fully_shard(model, mesh=mesh)
    model.to_empty(device=device)
    full: dict[str, torch.Tensor] = {}
    if ctx.is_main:
        torch.manual_seed(seed)
        full = GPT(cfg).state_dict()  # on the CPU: the values one process would start from
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return model, model


def gradient_sync(train_model: nn.Module, ctx: DistContext, last: bool) -> AbstractContextManager[Any]:
    """DDP: skip the all-reduce on all but the last micro-batch (the gradients accumulate locally).
    FSDP reduce-scatters every micro-batch: holding unsharded gradients would undo the sharding."""
    if ctx.strategy == "ddp" and not last:
        return train_model.no_sync()  # type: ignore[operator]
    return nullcontext()


def clip_grad_norm(model: nn.Module, max_norm: float, ctx: DistContext) -> float:
    """Clip to the global L2 norm and return it (FSDP: reduced over the shards)."""
    if not ctx.sharded:
        return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    from torch.distributed.tensor import DTensor

    params = [p for p in model.parameters() if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0, False, True)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, True)
    return float(total)


def full_state_dict(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The whole model's weights for model/ (evaluate, export): gathered once on rank 0 under FSDP
    (other ranks get an empty dict), the module's own state dict otherwise."""
    if not ctx.sharded:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if ctx.is_main else {}


@torch.no_grad()
def sharded_cross_entropy(
    model: nn.Module, stream: Any, seq_len: int, *, max_tokens: int | None, device: str, ctx: DistContext
) -> float:
    """:func:`cgpt.train.validation.cross_entropy` with the windows dealt over the ranks.

    The same windows in the same groups of 8 (one forward per group and length); rank r scores
    groups r, r + world, ... and the sums of negative log-likelihoods and tokens are added over
    the ranks. Under FSDP every forward all-gathers layers, so a rank with one group fewer runs
    a one-token forward to keep the ranks in step.
    """
    windows = window_starts(len(stream), seq_len, max_tokens)
    calls: list[tuple[list[int], int]] = []
    for i in range(0, len(windows), 8):
        group = windows[i : i + 8]
        for length in sorted({n for _, n in group}, reverse=True):
            calls.append(([s for s, n in group if n == length], length))
    mine = calls[ctx.rank :: ctx.world_size]
    rounds = -(-len(calls) // ctx.world_size)
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for k in range(rounds):
        if k < len(mine):
            starts, length = mine[k]
            rows = [stream.read(s, length) for s in starts]
            data = torch.from_numpy(np.stack(rows).astype(np.int64, copy=False)).to(device)
            logits = model(data[:, :-1])
            nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), data[:, 1:].reshape(-1), reduction="sum")
            sums[0] += nll.double()
            sums[1] += data[:, 1:].numel()
        elif ctx.sharded:
            model(torch.zeros((1, 1), dtype=torch.long, device=device))
    model.train(was_training)
    ctx.all_sum(sums)
    return float(sums[0] / sums[1].clamp(min=1))
