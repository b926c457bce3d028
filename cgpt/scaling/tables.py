"""Result tables as pandas DataFrames, written as CSV (for DVC plots / spreadsheets) and Markdown (for docs).

Each builder takes result objects from :mod:`cgpt.scaling` and returns a DataFrame with plain
columns, so the family flow can concatenate, log to MLflow (``mlflow.log_table``) or write them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cgpt.core.fsutil import write_text_atomic
from cgpt.scaling.card_law import ReferenceLaw
from cgpt.scaling.next_member import AccuracyComparison, MemberForecast
from cgpt.scaling.power_law import PowerLawFit
from cgpt.scaling.prediction import MemberCheck


def coefficients_table(fits: Mapping[str, PowerLawFit], references: Sequence[ReferenceLaw] = ()) -> pd.DataFrame:
    """One row per law: form, a, b, c, the paper's f0 and beta, standard errors, points and residual scale;
    reference laws get their largest residual on the first fit's points."""
    rows = []
    for label, f in fits.items():
        se = f.stderr or {}
        rows.append(
            {
                "law": label,
                "form": f.form,
                "a": f.a,
                "b": f.b,
                "c": f.c,
                "f0": f.f0,
                "beta": f.beta,
                "se_a": se.get("a"),
                "se_b": se.get("b"),
                "se_c": se.get("c"),
                "se_log10_f0": se.get("log10_f0"),
                "n_points": f.n_points,
                "dof": f.dof,
                "sigma": f.sigma,
                "max_abs_resid": max(map(abs, f.residuals)),
            }
        )
    first = next(iter(fits.values()), None)
    for r in references:
        row = {
            "law": r.label,
            "form": "saturating" if r.c else "power",
            "a": r.a,
            "b": r.b,
            "c": r.c,
            "f0": r.f0,
            "beta": r.beta,
        }
        if first is not None:  # the reference law's residuals on the same points
            row["max_abs_resid"] = max(abs(y - r.predict(c)) for c, y in zip(first.compute, first.loss))
        rows.append(row)
    return pd.DataFrame(rows)


def points_table(fit: PowerLawFit, references: Sequence[ReferenceLaw] = ()) -> pd.DataFrame:
    """The fitted points: compute, loss, our fitted value and residual, and each reference law's."""
    df = pd.DataFrame(
        {
            "name": fit.names or [f"#{i}" for i in range(fit.n_points)],
            "compute": fit.compute,
            "loss": fit.loss,
            "fit": fit.fitted,
            "resid": fit.residuals,
        }
    )
    for r in references:
        pred = [r.predict(c) for c in fit.compute]
        df[r.label] = pred
        df[f"resid {r.label}"] = [y - p for y, p in zip(fit.loss, pred)]
    return df


def checks_table(checks: Sequence[MemberCheck]) -> pd.DataFrame:
    """Predicted vs actual loss per member, the interval and whether the member was flagged."""
    return pd.DataFrame(
        [
            {
                "name": c.name,
                "compute": c.compute,
                "predicted": c.predicted,
                "low": c.low,
                "high": c.high,
                "level": c.level,
                "actual": c.actual,
                "error": c.error,
                "inside": c.inside,
                "flagged": c.flagged,
            }
            for c in checks
        ]
    )


def accuracy_table(forecast: MemberForecast, comparison: AccuracyComparison | None = None) -> pd.DataFrame:
    """Per task: chance, the sigmoid's floor (and how it was set), predicted accuracy and range, actual, error."""
    rows = []
    for task, p in forecast.accuracy.items():
        f = forecast.accuracy_fits[task]
        row = {
            "task": task,
            "chance": f.chance,
            "floor": f.floor,
            "floor_mode": f.floor_mode,
            "l0": f.l0,
            "k": f.k,
            "sigmoid_rms": _rms(f.residuals),
            "predicted": p.accuracy,
            "low": p.low,
            "high": p.high,
        }
        if comparison is not None and task in comparison.actual:
            row.update(actual=comparison.actual[task], error=comparison.error[task])
        rows.append(row)
    return pd.DataFrame(rows)


def _rms(values: Sequence[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def write_table(df: pd.DataFrame, out_dir: Path, stem: str, *, floatfmt: str = ".6g") -> list[Path]:
    """``<stem>.csv`` (full precision) and ``<stem>.md`` (``floatfmt``); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    write_text_atomic(csv, df.to_csv(index=False))
    shown = df.astype(object).where(df.notna(), None)  # empty cells print as "-", not "nan"
    write_text_atomic(md, shown.to_markdown(index=False, floatfmt=floatfmt, missingval="-") + "\n")
    return [csv, md]
