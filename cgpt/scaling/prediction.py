"""Predict the next member's loss with a prediction interval, and flag a member that lands outside it.

The interval (the family flow's "is this run going well?" check) is the delta method plus the
residual scale, with Student-t quantiles:

    loss ± t_{(1+level)/2, n-p} · sqrt(gᵀ Cov g + s²),   Cov = s² (JᵀJ)⁻¹,  g = dL/dθ at the new compute

* ``gᵀ Cov g`` is the uncertainty of the fitted curve at the new compute, which grows with the
  distance of the extrapolation; ``s²`` is the scatter of one new member around the law.
* With few points the residual scale ``s`` is itself uncertain; the t quantile on n - p degrees of
  freedom accounts for that (t_{0.975} is 12.7 at 1 dof, 4.3 at 2, 2.8 at 4) instead of pretending
  s is known. For the pure power law in nats the interval is exact up to the linearisation of
  ``exp``; for the saturating law it is a first-order approximation whose coverage on synthetic
  data is checked by ``tests/unit/scaling/test_scaling_intervals.py`` (a seeded Monte-Carlo run).
* The nominal level defaults to 95%. What the interval does *not* cover: a law of the wrong form
  (the curve bending in a way no member so far showed) and a run whose compute convention differs
  from the fitted points' (see ``docs/scaling.md``, FLOPs). A member outside the interval means
  "look at this run", not "this run is broken".
* A parameter on a bound is held fixed there (the fit's ``notes`` say so), which narrows the
  interval a little; no interval at all when there is no residual scale (as many points as
  parameters and no ``sigma_known``) or when ``JᵀJ`` is singular; the prediction says which.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from cgpt.core.errors import ScalingError
from cgpt.scaling.power_law import PowerLawFit
from cgpt.scaling.rules import DEFAULT_LEVEL

METHOD = "delta method + residual scale; Student-t quantile on n-p dof (normal when the scale is sigma_known)"


@dataclass
class LossPrediction:
    """A predicted loss at ``compute`` with its prediction interval (``low``/``high`` None: see ``note``)."""

    compute: float
    loss: float
    low: float | None
    high: float | None
    level: float
    form: str
    n_points: int
    dof: int
    stderr_curve: float | None
    sigma: float | None
    quantile: float | None
    method: str = METHOD
    name: str | None = None
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MemberCheck:
    """A trained member's actual loss against its prediction: ``flagged`` when outside the interval."""

    name: str | None
    compute: float
    predicted: float
    actual: float
    error: float
    low: float | None
    high: float | None
    level: float
    inside: bool | None
    flagged: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        who = self.name or f"{self.compute:.3g} FLOPs"
        if self.inside is None:
            return f"{who}: loss {self.actual:.4f}, predicted {self.predicted:.4f} (not checked: {self.note})"
        where = "inside" if self.inside else "OUTSIDE"
        return (
            f"{who}: loss {self.actual:.4f}, predicted {self.predicted:.4f} "
            f"[{self.level:.0%} PI {self.low:.4f}, {self.high:.4f}]: {where}"
        )


def predict_loss(
    fit: PowerLawFit, compute: float, *, level: float = DEFAULT_LEVEL, name: str | None = None
) -> LossPrediction:
    """Predicted loss at ``compute`` (FLOPs, same convention as the fit's points) and its interval."""
    if not 0 < level < 1:
        raise ScalingError(f"level must be between 0 and 1 (got {level})")
    if not (compute > 0 and math.isfinite(compute)):
        raise ScalingError(f"compute must be a positive number of FLOPs (got {compute})")
    loss = float(fit.predict(compute))
    sigma = fit.sigma_used
    base = dict(
        compute=float(compute), loss=loss, level=level, form=fit.form, n_points=fit.n_points, dof=fit.dof, name=name
    )
    why = None
    if sigma is None:
        why = f"no residual scale ({fit.n_points} points for {fit.n_params} parameters); pass sigma_known"
    elif fit.inv_jtj is None:
        why = "covariance singular"
    if why is not None:
        return LossPrediction(low=None, high=None, stderr_curve=None, sigma=sigma, quantile=None, note=why, **base)
    g = fit.gradient(compute)
    var_curve = float(g @ (sigma**2 * np.asarray(fit.inv_jtj)) @ g)
    se_curve = math.sqrt(max(var_curve, 0.0))
    half_level = (1 + level) / 2
    if fit.scale == "known":
        q, note = float(stats.norm.ppf(half_level)), f"known scale sigma_known={sigma:.3g}: normal quantile"
    else:
        q, note = float(stats.t.ppf(half_level, fit.dof)), ""
    half = q * math.sqrt(var_curve + sigma**2)
    return LossPrediction(
        low=loss - half, high=loss + half, stderr_curve=se_curve, sigma=sigma, quantile=q, note=note, **base
    )


def check_member(prediction: LossPrediction, actual: float) -> MemberCheck:
    """Compare a trained member's loss with the prediction made before training it."""
    if not math.isfinite(actual):
        raise ScalingError(f"actual loss must be a finite number (got {actual})")
    inside = None
    note = prediction.note
    if prediction.has_interval:
        inside = bool(prediction.low <= actual <= prediction.high)
        note = "" if inside else ("above" if actual > prediction.high else "below") + " the prediction interval"
    return MemberCheck(
        name=prediction.name,
        compute=prediction.compute,
        predicted=prediction.loss,
        actual=float(actual),
        error=float(actual) - prediction.loss,
        low=prediction.low,
        high=prediction.high,
        level=prediction.level,
        inside=inside,
        flagged=inside is False,
        note=note,
    )
