"""Forecast a member from the smaller ones before it trains; grade it once it has.

Both the Prefect family flow (before and after each member) and the ``scaling`` stage (every member
at once, each from the members smaller than it) call these functions on the same point files, so
the flow's forecast of a member and the stage's ``predictions.json`` are the same numbers, and a
resumed flow recomputes exactly the forecast it made the first time.

* The loss law is :func:`cgpt.scaling.forecast_member`'s: ``form: auto`` uses the pure power law
  ``a·C^b`` below 5 points and the saturating ``a·C^b + c`` from 5 on, or the log-linear
  ``a + b·ln C`` when that fit puts ``c`` on 0 (``docs/scaling.md``), and every forecast says which
  it used.
* Task accuracy (when the members have downstream results): the two-step method of the OLMo
  ladders — the forecast loss through a sigmoid Acc(loss) fitted across the smaller members.
* A member is flagged ``outside_interval`` when its loss lands outside the forecast's prediction
  interval, and ``worse_than_smaller`` when its loss is above the next smaller member's (a check
  that needs no interval, so it works from the second member on). A flag means "look at this run":
  its learning rate, its data, its compute count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cgpt.core.errors import DataError, ScalingError
from cgpt.family.params import FitParams
from cgpt.scaling.accuracy import CHANCE_ACCURACY
from cgpt.scaling.next_member import AccuracyComparison, Member, MemberForecast, compare_accuracies, forecast_member
from cgpt.scaling.prediction import MemberCheck, check_member

NO_FORECAST_AT_CHANCE = "no forecast: members at chance"
FLAG_OUTSIDE = "outside_interval"
FLAG_WORSE = "worse_than_smaller"
FLAG_DIVERGED = "diverged"
#: flags that keep a member out of the law the next members are forecast from (and out of the final
#: fit): its loss says more about its run (a learning rate too high, a NaN) than about scale
EXCLUDING_FLAGS = (FLAG_DIVERGED, FLAG_WORSE)


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
        """The two-step accuracy forecast, and the tasks left out because every smaller member
        guessed (``hellaswag: no forecast: members at chance``); empty without downstream results."""
        acc = self.forecast.accuracy
        parts = [f"{self.name} accuracy: {n}" for n in self.notes if n.startswith(NO_FORECAST_AT_CHANCE)]
        if acc:
            mean = sum(a.accuracy for a in acc.values()) / len(acc)
            parts.insert(
                0,
                f"predicted {self.name} accuracy (two-step, {len(acc)} tasks, mean {mean:.3f}): "
                + ", ".join(f"{t} {a.accuracy:.3f}" for t, a in acc.items()),
            )
        return "; ".join(parts)

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

    @property
    def in_law(self) -> bool:
        """Whether later forecasts and the final law use this member (not diverged, not worse than smaller)."""
        return not any(f in EXCLUDING_FLAGS for f in self.flags)

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
    kw: dict[str, Any] = dict(name=name, level=fit.level, form=fit.form, sigma_known=fit.sigma_known)
    notes: list[str] = []
    tasks = list(dict.fromkeys(t for m in smaller for t in m.accuracy))
    chance = [t for t in tasks if at_chance(smaller, t)]
    if chance:
        notes.append(f"{NO_FORECAST_AT_CHANCE}: {', '.join(chance)}")
        kw["tasks"] = [t for t in tasks if t not in chance]
    try:
        fc = forecast_member(list(smaller), compute, **kw)
    except ScalingError as exc:
        if not any(m.accuracy for m in smaller):
            raise
        notes.append(f"no accuracy forecast: {exc}")
        kw.pop("tasks", None)
        fc = forecast_member([Member(m.name, m.compute, m.loss) for m in smaller], compute, **kw)
    return Forecast(name=name, metric=fit.metric, forecast=fc, from_members=[m.name for m in smaller], notes=notes)


def grade(member: Member, forecast: Forecast | None, smaller: Member | None) -> Outcome:
    """Compare a trained member with its forecast (and with the next smaller member in the law)."""
    flags: list[str] = [FLAG_DIVERGED] if member.diverged_at_step is not None else []
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
    if smaller is not None and (not math.isfinite(member.loss) or member.loss > smaller.loss):
        flags.append(FLAG_WORSE)
    return Outcome(name=member.name, loss=member.loss, forecast=forecast, check=check, flags=flags, accuracy=acc)


def replay(members: Sequence[Member], fit: FitParams) -> list[Outcome]:
    """Every member graded against the forecast made from the members smaller than it (smallest first)
    that stay in the law (:data:`EXCLUDING_FLAGS`): what the family flow saw, member by member."""
    out: list[Outcome] = []
    law: list[Member] = []
    for m in members:
        fc = forecast_next(law, m.compute, m.name, fit)
        outcome = grade(m, fc, law[-1] if law else None)
        out.append(outcome)
        if outcome.in_law:
            law.append(m)
    return out


def point_member(point: dict[str, Any], metric: str, shots: int) -> Member:
    """A point as :class:`cgpt.scaling.Member`: (name, FLOPs, ``<metric>_xent``, accuracies at ``shots``)."""
    loss = point.get(f"{metric}_xent")
    if loss is None:
        raise DataError(
            f"member {point['name']}: no {metric} cross-entropy in its point; add {metric} to evaluate.splits "
            f"or set family.fit.metric to the split it has"
        )
    docs = point.get("accuracy_documents", {}).get(str(shots), {})
    return Member(
        point["name"],
        float(point["compute"]),
        float(loss),
        dict(point["accuracy"].get(str(shots), {})),
        {t: int(n) for t, n in docs.items()},
        point.get("diverged_at_step"),
    )


def at_chance(members: Sequence[Member], task: str) -> bool:
    """Whether no member scores ``task`` measurably above chance: every accuracy within two standard
    errors of guessing (binomial, on the member's documents; 200 documents at chance 0.25: up to 0.311).
    A sigmoid fitted to such points has no slope to extrapolate: its forecast would be noise."""
    chance = CHANCE_ACCURACY.get(task)
    if chance is None or chance <= 0:  # LAMBADA: any correct answer is signal
        return False
    for m in members:
        if task not in m.accuracy:
            continue
        n = m.documents.get(task)
        if not n:
            return False  # documents unknown: cannot tell, forecast as before
        if m.accuracy[task] > chance + 2 * math.sqrt(chance * (1 - chance) / n):
            return False
    return True
