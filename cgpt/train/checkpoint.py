"""Checkpoints: one folder per step, written atomically, read without unpickling arbitrary objects.

Layout of ``<dir>/step-00001000/``:

* ``model.safetensors`` — the model's state dict (safetensors: no code can hide in it);
* ``optimizer.pt`` — the optimizer state dict (tensors, numbers, tuples), read with
  ``torch.load(weights_only=True)``; absent for imported checkpoints;
* ``rng.pt`` — torch CPU (and CUDA, when present) RNG states, also ``weights_only``;
* ``state.json`` — step, tokens seen, the data sampler's position, the model config and any
  extra metadata.

A folder is built under ``step-XXXXXXXX.tmp`` and renamed when complete, so a killed run never
leaves a checkpoint that looks finished; stale ``.tmp`` folders are ignored and cleaned up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cgpt.errors import CgptError
from cgpt.fsutil import atomic_dir, read_json
from cgpt.presets import ModelConfig

_STEP_DIR = re.compile(r"^step-(\d{8})$")


@dataclass
class Checkpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, Any] | None
    state: dict[str, Any]

    @property
    def model_config(self) -> ModelConfig:
        return model_config_from_dict(self.state["model_config"])


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**d)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: ModelConfig,
    *,
    optimizer_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``ckpt_dir/step-XXXXXXXX`` atomically; prune to the newest ``keep_last`` if given."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / step_dir_name(step)
    tmp = ckpt_dir / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
    save_file(tensors, str(tmp / "model.safetensors"))
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    state = {"step": step, "model_config": model_config_to_dict(model_config), **(extra or {})}
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last is not None and keep_last > 0:
        for old in list_checkpoints(ckpt_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder; tensors via safetensors and ``weights_only`` torch.load only."""
    state = read_json(path / "state.json", missing="not a cgpt checkpoint (no state.json)", error=CgptError)
    model_state = load_file(str(path / "model.safetensors"), device=str(map_location))
    opt_file, rng_file = path / "optimizer.pt", path / "rng.pt"
    optimizer_state = torch.load(opt_file, map_location=map_location, weights_only=True) if opt_file.exists() else None
    rng_state = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.exists() else None
    return Checkpoint(path, int(state["step"]), model_state, optimizer_state, rng_state, state)


MODEL_DIR_CONFIG = "cgpt_model.json"


def save_model_dir(
    out_dir: Path, model_state: dict[str, torch.Tensor], model_config: ModelConfig, meta: dict[str, Any]
) -> None:
    """The trained model as evaluate and export read it: weights + config, written atomically."""
    with atomic_dir(out_dir) as tmp:
        save_file(
            {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors")
        )
        info = {"model_config": model_config_to_dict(model_config), **meta}
        (tmp / MODEL_DIR_CONFIG).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_model_dir(model_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    info = read_json(
        model_dir / MODEL_DIR_CONFIG, missing="no trained model here; run the train stage first", error=CgptError
    )
    state = load_file(str(model_dir / "model.safetensors"))
    return model_config_from_dict(info["model_config"]), state, info
