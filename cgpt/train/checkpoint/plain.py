"""The plain checkpoint format (one process, DDP): one folder per step, written atomically, verified on
load, read without unpickling objects.

Layout of ``<dir>/step-00001000/``:

* ``model.safetensors`` — the model's state dict (safetensors: no code can hide in it);
* ``optimizer.pt`` — the optimizer state dict (tensors, numbers, tuples), read with
  ``torch.load(weights_only=True)``; absent for imported checkpoints;
* ``rng.pt`` — torch CPU (and CUDA, when present) RNG states, also ``weights_only``;
* ``history.jsonl`` — the training curve up to this step (loss, lr, grad norm, val loss): it
  travels with the weights, so a kill at any moment never loses plot rows;
* ``speed.jsonl`` — tokens/s and FLOP/s per logged step (timings: the one file that differs
  between two runs of the same configuration);
* ``state.json`` — step, tokens seen, the model config and the run's fingerprint;
* ``complete.json`` — written last: the size and sha256 of every other file.

A folder is built as ``step-XXXXXXXX.tmp`` (files fsynced) and renamed when complete, so a killed
run never leaves a checkpoint that looks finished. On load, ``complete.json`` is checked first:
a truncated or altered file (a full disk, a bad copy) makes the checkpoint *damaged*
(:class:`DamagedCheckpoint`), and the trainer falls back to the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cgpt.faults import fault_point
from cgpt.presets import ModelConfig
from cgpt.train.checkpoint.files import (
    COMPLETE,
    HISTORY,
    SPEED,
    DamagedCheckpoint,
    capture_rng,
    file_record,
    fsync_dir,
    jsonl,
    model_config_from_dict,
    model_config_to_dict,
    prune_checkpoints,
    read_checkpoint_state,
    read_jsonl,
    step_dir_name,
    verify_checkpoint,
    write_failure,
)


@dataclass
class Checkpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, Any] | None
    state: dict[str, Any]
    history: list[dict[str, Any]]
    speed: list[dict[str, Any]]

    @property
    def model_config(self) -> ModelConfig:
        return model_config_from_dict(self.state["model_config"])


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: ModelConfig,
    *,
    optimizer_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    speed: list[dict[str, Any]] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``ckpt_dir/step-XXXXXXXX`` atomically; prune to the newest ``keep_last`` if given.

    Any failure to write is one :class:`TrainingError` line; the temporary folder is removed and
    the earlier checkpoints stay untouched.
    """
    final = ckpt_dir / step_dir_name(step)
    tmp = ckpt_dir / (final.name + ".tmp")
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        fault_point("checkpoint.file")
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
            fault_point("checkpoint.file")
        torch.save(capture_rng(), tmp / "rng.pt")
        (tmp / HISTORY).write_text(jsonl(history or []), encoding="utf-8")
        (tmp / SPEED).write_text(jsonl(speed or []), encoding="utf-8")
        fault_point("checkpoint.file")
        state = {"step": step, "model_config": model_config_to_dict(model_config), **(extra or {})}
        (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        files = {f.name: file_record(f) for f in sorted(tmp.iterdir())}
        (tmp / COMPLETE).write_text(json.dumps({"files": files}, indent=2, sort_keys=True), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_dir)
        fault_point("checkpoint.renamed")
    except Exception as exc:  # OSError, torch's RuntimeError, safetensors' SafetensorError: all "cannot write"
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(ckpt_dir, exc) from None
    prune_checkpoints(ckpt_dir, keep_last)
    return final


def load_checkpoint(
    path: Path, *, map_location: str | torch.device = "cpu", verify: bool = True, tensors: bool = True
) -> Checkpoint:
    """Verify, then load a checkpoint folder; tensors via safetensors and ``weights_only`` torch.load only.

    Anything wrong with the files is a :class:`DamagedCheckpoint` (never a raw library traceback).
    ``verify=False`` when the caller verified it already; ``tensors=False`` reads everything but the
    model and optimizer (a sharded checkpoint's tensors are read by :mod:`cgpt.train.checkpoint.sharded`).
    """
    if verify:
        verify_checkpoint(path)
    state = read_checkpoint_state(path)
    opt_file, rng_file = path / "optimizer.pt", path / "rng.pt"
    try:
        model_state = load_file(str(path / "model.safetensors"), device=str(map_location)) if tensors else {}
        optimizer_state = (
            torch.load(opt_file, map_location=map_location, weights_only=True)
            if tensors and opt_file.exists()
            else None
        )
        rng_state = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.exists() else None
        history, speed = read_jsonl(path / HISTORY), read_jsonl(path / SPEED)
    except Exception as exc:  # safetensors, pickle and zip errors come in many types
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    return Checkpoint(path, int(state["step"]), model_state, optimizer_state, rng_state, state, history, speed)
