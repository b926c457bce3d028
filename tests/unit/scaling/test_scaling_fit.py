"""Loss-vs-compute fits: known coefficients come back, the form rule holds, uncertainties are honest."""

import json
import math

import numpy as np
import pytest

from cgpt.core.errors import CgptError, ScalingError
from cgpt.scaling import MIN_POINTS_SATURATING, PowerLawFit, choose_form, fit_power_law

# A law like the card's: L = 47·C^-0.0733 + 0.5, over the family's compute range (2.6e18 .. 2.3e22).
A, B, C = 47.0, -0.0733, 0.5
COMPUTE = np.geomspace(2.6e18, 2.3e22, 7)


def law(compute, a=A, b=B, c=C):
    return a * np.asarray(compute) ** b + c


def test_saturating_recovers_exact_coefficients():
    fit = fit_power_law(COMPUTE, law(COMPUTE), form="saturating")
    assert fit.form == "saturating" and fit.n_points == 7 and fit.dof == 4
    assert fit.a == pytest.approx(A, rel=1e-5)
    assert fit.b == pytest.approx(B, rel=1e-6)
    assert fit.c == pytest.approx(C, abs=1e-6)
    assert max(map(abs, fit.residuals)) < 1e-9
    # The paper's parameterisation maps as a = f0^beta, b = -beta.
    assert fit.beta == pytest.approx(-B, rel=1e-6)
    assert fit.f0**fit.beta == pytest.approx(A, rel=1e-4)


def test_power_recovers_exact_coefficients():
    fit = fit_power_law(COMPUTE[:3], law(COMPUTE[:3], a=26.5, b=-0.055, c=0.0))
    assert fit.form == "power" and fit.c == 0.0 and fit.dof == 1
    assert fit.a == pytest.approx(26.5, rel=1e-6) and fit.b == pytest.approx(-0.055, rel=1e-6)


@pytest.mark.parametrize("form", ["saturating", "power"])
def test_noisy_fit_lands_within_three_standard_errors(form):
    rng = np.random.default_rng(7)
    compute = np.geomspace(1e18, 1e23, 7)
    truth = {"a": A, "b": B, "c": C} if form == "saturating" else {"a": 26.5, "b": -0.055, "c": 0.0}
    loss = law(compute, **truth) + rng.normal(0, 0.003, compute.size)
    fit = fit_power_law(compute, loss, form=form)
    assert fit.form == form and fit.stderr is not None
    for name in ("a", "b", "c") if form == "saturating" else ("a", "b"):
        est, se = getattr(fit, name), fit.stderr[name]
        assert se > 0 and abs(est - truth[name]) < 3 * se, (name, est, se)
    assert fit.sigma == pytest.approx(0.003, rel=0.8)


def test_form_rule_pure_power_below_five_points():
    assert MIN_POINTS_SATURATING == 5
    assert choose_form(4) == "power" and choose_form(5) == "saturating" and choose_form(3, "saturating") == "saturating"
    few = fit_power_law(COMPUTE[:4], law(COMPUTE[:4]))
    assert few.form == "power" and any("4 points < 5: pure power law" in n for n in few.notes)
    enough = fit_power_law(COMPUTE[:5], law(COMPUTE[:5]))
    assert enough.form == "saturating"


def test_points_that_bend_away_from_a_floor_get_a_negative_c():
    # Points concave in log-log (the loss falls faster than a power law): c < 0 fits them better than
    # the pure power law (the c = 0 edge, where the old c >= 0 bound held them).
    loss = law(COMPUTE, a=26.5, b=-0.055, c=0.0) * np.array([1, 1.002, 1.003, 1.003, 1.002, 1.0, 0.997])
    fit = fit_power_law(COMPUTE, loss)
    assert fit.form == "saturating" and fit.c < 0 and "c" not in fit.at_bounds
    assert any("not an irreducible loss" in n for n in fit.notes)
    power = fit_power_law(COMPUTE, loss, form="power")
    assert np.sum(np.square(fit.residuals)) < np.sum(np.square(power.residuals))


def test_auto_takes_the_log_linear_limit_when_c_runs_to_its_bound():
    # points exactly on L = A + B ln C: the saturating c runs to -100 x max L, the log-linear limit
    compute = np.geomspace(3e11, 3e13, 6)
    loss = 6.6 - 0.2 * np.log(compute)
    forced = fit_power_law(compute, loss, form="saturating")
    assert "c" in forced.at_bounds and forced.c == pytest.approx(-100 * loss.max())
    fit = fit_power_law(compute, loss)
    assert fit.form == "loglinear" and any("ran c to its lower bound" in n for n in fit.notes)
    assert fit.b == pytest.approx(-0.2, rel=1e-9)


def test_log_linear_recovers_exact_coefficients_and_round_trips():
    compute = np.geomspace(3e11, 3e13, 6)
    loss = 6.6 - 0.2 * np.log(compute)
    fit = fit_power_law(compute, loss, form="loglinear", names=list("abcdef"))
    assert fit.form == "loglinear" and fit.c == 0.0 and fit.dof == 4 and fit.f0 == math.inf
    assert fit.a == pytest.approx(6.6, rel=1e-9) and fit.b == pytest.approx(-0.2, rel=1e-9)
    assert fit.predict(1e14) == pytest.approx(6.6 - 0.2 * math.log(1e14))
    assert fit.equation() == "L(C) = 6.6 - 0.2·ln C"
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["form"] == "loglinear" and d["f0"] is None and d["beta"] is None  # b is no exponent here
    assert PowerLawFit.from_dict(d).predict(1e14) == pytest.approx(fit.predict(1e14))


def test_log_linear_intervals_are_the_exact_regression_intervals():
    # ordinary least squares on (ln C, L): the prediction interval is the textbook one, t on n - 2 dof
    from scipy import stats

    from cgpt.scaling import predict_loss

    rng = np.random.default_rng(3)
    compute = np.geomspace(3e11, 3e13, 6)
    loss = 6.6 - 0.2 * np.log(compute) + rng.normal(0, 0.02, 6)
    fit = fit_power_law(compute, loss, form="loglinear")
    x = np.log(compute)
    X = np.stack([np.ones(6), x], axis=1)
    beta, rss, *_ = np.linalg.lstsq(X, loss, rcond=None)
    s = math.sqrt(rss[0] / 4)
    x0 = np.array([1.0, math.log(6e13)])
    half = stats.t.ppf(0.975, 4) * s * math.sqrt(1 + x0 @ np.linalg.inv(X.T @ X) @ x0)
    p = predict_loss(fit, 6e13)
    assert p.loss == pytest.approx(x0 @ beta, rel=1e-9)
    assert (p.low, p.high) == (pytest.approx(p.loss - half, rel=1e-6), pytest.approx(p.loss + half, rel=1e-6))
    assert fit.stderr is not None and fit.stderr["b"] > 0


def test_a_log_linear_family_is_forecast_within_its_interval():
    # a synthetic family on L = A + B ln C (concave in log-log) with 0.01-nat noise: auto (5 smaller
    # members: c free, negative here) puts the next member inside its 95% interval in 80%+ of draws
    from cgpt.scaling import predict_loss

    rng = np.random.default_rng(11)
    compute = np.geomspace(3e11, 3.4e13, 6)
    truth = 6.6 - 0.2 * np.log(compute)
    inside = 0
    for _ in range(50):
        loss = truth + rng.normal(0, 0.01, 6)
        p = predict_loss(fit_power_law(compute[:5], loss[:5]), compute[5])
        inside += p.has_interval and p.low <= loss[5] <= p.high
    # measured over 200 draws: 86% (the log-linear limit 93%, a finite negative c 78%: the linearised
    # interval of a three-parameter fit on 2 dof under-covers; docs/scaling.md says so)
    assert inside >= 40, inside


def test_exact_fit_has_no_standard_errors_and_says_so():
    fit = fit_power_law(COMPUTE[:2], law(COMPUTE[:2]))
    assert fit.dof == 0 and fit.sigma is None and fit.stderr is None
    assert any("no residual scale" in n for n in fit.notes)


def test_singular_covariance_is_reported_not_computed():
    # Three points at only two distinct computes cannot identify a curvature (c): J^T J is singular.
    compute = [1e19, 1e19, 1e21, 1e21]
    fit = fit_power_law(compute, [2.5, 2.5, 2.0, 2.0], form="saturating")
    assert fit.stderr is None and fit.inv_jtj is None
    assert any("covariance singular" in n for n in fit.notes)


def test_round_trips_through_json():
    fit = fit_power_law(COMPUTE, law(COMPUTE) + 0.001 * np.sin(np.arange(7)), names=list("abcdefg"))
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["form"] == "saturating" and d["names"] == list("abcdefg") and math.isclose(d["f0"], fit.f0)
    back = PowerLawFit.from_dict(d)
    assert back.predict(1e23) == pytest.approx(fit.predict(1e23))


@pytest.mark.parametrize(
    "compute, loss, match",
    [
        ([1e18, 1e19], [2.0], "equal-length"),
        ([1e18, -1e19, 1e20], [2.0, 1.9, 1.8], "positive"),
        ([1e18, 1e18], [2.0, 1.9], "two different compute"),
        ([1e18, 1e19], [2.0, 1.9], "at least 3 points"),
    ],
)
def test_bad_points_are_one_line_user_errors(compute, loss, match):
    with pytest.raises(ScalingError, match=match) as exc:
        fit_power_law(compute, loss, form="saturating" if match == "at least 3 points" else "auto")
    assert isinstance(exc.value, CgptError) and "\n" not in str(exc.value)
