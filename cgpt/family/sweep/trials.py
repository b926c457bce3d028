"""One trial of the µP sweep: a real training run of a µP model, and its result.

:func:`run_trial` trains a trial (the project's loop, data and recipe: ``family.defaults`` with the
µP keys, ``sweep.max_steps`` steps, ``sweep.seed``) in ``runs/sweep/<trial-id>/``, tracked as an
MLflow run that is a child of the sweep's parent run (:mod:`cgpt.tracking.sweep`). A finished
trial (``trial.json`` for the same configuration) is not trained again, so a killed sweep resumes
and the transfer check reuses the search's runs at the base width. A trial whose loss diverges is
a result (val loss = inf), not a failure of the sweep.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cgpt.config import Params
from cgpt.core.errors import TrainingError
from cgpt.core.fsutil import read_json_if_valid, write_json_atomic
from cgpt.core.project import Project
from cgpt.family.sweep.plan import Trial, tokens_digest, trial_key, trial_params
from cgpt.tracking.runs import RUN_FILE, finishing
from cgpt.tracking.sweep import adopt_trial, open_trial_run

TRIAL_FILE = "trial.json"


@dataclass(frozen=True)
class TrialResult:
    """A finished trial: its final validation loss (inf when it diverged) and last training loss."""

    trial: Trial
    val_loss: float
    train_loss: float
    steps: int
    diverged: bool
    run_id: str | None = None

    def row(self) -> dict[str, Any]:
        t = self.trial
        return {
            "trial": t.id,
            "width": t.width,
            "n_layer": t.n_layer,
            "n_head": t.n_head,
            "lr": t.lr,
            "init_std": t.init_std,
            "output_mult": t.output_mult,
            "steps": self.steps,
            "seed": t.seed,
            "val_loss": self.val_loss if not self.diverged else math.inf,
            "train_loss": self.train_loss,
            "diverged": self.diverged,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial.to_dict(),
            "val_loss": json_float(self.val_loss),
            "train_loss": json_float(self.train_loss),
            "steps": self.steps,
            "diverged": self.diverged,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], run_id: str | None = None) -> TrialResult:
        return cls(
            trial=Trial(**data["trial"]),
            val_loss=_float(data["val_loss"]),
            train_loss=_float(data["train_loss"]),
            steps=int(data["steps"]),
            diverged=bool(data["diverged"]),
            run_id=run_id,
        )


def json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # JSON has no inf/nan: "inf", "nan"


def _float(x: float | str) -> float:
    return float(x)


def run_trial(
    root: Path,
    params: Params,
    trial: Trial,
    *,
    parent_run_id: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> TrialResult:
    """Train one trial in ``runs/sweep/<id>/`` (or return its recorded result), tracked as a child
    MLflow run of ``parent_run_id``."""
    from cgpt.train.loop import train
    from cgpt.train.setup import setup_from_params

    project = Project(Path(root))
    root = project.root
    tokens = project.family_tokens  # the family's tokenization (family.tokenizer): what its members train on
    key = trial_key(params, trial, tokens_digest(tokens))
    run_dir = project.sweep_trials / trial.id
    done = read_json_if_valid(run_dir / TRIAL_FILE)
    marker = read_json_if_valid(run_dir / RUN_FILE)
    run_id = marker.get("run_id") if isinstance(marker, dict) else None
    if isinstance(done, dict) and done.get("key") == key:
        if parent_run_id is not None and run_id is not None:
            adopt_trial(root, params, run_id, parent_run_id)  # a later sweep's parent adopts the finished trial
        return TrialResult.from_json(done, run_id)
    p = trial_params(params, trial, threads)
    setup = setup_from_params(p, tokens)
    tracker = open_trial_run(root, params, trial, key, run_dir, parent_run_id)
    tracker.log_params({"sweep": {**trial.to_dict(), "key": key}, "recipe": asdict(setup.recipe)})
    diverged = False
    with finishing(tracker):
        try:
            result = train(setup, tokens, run_dir, tracker=tracker, progress=progress)
            val, loss, steps = result.summary.val_loss, result.summary.train_loss, result.summary.steps
        except TrainingError as exc:
            if "loss became" not in str(exc):
                raise
            tracker.set_tags({"cgpt.sweep.diverged": "true", "cgpt.sweep.error": str(exc)})
            diverged, val, loss, steps = True, math.inf, math.inf, trial.max_steps
        tracker.log_metrics(
            {"sweep/val_loss": val, "sweep/train_loss": loss, "sweep/diverged": float(diverged)}, step=steps
        )
    out = TrialResult(trial, val, loss, steps, diverged or not math.isfinite(val), tracker.run_id)
    write_json_atomic(run_dir / TRIAL_FILE, {**out.to_json(), "key": key})
    return out


def default_threads(workers: int) -> int:
    """Torch threads per trial: this machine's cores shared by the ``workers`` trials at a time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))
