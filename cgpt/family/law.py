"""The ``scaling`` stage's work: the family's law, each member's forecast from the smaller ones, the table, the plots.

Reads the point files of the members in params.yaml (``family/points/<name>.json``), smallest
first, and writes, as one folder (``family/scaling/``, replaced atomically):

* ``fit.json`` — the law over every member: form (and why), coefficients a, b, c with standard
  errors, the paper's f0/β, residuals, the metric and the FLOPs convention;
* ``predictions.json`` — every member as the family flow saw it: the forecast from the members
  smaller than it (loss with its interval, the law it came from, task accuracies), the actual
  loss, inside or not, its flags;
* ``table.csv`` / ``table.md`` — one row per member (pandas);
* ``loss_vs_compute.png`` / ``.svg`` — the points, the law, each forecast's interval;
* ``accuracy.csv`` / ``.md`` and ``accuracy_sigmoids.png`` / ``.svg`` — when the members have
  downstream accuracies: the loss → accuracy sigmoids across the members.

Beside it, ``family/plots/*.csv`` (for ``dvc plots show``: loss and the law against log10 FLOPs)
and ``family/scaling_metrics.json`` (the coefficients and the flag count; not a DVC metric). The same
points give the same bytes (figures are written without dates, with fixed SVG ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cgpt.core.errors import ScalingError
from cgpt.core.fsutil import atomic_dir, write_json_atomic, write_text_atomic
from cgpt.core.project import Project
from cgpt.family.forecast import Outcome, at_chance, point_member, replay
from cgpt.family.members import FLOPS_CONVENTION
from cgpt.family.points import read_point
from cgpt.scaling.accuracy import CHANCE_ACCURACY
from cgpt.scaling.next_member import Member, fit_accuracy_laws, fit_loss_law
from cgpt.scaling.plots import plot_accuracy_sigmoids, plot_loss_vs_compute
from cgpt.scaling.power_law import PowerLawFit
from cgpt.scaling.rules import MIN_POINTS_SATURATING
from cgpt.scaling.tables import write_table

if TYPE_CHECKING:  # the whole file's schema, or any stage's view of it with the sections read here
    from cgpt.config import Params
FORM_RULE = (
    f"form auto: the pure power law L = a*C^b below {MIN_POINTS_SATURATING} points, "
    f"the saturating law L = a*C^b + c from {MIN_POINTS_SATURATING} on, c free below min L (negative when the "
    "points bend away from a floor; the log-linear limit L = a + b*ln C when c runs to its bound)"
)


@dataclass
class FamilyScaling:
    """Everything the stage computed (and wrote)."""

    points: list[dict[str, Any]]
    members: list[Member]
    fit: PowerLawFit
    outcomes: list[Outcome]
    table: pd.DataFrame

    @property
    def flagged(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.flagged]


def load_members(root: Path, params: Params, names: list[str]) -> tuple[list[dict[str, Any]], list[Member]]:
    """The points of ``names`` (smallest first) and the same as :class:`cgpt.scaling.Member`."""
    fit = params.family.fit
    points = [read_point(root, n) for n in names]
    return points, [point_member(p, fit.metric, fit.shots) for p in points]


def members_table(
    points: list[dict[str, Any]], fit: PowerLawFit, outcomes: list[Outcome], metric: str, shots: int
) -> pd.DataFrame:
    """One row per member: size, budget, compute, losses, the law's fitted value, the forecast made
    before it trained and its check, the mean task accuracy at ``shots`` and the accuracy forecast's error."""
    shots = str(shots)
    rows = []
    in_law = iter(zip(fit.fitted, fit.residuals))
    for p, o in zip(points, outcomes):
        fitted, resid = next(in_law) if o.in_law else (None, None)
        c = o.check
        acc = p["accuracy"]
        rows.append(
            {
                "member": p["name"],
                "parameterization": p["parameterization"],
                "shape": f"{p['n_layer']}x{p['d_model']} ({p['n_head']})",
                "params": p["params"],
                "tokens": p["tokens"],
                "steps": p["steps"],
                "compute": p["compute"],
                "val_xent": p.get("val_xent"),
                "test_xent": p.get("test_xent"),
                "fitted": fitted,
                "residual": resid,
                "forecast": c.predicted if c else None,
                "low": c.low if c else None,
                "high": c.high if c else None,
                "law": o.forecast.law if o.forecast else None,
                "inside": c.inside if c else None,
                "flags": ", ".join(o.flags),
                "acc_mean": float(np.mean(list(acc[shots].values()))) if acc.get(shots) else None,
                "acc_forecast_mae": o.accuracy.mae if o.accuracy else None,
            }
        )
    df = pd.DataFrame(rows)
    return df.rename(columns={"fitted": f"fitted_{metric}", "residual": f"residual_{metric}"})


def compute(root: Path, params: Params, names: list[str]) -> FamilyScaling:
    """Fit and replay the family from the point files of ``names`` (smallest first)."""
    if len(names) < 2:
        raise ScalingError(
            f"the family has {len(names)} member(s) in params.yaml; a scaling law needs at least 2 (family.members)"
        )
    fp = params.family.fit
    points, members = load_members(root, params, names)
    outcomes = replay(members, fp)
    in_law = [m for m, o in zip(members, outcomes) if o.in_law]
    if len(in_law) < 2:
        raise ScalingError(
            f"only {len(in_law)} of the {len(members)} members can be fitted (the others are flagged "
            f"{', '.join(sorted({f for o in outcomes for f in o.flags}))}); see family/scaling/predictions.json"
        )
    law = fit_loss_law(in_law, form=fp.form, sigma_known=fp.sigma_known)
    return FamilyScaling(points, members, law, outcomes, members_table(points, law, outcomes, fp.metric, fp.shots))


def _plot_rows(s: FamilyScaling) -> dict[str, pd.DataFrame]:
    """The CSVs ``dvc plots show`` draws, all against log10 FLOPs (vega's linear axes: the log is done here)."""
    names = [m.name for m in s.members]
    points = pd.DataFrame(
        {"member": names, "log10_flops": np.log10([m.compute for m in s.members]), "loss": [m.loss for m in s.members]}
    )
    lo, hi = math.log10(min(s.fit.compute)), math.log10(max(s.fit.compute))
    grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 41)
    law = pd.DataFrame({"log10_flops": grid, "law": s.fit.predict(10.0**grid)})
    rows = [
        {
            "member": o.name,
            "log10_flops": math.log10(o.forecast.forecast.compute),
            "forecast": o.forecast.forecast.loss.loss,
            "low": o.forecast.forecast.loss.low,
            "high": o.forecast.forecast.loss.high,
        }
        for o in s.outcomes
        if o.forecast is not None
    ]
    forecasts = pd.DataFrame(rows, columns=["member", "log10_flops", "forecast", "low", "high"])
    return {"points": points, "law": law, "forecasts": forecasts}


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6g")


def write_outputs(root: Path, params: Params, s: FamilyScaling, title: str = "") -> list[Path]:
    """``family/scaling/`` (atomically), ``family/plots/*.csv`` and ``family/scaling_metrics.json``."""
    fp = params.family.fit
    ylabel = f"{fp.metric} cross-entropy (nats/token)"
    title = title or f"{len(s.members)} members, {fp.metric} xent vs training FLOPs"
    project = Project(root)
    with atomic_dir(project.family_scaling) as tmp:
        write_json_atomic(
            tmp / "fit.json",
            {
                "metric": f"{fp.metric}_xent",
                "flops_convention": FLOPS_CONVENTION,
                "form_rule": FORM_RULE,
                "members": [m.name for m in s.members],
                "fit": s.fit.to_dict(),
            },
        )
        write_json_atomic(tmp / "predictions.json", [o.to_dict() for o in s.outcomes])
        write_table(s.table, tmp, "table")
        preds = [o.forecast.forecast.loss for o in s.outcomes if o.forecast is not None]
        plot_loss_vs_compute(s.fit, tmp / "loss_vs_compute", predictions=preds, title=title, ylabel=ylabel)
        if any(m.accuracy for m in s.members):
            _write_accuracy(tmp, s, fp.shots)
    with atomic_dir(project.family_plots) as tmp:
        for stem, df in _plot_rows(s).items():
            write_text_atomic(tmp / f"{stem}.csv", _csv(df))
    se = s.fit.stderr or {}
    metrics = {
        "form": s.fit.form,
        "a": s.fit.a,
        "b": s.fit.b,
        "c": s.fit.c,
        "se_a": se.get("a"),
        "se_b": se.get("b"),
        "se_c": se.get("c"),
        "n_points": s.fit.n_points,
        "rms_residual": s.fit.rms_residual,
        "flagged": len(s.flagged),
    }
    write_json_atomic(project.scaling_metrics, {k: v for k, v in metrics.items() if v is not None})
    return [project.family_scaling, project.family_plots, project.scaling_metrics]


def write_empty(root: Path, n_members: int) -> None:
    """The outputs of a project with no family to fit: a note instead of a law (no figures, no plot rows)."""
    note = f"{n_members} member(s) in params.yaml family.members: no scaling law (it needs at least 2)"
    project = Project(root)
    with atomic_dir(project.family_scaling) as tmp:
        write_json_atomic(tmp / "fit.json", {"members": n_members, "fit": None, "note": note})
    with atomic_dir(project.family_plots):
        pass
    write_json_atomic(project.scaling_metrics, {"n_points": n_members})


def _write_accuracy(out: Path, s: FamilyScaling, shots: int) -> None:
    """Loss → accuracy sigmoids across every member (step 2 of the two-step method) and their table,
    for the tasks some member scores above chance (:func:`cgpt.family.forecast.at_chance`)."""
    tasks = list(dict.fromkeys(t for m in s.members for t in m.accuracy))
    chance = [t for t in tasks if at_chance(s.members, t)]
    if len(chance) == len(tasks):
        write_text_atomic(
            out / "accuracy.md",
            f"No accuracy sigmoids: every member is at chance on {', '.join(chance)} (each accuracy within two "
            "standard errors of guessing), so there is no slope to fit.\n",
        )
        return
    try:
        fits = fit_accuracy_laws(s.members, tasks=[t for t in tasks if t not in chance])
    except ScalingError as exc:
        write_text_atomic(out / "accuracy.md", f"No accuracy sigmoids: {exc}\n")
        return
    rows = []
    for task, f in fits.items():
        rows.append(
            {
                "task": task,
                "chance": CHANCE_ACCURACY.get(task),
                "floor": f.floor,
                "floor_mode": f.floor_mode,
                "l0": f.l0,
                "k": f.k,
                "rms": float(np.sqrt(np.mean(np.square(f.residuals)))),
                **{m.name: m.accuracy.get(task) for m in s.members},
            }
        )
    write_table(pd.DataFrame(rows), out, "accuracy")
    plot_accuracy_sigmoids(fits, out / "accuracy_sigmoids", title=f"{shots}-shot accuracy vs loss across the members")
