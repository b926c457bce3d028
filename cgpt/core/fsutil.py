"""Atomic file and folder writes (a killed process never leaves an output that looks finished), and file digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError, DataError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of a file's bytes, read ``chunk`` bytes at a time (any size of file, bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(chunk):
            h.update(b)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final``, on error it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def read_json_if_valid(path: Path) -> Any | None:
    """A cache or marker file's JSON, or None when it is missing or unreadable (the caller redoes the work)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_json(path: Path, *, missing: str, invalid: str = "", error: type[CgptError] = DataError) -> Any:
    """Parse a json file; a missing file or bad JSON is one line naming the file (and line)."""
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        hint = f"; {invalid}" if invalid else ""
        raise error(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}){hint}") from None
