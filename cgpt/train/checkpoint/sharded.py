"""Checkpoints that scale: FSDP shards written by every rank with ``torch.distributed.checkpoint``.

A sharded checkpoint is the same atomic, verified step folder as a single-process one
(:mod:`cgpt.train.checkpoint.plain`; what both share is :mod:`cgpt.train.checkpoint.files`), with
the tensors in ``dcp/`` instead of ``model.safetensors`` and ``optimizer.pt``::

    step-00001000/
      dcp/.metadata, dcp/__<rank>_0.distcp   model and AdamW state, each rank its own shards
      rng.pt, history.jsonl, speed.jsonl     as before (rank 0)
      state.json                             as before, plus "format": "dcp", world size and strategy
      complete.json                          size and sha256 of every file, dcp/ included; written last

How it is written: rank 0 makes ``step-N.tmp``; every rank writes its shards into it
(``dcp.save``: no rank ever holds the whole model) and hashes its own files; rank 0 gathers the
hashes, writes the small files and ``complete.json``, then renames the folder into place. A kill
at any moment leaves either the ``.tmp`` folder (ignored, overwritten next time) or a complete
checkpoint; on load, ``complete.json`` is checked as before (the ranks share the hashing), and a
damaged checkpoint is set aside for the previous one.

Any world size reads any checkpoint: ``dcp.load`` reshards to the ranks that load (1 process reads
a checkpoint of 2 ranks and the other way), and a single-process/DDP checkpoint (full tensors) is
loaded into FSDP shards by :func:`load_full_into_sharded`. Parameters are named by their fully
qualified names, so activation checkpointing or ``torch.compile`` wrappers do not change them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cgpt.core.errors import CgptError, TrainingError
from cgpt.faults import fault_point
from cgpt.presets import ModelConfig
from cgpt.train.checkpoint import files as ckfiles
from cgpt.train.checkpoint.plain import Checkpoint
from cgpt.train.distributed import DistContext

DCP_DIR = "dcp"
FORMAT = "dcp"


def is_sharded(state: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``state.json`` describes a sharded (dcp) checkpoint."""
    return state.get("format") == FORMAT


def save_sharded_checkpoint(
    ckpt_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    *,
    ctx: DistContext,
    extra: dict[str, Any],
    history: list[dict[str, Any]],
    speed: list[dict[str, Any]],
    keep_last: int | None = None,
) -> Path:
    """Write ``ckpt_dir/step-XXXXXXXX`` from every rank (collective); see the module docstring.

    A failure on any rank is one :class:`TrainingError` line on every rank; the temporary folder is
    removed and earlier checkpoints stay.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = ckpt_dir / ckfiles.step_dir_name(step)
    tmp = ckpt_dir / (final.name + ".tmp")

    def prepare() -> None:
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / DCP_DIR).mkdir(parents=True)
        except OSError as exc:
            raise ckfiles.write_failure(ckpt_dir, exc) from None

    ctx.run_on_main(prepare)
    failure, mine = None, {}
    try:
        model_state, optim_state = get_state_dict(model, optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "assuming the intent is to ... single process"
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / DCP_DIR))
        names = [f"__{ctx.rank}_"] + ([".metadata"] if ctx.is_main else [])
        for f in sorted((tmp / DCP_DIR).iterdir()):
            if f.is_file() and (f.name.startswith(names[0]) or f.name in names[1:]):
                mine[f"{DCP_DIR}/{f.name}"] = ckfiles.file_record(f)
    except Exception as exc:  # OSError, DCP's CheckpointException: "cannot write"
        failure = str(ckfiles.write_failure(ckpt_dir, exc))
    gathered = ctx.gather((failure, mine))
    failures = [f for f, _ in gathered if f]
    if failures:
        ctx.run_on_main(lambda: shutil.rmtree(tmp, ignore_errors=True))
        raise TrainingError(failures[0])
    fault_point("checkpoint.file")
    shards = {name: rec for _, records in gathered for name, rec in records.items()}

    def finish() -> None:
        try:
            torch.save(ckfiles.capture_rng(), tmp / "rng.pt")
            (tmp / ckfiles.HISTORY).write_text(ckfiles.jsonl(history), encoding="utf-8")
            (tmp / ckfiles.SPEED).write_text(ckfiles.jsonl(speed), encoding="utf-8")
            fault_point("checkpoint.file")
            state = {
                "step": step,
                "model_config": ckfiles.model_config_to_dict(model_config),
                **extra,
                "format": FORMAT,
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
            small = [f for f in sorted(tmp.iterdir()) if f.is_file()]
            files = {**shards, **{f.name: ckfiles.file_record(f) for f in small}}
            (tmp / ckfiles.COMPLETE).write_text(
                json.dumps({"files": files}, indent=2, sort_keys=True), encoding="utf-8"
            )
            for f in tmp.iterdir():
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            ckfiles.fsync_dir(tmp / DCP_DIR)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            ckfiles.fsync_dir(ckpt_dir)
            fault_point("checkpoint.renamed")
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ckfiles.write_failure(ckpt_dir, exc) from None
        ckfiles.prune_checkpoints(ckpt_dir, keep_last)

    ctx.run_on_main(finish)
    return final


def load_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Read a sharded checkpoint's model (and optimizer) state into ``model``, whatever the world
    size that wrote it and the one that reads it (collective when a process group exists)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # DCP without a process group: one process, as meant
            if optimizer is None:
                from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

                state = {"model": get_model_state_dict(model)}
                dcp.load(state, checkpoint_id=str(path / DCP_DIR))
                set_model_state_dict(model, state["model"])
                return
            model_state, optim_state = get_state_dict(model, optimizer)
            state = {"model": model_state, "optim": optim_state}
            dcp.load(state, checkpoint_id=str(path / DCP_DIR))
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    except CgptError:
        raise
    except Exception as exc:  # a missing shard, a changed shape, a torn file: the checkpoint cannot be used
        raise ckfiles.DamagedCheckpoint(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from None


def clean_fqn(name: str) -> str:
    """A parameter's name without the wrappers of activation checkpointing and torch.compile."""
    for wrapper in ("_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(wrapper, "")
    return name


def fqn_optimizer_state(saved: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A ``torch.optim`` state dict (parameters numbered in param-group order) keyed by parameter
    names instead, the form ``set_optimizer_state_dict`` takes."""
    names = {id(p): clean_fqn(n) for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    return {
        "state": {order[int(i)]: s for i, s in saved["state"].items()},
        "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]} for g in saved["param_groups"]],
    }


def load_full_into_sharded(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """A single-process or DDP checkpoint (whole tensors) into FSDP's shards: every rank keeps its part."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    try:
        set_model_state_dict(model, ckpt.model_state, options=options)
        if ckpt.optimizer_state is not None:
            state = fqn_optimizer_state(ckpt.optimizer_state, model, optimizer)
            set_optimizer_state_dict(model, optimizer, state, options=options)
    except Exception as exc:
        raise ckfiles.DamagedCheckpoint(
            f"{ckpt.path}: cannot be loaded into this model ({type(exc).__name__}: {str(exc)[:160]})"
        ) from None
