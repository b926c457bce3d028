"""Prefect flow: the µP sweep. Trials on the proxy fanned out as parallel tasks, the best by
validation loss, the transfer check across widths, then the chosen values into params.yaml.

    python flows/mup_sweep.py                      # this project, family.sweep as in params.yaml
    python flows/mup_sweep.py --no-write           # everything but the params.yaml write
    python flows/mup_sweep.py --runner process --workers 4
    python flows/mup_sweep.py --compare-unscaled   # also the widths without µP's width scaling

Each trial is one Prefect task (:func:`cgpt.family.sweep.trials.run_trial`: a short real training run in
``runs/sweep/<trial-id>/``, an MLflow child run of the sweep's parent run). ``family.sweep.workers``
trials run at a time, in threads by default (torch releases the GIL in its kernels: two trials
in two threads ran 1.8x faster than one after the other on 2 cores; ``--runner process`` pays a
process start per worker), each with cores / workers torch threads. Finished trials are reused, so a
killed sweep picks up where it stopped. The logic lives in :mod:`cgpt.family.sweep`; this file
only wires it and reports: progress lines, and a markdown artifact with the table and the choice.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry calls
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine starts it slowly
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.futures import as_completed  # noqa: E402

from cgpt.config import load_params  # noqa: E402
from cgpt.core.errors import CgptError  # noqa: E402
from cgpt.core.project import Project  # noqa: E402
from cgpt.core.runtime import fail  # noqa: E402
from cgpt.family.sweep.params_file import CHOSEN_KEYS, write_chosen_params  # noqa: E402
from cgpt.family.sweep.plan import Trial, base_width, plan_search, plan_transfer  # noqa: E402
from cgpt.family.sweep.report import choose, markdown_report, write_search, write_transfer  # noqa: E402
from cgpt.family.sweep.trials import TrialResult, default_threads, run_trial  # noqa: E402
from cgpt.tracking.runs import finishing  # noqa: E402
from cgpt.tracking.sweep import open_sweep_run, record_sweep  # noqa: E402
from flows.runners import make_task_runner  # noqa: E402

Runner = Literal["thread", "process"]  # the sweep offers no Dask runner
RUNNERS: tuple[Runner, ...] = ("thread", "process")


@task(task_run_name="trial {trial_id}")
def trial_task(
    root: str, trial: dict[str, Any], trial_id: str, parent_run_id: str | None, threads: int
) -> dict[str, Any]:
    """One trial (plain dicts in and out: they cross process boundaries)."""
    project = Project.at(root)
    result = run_trial(
        project.root, load_params(project.params_file), Trial(**trial), parent_run_id=parent_run_id, threads=threads
    )
    return {**result.to_json(), "run_id": result.run_id}


@flow(name="mup-sweep-trials", flow_run_name="{phase}: {n} trials")
def _run_trials(
    phase: str, n: int, root: str, trials: list[dict[str, Any]], parent_run_id: str | None, threads: int
) -> list[dict[str, Any]]:
    """Every trial as a task on this flow's task runner; a progress line as each one finishes."""
    log = get_run_logger()
    futures = [trial_task.submit(root, t, Trial(**t).id, parent_run_id, threads) for t in trials]
    t0 = time.perf_counter()
    for done, fut in enumerate(as_completed(futures), start=1):
        r = TrialResult.from_json(fut.result())
        loss = "diverged" if r.diverged or not math.isfinite(r.val_loss) else f"val loss {r.val_loss:.4f}"
        log.info("%s %d/%d (%.0f s): %s %s", phase, done, n, time.perf_counter() - t0, r.trial.id, loss)
    return [f.result() for f in futures]  # submission order, whatever the finishing order


def _phase(
    phase: str, trials: list[Trial], root: Path, parent_run_id: str | None, runner: Runner, workers: int
) -> list[TrialResult]:
    """One phase's trials fanned out (a subflow with ``workers`` parallel tasks), as results."""
    sub = _run_trials.with_options(task_runner=make_task_runner(runner, workers, allowed=RUNNERS))
    threads = default_threads(workers)
    found = sub(phase, len(trials), str(root), [t.to_dict() for t in trials], parent_run_id, threads)
    return [TrialResult.from_json(d, d.get("run_id")) for d in found]


@flow(name="mup-sweep")
def mup_sweep_flow(
    project: str = ".",
    write: bool = True,
    runner: Runner = "thread",
    workers: int | None = None,
    compare_unscaled: bool = False,
) -> dict[str, Any]:
    """The sweep, the choice, the transfer check and (``write``) params.yaml's ``family.mup``;
    ``compare_unscaled``: also the transfer widths without µP's width scaling (m = 1 everywhere)."""
    log = get_run_logger()
    proj = Project.at(project)
    root, params = proj.root, load_params(proj.params_file)
    family = params.family
    workers = workers or family.sweep.workers
    search = plan_search(family)
    log.info(
        "µP sweep: %d %s trials on the proxy (width %d), %d steps each, %d at a time x %d torch threads",
        len(search),
        family.sweep.search,
        base_width(family),
        family.sweep.max_steps,
        workers,
        default_threads(workers),
    )
    parent = open_sweep_run(root, params)
    with finishing(parent):
        found = _phase("search", search, root, parent.run_id, runner, workers)
        best = choose(found)
        chosen = write_search(root, found, best, family)
        log.info("chosen: %s", {k: chosen[k] for k in (*CHOSEN_KEYS, "val_loss", "trial")})
        search_md = (proj.sweep_dir / "sweep.md").read_text(encoding="utf-8")
        create_markdown_artifact(markdown_report(chosen, search_md), key="mup-sweep-search")

        plan = plan_transfer(family, best.trial)
        log.info("transfer check: widths %s, %d trials (base width's reused)", family.sweep.transfer_widths, len(plan))
        moved = _phase("transfer", plan, root, parent.run_id, runner, workers)
        transfer = write_transfer(root, moved, best.trial.lr)
        for w, v in transfer["widths"].items():
            log.info("width %s: best lr %s (val loss %s)", w, v["best_lr"], v["best_val_loss"])
        log.info("transfer %s at grid resolution", "holds" if transfer["holds"] else "does NOT hold")
        unscaled = None
        if compare_unscaled:
            plan = plan_transfer(family, best.trial, unscaled=True)
            runs = _phase("unscaled", plan, root, parent.run_id, runner, workers)
            unscaled = write_transfer(root, runs, best.trial.lr, stem="transfer_unscaled")
            for w, v in unscaled["widths"].items():
                log.info("without µP scaling, width %s: best lr %s (val loss %s)", w, v["best_lr"], v["best_val_loss"])
        report = markdown_report(chosen, search_md, transfer, unscaled)
        create_markdown_artifact(report, key="mup-sweep")
        record_sweep(parent, root, chosen, transfer, unscaled)

    if write:
        before = write_chosen_params(proj.params_file, chosen)
        log.info("params.yaml: family.mup %s -> %s", before, {k: chosen[k] for k in CHOSEN_KEYS})
    return {"chosen": chosen, "transfer": transfer, "unscaled": unscaled, "written": write}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default=".", help="the cgpt project (default: here)")
    ap.add_argument("--no-write", action="store_true", help="leave params.yaml as it is")
    ap.add_argument("--runner", choices=["thread", "process"], default="thread")
    ap.add_argument("--workers", type=int, help="trials at a time (default: family.sweep.workers)")
    ap.add_argument(
        "--compare-unscaled", action="store_true", help="also the widths without µP's width scaling (m = 1)"
    )
    a = ap.parse_args()
    try:
        mup_sweep_flow(
            project=str(Path(a.project)),
            write=not a.no_write,
            runner=a.runner,
            workers=a.workers,
            compare_unscaled=a.compare_unscaled,
        )
    except CgptError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
