"""What both checkpoint formats share: the step folders, their files' records and verification, the
``state.json`` and RNG files, and the one line for a checkpoint that cannot be written.

A step folder ``<dir>/step-00001000/`` is complete when ``complete.json`` (written last, the size
and sha256 of every other file) is there; :func:`verify_checkpoint` checks it on load, and anything
wrong is a :class:`DamagedCheckpoint`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from cgpt.core.errors import CgptError, TrainingError
from cgpt.core.fsutil import sha256_file
from cgpt.presets import ModelConfig

_STEP_DIR = re.compile(r"^step-(\d{8})$")
COMPLETE = "complete.json"
HISTORY = "history.jsonl"
SPEED = "speed.jsonl"


class DamagedCheckpoint(CgptError):
    """A checkpoint folder whose files do not match its ``complete.json`` (or cannot be read)."""


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


def prune_checkpoints(ckpt_dir: Path, keep_last: int | None) -> None:
    """Remove all but the newest ``keep_last`` checkpoints (none when it is not given)."""
    if keep_last is not None and keep_last > 0:
        for old in list_checkpoints(ckpt_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def capture_rng() -> dict[str, Any]:
    """torch's CPU (and CUDA, when present) RNG states, as ``rng.pt`` holds them."""
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


def file_record(path: Path) -> dict[str, Any]:
    """A file's entry in ``complete.json``."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_failure(where: Path, exc: BaseException) -> TrainingError:
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


def fsync_dir(path: Path) -> None:
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
        if sha256_file(f) != want["sha256"]:
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
