"""Shard bookkeeping for the clean and tokenize fan-out: shard folders, per-shard params, done checks, merges.

Orchestrator-agnostic (``flows/data_shards.py`` wires it into Prefect).

A sharded clean runs ``clean`` once per shard ``i`` of ``n`` into
``<out_dir>.shards/shard-{i:05d}-of-{n:05d}/``, in any order and on any machine that sees the
same raw data, then :func:`cgpt.data.clean.merge.merge_clean_shards` writes ``out_dir``: the same bytes
as one unsharded run. A shard whose folder already holds a finished output for the same raw
manifest, params and shard spec is skipped (a relaunch resumes), like dolma's ``.done`` markers.

A sharded tokenize works the same way over the clean parts (part ``k`` goes to shard ``k % n``)
into ``<out_dir>.shards/shard-...``, after one step that makes the shared tokenizer
``<out_dir>.shards/tokenizer.json`` (:func:`prepare_tokenize_shards`: trained once on the train
split of the whole corpus, or the pretrained one loaded once); every shard loads that file, and
:func:`cgpt.data.tokenize.merge.merge_token_shards` writes ``out_dir`` (the same bytes as one run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json, read_json_if_valid, write_json_atomic
from cgpt.core.runtime import available_cores
from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.merge import merge_clean_shards
from cgpt.data.clean.params import CleanParams, ShardParams
from cgpt.data.clean.parts import clean_manifest_sha256, params_fingerprint
from cgpt.data.download.raw import raw_manifest_sha256
from cgpt.data.tokenize.merge import merge_token_shards
from cgpt.data.tokenize.pack import shard_fingerprint, tokenize_corpus, train_shared_tokenizer
from cgpt.data.tokenize.params import TokenizeParams, TokenizeShardParams


def _read_if_valid(path: Path) -> dict[str, Any] | None:
    """A finished shard's json record, or None when it is missing or unreadable (then: redo the shard)."""
    obj = read_json_if_valid(path)
    return obj if isinstance(obj, dict) else None


def shards_root(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".shards")


def shard_dir(out_dir: Path, index: int, count: int) -> Path:
    return shards_root(out_dir) / f"shard-{index:05d}-of-{count:05d}"


def shard_params(
    params: CleanParams, index: int, count: int, *, by: str | None = None, workers: int | None = None
) -> CleanParams:
    """``params`` with ``shard: {index, count}`` (and optionally ``by`` and ``workers``) set."""
    update: dict[str, Any] = {"shard": ShardParams(index=index, count=count, by=by or params.shard.by)}
    if workers is not None:
        update["workers"] = workers
    return params.model_copy(update=update)


def default_workers_per_shard(concurrent_shards: int) -> int:
    """Cores split between the shards that run at once on this machine (at least 1)."""
    return max(1, available_cores() // max(1, concurrent_shards))


def shard_is_done(params: CleanParams, raw_dir: Path, out: Path) -> bool:
    m = _read_if_valid(Path(out) / "manifest.json")
    return (
        m is not None
        and m.get("raw_manifest_sha256") == raw_manifest_sha256(raw_dir)
        and m.get("params") == params_fingerprint(params)
        and m.get("shard") == params.shard.model_dump(mode="json")
    )


def clean_shard(params: CleanParams, raw_dir: Path, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Run one shard (``params.shard``) into its folder under ``<out_dir>.shards``; skip if done."""
    out = shard_dir(out_dir, params.shard.index, params.shard.count)
    if shard_is_done(params, raw_dir, out):
        m = read_json(out / "manifest.json", missing="vanished")
        return {**m["stats"], "skipped": True, "dir": str(out)}
    stats = clean(params, raw_dir, out, progress=progress)
    return {**stats, "skipped": False, "dir": str(out)}


def merge_shards(
    shard_dirs: list[Path], out_dir: Path, *, keep_shards: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Merge shard outputs into ``out_dir`` and (unless ``keep_shards``) delete ``<out_dir>.shards``."""
    stats = merge_clean_shards([Path(d) for d in shard_dirs], out_dir, progress=progress)
    if not keep_shards:
        shutil.rmtree(shards_root(out_dir), ignore_errors=True)
    return stats


# ---------------------------------------------------------------------------------------------- tokenize


def tokenize_shard_params(
    params: TokenizeParams, index: int, count: int, *, workers: int | None = None
) -> TokenizeParams:
    """``params`` with ``shard: {index, count}`` (and optionally ``workers``) set."""
    update: dict[str, Any] = {"shard": TokenizeShardParams(index=index, count=count)}
    if workers is not None:
        update["workers"] = workers
    return params.model_copy(update=update)


def shared_tokenizer_path(out_dir: Path) -> Path:
    """The tokenizer.json every tokenize shard of ``out_dir`` loads."""
    return shards_root(out_dir) / "tokenizer.json"


def _tokenizer_source(params: TokenizeParams, clean_dir: Path) -> dict[str, Any]:
    """What the shared tokenizer is a function of (the train split of the clean data, or the path)."""
    src: dict[str, Any] = {"tokenizer": params.tokenizer.model_dump(mode="json")}
    if params.tokenizer.kind == "train":
        src["split"] = params.split.model_dump(mode="json")
        src["clean_manifest_sha256"] = clean_manifest_sha256(clean_dir)
    return src


def prepare_tokenize_shards(params: TokenizeParams, clean_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The step before the fan-out: write the shared tokenizer (``<out_dir>.shards/tokenizer.json``)
    once, unless it is already there for the same clean data and tokenizer/split params."""
    path = shared_tokenizer_path(out_dir)
    meta_path = path.with_name("tokenizer.source.json")
    src = _tokenizer_source(params, Path(clean_dir))
    if path.is_file():
        meta = _read_if_valid(meta_path)
        if meta and meta.get("source") == src:
            return {**meta["result"], "skipped": True}
    result = train_shared_tokenizer(params, Path(clean_dir), path)
    write_json_atomic(meta_path, {"source": src, "result": result})
    return {**result, "skipped": False}


def tokenize_shard_is_done(params: TokenizeParams, clean_dir: Path, out: Path, tokenizer_file: Path) -> bool:
    index = _read_if_valid(Path(out) / "index.json")
    if index is None or not (Path(out) / "tokenizer.json").is_file():
        return False
    sh = index.get("shard") or {}
    return (
        sh.get("index") == params.shard.index
        and sh.get("count") == params.shard.count
        and sh.get("params") == shard_fingerprint(params)
        and sh.get("clean_manifest_sha256") == clean_manifest_sha256(clean_dir)
        and tokenizer_file.is_file()
        and (Path(out) / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()
    )


def tokenize_shard(params: TokenizeParams, clean_dir: Path, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Run one tokenize shard (``params.shard``, count > 1) into its folder under ``<out_dir>.shards``
    with the shared tokenizer; skip if already done. ``kind: train`` needs
    :func:`prepare_tokenize_shards` to have run (a one-line DataError says so otherwise);
    ``kind: pretrained`` falls back to loading ``tokenizer.path`` when the shared file is absent."""
    sh = params.shard
    if sh.count < 2:
        raise DataError(f"tokenize_shard: shard.count={sh.count}; a single run is tokenize_corpus (dvc repro tokenize)")
    clean_dir = Path(clean_dir)
    out = shard_dir(out_dir, sh.index, sh.count)
    tok_file = shared_tokenizer_path(out_dir)
    if not tok_file.is_file():
        if params.tokenizer.kind == "train":
            raise DataError(
                f"{tok_file}: shared tokenizer not found; tokenize shards with tokenizer.kind=train need it trained "
                "once "
                f"on the whole corpus first: run cgpt.data.shards.prepare_tokenize_shards(params, {str(clean_dir)!r}, "
                f"{str(out_dir)!r}) (python flows/data_shards.py --stage tokenize does it)"
            )
        tok_file = None
    if tok_file is not None and tokenize_shard_is_done(params, clean_dir, out, tok_file):
        index = read_json(out / "index.json", missing="vanished")
        return {
            "skipped": True,
            "dir": str(out),
            "documents_in": index["shard"]["documents_in"],
            "tokens": {s: v["tokens"] for s, v in index["splits"].items()},
        }
    stats = tokenize_corpus(params, clean_dir, out, progress=progress, tokenizer_file=tok_file)
    return {**stats, "skipped": False, "dir": str(out)}


def merge_tokenize_shards(
    shard_dirs: list[Path], out_dir: Path, *, keep_shards: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Merge tokenize shards into ``out_dir`` and (unless ``keep_shards``) delete ``<out_dir>.shards``
    (the shard folders and the shared tokenizer)."""
    stats = merge_token_shards([Path(d) for d in shard_dirs], out_dir, progress=progress)
    if not keep_shards:
        shutil.rmtree(shards_root(out_dir), ignore_errors=True)
    return stats
