"""The µP sweep in MLflow: one parent run per sweep configuration, each trial a child run of it.

* The parent (run name ``mup-sweep-<key>``, tags ``cgpt.kind=mup-sweep`` and ``cgpt.sweep=<key>``;
  the key is :func:`cgpt.family.sweep.plan.sweep_key`) is found by its tag, or created, on every
  run of the sweep; it holds the chosen values, each width's optimum and ``family/mup/`` as artifacts.
* Each trial's run (``cgpt.kind=mup-trial``, run name the trial's id) is recorded in the trial's
  folder (``mlflow_run.json``); a later sweep's parent adopts a finished trial it reuses.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cgpt.config import Params
from cgpt.core.fsutil import write_json_atomic
from cgpt.core.project import Project
from cgpt.family.sweep.params_file import CHOSEN_KEYS
from cgpt.family.sweep.plan import Trial, base_width, sweep_key, tokens_digest
from cgpt.tracking.runs import (
    KIND_TAG,
    PARENT_TAG,
    RUN_FILE,
    Tracker,
    client_for,
    disabled,
    experiment_id,
    open_keyed_run,
    provenance_tags,
)

SWEEP_TAG = "cgpt.sweep"


def open_sweep_run(root: Path, params: Params) -> Tracker:
    """The sweep's parent run (found by its key's tag, else created), marked RUNNING; finish it when done."""
    project = Project(Path(root))
    root = project.root
    key = sweep_key(params, tokens_digest(project.family_tokens)) if params.tracking.enabled else ""
    return open_keyed_run(
        root,
        params.tracking,
        kind="mup-sweep",
        key_tag=SWEEP_TAG,
        key=key,
        run_name=f"mup-sweep-{key}",
        params={"sweep": params.family.sweep.model_dump(), "mup_base_width": base_width(params.family)},
    )


def open_trial_run(
    root: Path, params: Params, trial: Trial, key: str, run_dir: Path, parent_run_id: str | None
) -> Tracker:
    """A new MLflow run for ``trial`` (a child of ``parent_run_id``), recorded in ``run_dir``'s ``mlflow_run.json``."""
    if not params.tracking.enabled:
        return disabled()
    client = client_for(root)
    exp_id = experiment_id(client, params.tracking.experiment, root)
    tags = {
        KIND_TAG: "mup-trial",
        "cgpt.sweep.width": str(trial.width),
        "cgpt.sweep.key": key,
        **provenance_tags(root),
    }
    if parent_run_id is not None:
        tags[PARENT_TAG] = parent_run_id
    run = client.create_run(exp_id, run_name=trial.id, tags=tags)
    write_json_atomic(run_dir / RUN_FILE, {"run_id": run.info.run_id, "key": key})
    return Tracker(client, run.info.run_id, fresh=True)


def adopt_trial(root: Path, params: Params, run_id: str, parent_run_id: str) -> None:
    """Make a finished trial's run a child of ``parent_run_id`` (a later sweep's parent reusing it)."""
    if not params.tracking.enabled:
        return
    with contextlib.suppress(Exception):  # the run is in another store or was deleted: the result stands
        client_for(root).set_tag(run_id, PARENT_TAG, parent_run_id)


def record_sweep(
    parent: Tracker,
    root: Path,
    chosen: dict[str, Any],
    transfer: dict[str, Any] | None,
    unscaled: dict[str, Any] | None = None,
) -> None:
    """The chosen values and each width's optimum on the parent, and ``family/mup/`` as its artifacts."""
    if not parent.enabled:
        return
    metrics = {f"chosen/{k}": float(chosen[k]) for k in (*CHOSEN_KEYS, "val_loss")}
    for section, summary in (("transfer", transfer), ("unscaled", unscaled)):
        if summary is None:
            continue
        for w, v in summary["widths"].items():
            if v["best_lr"] is not None:
                metrics[f"{section}/w{w}/best_lr"] = float(v["best_lr"])
                metrics[f"{section}/w{w}/best_val_loss"] = float(v["best_val_loss"])
        metrics[f"{section}/holds"] = 1.0 if summary["holds"] else 0.0
    parent.log_metrics(metrics)
    parent.set_tags({f"cgpt.sweep.chosen.{k}": f"{chosen[k]:g}" for k in CHOSEN_KEYS})
    parent.flush()
    parent.log_artifacts(Project(Path(root)).sweep_dir, "mup")
