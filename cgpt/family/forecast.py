"""Forecast a member from the smaller ones before it trains; grade it once it has.

Both the Prefect family flow (before and after each member) and the ``scaling`` stage (every member
at once, each from the members smaller than it) call these functions on the same point files, so
the flow's forecast of a member and the stage's ``predictions.json`` are the same numbers, and a
resumed flow recomputes exactly the forecast it made the first time.

* The loss law is :func:`cgpt.scaling.forecast_member`'s: ``form: auto`` uses the pure power law
  ``a·C^b`` below 5 points and the saturating ``a·C^b + c`` from 5 on (``docs/scaling.md``), and
  every forecast says which it used.
* Task accuracy (when the members have downstream results): the two-step method of the OLMo
  ladders — the forecast loss through a sigmoid Acc(loss) fitted across the smaller members.
* A member is flagged ``outside_interval`` when its loss lands outside the forecast's prediction
  interval, and ``worse_than_smaller`` when its loss is above the next smaller member's (a check
  that needs no interval, so it works from the second member on). A flag means "look at this run":
  its learning rate, its data, its compute count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cgpt.core.errors import DataError, ScalingError
from cgpt.family.params import FitParams
from cgpt.scaling.next_member import AccuracyComparison, Member, MemberForecast, compare_accuracies, forecast_member
from cgpt.scaling.prediction import MemberCheck, check_member

FLAG_OUTSIDE = "outside_interval"
FLAG_WORSE = "worse_than_smaller"


@dataclass
class Forecast:
    """What was predicted for one member before it trained, from the members smaller than it."""

    name: str
    metric: str
    forecast: MemberForecast
    from_members: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def law(self) -> str:
        """``saturating law from 5 members`` / ``power law from 3 members``."""
        return f"{self.forecast.loss_fit.form} law from {len(self.from_members)} members"

    def line(self) -> str:
        """``predicted f64: 3.2100 [3.1000, 3.3300] (saturating law from 4 members)``."""
        p = self.forecast.loss
        interval = f" [{p.low:.4f}, {p.high:.4f}]" if p.has_interval else " (no interval: " + p.note + ")"
        return f"predicted {self.name}: {self.metric} xent {p.loss:.4f}{interval} ({self.law})"

    def accuracy_line(self) -> str:
        acc = self.forecast.accuracy
        if not acc:
            return ""
        mean = sum(a.accuracy for a in acc.values()) / len(acc)
        return f"predicted {self.name} accuracy (two-step, {len(acc)} tasks, mean {mean:.3f}): " + ", ".join(
            f"{t} {a.accuracy:.3f}" for t, a in acc.items()
        )

    def to_dict(self) -> dict[str, Any]:
        f = self.forecast
        return {
            "name": self.name,
            "metric": self.metric,
            "compute": f.compute,
            "from_members": self.from_members,
            "law": self.law,
            "equation": f.loss_fit.equation(),
            "loss": f.loss.to_dict(),
            "accuracy": {t: p.to_dict() for t, p in f.accuracy.items()},
            "notes": self.notes + list(f.loss_fit.notes),
        }


@dataclass
class Outcome:
    """A trained member against its forecast: the check, the flags, the accuracy comparison."""

    name: str
    loss: float
    forecast: Forecast | None
    check: MemberCheck | None
    flags: list[str]
    accuracy: AccuracyComparison | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def line(self) -> str:
        """``f64: val xent 3.2500 vs predicted 3.2100 [3.1000, 3.3300]: inside``."""
        metric = self.forecast.metric if self.forecast else "loss"
        if self.forecast is None or self.check is None:
            text = f"{self.name}: {metric} xent {self.loss:.4f} (no forecast: fewer than 2 smaller members)"
        else:
            c = self.check
            interval = f" [{c.low:.4f}, {c.high:.4f}]" if c.low is not None else ""
            where = {True: "inside", False: "OUTSIDE the interval", None: "no interval"}[c.inside]
            text = f"{self.name}: {metric} xent {self.loss:.4f} vs predicted {c.predicted:.4f}{interval}: {where}"
        if self.accuracy is not None:
            text += f"; accuracy MAE {self.accuracy.mae:.3f} over {len(self.accuracy.error)} tasks"
        if self.flags:
            text += f" — FLAGGED ({', '.join(self.flags)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "loss": self.loss,
            "forecast": self.forecast.to_dict() if self.forecast else None,
            "check": self.check.to_dict() if self.check else None,
            "flags": self.flags,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
        }


def forecast_next(smaller: Sequence[Member], compute: float, name: str, fit: FitParams) -> Forecast | None:
    """The forecast of member ``name`` (training FLOPs ``compute``) from ``smaller`` (already trained,
    smallest first); None with fewer than 2 of them. Task accuracies are forecast when the smaller
    members have them; if their sigmoids cannot be fitted, the loss forecast stands alone (noted)."""
    if len(smaller) < 2:
        return None
    kw = dict(name=name, level=fit.level, form=fit.form, sigma_known=fit.sigma_known)
    notes: list[str] = []
    try:
        fc = forecast_member(list(smaller), compute, **kw)
    except ScalingError as exc:
        if not any(m.accuracy for m in smaller):
            raise
        notes.append(f"no accuracy forecast: {exc}")
        fc = forecast_member([Member(m.name, m.compute, m.loss) for m in smaller], compute, **kw)
    return Forecast(name=name, metric=fit.metric, forecast=fc, from_members=[m.name for m in smaller], notes=notes)


def grade(member: Member, forecast: Forecast | None, smaller: Member | None) -> Outcome:
    """Compare a trained member with its forecast (and with the next smaller member)."""
    flags: list[str] = []
    check = acc = None
    if forecast is not None:
        check = check_member(forecast.forecast.loss, member.loss)
        if check.flagged:
            flags.append(FLAG_OUTSIDE)
        if forecast.forecast.accuracy and member.accuracy:
            try:
                acc = compare_accuracies(forecast.forecast, member.accuracy)
            except ScalingError:
                acc = None  # no task both predicted and measured
    if smaller is not None and member.loss > smaller.loss:
        flags.append(FLAG_WORSE)
    return Outcome(name=member.name, loss=member.loss, forecast=forecast, check=check, flags=flags, accuracy=acc)


def replay(members: Sequence[Member], fit: FitParams) -> list[Outcome]:
    """Every member graded against the forecast made from the members smaller than it (smallest first):
    what the family flow saw, member by member."""
    out = []
    for k, m in enumerate(members):
        fc = forecast_next(members[:k], m.compute, m.name, fit)
        out.append(grade(m, fc, members[k - 1] if k else None))
    return out


def point_member(point: dict[str, Any], metric: str, shots: int) -> Member:
    """A point as :class:`cgpt.scaling.Member`: (name, FLOPs, ``<metric>_xent``, accuracies at ``shots``)."""
    loss = point.get(f"{metric}_xent")
    if loss is None:
        raise DataError(
            f"member {point['name']}: no {metric} cross-entropy in its point; add {metric} to evaluate.splits "
            f"or set family.fit.metric to the split it has"
        )
    return Member(point["name"], float(point["compute"]), float(loss), dict(point["accuracy"].get(str(shots), {})))
