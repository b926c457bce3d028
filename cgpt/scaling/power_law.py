"""Loss-vs-compute laws: the saturating ``L(C) = a·C^b + c``, the pure power law ``L(C) = a·C^b`` and
the log-linear law ``L(C) = a + b·ln C``.

Why these three and when each (the rule :func:`choose_form` and :func:`fit_power_law` apply, recorded
in every result):

* ``saturating`` (b < 0, c < min L): the Cerebras-GPT paper's form, ``L = (C/f0)^-β + c`` with
  ``a = f0^β, b = -β``; ``c`` is the irreducible loss. Three parameters: ``form="auto"`` uses it from
  :data:`~cgpt.scaling.rules.MIN_POINTS_SATURATING` = 5 points on (2 residual dof).
  ``c`` may be negative. Points that bend *toward* a floor (convex in log-log, as the card's do)
  give ``c > 0``; points that bend *away* from any floor (concave in log-log: the loss falls faster
  than a power law as compute grows, as a family far above its irreducible loss does — the CPU
  family of docs/family.md, local log-log slopes -0.09 at its small end and -0.15 at its large end)
  give ``c < 0``. Then ``c`` is no irreducible loss, only the law's curvature, and the fit is a local
  description good for the next member's forecast, not for the asymptote. Holding ``c ≥ 0`` on such
  points (as cgpt did before) puts ``c`` on 0, the pure power law, which forecasts every larger
  member too high (the CPU family's largest: +0.068 nats; with ``c`` free +0.028).
* ``power`` (c = 0): a straight line in log-log, two parameters; ``auto`` uses it for 2–4 points.
* ``loglinear`` (``L = a + b·ln C``; ``b`` is nats per e-fold of compute, ``a`` the loss at 1 FLOP):
  the saturating law's limit as ``c -> -inf`` (``b -> 0`` with ``a·b`` fixed). ``auto`` uses it when the
  saturating fit's ``c`` runs to its lower bound (:data:`NEG_C_SCALE` × the largest loss below zero),
  where the three-parameter fit is that limit up to rounding but its covariance is not usable.

Why 5 and not 4: at 4 points the saturating law has 1 residual dof, so its t quantile is 12.7 and
its 95% interval for the next member is about 4× wider than the power law's, with no better
prediction — measured on 200 synthetic families drawn from the card's own law with 0.01-nat noise
(next-member coverage / median width / RMSE: power 0.94 / 0.107 / 0.016, saturating 0.97 / 0.41 /
0.019). At 5 points the power law's bias starts to show (coverage 0.885) while the saturating law
is back to nominal (0.955, width 0.14). On the card itself, 2.7B from the four smaller members:
power 1.846 [1.731, 1.960], saturating 1.877 [1.254, 2.500], actual 1.834.

How the fit works (stable on 3–7 points):

* Work in log-compute, centred: ``u = ln C - ln C_ref`` with ``ln C_ref`` the mean of ``ln C``, and fit
  ``L = exp(α + b·u) + c``. Centring makes α and b nearly uncorrelated, so the 3×3 normal matrix is
  well conditioned even though C spans 4 decades; ``a = exp(α - b·ln C_ref)``.
* Start values from a profile over ``c``: for each ``c`` on a grid in ``[-100·max L, min L)`` the model is a
  straight line ``ln(L - c) = α + b·u`` (closed form); the best line seeds a bounded trust-region
  least squares (scipy ``least_squares``) from there and from ``c = 0``; the lower cost wins.
* Residuals are in nats (observed minus fitted) for both forms, so one error model (independent,
  equal-variance errors in the loss) serves both, and the residual scale and the intervals of
  :mod:`cgpt.scaling.prediction` are in nats — the unit the family flow compares. The pure power law
  is seeded by the ordinary log-log line (what the spec's refit reports) and then refitted in nats,
  so its coefficients differ from the log-log line in the third digit.
* Standard errors: ``Cov = s² (JᵀJ)⁻¹`` with ``s² = RSS / (n - p)`` (or ``s = sigma_known``), mapped
  to ``a, b, c`` (and the paper's ``f0``) by the delta method. A parameter that ends on a bound is
  held fixed there (zero variance, noted in the result): the linearisation says nothing useful
  about it, and the others keep theirs. When ``n = p`` there is no residual scale (no standard
  errors unless ``sigma_known`` is given); when ``JᵀJ`` is singular the result says so and reports
  none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from cgpt.core.errors import ScalingError
from cgpt.scaling.rules import MIN_POINTS_SATURATING

Form = Literal["saturating", "power", "loglinear"]
FormChoice = Literal["auto", "saturating", "power", "loglinear"]

#: The saturating law's ``c`` is bounded below by ``-NEG_C_SCALE * max(L)``: a fit that runs there is
#: the log-linear limit (``auto`` refits it as such).
NEG_C_SCALE = 100.0
#: Exponent bounds: b < 0 (loss falls with compute); -3 is far steeper than any LM loss law.
B_BOUNDS = (-3.0, 0.0)
#: ``JᵀJ`` with a larger condition number is treated as singular (parameters not identifiable).
MAX_CONDITION = 1e12
#: A given ``sigma_known`` is dropped when the residuals reject it at this level (chi-square on n - p dof).
CHI2_REJECT = 0.01
_PROFILE_GRID = 64


def choose_form(n_points: int, requested: FormChoice = "auto") -> Form:
    """The form a fit on ``n_points`` uses: the requested one, or under ``auto`` power below 5 points."""
    if requested != "auto":
        return requested
    return "saturating" if n_points >= MIN_POINTS_SATURATING else "power"


@dataclass
class PowerLawFit:
    """A fitted law with everything needed to predict, check and serialise (``to_dict`` is plain JSON).

    ``a, b, c`` are the law's coefficients (``c = 0`` for ``power`` and ``loglinear``, whose ``a`` is the
    loss at C = 1 FLOP and ``b`` the change per e-fold of compute); ``stderr`` holds their standard
    errors, or is None when they cannot be estimated (``notes`` says why). ``theta`` (α, b[, c]),
    ``log_c_ref`` and ``inv_jtj`` are the internal parameterisation the intervals need.
    """

    form: Form
    a: float
    b: float
    c: float
    stderr: dict[str, float] | None
    n_points: int
    dof: int
    sigma: float | None
    sigma_known: float | None
    scale: Literal["fitted", "known"] | None
    compute: list[float]
    loss: list[float]
    fitted: list[float]
    residuals: list[float]
    names: list[str] | None
    theta: list[float]
    log_c_ref: float
    inv_jtj: list[list[float]] | None
    at_bounds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return len(self.theta)

    @property
    def beta(self) -> float:
        """The paper's exponent β = -b in ``L = (C/f0)^-β + c``; NaN for the log-linear law, whose b is
        nats per e-fold of compute, not an exponent."""
        return math.nan if self.form == "loglinear" else -self.b

    @property
    def f0(self) -> float:
        """The paper's scale ``f0 = a^(1/β)`` (compute at which the reducible term is 1 nat); inf when b = 0
        or for the log-linear law, which has no such scale."""
        if self.b == 0.0 or self.form == "loglinear":
            return math.inf
        return _exp_or_inf(self.log_c_ref - self.theta[0] / self.b)

    @property
    def sigma_used(self) -> float | None:
        """Residual scale behind stderr and intervals: the fitted one, the known one, or None (no interval)."""
        return {"fitted": self.sigma, "known": self.sigma_known, None: None}[self.scale]

    @property
    def rms_residual(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.residuals))))

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        """Fitted loss at ``compute`` (FLOPs, the same convention as the fitted points)."""
        u = np.log(np.asarray(compute, dtype=float)) - self.log_c_ref
        out = _model(np.asarray(self.theta), u, self.form)
        return float(out) if np.ndim(out) == 0 else out

    def gradient(self, compute: float) -> np.ndarray:
        """d(loss)/d(theta) at ``compute`` (delta method)."""
        u = math.log(compute) - self.log_c_ref
        return _jacobian(np.asarray(self.theta), np.array([u]), self.form)[0]

    def equation(self) -> str:
        if self.form == "loglinear":
            return f"L(C) = {self.a:.4g} {'-' if self.b < 0 else '+'} {abs(self.b):.5g}·ln C"
        tail = f" {'-' if self.c < 0 else '+'} {abs(self.c):.4g}" if self.form == "saturating" else ""
        return f"L(C) = {self.a:.4g}·C^{self.b:.5g}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (DVC metrics): the fields plus the derived f0, beta, rms residual."""
        d = asdict(self)
        d.update(
            f0=_finite_or_none(self.f0),
            beta=_finite_or_none(self.beta),
            rms_residual=self.rms_residual,
            sigma_used=self.sigma_used,
            equation=self.equation(),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLawFit:
        """Inverse of :meth:`to_dict` (derived keys are ignored), e.g. to reload a fit from metrics."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def _exp_or_inf(x: float) -> float:
    """exp that saturates to inf (a nearly flat law's f0 is astronomically large) instead of raising."""
    return math.exp(x) if x < 709.0 else math.inf


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _check_points(compute: np.ndarray, loss: np.ndarray, names: list[str] | None) -> None:
    if compute.shape != loss.shape or compute.ndim != 1:
        raise ScalingError(f"compute and loss must be equal-length lists (got {compute.size} and {loss.size} values)")
    if names is not None and len(names) != compute.size:
        raise ScalingError(f"names has {len(names)} entries for {compute.size} points")
    if not (np.all(np.isfinite(compute)) and np.all(np.isfinite(loss))):
        raise ScalingError("compute and loss must be finite numbers")
    if np.any(compute <= 0) or np.any(loss <= 0):
        raise ScalingError("compute (FLOPs) and loss must be positive for a power law")
    if np.unique(compute).size < 2:
        raise ScalingError("the points need at least two different compute values")


def _line(u: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Least-squares line z = α + b·u (closed form)."""
    b, alpha = np.polyfit(u, z, 1)
    return float(alpha), float(b)


def _model(theta: np.ndarray, u: np.ndarray, form: Form) -> np.ndarray:
    if form == "loglinear":
        return theta[0] + theta[1] * u
    out = np.exp(theta[0] + theta[1] * u)
    return out + theta[2] if form == "saturating" else out


def _jacobian(theta: np.ndarray, u: np.ndarray, form: Form) -> np.ndarray:
    if form == "loglinear":
        return np.stack([np.ones_like(u), u], axis=1)
    e = np.exp(theta[0] + theta[1] * u)
    cols = [e, e * u] + ([np.ones_like(u)] if form == "saturating" else [])
    return np.stack(cols, axis=1)


def _starts(u: np.ndarray, y: np.ndarray, form: Form) -> list[np.ndarray]:
    """Seeds: the log-log line (c = 0) and, for saturating, the best line of ln(L - c) over a grid of c."""
    alpha0, b0 = _line(u, np.log(y))
    b0 = min(max(b0, B_BOUNDS[0] * 0.99), -1e-6)
    if form == "power":
        return [np.array([alpha0, b0])]
    best, best_sse = None, math.inf
    negative = -np.geomspace(1e-3, NEG_C_SCALE, _PROFILE_GRID // 2) * y.max()
    for c in np.concatenate([negative, np.linspace(0.0, y.min(), _PROFILE_GRID, endpoint=False)]):
        alpha, b = _line(u, np.log(y - c))
        if not B_BOUNDS[0] < b < 0:
            continue
        sse = float(np.sum((y - _model(np.array([alpha, b, c]), u, "saturating")) ** 2))
        if sse < best_sse:
            best, best_sse = np.array([alpha, b, c]), sse
    starts = [np.array([alpha0, b0, 0.0])]
    if best is not None:
        starts.append(best)
    return starts


def _solve(u: np.ndarray, y: np.ndarray, form: Form) -> tuple[np.ndarray, list[str]]:
    """Bounded least squares from every seed; the lowest cost wins. Returns theta and the names at bounds.
    The log-linear law is ordinary least squares (closed form, no bounds: a rising loss is reported as
    fitted, b > 0, not hidden on a bound)."""
    if form == "loglinear":
        alpha, b = _line(u, y)
        return np.array([alpha, b]), []
    c_max = float(y.min())
    lo = [-np.inf, B_BOUNDS[0]] + ([-NEG_C_SCALE * float(y.max())] if form == "saturating" else [])
    hi = [np.inf, B_BOUNDS[1]] + ([c_max] if form == "saturating" else [])
    best = None
    for x0 in _starts(u, y, form):
        x0 = np.clip(x0, np.array(lo) + 1e-12, np.array(hi) - 1e-12)
        res = least_squares(
            lambda th: _model(th, u, form) - y,
            x0,
            jac=lambda th: _jacobian(th, u, form),
            bounds=(lo, hi),
            method="trf",
            x_scale="jac",
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
            max_nfev=10_000,
        )
        if best is None or res.cost < best.cost:
            best = res
    theta = best.x
    names = ["log_a", "b", "c"][: theta.size]
    scale = [max(1.0, abs(v)) for v in (*lo, *hi) if math.isfinite(v)]
    tol = 1e-7 * max(scale)
    at = []
    for i, (n, v, l_, h) in enumerate(zip(names, theta, lo, hi)):
        if v - l_ <= tol or h - v <= tol:
            at.append(n)
            theta[i] = l_ if v - l_ <= tol else h  # report the bound itself, not 1e-30 next to it
    return theta, at


def _inv_jtj(jac: np.ndarray, free: list[bool]) -> np.ndarray | None:
    """(JᵀJ)⁻¹ over the free parameters, zero rows/columns for those held on a bound; None if singular."""
    cols = np.flatnonzero(free)
    if cols.size == 0:
        return None
    jtj = jac[:, cols].T @ jac[:, cols]
    if np.linalg.matrix_rank(jtj) < jtj.shape[0] or np.linalg.cond(jtj) > MAX_CONDITION:
        return None
    out = np.zeros((jac.shape[1], jac.shape[1]))
    out[np.ix_(cols, cols)] = np.linalg.inv(jtj)
    return out


def _reported_stderr(theta: np.ndarray, cov: np.ndarray, log_c_ref: float, form: Form) -> dict[str, float]:
    """Delta method from (α, b[, c]) to (a, b[, c]) and to the paper's (f0, β): a = exp(α - b·ln C_ref);
    for the log-linear law a = α - b·ln C_ref (no f0)."""
    alpha, b = theta[0], theta[1]
    if form == "loglinear":
        g = np.array([1.0, -log_c_ref])
        return {"a": float(math.sqrt(max(g @ cov @ g, 0.0))), "b": float(math.sqrt(max(cov[1, 1], 0.0)))}
    a = math.exp(alpha - b * log_c_ref)
    p = theta.size
    g_a = np.zeros(p)
    g_a[0], g_a[1] = a, -a * log_c_ref
    out = {"a": float(math.sqrt(max(g_a @ cov @ g_a, 0.0))), "b": float(math.sqrt(max(cov[1, 1], 0.0)))}
    if form == "saturating":
        out["c"] = float(math.sqrt(max(cov[2, 2], 0.0)))
    if b != 0.0:  # ln f0 = ln C_ref - α/b
        g_lf0 = np.zeros(p)
        g_lf0[0], g_lf0[1] = -1.0 / b, alpha / b**2
        f0 = _exp_or_inf(log_c_ref - alpha / b)
        se_lf0 = math.sqrt(max(g_lf0 @ cov @ g_lf0, 0.0))
        out["f0"] = f0 * se_lf0 if math.isfinite(f0) else math.nan
        out["log10_f0"] = se_lf0 / math.log(10)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _fit_form(
    c_arr: np.ndarray, y: np.ndarray, form: Form, names: list[str] | None, sigma_known: float | None, notes: list[str]
) -> PowerLawFit:
    n = y.size
    log_c_ref = float(np.mean(np.log(c_arr)))
    u = np.log(c_arr) - log_c_ref
    theta, at_bounds = _solve(u, y, form)
    fitted = _model(theta, u, form)
    resid = y - fitted
    p = theta.size
    dof = n - p
    rss = float(np.sum(resid**2))
    sigma = math.sqrt(rss / dof) if dof > 0 else None
    scale: Literal["fitted", "known"] | None = "fitted" if sigma is not None else None
    if dof == 0:
        notes.append(f"{n} points for {p} parameters: an exact fit, no residual scale")
    if sigma_known is not None:
        scale = "known"
        if dof > 0 and rss / sigma_known**2 > stats.chi2.ppf(1 - CHI2_REJECT, dof):
            scale = "fitted"
            notes.append(
                f"residuals (scale {sigma:.3g}) too large for sigma_known={sigma_known:.3g} "
                f"(chi-square p < {CHI2_REJECT}): using the fitted scale"
            )
    names_theta = ["log_a", "b", "c"][:p]
    inv = _inv_jtj(_jacobian(theta, u, form), [n_ not in at_bounds for n_ in names_theta])
    if inv is None:
        notes.append("covariance singular: the points do not identify every parameter; no standard errors")
    s_used = {"fitted": sigma, "known": sigma_known, None: None}[scale]
    stderr = None
    if inv is not None and s_used is not None:
        stderr = _reported_stderr(theta, s_used**2 * inv, log_c_ref, form)
    if at_bounds:
        notes.append(f"at a bound: {', '.join(at_bounds)}; held fixed there for the standard errors and intervals")
    a = theta[0] - theta[1] * log_c_ref if form == "loglinear" else math.exp(theta[0] - theta[1] * log_c_ref)
    return PowerLawFit(
        form=form,
        a=a,
        b=float(theta[1]),
        c=float(theta[2]) if form == "saturating" else 0.0,
        stderr=stderr,
        n_points=n,
        dof=dof,
        sigma=sigma,
        sigma_known=sigma_known,
        scale=scale,
        compute=c_arr.tolist(),
        loss=y.tolist(),
        fitted=fitted.tolist(),
        residuals=resid.tolist(),
        names=list(names) if names is not None else None,
        theta=theta.tolist(),
        log_c_ref=log_c_ref,
        inv_jtj=inv.tolist() if inv is not None else None,
        at_bounds=at_bounds,
        notes=notes,
    )


def fit_power_law(
    compute: list[float] | np.ndarray,
    loss: list[float] | np.ndarray,
    *,
    form: FormChoice = "auto",
    names: list[str] | None = None,
    sigma_known: float | None = None,
) -> PowerLawFit:
    """Fit loss (nats) against training compute (FLOPs).

    ``form``: ``auto`` (power below :data:`MIN_POINTS_SATURATING` points, else saturating with ``c``
    free below min L — negative when the points bend away from a floor — and its log-linear limit
    when ``c`` runs to its lower bound), ``saturating``, ``power`` or ``loglinear``.

    ``sigma_known`` (nats): the scatter of one member around the law, when you know it from elsewhere
    (repeated runs, a previous family's residuals). The fitted scale from 3–5 points is so uncertain
    that Student-t intervals on 1–2 dof are several tenths of a nat wide; a known scale gives normal
    quantiles instead. It is dropped for the fitted one (noted) when the residuals reject it
    (chi-square test at 1%), so a wrong guess cannot make intervals too narrow for the data at hand.
    """
    c_arr, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    _check_points(c_arr, y, names)
    if sigma_known is not None and not (sigma_known > 0 and math.isfinite(sigma_known)):
        raise ScalingError(f"sigma_known must be a positive number of nats (got {sigma_known})")
    chosen = choose_form(c_arr.size, form)
    need = 3 if chosen == "saturating" else 2
    if c_arr.size < need:
        raise ScalingError(f"the {chosen} law needs at least {need} points (got {c_arr.size})")
    notes: list[str] = []
    if form == "auto" and chosen == "power":
        notes.append(f"{c_arr.size} points < {MIN_POINTS_SATURATING}: pure power law (rule of form=auto)")
    fit = _fit_form(c_arr, y, chosen, names, sigma_known, notes)
    if fit.form == "saturating" and fit.c < 0 and "c" not in fit.at_bounds:
        fit.notes.append(
            f"c = {fit.c:.4g} < 0: the points bend away from any floor (the loss falls faster than a power law); "
            "c is the law's curvature here, not an irreducible loss"
        )
    if form == "auto" and chosen == "saturating" and "c" in fit.at_bounds and fit.c < 0:
        fit = _fit_form(
            c_arr,
            y,
            "loglinear",
            names,
            sigma_known,
            [
                f"saturating fit ran c to its lower bound ({fit.c:.4g}; the points bend away from any floor "
                "as far as a log-linear law does): the log-linear law, its limit (rule of form=auto)"
            ],
        )
    return fit
