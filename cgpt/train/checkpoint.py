"""Checkpoints: one folder per step, written atomically, verified on load, read without unpickling objects.

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

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cgpt.errors import CgptError, TrainingError
from cgpt.faults import fault_point
from cgpt.fsutil import atomic_dir, read_json
from cgpt.presets import ModelConfig

_STEP_DIR = re.compile(r"^step-(\d{8})$")
COMPLETE = "complete.json"
HISTORY = "history.jsonl"
SPEED = "speed.jsonl"


class DamagedCheckpoint(CgptError):
    """A checkpoint folder whose files do not match its ``complete.json`` (or cannot be read)."""


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


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return cfg.to_dict()


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**d)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def checkpoint_step(path: Path) -> int:
    m = _STEP_DIR.match(path.name)
    if not m:
        raise ValueError(f"{path}: not a checkpoint folder name")
    return int(m.group(1))


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders (renamed into place, so written completely), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=checkpoint_step)


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


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def _write_failure(where: Path, exc: BaseException) -> TrainingError:
    """One line for a checkpoint that cannot be written (full disk, no permission, I/O error)."""
    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)) or (
        "No space left" in text or "File too large" in text
    ):
        why = "no space left on the device (or a file-size limit)"
    elif isinstance(exc, PermissionError):
        why = "permission denied"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    else:  # torch's zip writer reports a failed write as a RuntimeError ("file write failed")
        why = f"the write failed ({text[:80]}; a full disk or an I/O error)"
    try:
        free = f"; {shutil.disk_usage(where.parent if not where.exists() else where).free / 2**30:.1f} GiB free there"
    except OSError:
        free = ""
    return TrainingError(
        f"{where}: cannot write a checkpoint: {why}{free}; free space or fix the folder, then rerun "
        "(training resumes from the last complete checkpoint)"
    )


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
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / HISTORY).write_text(_jsonl(history or []), encoding="utf-8")
        (tmp / SPEED).write_text(_jsonl(speed or []), encoding="utf-8")
        fault_point("checkpoint.file")
        state = {"step": step, "model_config": model_config_to_dict(model_config), **(extra or {})}
        (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        files = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)} for f in sorted(tmp.iterdir())}
        (tmp / COMPLETE).write_text(json.dumps({"files": files}, indent=2, sort_keys=True), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_dir)
        fault_point("checkpoint.renamed")
    except Exception as exc:  # OSError, torch's RuntimeError, safetensors' SafetensorError: all "cannot write"
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failure(ckpt_dir, exc) from None
    if keep_last is not None and keep_last > 0:
        for old in list_checkpoints(ckpt_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (a crash right after it must not undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_checkpoint(path: Path, part: tuple[int, int] = (0, 1)) -> None:
    """Raise :class:`DamagedCheckpoint` unless every file matches ``complete.json`` (size, then sha256).

    ``part = (rank, world)`` checks only every world-th file from the rank-th on, so the ranks of
    a distributed run share the hashing of a large (sharded) checkpoint; names may hold a folder
    (``dcp/__0_0.distcp``).
    """
    record = path / COMPLETE
    if not record.is_file():
        return  # written by an older cgpt: nothing to verify against; loading it still checks each file
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DamagedCheckpoint(f"{path}/{COMPLETE}: unreadable") from None
    rank, world = part
    for name, want in sorted(files.items())[rank::world]:
        f = path / name
        if not f.is_file():
            raise DamagedCheckpoint(f"{f}: missing")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise DamagedCheckpoint(f"{f}: {size} bytes, expected {want['bytes']} (truncated or replaced)")
        if _sha256(f) != want["sha256"]:
            raise DamagedCheckpoint(f"{f}: sha256 differs from the one recorded when it was written")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint (step, model config, fingerprint) without loading tensors."""
    state = _read_state(path)
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"{path}/state.json: missing or unreadable")
    return state


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_checkpoint(
    path: Path, *, map_location: str | torch.device = "cpu", verify: bool = True, tensors: bool = True
) -> Checkpoint:
    """Verify, then load a checkpoint folder; tensors via safetensors and ``weights_only`` torch.load only.

    Anything wrong with the files is a :class:`DamagedCheckpoint` (never a raw library traceback).
    ``verify=False`` when the caller verified it already; ``tensors=False`` reads everything but the
    model and optimizer (a sharded checkpoint's tensors are read by :mod:`cgpt.train.sharded`).
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
        history, speed = _read_jsonl(path / HISTORY), _read_jsonl(path / SPEED)
    except Exception as exc:  # safetensors, pickle and zip errors come in many types
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    return Checkpoint(path, int(state["step"]), model_state, optimizer_state, rng_state, state, history, speed)


MODEL_DIR_CONFIG = "cgpt_model.json"


def save_model_dir(
    out_dir: Path, model_state: dict[str, torch.Tensor], model_config: ModelConfig, meta: dict[str, Any]
) -> None:
    """The trained model as evaluate and export read it: weights + config, written atomically."""
    with atomic_dir(out_dir) as tmp:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        info = {"model_config": model_config_to_dict(model_config), **meta}
        (tmp / MODEL_DIR_CONFIG).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_model_dir(model_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    info = read_json(
        model_dir / MODEL_DIR_CONFIG, missing="no trained model here; run the train stage first", error=CgptError
    )
    try:
        state = load_file(str(model_dir / "model.safetensors"))
    except Exception as exc:  # a truncated or missing file
        raise CgptError(
            f"{model_dir / 'model.safetensors'}: cannot be read ({str(exc)[:120]}); rerun the train "
            "stage (dvc repro -f train)"
        ) from None
    return model_config_from_dict(info["model_config"]), state, info
