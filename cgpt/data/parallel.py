"""Shard fan-out helpers for the clean stage (orchestrator-agnostic; flows/data_shards.py uses them).

A sharded clean runs ``clean`` once per shard ``i`` of ``n`` into
``<out_dir>.shards/shard-{i:05d}-of-{n:05d}/``, in any order and on any machine that sees the
same raw data, then :func:`cgpt.data.clean.merge_clean_shards` writes ``out_dir``: the same bytes
as one unsharded run. A shard whose folder already holds a finished output for the same raw
manifest, params and shard spec is skipped (a relaunch resumes), like dolma's ``.done`` markers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cgpt.data.clean import _params_fingerprint, clean, merge_clean_shards, raw_manifest_sha256
from cgpt.data.params_clean import CleanParams


def load_clean_params(params_path: str | Path) -> CleanParams:
    """The ``clean:`` section of a params.yaml (validated alone: the flow needs nothing else)."""
    import yaml
    from pydantic import ValidationError

    from cgpt.errors import ConfigError

    path = Path(params_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    try:
        return CleanParams.model_validate(raw.get("clean") or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in ("clean", *err["loc"]))
        raise ConfigError(f"{path}: {key}: {err['msg']} (got {err.get('input')!r})") from None


def shards_root(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".shards")


def shard_dir(out_dir: Path, index: int, count: int) -> Path:
    return shards_root(out_dir) / f"shard-{index:05d}-of-{count:05d}"


def shard_params(params: CleanParams, index: int, count: int, *, by: str | None = None, workers: int | None = None) -> CleanParams:
    """``params`` with ``shard: {index, count}`` (and optionally ``by`` and ``workers``) set."""
    data = params.model_dump(mode="json")
    data["shard"] = {"index": index, "count": count, "by": by or params.shard.by}
    if workers is not None:
        data["workers"] = workers
    return CleanParams.model_validate(data)


def default_workers_per_shard(concurrent_shards: int) -> int:
    """Cores split between the shards that run at once on this machine (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, concurrent_shards))


def shard_is_done(params: CleanParams, raw_dir: Path, out: Path) -> bool:
    path = Path(out) / "manifest.json"
    if not path.is_file():
        return False
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return (
        m.get("raw_manifest_sha256") == raw_manifest_sha256(raw_dir)
        and m.get("params") == _params_fingerprint(params)
        and m.get("shard") == params.shard.model_dump(mode="json")
    )


def clean_shard(params: CleanParams, raw_dir: Path, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Run one shard (``params.shard``) into its folder under ``<out_dir>.shards``; skip if done."""
    out = shard_dir(out_dir, params.shard.index, params.shard.count)
    if shard_is_done(params, raw_dir, out):
        m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        return {**m["stats"], "skipped": True, "dir": str(out)}
    stats = clean(params, raw_dir, out, progress=progress)
    return {**stats, "skipped": False, "dir": str(out)}


def merge_shards(shard_dirs: list[Path], out_dir: Path, *, keep_shards: bool = False, progress: bool = False) -> dict[str, Any]:
    """Merge shard outputs into ``out_dir`` and (unless ``keep_shards``) delete ``<out_dir>.shards``."""
    stats = merge_clean_shards([Path(d) for d in shard_dirs], out_dir, progress=progress)
    if not keep_shards:
        shutil.rmtree(shards_root(out_dir), ignore_errors=True)
    return stats
