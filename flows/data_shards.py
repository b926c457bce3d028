"""Prefect flow: the clean stage fanned out over shards, then merged.

Each shard is one Prefect task (``clean`` of the blocks ``(file + block) % n == i``) submitted to
the chosen task runner; the merge gives the same bytes as an unsharded ``dvc repro clean``.
The logic lives in ``cgpt.data.parallel`` / ``cgpt.data.clean``; this file only wires it.

    python flows/data_shards.py --shards 4                              # threads, this machine
    python flows/data_shards.py --shards 8 --runner process
    python flows/data_shards.py --shards 64 --runner dask --dask-address tcp://scheduler:8786

Shards in one machine's thread or process pool share its cores (``workers_per_shard`` defaults to
cores / shards); on a Dask cluster each shard uses ``clean.workers`` of its worker's cores.
Tokenize is not sharded: it runs on tokenizers' Rust threads and is I/O-light (see docs/data-pipeline.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from cgpt.data.params_clean import CleanParams
from cgpt.data.parallel import clean_shard, load_clean_params, default_workers_per_shard, merge_shards, shard_dir, shard_params

Runner = Literal["thread", "process", "dask"]


@task(task_run_name="clean shard {index} of {count}", retries=1)
def clean_shard_task(params_json: str, raw_dir: str, out_dir: str, index: int, count: int) -> dict[str, Any]:
    params = CleanParams.model_validate_json(params_json)
    stats = clean_shard(params, Path(raw_dir), Path(out_dir))
    get_run_logger().info(
        "shard %d/%d: %s documents in, %s out%s", index, count, stats["total"]["documents_in"],
        stats["total"]["documents_out"], " (already done, skipped)" if stats["skipped"] else "",
    )
    return stats


@task(task_run_name="merge {count} clean shards")
def merge_task(shard_dirs: list[str], out_dir: str, count: int, keep_shards: bool) -> dict[str, Any]:
    return merge_shards([Path(d) for d in shard_dirs], Path(out_dir), keep_shards=keep_shards)


def make_task_runner(runner: Runner, n_shards: int, dask_address: str | None = None):
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=n_shards)
    if runner == "process":
        return ProcessPoolTaskRunner(max_workers=n_shards)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": n_shards, "processes": False, "threads_per_worker": 1})
    raise ValueError(f"runner={runner!r}; expected thread, process or dask")


@flow(name="clean-shards-run")
def _run_shards(clean_json: str, raw_dir: str, out_dir: str, n_shards: int, workers: int | None, keep_shards: bool) -> dict[str, Any]:
    base = CleanParams.model_validate_json(clean_json)
    futures = []
    for i in range(n_shards):
        p = shard_params(base, i, n_shards, workers=workers)
        futures.append(clean_shard_task.submit(p.model_dump_json(), raw_dir, out_dir, i, n_shards))
    for f in futures:
        f.result()  # raise the first failed shard
    dirs = [str(shard_dir(Path(out_dir), i, n_shards)) for i in range(n_shards)]
    return merge_task(dirs, out_dir, n_shards, keep_shards)


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
    clean_params = load_clean_params(params_path)
    if workers_per_shard is None and not dask_address:
        workers_per_shard = default_workers_per_shard(n_shards)
    sub = _run_shards.with_options(task_runner=make_task_runner(runner, n_shards, dask_address))
    stats = sub(clean_params.model_dump_json(), raw_dir, out_dir, n_shards, workers_per_shard, keep_shards)
    get_run_logger().info("merged %d shards: %s documents out", n_shards, stats["total"]["documents_out"])
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--runner", choices=["thread", "process", "dask"], default="thread")
    ap.add_argument("--dask-address")
    ap.add_argument("--raw-dir", default="data/raw")
    ap.add_argument("--out-dir", default="data/clean")
    ap.add_argument("--workers-per-shard", type=int)
    ap.add_argument("--keep-shards", action="store_true")
    a = ap.parse_args()
    sharded_clean_flow(a.params, a.shards, a.runner, a.dask_address, a.raw_dir, a.out_dir, a.workers_per_shard, a.keep_shards)


if __name__ == "__main__":
    main()
