"""Step 2 of the two-step downstream prediction: accuracy as a bounded sigmoid of the loss.

Reference: Bhagia et al. 2024, "Establishing Task Scaling Laws via Compute-Efficient Model Ladders"
(arXiv 2412.04403; code: github.com/allenai/OLMo-ladder, ``src/scaling/fitting_functions.py::sigmoid``
and ``src/fitting/step2.py::fit_step2``). Step 1 predicts a loss from compute (here
:mod:`cgpt.scaling.power_law`); step 2 maps loss to accuracy with

    Acc(L) = a / (1 + exp(-k (L - L0))) + b,    a ≤ 0, k ≥ 0        (their form and bounds)

which we write with named asymptotes, ``Acc(L) = floor + (ceiling - floor) / (1 + exp(k (L - L0)))``,
so ``a = floor - ceiling`` and ``b = ceiling``: accuracy falls from ``ceiling`` (loss → -inf) to
``floor`` (loss → +inf), ``L0`` is the midpoint and ``k`` the steepness. What we follow and where we
differ, and why:

* Their x is a task loss (bits per byte of the correct answer); ours is the Pile test cross-entropy,
  the only loss the card gives per member (their C4-loss variant, ``-x c4``, is the same idea).
* The ceiling: they add a helper point (L = 0, Acc = task maximum, 1.0 by default) and bound
  ``b ≤ 1``; on our 6–7 points that pins the ceiling at 1.0, so we fix ``ceiling = 1.0`` outright and
  save the parameter (their ``task_maximum`` can be passed as ``ceiling``).
* The floor is the asymptote of a model that knows nothing: the chance level of the task (see
  :data:`CHANCE_ACCURACY`) is its natural value, used as the start of the fit (or the lowest
  accuracy, if that is lower) and as the fixed floor when the points are too few to fit it (fewer
  than :data:`~cgpt.scaling.rules.MIN_POINTS_FREE_FLOOR`). With more points the floor is fitted in
  ``[0, ceiling)`` — like theirs, which only bound ``a`` to [-1, 0] — because weak models can score
  *below* chance and the card shows it: ARC-Challenge 0.166 and OpenBookQA 0.118 at 111M. A likely
  reason (not checked on these models): both datasets kept only questions that a retrieval and a
  word co-occurrence baseline answer wrongly, so the distractors attract weak models. A floor held
  at chance cannot pass through those points and wrecks the fit (13B leave-out MAE 0.11 instead of
  0.017; ``floor="chance"`` reproduces it).
* Least squares (scipy ``least_squares``, bounded, several starts like their list of ``p0``s) on the
  member points; they fit many intermediate checkpoints per ladder model, we only have final members.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import least_squares

from cgpt.core.errors import ScalingError
from cgpt.scaling.prediction import LossPrediction
from cgpt.scaling.rules import MIN_POINTS_FREE_FLOOR

#: Accuracy of uniform guessing per task (lm-eval task names), i.e. 1 / number of answer choices, from
#: the task definitions (shared/spec/lm-eval-procedures.md section 1.2): HellaSwag 4 endings; PIQA 2
#: solutions; WinoGrande 2 options; ARC-Easy/Challenge mostly 4 choices, some questions 3 or 5 (so
#: ≈0.25, not exact); OpenBookQA 4 choices; LAMBADA is open-vocabulary last-word prediction, so 0.
CHANCE_ACCURACY: dict[str, float] = {
    "hellaswag": 0.25,
    "piqa": 0.5,
    "winogrande": 0.5,
    "lambada_openai": 0.0,
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "openbookqa": 0.25,
}
DEFAULT_CEILING = 1.0
K_BOUNDS = (1e-3, 100.0)
FloorChoice = Literal["auto", "fit", "chance"]


@dataclass
class SigmoidFit:
    """Fitted ``Acc(L)`` for one task (``to_dict`` is plain JSON; ``a``/``b`` in Bhagia et al.'s form)."""

    task: str
    floor: float
    ceiling: float
    l0: float
    k: float
    floor_mode: Literal["fitted", "chance", "fixed"]
    chance: float | None
    stderr: dict[str, float] | None
    n_points: int
    dof: int
    sigma: float | None
    loss: list[float]
    accuracy: list[float]
    fitted: list[float]
    residuals: list[float]
    at_bounds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def a(self) -> float:
        return self.floor - self.ceiling

    @property
    def b(self) -> float:
        return self.ceiling

    def predict(self, loss: float | np.ndarray) -> float | np.ndarray:
        out = accuracy_sigmoid(np.asarray(loss, dtype=float), self.floor, self.ceiling, self.l0, self.k)
        return float(out) if np.ndim(out) == 0 else out

    def equation(self) -> str:
        span = self.ceiling - self.floor
        return f"Acc(L) = {self.floor:.3f} + {span:.3f} / (1 + exp({self.k:.3g}·(L - {self.l0:.4g})))"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(a=self.a, b=self.b, equation=self.equation())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SigmoidFit:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class AccuracyPrediction:
    """Predicted accuracy at a predicted loss; ``low``/``high`` are the accuracies at the loss interval's ends.

    That range carries the loss uncertainty only, not the sigmoid's own fit error (``sigmoid_sigma``,
    the residual scale of the accuracy fit, is reported next to it for that).
    """

    task: str
    loss: float
    accuracy: float
    low: float | None
    high: float | None
    sigmoid_sigma: float | None
    floor_mode: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_sigmoid(L: np.ndarray, floor: float, ceiling: float, l0: float, k: float) -> np.ndarray:
    """Accuracy at loss ``L``: ``floor + (ceiling - floor) / (1 + exp(k (L - l0)))`` (overflow-safe)."""
    z = np.clip(k * (L - l0), -500, 500)
    return floor + (ceiling - floor) / (1.0 + np.exp(z))


def fit_accuracy_sigmoid(
    loss: list[float] | np.ndarray,
    accuracy: list[float] | np.ndarray,
    *,
    task: str,
    chance: float | None = None,
    floor: FloorChoice | float = "auto",
    ceiling: float = DEFAULT_CEILING,
) -> SigmoidFit:
    """Fit accuracy against loss across members for one task.

    ``chance`` defaults to :data:`CHANCE_ACCURACY` for known tasks. ``floor``: ``auto`` (fitted from
    :data:`MIN_POINTS_FREE_FLOOR` points on, else chance), ``fit``, ``chance``, or a number to hold it at.
    """
    x, y = np.asarray(loss, dtype=float), np.asarray(accuracy, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ScalingError(f"{task}: loss and accuracy must be equal-length lists (got {x.size} and {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(y < 0) or np.any(y > 1):
        raise ScalingError(f"{task}: losses must be finite and accuracies within [0, 1]")
    if chance is None:
        chance = CHANCE_ACCURACY.get(task)
    if not 0 < ceiling <= 1:
        raise ScalingError(f"{task}: ceiling must be in (0, 1] (got {ceiling})")
    if isinstance(floor, str) and floor not in ("auto", "fit", "chance"):
        raise ScalingError(f"{task}: floor={floor!r}; expected auto, fit, chance or a number")
    notes: list[str] = []
    if floor == "auto":
        floor = "fit" if x.size >= MIN_POINTS_FREE_FLOOR or chance is None else "chance"
        if floor == "chance":
            notes.append(f"{x.size} points < {MIN_POINTS_FREE_FLOOR}: floor held at chance {chance}")
    if floor == "chance" and chance is None:
        raise ScalingError(f"{task}: no chance level known; pass chance= or a number as floor=")
    mode: Literal["fitted", "chance", "fixed"]
    if floor == "fit":
        mode, fixed_floor = "fitted", None
    elif floor == "chance":
        mode, fixed_floor = "chance", float(chance)  # type: ignore[arg-type]
    else:
        mode, fixed_floor = "fixed", float(floor)
    n_free = 2 if fixed_floor is not None else 3
    if x.size < n_free or np.unique(x).size < 2:
        raise ScalingError(f"{task}: the sigmoid needs at least {n_free} points at two or more losses (got {x.size})")
    if fixed_floor is not None and not 0 <= fixed_floor < ceiling:
        raise ScalingError(f"{task}: floor {fixed_floor} must be in [0, ceiling={ceiling})")

    def unpack(th: np.ndarray) -> tuple[float, float, float]:
        return (fixed_floor, th[0], th[1]) if fixed_floor is not None else (th[0], th[1], th[2])

    def resid(th: np.ndarray) -> np.ndarray:
        f, l0, k = unpack(th)
        return accuracy_sigmoid(x, f, ceiling, l0, k) - y

    span = float(x.max() - x.min())
    l0_lo, l0_hi = float(x.min() - 10 * span), float(x.max() + 10 * span)
    lo = [l0_lo, K_BOUNDS[0]]
    hi = [l0_hi, K_BOUNDS[1]]
    floor_start = chance if chance is not None else float(y.min())
    if fixed_floor is None:
        lo, hi = [0.0, *lo], [ceiling - 1e-6, *hi]
    best = None
    floor0 = min(max(floor_start, 0.0), float(y.min()))
    for l0 in (float(x.min()) - span / 2, float(np.median(x)), float(x.max()) + span / 2):
        for k in (1.0, 3.0, 10.0):
            start = [l0, k] if fixed_floor is not None else [floor0, l0, k]
            start = np.clip(start, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
            res = least_squares(resid, start, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=5000)
            if best is None or res.cost < best.cost:
                best = res
    th = best.x
    names = (["floor"] if fixed_floor is None else []) + ["l0", "k"]
    at = []
    for i, (nm, v, l_, h) in enumerate(zip(names, th, lo, hi)):
        if min(v - l_, h - v) <= 1e-6 * max(1.0, abs(l_), abs(h)):
            at.append(nm)
            th[i] = l_ if v - l_ <= h - v else h  # report the bound itself
    f, l0, k = unpack(th)
    fitted = accuracy_sigmoid(x, f, ceiling, l0, k)
    r = y - fitted
    dof = x.size - n_free
    sigma = math.sqrt(float(np.sum(r**2)) / dof) if dof > 0 else None
    stderr = None
    if sigma is not None:
        jac = best.jac
        free = [i for i, nm in enumerate(names) if nm not in at]
        jtj = jac[:, free].T @ jac[:, free]
        if free and np.linalg.matrix_rank(jtj) == len(free) and np.linalg.cond(jtj) < 1e12:
            cov = sigma**2 * np.linalg.inv(jtj)
            stderr = {names[i]: float(math.sqrt(max(cov[j, j], 0.0))) for j, i in enumerate(free)}
        else:
            notes.append("covariance singular: no standard errors")
    else:
        notes.append(f"{x.size} points for {n_free} parameters: exact fit, no residual scale")
    if at:
        notes.append(f"at a bound: {', '.join(at)}")
    return SigmoidFit(
        task=task,
        floor=float(f),
        ceiling=float(ceiling),
        l0=float(l0),
        k=float(k),
        floor_mode=mode,
        chance=chance,
        stderr=stderr,
        n_points=int(x.size),
        dof=dof,
        sigma=sigma,
        loss=x.tolist(),
        accuracy=y.tolist(),
        fitted=fitted.tolist(),
        residuals=r.tolist(),
        at_bounds=at,
        notes=notes,
    )


def predict_accuracy(fit: SigmoidFit, loss: LossPrediction | float) -> AccuracyPrediction:
    """Accuracy at a (predicted) loss; with a :class:`LossPrediction`, also at its interval's ends."""
    if isinstance(loss, LossPrediction):
        centre, lo_loss, hi_loss = loss.loss, loss.low, loss.high
    else:
        centre, lo_loss, hi_loss = float(loss), None, None
    low = high = None
    if lo_loss is not None and hi_loss is not None:  # accuracy falls with loss: the high loss gives the low accuracy
        low, high = float(fit.predict(hi_loss)), float(fit.predict(lo_loss))
    return AccuracyPrediction(
        task=fit.task,
        loss=centre,
        accuracy=float(fit.predict(centre)),
        low=low,
        high=high,
        sigmoid_sigma=fit.sigma,
        floor_mode=fit.floor_mode,
    )
