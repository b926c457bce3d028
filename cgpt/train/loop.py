"""The training loop: recipe optimizer and schedule, periodic validation, atomic resumable checkpoints.

Resuming: the newest checkpoint in ``<run_dir>/checkpoints`` whose step does not exceed the run's
total steps is loaded (model, optimizer, RNG, step); because the data order is a function of the
step (:mod:`cgpt.train.sampler`), the resumed run continues exactly where it stopped. Checkpoints
of a different model, tokenizer, seed or batch shape cannot continue this run; they are moved to
``checkpoints/superseded-<time>/`` (never deleted) and training starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from cgpt.data.tokens import open_split, read_index
from cgpt.devices import resolve_device
from cgpt.errors import CgptError, TrainingError
from cgpt.faults import fault_point
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig, TrainRecipe
from cgpt.tracking import CurveLogger, Tracker, disabled
from cgpt.train.checkpoint import (
    DamagedCheckpoint,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    model_config_to_dict,
    read_checkpoint_state,
    restore_rng,
    save_checkpoint,
    verify_checkpoint,
)
from cgpt.train.checkpoint.sharded import is_sharded, load_full_into_sharded, load_sharded, save_sharded_checkpoint
from cgpt.train.distributed import (
    SINGLE,
    DistContext,
    build_model,
    clip_grad_norm,
    full_state_dict,
    gradient_sync,
    resolve_precision,
    sharded_cross_entropy,
)
from cgpt.train.optim import build_optimizer, set_lr
from cgpt.train.params import TrainParams, check_batches_divide_world
from cgpt.train.perf import GIB, device_memory, estimate_memory, mfu, peak_flops
from cgpt.train.sampler import ChunkSampler
from cgpt.train.schedule import batch_size_at, lr_at, sequences_seen, tokens_seen
from cgpt.train.validation import cross_entropy

if TYPE_CHECKING:
    from cgpt.config import Params

log = logging.getLogger("cgpt.train")

LEGACY_HISTORY = "history.jsonl"  # run-wide history file of older versions (now inside each checkpoint)
SPEED_KEYS = ("tokens_per_s", "flops_per_s", "mfu", "peak_flops_per_s", "tokens", "compute_seconds", "seconds")
CURVE_KEYS = ("loss", "lr", "grad_norm", "val_loss", "tokens_per_s", "flops_per_s", "mfu")
#: torch's global RNG is one per process: runs trained in threads of one process (a sweep's trials)
#: seed it and draw their init under this lock, so each run's init is its seed's, whatever else runs
_INIT_LOCK = threading.Lock()


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

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to be resumed by it: the model, the data, and
        every setting of the optimization except its length. So raising ``train.max_steps``
        continues from the last checkpoint (the schedule is recomputed for the new length), while a
        changed learning rate, warm-up, decay, seed, batch or precision starts over (the old
        checkpoints are set aside) instead of quietly returning a model trained otherwise."""
        t = self.train
        return {
            "model_config": model_config_to_dict(self.model_config),
            "tokenizer_sha256": self.tokenizer_sha256,
            "seed": t.seed,
            "seq_len": self.recipe.seq_len,
            "batch_size": self.recipe.batch_size,
            "optimization": {
                "preset": self.preset,
                **t.model_dump(
                    include={
                        "lr",
                        "end_lr_ratio",
                        "warmup_steps",
                        "decay",
                        "weight_decay",
                        "grad_clip",
                        "adam_eps",
                        "optimizer",
                        "precision",
                    }
                ),
            },  # fmt: skip
        }

    def fingerprint_key(self) -> str:
        """A short stable id of :meth:`fingerprint` (names the MLflow run this training belongs to)."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TrainSummary:
    """The run's results (``train_metrics.json``): a function of the data and params alone, no timings."""

    steps: int
    tokens_seen: int
    params: int
    train_loss: float
    val_loss: float

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
        return {k: full[k] for k in self.METRIC_KEYS}


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


def setup_from_params(params: Params, tokens_dir: Path, device: str | None = None) -> RunSetup:
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
    )


_ARCHITECTURE_KEYS = (
    "n_layer",
    "d_model",
    "n_head",
    "d_ffn",
    "vocab_size",
    "n_positions",
    "layer_norm_eps",
    "parameterization",
    "embeddings_scale",
    "mup_base_width",
    "output_mult",
)


def same_architecture(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same function given the same weights (init settings do not matter once weights exist)."""
    defaults = {"output_mult": 1.0}  # absent in configs of earlier versions
    return all(a.get(k, defaults.get(k)) == b.get(k, defaults.get(k)) for k in _ARCHITECTURE_KEYS)


def set_aside_incompatible(ckpt_dir: Path, setup: RunSetup) -> bool:
    """Move checkpoints this run cannot continue into ``superseded-<time>/`` (never delete them);
    True when something was moved. (The MLflow run marker stays: it is keyed by
    :meth:`RunSetup.fingerprint_key`, so a different configuration gets its own run anyway.)"""
    found = list_checkpoints(ckpt_dir)
    states = [(p, s) for p in found if (s := _state_or_none(p)) is not None]
    if not states:
        return False  # nothing readable: the resume step reports and moves damaged folders
    newest, state = states[-1]
    fp = setup.fingerprint()
    if "imported_from" in state:  # an imported model only has to compute the same function
        if not same_architecture(state["model_config"], fp["model_config"]):
            raise CgptError(
                f"{newest}: the imported model {state['model_config']} does not match the configured model "
                f"{fp['model_config']}; set model.* in params.yaml to the imported shape"
            )
        return False
    if all(state.get(k) == v for k, v in fp.items()):
        return False
    dest = ckpt_dir / time.strftime("superseded-%Y%m%dT%H%M%S")
    dest.mkdir(parents=True)
    for p in found:
        shutil.move(str(p), dest / p.name)
    if (ckpt_dir / LEGACY_HISTORY).exists():
        shutil.move(str(ckpt_dir / LEGACY_HISTORY), dest / LEGACY_HISTORY)
    log.warning(
        "checkpoints in %s belong to a different model or data; moved them to %s and starting over", ckpt_dir, dest
    )
    return True


def _state_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return read_checkpoint_state(path)
    except DamagedCheckpoint:
        return None


def _legacy_history(ckpt_dir: Path, upto_step: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Curve and speed rows from the run-wide ``history.jsonl`` older versions wrote beside the checkpoints."""
    path = ckpt_dir / LEGACY_HISTORY
    if not path.exists():
        return [], []
    history, speed = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if not row or row["step"] > upto_step:
            continue
        history.append({k: v for k, v in row.items() if k not in SPEED_KEYS})
        if "tokens_per_s" in row:
            speed.append({"step": row["step"], "tokens_per_s": row["tokens_per_s"]})
    return history, speed


@dataclass
class _Resumed:
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    speed: list[dict[str, Any]] = field(default_factory=list)


def resume_from_checkpoints(
    ckpt_dir: Path,
    total_steps: int,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    device: str,
    ctx: DistContext = SINGLE,
) -> _Resumed:
    """Load the newest usable checkpoint into ``model``/``optimizer`` (step <= ``total_steps``).

    A damaged checkpoint (a truncated file, a failed copy) is moved to ``damaged-<name>-<time>/``
    with a warning and the previous one is tried, so a damaged newest checkpoint never blocks
    training; with none usable, training starts from step 0. Any checkpoint loads at any world
    size and strategy: single-process/DDP ones (whole tensors) and FSDP's sharded ones
    (:mod:`cgpt.train.checkpoint.sharded`). With several ranks, each verifies a share of the files and all
    agree on the verdict before loading.
    """
    candidates = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) <= total_steps]
    for path in reversed(candidates):
        problem, _ = _attempt(ctx, verify_checkpoint, path, (ctx.rank, ctx.world_size))
        ckpt = None
        if problem is None:
            problem, ckpt = _attempt(ctx, _load_into, path, model, optimizer, device, ctx)
        if problem is not None or ckpt is None:
            dest = ckpt_dir / f"damaged-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}"

            def set_aside(path: Path = path, dest: Path = dest, problem: str | None = problem) -> None:
                shutil.move(str(path), dest)
                log.warning("%s; moved it to %s and trying the previous checkpoint", problem, dest.name)

            ctx.run_on_main(set_aside)
            continue
        restore_rng(ckpt.rng_state)
        history, speed = ckpt.history, ckpt.speed
        if not history:
            history, speed = _legacy_history(ckpt_dir, ckpt.step)
        if ctx.is_main:
            log.info("resuming from %s (step %d of %d)", ckpt.path, ckpt.step, total_steps)
        return _Resumed(ckpt.step, history, speed)
    return _Resumed()


def _attempt(ctx: DistContext, fn: Callable[..., Any], *args: Any) -> tuple[str | None, Any]:
    """Run ``fn(*args)`` on every rank: (the first rank's :class:`DamagedCheckpoint` message, the same
    on all ranks, or None; this rank's result)."""
    try:
        result, problem = fn(*args), None
    except DamagedCheckpoint as exc:
        result, problem = None, str(exc)
    return next((p for p in ctx.gather(problem) if p is not None), None), result


def _load_into(path: Path, model: GPT, optimizer: torch.optim.Optimizer, device: str, ctx: DistContext) -> Any:
    """Load the (verified) checkpoint at ``path`` into this rank's model and optimizer; its history."""
    state = read_checkpoint_state(path)
    if is_sharded(state):
        ckpt = load_checkpoint(path, verify=False, tensors=False)
        load_sharded(path, model, optimizer if "imported_from" not in state else None)
        return ckpt
    ckpt = load_checkpoint(path, map_location="cpu" if ctx.sharded else device, verify=False)
    if ctx.sharded:
        load_full_into_sharded(ckpt, model, optimizer)
    else:
        model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            optimizer.load_state_dict(ckpt.optimizer_state)
    return ckpt


def _check_memory(setup: RunSetup, precision: str, share: int, ctx: DistContext) -> None:
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


def _peak_total(device: str, precision: str, ctx: DistContext) -> float | None:
    """The peak FLOP/s of all ranks together (None when a rank's is unknown: no MFU then)."""
    ctx.barrier()  # CPU ranks probe their cores at the same time, as they will train
    peak, source = peak_flops(device, precision)
    both = ctx.all_sum(torch.tensor([peak or 0.0, 1.0 if peak is None else 0.0], dtype=torch.float64, device=device))
    if ctx.is_main:
        if peak is None:
            log.info("MFU not logged: %s", source)
        else:
            log.info("peak %.3g TFLOP/s per rank (%s); MFU against %d rank(s)", peak / 1e12, source, ctx.world_size)
    return None if both[1] > 0 else float(both[0])


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

    MLflow gets each curve point exactly once, even across kills: :class:`cgpt.tracking.CurveLogger`
    skips what the run already holds and sends what it lost from the checkpoint's history.
    ``stop_requested`` is polled after every step (Ctrl-C / SIGTERM): the run then writes a
    checkpoint at that step and raises :class:`KeyboardInterrupt`.

    With ``ctx`` a rank of a DDP/FSDP job (:mod:`cgpt.train.distributed`), every rank calls this
    with the same arguments; each trains on its share of every batch, and only rank 0 should be
    given a tracker and ``progress``. Checkpoints: rank 0 writes the single-process format under
    DDP, every rank its shards under FSDP (:mod:`cgpt.train.checkpoint.sharded`).
    """
    tracker = tracker or disabled()
    recipe, cfg, device, tp = setup.recipe, setup.model_config, setup.device, setup.train
    total_steps = recipe.optimizer_steps()
    world = ctx.world_size
    # torchrun/srun may have chosen the world size: params.yaml could not check it
    batches = [recipe.batch_size] + ([recipe.batch_switch.batch_size] if recipe.batch_switch else [])
    check_batches_divide_world(batches, world, error=TrainingError)
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
    largest = max(recipe.batch_size, recipe.batch_switch.batch_size if recipe.batch_switch else 0)
    _check_memory(setup, precision, largest // world, ctx)
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
    curves = CurveLogger(tracker, CURVE_KEYS)
    for row in merge_rows(history, speed):  # what the MLflow run lost (or a new run never had)
        curves.log(row["step"], {k: v for k, v in row.items() if k != "step"})

    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    flops_per_token = cfg.flops_per_token(recipe.seq_len)[1]
    peak_total = _peak_total(device, precision, ctx) if start_step < total_steps else None
    state_extra = {**setup.fingerprint(), "preset": setup.preset, "run_name": tp.run_name}
    if ctx.active:
        state_extra.update(strategy=ctx.strategy, world_size=world)
    last_checkpoint = start_step

    def checkpoint(step: int) -> None:
        nonlocal last_checkpoint
        extra = {**state_extra, "tokens_seen": tokens_seen(recipe, step)}
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
    window_loss, window_tokens, window_steps, window_time = 0.0, 0, 0, 0.0
    window_start = time.perf_counter()
    last_loss = last_val = float("nan")
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
        window_time += time.perf_counter() - step_start
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"training loss became {loss_value} at step {step + 1}; lower train.lr or check the data"
            )
        window_loss += loss_value
        window_tokens += batch_size * recipe.seq_len  # the global batch: tokens/s of the whole job
        window_steps += 1
        done = step + 1
        if done % tp.log_interval == 0 or done == total_steps:
            last_loss = window_loss / window_steps
            tps = window_tokens / max(window_time, 1e-9)
            row = {"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm}
            now = time.perf_counter()
            pace = {
                "step": done,
                "tokens_per_s": tps,
                "flops_per_s": tps * flops_per_token,
                "tokens": window_tokens,
                "compute_seconds": window_time,
                "seconds": now - window_start,
            }
            util = mfu(flops_per_token, tps, peak_total)
            if util is not None:
                pace.update(mfu=util, peak_flops_per_s=peak_total)
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
            window_loss, window_tokens, window_steps, window_time, window_start = 0.0, 0, 0, 0.0, now
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

    if start_step >= total_steps:  # nothing left to do: report the resumed state
        vals = [r["val_loss"] for r in history if "val_loss" in r]
        losses = [r["loss"] for r in history if "loss" in r]
        last_val = vals[-1] if vals else validate(total_steps)
        last_loss = losses[-1] if losses else float("nan")
    summary = TrainSummary(
        steps=total_steps,
        tokens_seen=tokens_seen(recipe, total_steps),
        params=cfg.num_params(),
        train_loss=last_loss,
        val_loss=last_val,
    )
    full = full_state_dict(model, ctx) if ctx.sharded else None
    return TrainResult(
        model=model, history=history, speed=speed, summary=summary, resumed_from_step=start_step, full_state=full
    )


def merge_rows(*row_lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several lists merged per step, in step order (curve + val + speed rows -> one per step)."""
    by_step: dict[int, dict[str, Any]] = {}
    for rows in row_lists:
        for r in rows:
            by_step.setdefault(r["step"], {"step": r["step"]}).update(r)
    return [by_step[k] for k in sorted(by_step)]


def run_speed(speed: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens/s and wall time over the whole training (every session of a resumed run), from the speed
    rows; MFU over the sessions that knew their peak (FLOPs done / peak FLOPs available)."""
    tokens = sum(r.get("tokens", 0) for r in speed)
    compute = sum(r.get("compute_seconds", 0.0) for r in speed)
    out = {
        "tokens_per_s": tokens / compute if compute else 0.0,
        "compute_seconds": compute,
        "seconds": sum(r.get("seconds", 0.0) for r in speed),
    }
    measured = [r for r in speed if r.get("peak_flops_per_s") and r.get("compute_seconds")]
    available = sum(r["peak_flops_per_s"] * r["compute_seconds"] for r in measured)
    if available:
        out["mfu"] = sum(r["flops_per_s"] * r["compute_seconds"] for r in measured) / available
    return out
