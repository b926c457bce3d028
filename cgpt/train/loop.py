"""The training loop: recipe optimizer and schedule, periodic validation, atomic resumable checkpoints.

A run is set up by :mod:`cgpt.train.setup`, resumed by :mod:`cgpt.train.resume` (the newest usable
checkpoint; ones of a different model, tokenizer, seed or batch shape are set aside and training
starts over) and measured by :mod:`cgpt.train.metering`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from cgpt.core.errors import TrainingError
from cgpt.data.tokens import open_split
from cgpt.faults import fault_point
from cgpt.model.gpt import GPT
from cgpt.tracking.runs import CURVE_METRICS, CurveLogger, Tracker, disabled
from cgpt.train.checkpoint import save_checkpoint
from cgpt.train.checkpoint.sharded import save_sharded_checkpoint
from cgpt.train.distributed import (
    SINGLE,
    DistContext,
    build_model,
    clip_grad_norm,
    full_state_dict,
    gradient_sync,
    sharded_cross_entropy,
)
from cgpt.train.metering import Window, merge_rows, peak_total
from cgpt.train.optim import build_optimizer, set_lr
from cgpt.train.params import check_batches_divide_world
from cgpt.train.resume import resume_from_checkpoints, set_aside_incompatible
from cgpt.train.sampler import ChunkSampler
from cgpt.train.schedule import batch_size_at, batch_sizes, lr_at, sequences_seen, tokens_seen
from cgpt.train.setup import RunSetup, check_memory, resolve_precision
from cgpt.train.validation import cross_entropy

log = logging.getLogger("cgpt.train")

#: torch's global RNG is one per process: runs trained in threads of one process (a sweep's trials)
#: seed it and draw their init under this lock, so each run's init is its seed's, whatever else runs
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class TrainSummary:
    """The run's results (``train_metrics.json``): a function of the data and params alone, no timings."""

    steps: int
    tokens_seen: int
    params: int
    train_loss: float
    val_loss: float
    #: the step whose loss was not finite, when ``train.on_divergence: stop`` ended the run there
    diverged_at_step: int | None = None

    #: what ``train_metrics.json`` (a DVC metric) holds: few keys, so ``dvc metrics show`` stays narrow
    #: (the parameter count is in the model's ``cgpt_model.json``, the last validation in the curves)
    METRIC_KEYS = ("steps", "tokens_seen", "train_loss")

    def to_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }

    def metrics_file(self) -> dict[str, Any]:
        full = self.to_json()
        keys = self.METRIC_KEYS + (("diverged_at_step",) if self.diverged_at_step is not None else ())
        return {k: full[k] for k in keys}


@dataclass
class TrainResult:
    model: GPT  # under FSDP: this rank's shards (see state_dict)
    history: list[dict[str, Any]]  # curve rows: loss, lr, grad_norm per logged step; val_loss per validation
    speed: list[dict[str, Any]]  # timing rows per logged step (tokens/s, seconds), every session
    summary: TrainSummary
    resumed_from_step: int
    full_state: dict[str, torch.Tensor] | None = None  # FSDP: the whole model, gathered once on rank 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's weights (what model/ holds)."""
        return self.full_state if self.full_state is not None else self.model.state_dict()


def train_step(
    model: nn.Module,
    train_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    micro_batch_size: int | None,
    grad_clip: float,
    autocast: AbstractContextManager[Any],
    ctx: DistContext = SINGLE,
) -> tuple[torch.Tensor, float]:
    """One optimizer update on this rank's share ``x, y`` of a global batch of ``batch_size``
    sequences: (this rank's part of the mean loss, the global gradient norm before clipping).

    Gradient accumulation over micro-batches; windows are full, so the mean of micro-batch means
    weighted by size is the batch mean. Each micro-batch's loss is weighted by its share of the
    global batch times the world size, because DDP/FSDP average the ranks' gradients: the result
    is the single-process gradient of the whole batch (up to the order of fp32 additions).
    """
    world = ctx.world_size
    micro = micro_batch_size or x.shape[0]
    loss = torch.zeros((), device=x.device)
    chunks = list(zip(x.split(micro), y.split(micro)))
    for i, (xs, ys) in enumerate(chunks):
        weight = xs.shape[0] / batch_size
        with gradient_sync(train_model, ctx, last=i == len(chunks) - 1):
            with autocast:
                _, micro_loss = train_model(xs, ys)
            (micro_loss * (weight * world)).backward()
        loss += micro_loss.detach() * weight
    grad_norm = clip_grad_norm(model, grad_clip, ctx)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm


def train(
    setup: RunSetup,
    tokens_dir: Path,
    run_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: bool = True,
    stop_requested: Callable[[], bool] = lambda: False,
    ctx: DistContext = SINGLE,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; returns the model, the history rows and the summary.

    MLflow gets each curve point exactly once, even across kills: :class:`cgpt.tracking.runs.CurveLogger`
    skips what the run already holds and sends what it lost from the checkpoint's history.
    ``stop_requested`` is polled after every step (Ctrl-C / SIGTERM): the run then writes a
    checkpoint at that step and raises :class:`KeyboardInterrupt`.

    With ``ctx`` a rank of a DDP/FSDP job (:mod:`cgpt.train.distributed`), every rank calls this
    with the same arguments; each trains on its share of every batch, and only rank 0 should be
    given a tracker and ``progress``. Checkpoints: rank 0 writes the single-process format under
    DDP, every rank its shards under FSDP (:mod:`cgpt.train.checkpoint.sharded`). Resuming:
    :mod:`cgpt.train.resume`.
    """
    tracker = tracker or disabled()
    recipe, cfg, device, tp = setup.recipe, setup.model_config, setup.device, setup.train
    total_steps = recipe.optimizer_steps()
    world = ctx.world_size
    # torchrun/srun may have chosen the world size: params.yaml could not check it
    check_batches_divide_world(batch_sizes(recipe), world, error=TrainingError)
    ckpt_dir = run_dir / "checkpoints"
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(
            f"{ckpt_dir}: cannot be the checkpoints folder ({exc.strerror}); fix or remove it"
        ) from None
    ctx.run_on_main(lambda: set_aside_incompatible(ckpt_dir, setup))

    train_stream = open_split(tokens_dir, "train")
    val_stream = open_split(tokens_dir, "val")
    if len(val_stream) < 2 and ctx.is_main:
        log.warning("the val split is empty: no periodic validation (raise tokenize.split.val)")
    sampler = ChunkSampler(train_stream, recipe.seq_len, tp.seed)

    precision = resolve_precision(tp.precision, device)
    largest = max(batch_sizes(recipe))
    check_memory(setup, precision, largest // world, ctx)
    with _INIT_LOCK:
        model, train_model = build_model(
            cfg, tp.seed, device, ctx, compile=tp.compile, activation_checkpointing=tp.activation_checkpointing
        )
    optimizer = build_optimizer(
        model,
        lr=recipe.peak_lr,
        betas=recipe.betas,
        eps=recipe.eps,
        weight_decay=recipe.weight_decay,
        kind=tp.optimizer,
    )
    resumed = resume_from_checkpoints(ckpt_dir, total_steps, model, optimizer, device, ctx)
    start_step, history, speed = resumed.step, resumed.history, resumed.speed
    curves = CurveLogger(tracker, CURVE_METRICS)
    for row in merge_rows(history, speed):  # what the MLflow run lost (or a new run never had)
        curves.log(row["step"], {k: v for k, v in row.items() if k != "step"})

    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    flops_per_token = cfg.flops_per_token(recipe.seq_len)[1]
    peak = peak_total(device, precision, ctx) if start_step < total_steps else None
    state_extra = {**setup.fingerprint(), "preset": setup.preset, "run_name": tp.run_name}
    if ctx.active:
        state_extra.update(strategy=ctx.strategy, world_size=world)
    last_checkpoint = start_step

    def checkpoint(step: int) -> None:
        nonlocal last_checkpoint
        extra = {**state_extra, "tokens_seen": tokens_seen(recipe, step)}
        if window.steps:  # a stop between logged steps: the next curve row averages over these too
            extra["loss_window"] = {"loss": window.loss, "steps": window.steps}
        if ctx.sharded:
            save_sharded_checkpoint(
                ckpt_dir,
                step,
                model,
                optimizer,
                cfg,
                ctx=ctx,
                extra=extra,
                history=history,
                speed=speed,
                keep_last=tp.keep_checkpoints,
            )
        else:
            ctx.run_on_main(
                lambda: save_checkpoint(
                    ckpt_dir,
                    step,
                    model.state_dict(),
                    cfg,
                    optimizer_state=optimizer.state_dict(),
                    extra=extra,
                    history=history,
                    speed=speed,
                    keep_last=tp.keep_checkpoints,
                )
            )
        last_checkpoint = step
        curves.flush()

    def validate(step: int) -> float:
        if len(val_stream) < 2:
            return float("nan")
        if ctx.active:
            loss = sharded_cross_entropy(
                model, val_stream, recipe.seq_len, max_tokens=tp.eval_tokens, device=device, ctx=ctx
            )
        else:
            loss = cross_entropy(model, val_stream, recipe.seq_len, max_tokens=tp.eval_tokens, device=device)["loss"]
        history.append({"step": step, "val_loss": loss})
        curves.log(step, {"val_loss": loss})
        return loss

    model.train()
    bar = tqdm(
        total=total_steps, initial=start_step, desc="train", unit="step", disable=not progress, dynamic_ncols=True
    )
    window = Window(flops_per_token, peak)
    if resumed.loss_window:  # stopped between two logged steps: their loss so far, so the next row is exact
        window.loss, window.steps = float(resumed.loss_window["loss"]), int(resumed.loss_window["steps"])
    last_loss = last_val = float("nan")
    diverged_at: int | None = None
    for step in range(start_step, total_steps):
        step_start = time.perf_counter()
        lr = lr_at(recipe, step)
        set_lr(optimizer, lr)
        batch_size = batch_size_at(recipe, step)
        # this rank's contiguous share of the global batch at the sequences consumed so far
        x, y = sampler.rows(sequences_seen(recipe, step), batch_size, part=(ctx.rank, world))
        x, y = x.to(device), y.to(device)
        loss, grad_norm = train_step(
            model,
            train_model,
            optimizer,
            x,
            y,
            batch_size=batch_size,
            micro_batch_size=tp.micro_batch_size,
            grad_clip=recipe.grad_clip,
            autocast=autocast,
            ctx=ctx,
        )
        loss_value = float(ctx.all_sum(loss))
        seconds = time.perf_counter() - step_start
        if not math.isfinite(loss_value):
            if tp.on_divergence == "error":
                raise TrainingError(
                    f"training loss became {loss_value} at step {step + 1}; lower train.lr or check the data"
                )
            diverged_at = step + 1
            break
        window.add(loss_value, batch_size * recipe.seq_len, seconds)  # the global batch: tokens/s of the whole job
        done = step + 1
        if done % tp.log_interval == 0 or done == total_steps:
            row, pace, util = window.close(done, lr, grad_norm)
            last_loss, tps = row["loss"], pace["tokens_per_s"]
            history.append(row)
            speed.append(pace)
            curves.log(
                done,
                {
                    "loss": last_loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens_per_s": tps,
                    "flops_per_s": pace["flops_per_s"],
                    **({"mfu": util} if util is not None else {}),
                },
            )
            postfix = {"loss": f"{last_loss:.3f}", "lr": f"{lr:.2e}", "tok_s": f"{tps:,.0f}"}
            if util is not None:
                postfix["mfu"] = f"{util:.1%}"
            bar.set_postfix(postfix)
        if done % tp.eval_interval == 0 or done == total_steps:
            last_val = validate(done)
            bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{last_val:.3f}")
        if done % tp.checkpoint_interval == 0 or done == total_steps:
            checkpoint(done)
        bar.update(1)
        fault_point("train.step")
        if ctx.any(stop_requested()) and done < total_steps:
            if last_checkpoint != done:
                checkpoint(done)
            bar.close()
            raise KeyboardInterrupt(f"stopped after step {done}; checkpoint written, rerun to resume")
    bar.close()
    curves.flush()

    steps_done = total_steps
    if diverged_at is not None:  # on_divergence: stop: the weights of the newest checkpoint (or the init) stand
        kept = resume_from_checkpoints(ckpt_dir, total_steps, model, optimizer, device, ctx)
        steps_done = kept.step
        # the summary describes the weights that stand (the curves keep the whole run, divergence included)
        losses = [r["loss"] for r in kept.history if "loss" in r]
        vals = [r["val_loss"] for r in kept.history if "val_loss" in r]
        last_loss = losses[-1] if losses else float("nan")
        last_val = vals[-1] if vals else float("nan")
        if steps_done == 0:
            with _INIT_LOCK:
                model, _ = build_model(
                    cfg, tp.seed, device, ctx, compile=tp.compile, activation_checkpointing=tp.activation_checkpointing
                )
        if ctx.is_main:
            log.warning(
                "training loss became non-finite at step %d: stopped (train.on_divergence: stop); the model is "
                "the weights of step %d%s",
                diverged_at,
                steps_done,
                " (the initialization: no checkpoint before it)" if steps_done == 0 else " (the newest checkpoint)",
            )
    elif start_step >= total_steps:  # nothing left to do: report the resumed state
        vals = [r["val_loss"] for r in history if "val_loss" in r]
        losses = [r["loss"] for r in history if "loss" in r]
        last_val = vals[-1] if vals else validate(total_steps)
        last_loss = losses[-1] if losses else float("nan")
    summary = TrainSummary(
        steps=steps_done,
        tokens_seen=tokens_seen(recipe, steps_done),
        params=cfg.num_params(),
        train_loss=last_loss,
        val_loss=last_val,
        diverged_at_step=diverged_at,
    )
    full = full_state_dict(model, ctx) if ctx.sharded else None
    return TrainResult(
        model=model, history=history, speed=speed, summary=summary, resumed_from_step=start_step, full_state=full
    )
