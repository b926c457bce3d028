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
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from cgpt.data.tokens import open_split, read_index
from cgpt.errors import CgptError, TrainingError
from cgpt.eval.xent import cross_entropy
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
)
from cgpt.train.optim import build_optimizer, set_lr
from cgpt.train.params import TrainParams
from cgpt.train.sampler import ChunkSampler
from cgpt.train.schedule import batch_size_at, lr_at, tokens_seen

if TYPE_CHECKING:
    from cgpt.config import Params

log = logging.getLogger("cgpt.train")

LEGACY_HISTORY = "history.jsonl"  # run-wide history file of older versions (now inside each checkpoint)
SPEED_KEYS = ("tokens_per_s", "flops_per_s", "tokens", "compute_seconds", "seconds")
CURVE_KEYS = ("loss", "lr", "grad_norm", "val_loss", "tokens_per_s", "flops_per_s")
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

    def to_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


@dataclass
class TrainResult:
    model: GPT
    history: list[dict[str, Any]]  # curve rows: loss, lr, grad_norm per logged step; val_loss per validation
    speed: list[dict[str, Any]]  # timing rows per logged step (tokens/s, seconds), every session
    summary: TrainSummary
    resumed_from_step: int


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CgptError("train.device = 'cuda' but no CUDA device is available; use device: auto or cpu")
    return name


def setup_from_params(params: Params, tokens_dir: Path) -> RunSetup:
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
        device=resolve_device(t.device),
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
    ckpt_dir: Path, total_steps: int, model: GPT, optimizer: torch.optim.Optimizer, device: str
) -> _Resumed:
    """Load the newest usable checkpoint into ``model``/``optimizer`` (step <= ``total_steps``).

    A damaged checkpoint (a truncated file, a failed copy) is moved to ``damaged-<name>-<time>/``
    with a warning and the previous one is tried, so a damaged newest checkpoint never blocks
    training; with none usable, training starts from step 0.
    """
    candidates = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) <= total_steps]
    for path in reversed(candidates):
        try:
            ckpt = load_checkpoint(path, map_location=device)
        except DamagedCheckpoint as exc:
            dest = ckpt_dir / f"damaged-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}"
            shutil.move(str(path), dest)
            log.warning("%s; moved it to %s and trying the previous checkpoint", exc, dest.name)
            continue
        model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            optimizer.load_state_dict(ckpt.optimizer_state)
        restore_rng(ckpt.rng_state)
        history, speed = ckpt.history, ckpt.speed
        if not history:
            history, speed = _legacy_history(ckpt_dir, ckpt.step)
        log.info("resuming from %s (step %d of %d)", ckpt.path, ckpt.step, total_steps)
        return _Resumed(ckpt.step, history, speed)
    return _Resumed()


def train(
    setup: RunSetup,
    tokens_dir: Path,
    run_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: bool = True,
    stop_requested: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; returns the model, the history rows and the summary.

    MLflow gets each curve point exactly once, even across kills: :class:`cgpt.tracking.CurveLogger`
    skips what the run already holds and sends what it lost from the checkpoint's history.
    ``stop_requested`` is polled after every step (Ctrl-C / SIGTERM): the run then writes a
    checkpoint at that step and raises :class:`KeyboardInterrupt`.
    """
    tracker = tracker or disabled()
    recipe, cfg, device, tp = setup.recipe, setup.model_config, setup.device, setup.train
    total_steps = recipe.optimizer_steps()
    ckpt_dir = run_dir / "checkpoints"
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(
            f"{ckpt_dir}: cannot be the checkpoints folder ({exc.strerror}); fix or remove it"
        ) from None
    set_aside_incompatible(ckpt_dir, setup)

    train_stream = open_split(tokens_dir, "train")
    val_stream = open_split(tokens_dir, "val")
    if len(val_stream) < 2:
        log.warning("the val split is empty: no periodic validation (raise tokenize.split.val)")
    sampler = ChunkSampler(train_stream, recipe.seq_len, tp.seed)

    with _INIT_LOCK:
        torch.manual_seed(tp.seed)
        model = GPT(cfg).to(device)
    optimizer = build_optimizer(
        model,
        lr=recipe.peak_lr,
        betas=recipe.betas,
        eps=recipe.eps,
        weight_decay=recipe.weight_decay,
        kind=tp.optimizer,
    )
    resumed = resume_from_checkpoints(ckpt_dir, total_steps, model, optimizer, device)
    start_step, history, speed = resumed.step, resumed.history, resumed.speed
    curves = CurveLogger(tracker, CURVE_KEYS)
    for row in merge_rows(history, speed):  # what the MLflow run lost (or a new run never had)
        curves.log(row["step"], {k: v for k, v in row.items() if k != "step"})

    autocast = (
        torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if tp.precision == "bf16" else nullcontext()
    )
    flops_per_token = cfg.flops_per_token(recipe.seq_len)[1]
    state_extra = {**setup.fingerprint(), "preset": setup.preset, "run_name": tp.run_name}
    last_checkpoint = start_step

    def checkpoint(step: int) -> None:
        nonlocal last_checkpoint
        save_checkpoint(
            ckpt_dir,
            step,
            model.state_dict(),
            cfg,
            optimizer_state=optimizer.state_dict(),
            extra={**state_extra, "tokens_seen": tokens_seen(recipe, step)},
            history=history,
            speed=speed,
            keep_last=tp.keep_checkpoints,
        )
        last_checkpoint = step
        curves.flush()

    def validate(step: int) -> float:
        if len(val_stream) < 2:
            return float("nan")
        res = cross_entropy(model, val_stream, recipe.seq_len, max_tokens=tp.eval_tokens, device=device)
        history.append({"step": step, "val_loss": res["loss"]})
        curves.log(step, {"val_loss": res["loss"]})
        return res["loss"]

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
        x, y = sampler.batch(step, batch_size)
        x, y = x.to(device), y.to(device)
        micro = tp.micro_batch_size or batch_size
        loss = torch.zeros((), device=device)
        for xs, ys in zip(x.split(micro), y.split(micro)):  # gradient accumulation; windows are full, so
            with autocast:  # the mean of micro-batch means weighted by size is the batch mean
                _, micro_loss = model(xs, ys)
            (micro_loss * (xs.shape[0] / batch_size)).backward()
            loss += micro_loss.detach() * (xs.shape[0] / batch_size)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss)
        window_time += time.perf_counter() - step_start
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"training loss became {loss_value} at step {step + 1}; lower train.lr or check the data"
            )
        window_loss += loss_value
        window_tokens += x.numel()
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
                },
            )
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
            window_loss, window_tokens, window_steps, window_time, window_start = 0.0, 0, 0, 0.0, now
        if done % tp.eval_interval == 0 or done == total_steps:
            last_val = validate(done)
            bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{last_val:.3f}")
        if done % tp.checkpoint_interval == 0 or done == total_steps:
            checkpoint(done)
        bar.update(1)
        fault_point("train.step")
        if stop_requested() and done < total_steps:
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
    return TrainResult(model=model, history=history, speed=speed, summary=summary, resumed_from_step=start_step)


def merge_rows(*row_lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several lists merged per step, in step order (curve + val + speed rows -> one per step)."""
    by_step: dict[int, dict[str, Any]] = {}
    for rows in row_lists:
        for r in rows:
            by_step.setdefault(r["step"], {"step": r["step"]}).update(r)
    return [by_step[k] for k in sorted(by_step)]


def run_speed(speed: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens/s and wall time over the whole training (every session of a resumed run), from the speed rows."""
    tokens = sum(r.get("tokens", 0) for r in speed)
    compute = sum(r.get("compute_seconds", 0.0) for r in speed)
    return {
        "tokens_per_s": tokens / compute if compute else 0.0,
        "compute_seconds": compute,
        "seconds": sum(r.get("seconds", 0.0) for r in speed),
    }
