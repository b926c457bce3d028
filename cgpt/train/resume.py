"""Resuming a run: the newest usable checkpoint loaded (whatever format and world size wrote it),
damaged ones moved aside, and checkpoints this run cannot continue set aside (never deleted).

The newest checkpoint in ``<run_dir>/checkpoints`` whose step does not exceed the run's total
steps is loaded (model, optimizer, RNG, step); because the data order is a function of the step
(:mod:`cgpt.train.sampler`), the resumed run continues exactly where it stopped. Checkpoints of a
different model, tokenizer, token data, seed or batch shape cannot continue this run; they are
moved to ``checkpoints/superseded-<time>/`` and training starts over, unless an earlier set-aside
folder holds this very configuration's checkpoints (change the data, change it back): those are
moved back and training continues from them (with nothing left to do when they are complete).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cgpt.core.errors import CgptError
from cgpt.model.gpt import GPT
from cgpt.train.checkpoint import (
    DamagedCheckpoint,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    restore_rng,
    verify_checkpoint,
)
from cgpt.train.checkpoint.sharded import is_sharded, load_full_into_sharded, load_sharded
from cgpt.train.distributed import SINGLE, DistContext
from cgpt.train.metering import SPEED_KEYS
from cgpt.train.setup import RunSetup

log = logging.getLogger("cgpt.train")

LEGACY_HISTORY = "history.jsonl"  # run-wide history file of older versions (now inside each checkpoint)


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


SET_ASIDE_PREFIX = "superseded-"


def matches(state: dict[str, Any], fp: dict[str, Any]) -> bool:
    """Whether a checkpoint's recorded fingerprint is this run's (a checkpoint of an older cgpt,
    which did not record the token data's version, matches on the rest, as it always did)."""
    return all(state.get(k) == v for k, v in fp.items() if not (k == "tokens_digest" and k not in state))


def set_aside_incompatible(ckpt_dir: Path, setup: RunSetup) -> bool:
    """Move checkpoints this run cannot continue into ``superseded-<time>/`` (never delete them),
    then take back the newest set-aside checkpoints of this very configuration, if any; True when
    something was moved. (The MLflow run is found by the configuration's key, so each configuration
    keeps its own run too: :func:`cgpt.tracking.runs.open_model_run`.)"""
    moved = _set_aside(ckpt_dir, setup)
    return _take_back(ckpt_dir, setup) or moved


def _take_back(ckpt_dir: Path, setup: RunSetup) -> bool:
    """With no checkpoint in ``ckpt_dir``, move back the set-aside folder whose checkpoints are this
    configuration's (the most advanced one); True when one was."""
    if list_checkpoints(ckpt_dir) or not ckpt_dir.is_dir():
        return False
    fp = setup.fingerprint()
    best: tuple[int, Path] | None = None
    for folder in sorted(ckpt_dir.glob(f"{SET_ASIDE_PREFIX}*")):
        states = [(p, s) for p in list_checkpoints(folder) if (s := _state_or_none(p)) is not None]
        if states and "imported_from" not in states[-1][1] and matches(states[-1][1], fp):
            step = checkpoint_step(states[-1][0])
            if best is None or step > best[0]:
                best = (step, folder)
    if best is None:
        return False
    folder = best[1]
    for p in list_checkpoints(folder):
        shutil.move(str(p), ckpt_dir / p.name)
    if (folder / LEGACY_HISTORY).exists():
        shutil.move(str(folder / LEGACY_HISTORY), ckpt_dir / LEGACY_HISTORY)
    if not any(folder.iterdir()):
        folder.rmdir()
    log.warning(
        "this configuration's checkpoints were set aside in %s; moved them back (up to step %d)", folder, best[0]
    )
    return True


def _set_aside(ckpt_dir: Path, setup: RunSetup) -> bool:
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
    if matches(state, fp):
        return False
    dest = ckpt_dir / time.strftime(f"{SET_ASIDE_PREFIX}%Y%m%dT%H%M%S")
    while dest.exists():  # two configurations set aside within a second
        dest = dest.with_name(dest.name + "x")
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
class Resumed:
    """Where a run resumes: the step, the curve and speed rows up to it, and the loss of the steps
    since the last logged one (a checkpoint between two logged steps, by Ctrl-C or SIGTERM)."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    speed: list[dict[str, Any]] = field(default_factory=list)
    loss_window: dict[str, Any] | None = None


def resume_from_checkpoints(
    ckpt_dir: Path,
    total_steps: int,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    device: str,
    ctx: DistContext = SINGLE,
) -> Resumed:
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
        window = ckpt.state.get("loss_window")
        return Resumed(ckpt.step, history, speed, window if isinstance(window, dict) else None)
    return Resumed()


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
