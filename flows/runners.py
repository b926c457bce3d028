"""Prefect task runners by name, for the flows that fan work out (data shards, µP sweep trials)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

Runner = Literal["thread", "process", "dask"]
RUNNERS: tuple[str, ...] = ("thread", "process", "dask")


def make_task_runner(
    runner: str, workers: int, dask_address: str | None = None, *, allowed: Sequence[str] = RUNNERS
) -> Any:
    """A task runner with ``workers`` parallel tasks: threads, processes, or a Dask cluster (the one at
    ``dask_address``, else a local one of ``workers`` single-thread workers); ``allowed``: the names a
    flow accepts (any other is a ValueError naming them)."""
    if runner not in allowed:
        expected = " or ".join([", ".join(allowed[:-1]), allowed[-1]]) if len(allowed) > 1 else allowed[0]
        raise ValueError(f"runner={runner!r}; expected {expected}")
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "processes": False, "threads_per_worker": 1})
