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
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from cgpt.data.tokens import open_split, read_index
from cgpt.errors import CgptError, TrainingError
from cgpt.eval.xent import cross_entropy
from cgpt.fsutil import read_json
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig, TrainRecipe
from cgpt.tracking import Tracker, disabled
from cgpt.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    model_config_to_dict,
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

HISTORY_FILE = "history.jsonl"


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
        """What a checkpoint must share with this run to be resumed by it."""
        return {
            "model_config": model_config_to_dict(self.model_config),
            "tokenizer_sha256": self.tokenizer_sha256,
            "seed": self.train.seed,
            "seq_len": self.recipe.seq_len,
            "batch_size": self.recipe.batch_size,
        }

    def fingerprint_key(self) -> str:
        """A short stable id of :meth:`fingerprint` (names the MLflow run this training belongs to)."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TrainSummary:
    """The run's final numbers (``train_metrics.json``)."""

    steps: int
    resumed_from_step: int
    train_loss: float
    val_loss: float
    tokens_seen: int
    tokens_per_s: float
    seconds: float
    params: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model: GPT
    history: list[dict[str, Any]]
    summary: TrainSummary


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
)


def same_architecture(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same function given the same weights (init settings do not matter once weights exist)."""
    return all(a.get(k) == b.get(k) for k in _ARCHITECTURE_KEYS)


def set_aside_incompatible(ckpt_dir: Path, setup: RunSetup) -> bool:
    """Move checkpoints this run cannot continue (and their history) into ``superseded-<time>/``;
    True when something was moved. (The MLflow run marker stays: it is keyed by
    :meth:`RunSetup.fingerprint_key`, so a different configuration gets its own run anyway.)"""
    found = list_checkpoints(ckpt_dir)
    if not found:
        return False
    state = read_json(found[-1] / "state.json", missing="checkpoint without state.json")
    fp = setup.fingerprint()
    if "imported_from" in state:  # an imported model only has to compute the same function
        if not same_architecture(state["model_config"], fp["model_config"]):
            raise CgptError(
                f"{found[-1]}: the imported model {state['model_config']} does not match the configured model "
                f"{fp['model_config']}; set model.* in params.yaml to the imported shape"
            )
        return False
    if all(state.get(k) == v for k, v in fp.items()):
        return False
    dest = ckpt_dir / time.strftime("superseded-%Y%m%dT%H%M%S")
    dest.mkdir(parents=True)
    for p in found:
        shutil.move(str(p), dest / p.name)
    if (ckpt_dir / HISTORY_FILE).exists():
        shutil.move(str(ckpt_dir / HISTORY_FILE), dest / HISTORY_FILE)
    log.warning(
        "checkpoints in %s belong to a different model or data; moved them to %s and starting over", ckpt_dir, dest
    )
    return True


def _read_history(ckpt_dir: Path, upto_step: int) -> list[dict[str, Any]]:
    path = ckpt_dir / HISTORY_FILE
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto_step]


def _write_history(ckpt_dir: Path, rows: list[dict[str, Any]]) -> None:
    tmp = ckpt_dir / (HISTORY_FILE + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, ckpt_dir / HISTORY_FILE)


def train(
    setup: RunSetup,
    tokens_dir: Path,
    run_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; returns the model, the history rows and the summary."""
    tracker = tracker or disabled()
    recipe, cfg, device, tp = setup.recipe, setup.model_config, setup.device, setup.train
    total_steps = recipe.optimizer_steps()
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    set_aside_incompatible(ckpt_dir, setup)

    train_stream = open_split(tokens_dir, "train")
    val_stream = open_split(tokens_dir, "val")
    sampler = ChunkSampler(train_stream, recipe.seq_len, tp.seed)

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
    start_step = 0
    resumable = [p for p in list_checkpoints(ckpt_dir) if int(p.name.split("-")[1]) <= total_steps]
    if resumable:
        ckpt = load_checkpoint(resumable[-1], map_location=device)
        model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            optimizer.load_state_dict(ckpt.optimizer_state)
        restore_rng(ckpt.rng_state)
        start_step = ckpt.step
        log.info("resuming from %s (step %d of %d)", ckpt.path, start_step, total_steps)
    history = _read_history(ckpt_dir, start_step)
    if tracker.fresh:  # a new MLflow run continuing earlier training: give it the whole curve
        for row in history:
            tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    autocast = (
        torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if tp.precision == "bf16" else nullcontext()
    )
    flops_per_token = cfg.flops_per_token(recipe.seq_len)[1]
    state_extra = {**setup.fingerprint(), "preset": setup.preset, "run_name": tp.run_name}

    def checkpoint(step: int) -> None:
        save_checkpoint(
            ckpt_dir,
            step,
            model.state_dict(),
            cfg,
            optimizer_state=optimizer.state_dict(),
            extra={**state_extra, "tokens_seen": tokens_seen(recipe, step)},
            keep_last=tp.keep_checkpoints,
        )
        _write_history(ckpt_dir, history)

    def validate(step: int) -> float:
        res = cross_entropy(model, val_stream, recipe.seq_len, max_tokens=tp.eval_tokens, device=device)
        history.append({"step": step, "val_loss": res["loss"]})
        tracker.log_metrics({"val_loss": res["loss"]}, step=step)
        return res["loss"]

    model.train()
    bar = tqdm(
        total=total_steps, initial=start_step, desc="train", unit="step", disable=not progress, dynamic_ncols=True
    )
    window_loss, window_tokens, window_steps, window_time = 0.0, 0, 0, 0.0
    run_start, run_tokens = time.perf_counter(), 0
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
        run_tokens += x.numel()
        done = step + 1
        if done % tp.log_interval == 0 or done == total_steps:
            last_loss = window_loss / window_steps
            tps = window_tokens / max(window_time, 1e-9)
            row = {"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tps}
            history.append(row)
            tracker.log_metrics(
                {k: v for k, v in row.items() if k != "step"} | {"flops_per_s": tps * flops_per_token}, step=done
            )
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
            window_loss, window_tokens, window_steps, window_time = 0.0, 0, 0, 0.0
        if done % tp.eval_interval == 0 or done == total_steps:
            last_val = validate(done)
            bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{last_val:.3f}")
        if done % tp.checkpoint_interval == 0 or done == total_steps:
            checkpoint(done)
        bar.update(1)
    bar.close()
    tracker.flush()

    seconds = time.perf_counter() - run_start
    if start_step >= total_steps:  # nothing left to do: report the resumed state
        vals = [r["val_loss"] for r in history if "val_loss" in r]
        losses = [r["loss"] for r in history if "loss" in r]
        last_val = vals[-1] if vals else validate(total_steps)
        last_loss = losses[-1] if losses else float("nan")
    rows = [r for r in history if "tokens_per_s" in r]
    summary = TrainSummary(
        steps=total_steps,
        resumed_from_step=start_step,
        train_loss=last_loss,
        val_loss=last_val,
        tokens_seen=tokens_seen(recipe, total_steps),
        tokens_per_s=(run_tokens / seconds) if run_tokens else (rows[-1]["tokens_per_s"] if rows else 0.0),
        seconds=seconds,
        params=cfg.num_params(),
    )
    return TrainResult(model=model, history=history, summary=summary)
