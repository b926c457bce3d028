"""Prefect flows: the clean and tokenize stages fanned out over shards, then merged.

Each shard is one Prefect task (``clean`` of the blocks ``(file + block) % n == i``) submitted to
the chosen task runner; the merge gives the same bytes as an unsharded ``dvc repro clean``.
The logic lives in :mod:`cgpt.data.shards`; this file only wires it.

    python flows/data_shards.py --shards 4                              # threads, this machine
    python flows/data_shards.py --shards 8 --runner process
    python flows/data_shards.py --shards 64 --runner dask --dask-address tcp://scheduler:8786
    python flows/data_shards.py --stage tokenize --shards 4              # tokenize: clean parts k % 4

Shards in one machine's thread or process pool share its cores (``workers_per_shard`` defaults to
cores / shards); on a Dask cluster each shard uses ``clean.workers`` of its worker's cores.
Tokenize shards first get one shared tokenizer (trained once on the whole corpus's train split, or
the pretrained one loaded once: ``<out_dir>.shards/tokenizer.json``), then encode the clean parts
``k % n == i`` each, then merge (the same bytes as ``dvc repro tokenize``). In one process the
thread-runner shards share tokenizers' single Rust thread pool.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from cgpt.config import load_params
from cgpt.data.clean.params import CleanParams
from cgpt.data.shards import (
    clean_shard,
    default_workers_per_shard,
    merge_shards,
    merge_tokenize_shards,
    prepare_tokenize_shards,
    shard_dir,
    shard_params,
    tokenize_shard,
    tokenize_shard_params,
)
from cgpt.data.tokenize.params import TokenizeParams
from flows.runners import Runner, make_task_runner


@task(task_run_name="clean shard {index} of {count}", retries=1)
def clean_shard_task(params: CleanParams, raw_dir: str, out_dir: str, index: int, count: int) -> dict[str, Any]:
    stats = clean_shard(params, Path(raw_dir), Path(out_dir))
    get_run_logger().info(
        "shard %d/%d: %s documents in, %s out%s",
        index,
        count,
        stats["total"]["documents_in"],
        stats["total"]["documents_out"],
        " (already done, skipped)" if stats["skipped"] else "",
    )
    return stats


@task(task_run_name="merge {count} clean shards")
def merge_task(shard_dirs: list[str], out_dir: str, count: int, keep_shards: bool) -> dict[str, Any]:
    return merge_shards([Path(d) for d in shard_dirs], Path(out_dir), keep_shards=keep_shards)


@flow(name="sharded-clean")
def sharded_clean_flow(
    params_path: str = "params.yaml",
    n_shards: int = 2,
    runner: Runner = "thread",
    dask_address: str | None = None,
    raw_dir: str = "data/raw",
    out_dir: str = "data/clean",
    workers_per_shard: int | None = None,
    keep_shards: bool = False,
) -> dict[str, Any]:
    """Clean ``raw_dir`` into ``out_dir`` as ``n_shards`` parallel tasks plus a merge; returns the stats."""
    if n_shards < 1:
        raise ValueError(f"n_shards={n_shards} must be >= 1")
    clean_params = load_params(params_path).clean
    if workers_per_shard is None and not dask_address:
        workers_per_shard = default_workers_per_shard(n_shards)
    sub = _run_shards.with_options(task_runner=make_task_runner(runner, n_shards, dask_address))
    stats = sub("clean", clean_params, raw_dir, out_dir, n_shards, workers_per_shard, keep_shards)
    get_run_logger().info("merged %d shards: %s documents out", n_shards, stats["total"]["documents_out"])
    return stats


# ---------------------------------------------------------------------------------------------- tokenize


@task(task_run_name="shared tokenizer")
def prepare_tokenizer_task(params: TokenizeParams, clean_dir: str, out_dir: str) -> dict[str, Any]:
    return prepare_tokenize_shards(params, Path(clean_dir), Path(out_dir))


@task(task_run_name="tokenize shard {index} of {count}", retries=1)
def tokenize_shard_task(params: TokenizeParams, clean_dir: str, out_dir: str, index: int, count: int) -> dict[str, Any]:
    stats = tokenize_shard(params, Path(clean_dir), Path(out_dir))
    get_run_logger().info(
        "tokenize shard %d/%d: %s documents in, %s tokens%s",
        index,
        count,
        stats["documents_in"],
        sum(stats["tokens"].values()),
        " (already done, skipped)" if stats["skipped"] else "",
    )
    return stats


@task(task_run_name="merge {count} tokenize shards")
def merge_tokenize_task(shard_dirs: list[str], out_dir: str, count: int, keep_shards: bool) -> dict[str, Any]:
    return merge_tokenize_shards([Path(d) for d in shard_dirs], Path(out_dir), keep_shards=keep_shards)


# stage: (shard task, per-shard params, merge task)
_STAGES: dict[str, tuple[Any, Any, Any]] = {
    "clean": (clean_shard_task, shard_params, merge_task),
    "tokenize": (tokenize_shard_task, tokenize_shard_params, merge_tokenize_task),
}


@flow(name="shards-run", flow_run_name="{stage}: {n_shards} shards")
def _run_shards(
    stage: str,
    params: CleanParams | TokenizeParams,
    in_dir: str,
    out_dir: str,
    n_shards: int,
    workers: int | None,
    keep_shards: bool,
) -> dict[str, Any]:
    """One task per shard on the flow's task runner, then the merge task."""
    shard_task, per_shard, merge = _STAGES[stage]
    futures = [
        shard_task.submit(per_shard(params, i, n_shards, workers=workers), in_dir, out_dir, i, n_shards)
        for i in range(n_shards)
    ]
    for f in futures:
        f.result()  # raise the first failed shard
    dirs = [str(shard_dir(Path(out_dir), i, n_shards)) for i in range(n_shards)]
    return merge(dirs, out_dir, n_shards, keep_shards)


@flow(name="sharded-tokenize")
def sharded_tokenize_flow(
    params_path: str = "params.yaml",
    n_shards: int = 2,
    runner: Runner = "thread",
    dask_address: str | None = None,
    clean_dir: str = "data/clean",
    out_dir: str = "data/tokens",
    workers_per_shard: int | None = None,
    keep_shards: bool = False,
) -> dict[str, Any]:
    """Tokenize ``clean_dir`` into ``out_dir``: the shared tokenizer once, ``n_shards`` parallel
    tasks, then a merge; returns the stats (as ``tokenize_corpus``'s, plus ``shards``)."""
    if n_shards < 2:
        raise ValueError(f"n_shards={n_shards} must be >= 2 (one shard is `dvc repro tokenize`)")
    params = load_params(params_path).tokenize
    if workers_per_shard is None and not dask_address:
        workers_per_shard = default_workers_per_shard(n_shards)
    t0 = time.perf_counter()
    prepare_tokenizer_task(params, clean_dir, out_dir)
    t1 = time.perf_counter()
    sub = _run_shards.with_options(task_runner=make_task_runner(runner, n_shards, dask_address))
    stats = sub("tokenize", params, clean_dir, out_dir, n_shards, workers_per_shard, keep_shards)
    secs = max(time.perf_counter() - t1, 1e-9)  # shards + merge, wall clock (same keys as one run's stats)
    stats["timing"].update(
        tokenizer_seconds=round(t1 - t0, 3),
        seconds=round(secs, 3),
        tokens_per_s=round(stats["tokens_total"] / secs, 1),
        docs_per_s=round(stats["documents_in"] / secs, 1),
    )
    get_run_logger().info("merged %d tokenize shards: %s tokens", n_shards, stats["tokens_total"])
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["clean", "tokenize"], default="clean")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--runner", choices=["thread", "process", "dask"], default="thread")
    ap.add_argument("--dask-address")
    ap.add_argument("--raw-dir", default="data/raw", help="clean: the input")
    ap.add_argument("--clean-dir", default="data/clean", help="tokenize: the input")
    ap.add_argument("--out-dir", help="default: data/clean (clean) or data/tokens (tokenize)")
    ap.add_argument("--workers-per-shard", type=int)
    ap.add_argument("--keep-shards", action="store_true")
    a = ap.parse_args()
    if a.stage == "tokenize":
        sharded_tokenize_flow(
            a.params,
            a.shards,
            a.runner,
            a.dask_address,
            a.clean_dir,
            a.out_dir or "data/tokens",
            a.workers_per_shard,
            a.keep_shards,
        )
    else:
        sharded_clean_flow(
            a.params,
            a.shards,
            a.runner,
            a.dask_address,
            a.raw_dir,
            a.out_dir or "data/clean",
            a.workers_per_shard,
            a.keep_shards,
        )


if __name__ == "__main__":
    main()
