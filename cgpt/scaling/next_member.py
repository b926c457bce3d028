"""Forecast the next member of a series of models from the members trained so far; then grade it.

A member is a point (name, training compute, loss, task accuracies); nothing here knows the
project's family (``cgpt.family.forecast`` turns its point files into members and calls these).
Typical use, smallest member first (see ``docs/scaling.md``)::

    members: list[Member] = []
    for preset in family:
        compute = preset_training_flops(preset)
        if len(members) >= 2:
            forecast = forecast_member(members, compute, name=preset.name)   # before training
        ...train and evaluate...
        members.append(Member(preset.name, compute, val_loss, accuracy))
        if forecast: check = check_member(forecast.loss, val_loss); acc = compare_accuracies(forecast, accuracy)

Every step is a plain function of the points, so a rerun with the same members gives the same
forecast (what DVC's caching expects), and every result serialises with ``to_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cgpt.core.errors import ScalingError
from cgpt.scaling.accuracy import AccuracyPrediction, FloorChoice, SigmoidFit, fit_accuracy_sigmoid, predict_accuracy
from cgpt.scaling.power_law import FormChoice, PowerLawFit, fit_power_law
from cgpt.scaling.prediction import LossPrediction, predict_loss
from cgpt.scaling.rules import DEFAULT_LEVEL


@dataclass
class Member:
    """One trained family member: its training compute (FLOPs), its loss, its task accuracies (and,
    when known, how many documents each was measured on: what tells chance from signal)."""

    name: str
    compute: float
    loss: float
    accuracy: dict[str, float] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)
    #: the step whose training loss was not finite, for a member stopped there (train.on_divergence)
    diverged_at_step: int | None = None


@dataclass
class MemberForecast:
    """Everything predicted for one member before training it, and the fits behind it."""

    name: str | None
    compute: float
    loss: LossPrediction
    accuracy: dict[str, AccuracyPrediction]
    loss_fit: PowerLawFit
    accuracy_fits: dict[str, SigmoidFit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "compute": self.compute,
            "loss": self.loss.to_dict(),
            "accuracy": {t: p.to_dict() for t, p in self.accuracy.items()},
            "loss_fit": self.loss_fit.to_dict(),
            "accuracy_fits": {t: f.to_dict() for t, f in self.accuracy_fits.items()},
        }


@dataclass
class AccuracyComparison:
    """Predicted vs actual accuracy per task and the mean absolute error over the tasks compared."""

    name: str | None
    predicted: dict[str, float]
    actual: dict[str, float]
    error: dict[str, float]
    mae: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "predicted": self.predicted,
            "actual": self.actual,
            "error": self.error,
            "mae": self.mae,
        }


def fit_loss_law(
    members: Sequence[Member], *, form: FormChoice = "auto", sigma_known: float | None = None
) -> PowerLawFit:
    """Step 1's law on the members' (compute, loss)."""
    return fit_power_law(
        [m.compute for m in members],
        [m.loss for m in members],
        form=form,
        names=[m.name for m in members],
        sigma_known=sigma_known,
    )


def fit_accuracy_laws(
    members: Sequence[Member], *, floor: FloorChoice | float = "auto", tasks: Sequence[str] | None = None
) -> dict[str, SigmoidFit]:
    """Step 2's sigmoid per task, on the members that report that task."""
    if tasks is None:
        tasks = list(dict.fromkeys(t for m in members for t in m.accuracy))
    fits = {}
    for task in tasks:
        have = [m for m in members if task in m.accuracy]
        fits[task] = fit_accuracy_sigmoid(
            [m.loss for m in have], [m.accuracy[task] for m in have], task=task, floor=floor
        )
    return fits


def forecast_member(
    members: Sequence[Member],
    compute: float,
    *,
    name: str | None = None,
    level: float = DEFAULT_LEVEL,
    form: FormChoice = "auto",
    sigma_known: float | None = None,
    floor: FloorChoice | float = "auto",
    tasks: Sequence[str] | None = None,
) -> MemberForecast:
    """Predict a member's loss (with its interval) and task accuracies from the members trained so far."""
    if len(members) < 2:
        raise ScalingError(f"forecasting needs at least 2 trained members (got {len(members)})")
    loss_fit = fit_loss_law(members, form=form, sigma_known=sigma_known)
    loss = predict_loss(loss_fit, compute, level=level, name=name)
    acc_fits = fit_accuracy_laws(members, floor=floor, tasks=tasks) if any(m.accuracy for m in members) else {}
    acc = {t: predict_accuracy(f, loss) for t, f in acc_fits.items()}
    return MemberForecast(
        name=name, compute=float(compute), loss=loss, accuracy=acc, loss_fit=loss_fit, accuracy_fits=acc_fits
    )


def compare_accuracies(forecast: MemberForecast, actual: dict[str, float]) -> AccuracyComparison:
    """Predicted minus actual accuracy for the tasks both have, and their mean absolute error."""
    tasks = [t for t in forecast.accuracy if t in actual]
    if not tasks:
        raise ScalingError("no task is both predicted and measured")
    pred = {t: forecast.accuracy[t].accuracy for t in tasks}
    err = {t: pred[t] - actual[t] for t in tasks}
    return AccuracyComparison(
        name=forecast.name,
        predicted=pred,
        actual={t: actual[t] for t in tasks},
        error=err,
        mae=float(np.mean(np.abs(list(err.values())))),
    )
