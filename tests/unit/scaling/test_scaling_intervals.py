"""Prediction intervals cover the truth at about their nominal rate; members outside them are flagged."""

import numpy as np
import pytest

from cgpt.scaling import check_member, fit_power_law, predict_loss

COMPUTE = np.geomspace(2.6e18, 2.3e22, 7)
NEXT = COMPUTE[-1] * 4  # the next member: about one family step beyond the last fitted one


def _coverage(n_points: int, form: str, truth, noise: float, reps: int, seed: int) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    x = COMPUTE[:n_points]
    nxt = NEXT if n_points == 7 else COMPUTE[n_points]
    hits = total = 0
    for _ in range(reps):
        fit = fit_power_law(x, truth(x) + rng.normal(0, noise, x.size), form=form)
        pred = predict_loss(fit, nxt, level=0.95)
        if not pred.has_interval:
            continue
        total += 1
        hits += bool(check_member(pred, truth(nxt) + rng.normal(0, noise)).inside)
    return hits / total, total


def test_saturating_interval_covers_at_about_95_percent():
    coverage, total = _coverage(7, "auto", lambda c: 47.0 * c**-0.0733 + 0.5, 0.01, reps=200, seed=1)
    assert total >= 195  # the interval exists for (almost) every draw
    assert 0.90 <= coverage <= 0.99, coverage  # 200 draws: binomial sd ~0.015 around 0.95


def test_power_interval_on_three_points_covers_at_about_95_percent():
    coverage, total = _coverage(3, "power", lambda c: 26.5 * c**-0.055, 0.01, reps=300, seed=2)
    assert total == 300
    assert 0.91 <= coverage <= 0.99, coverage


def test_member_outside_the_interval_is_flagged():
    fit = fit_power_law(COMPUTE, 47.0 * COMPUTE**-0.0733 + 0.5 + 0.005 * np.cos(np.arange(7)))
    pred = predict_loss(fit, NEXT, name="next")
    assert pred.has_interval and pred.low < pred.loss < pred.high and pred.level == 0.95
    ok = check_member(pred, pred.loss + 0.1 * (pred.high - pred.loss))
    assert ok.inside and not ok.flagged and "inside" in ok.summary()
    bad = check_member(pred, pred.high + 0.05)
    assert bad.inside is False and bad.flagged and bad.note == "above the prediction interval"
    assert "OUTSIDE" in bad.summary()


def test_no_interval_without_a_residual_scale_unless_sigma_is_known():
    two = fit_power_law(COMPUTE[:2], 26.5 * COMPUTE[:2] ** -0.055)
    pred = predict_loss(two, COMPUTE[2])
    assert not pred.has_interval and "no residual scale" in pred.note
    check = check_member(pred, 2.0)
    assert check.inside is None and not check.flagged
    known = predict_loss(fit_power_law(COMPUTE[:2], 26.5 * COMPUTE[:2] ** -0.055, sigma_known=0.02), COMPUTE[2])
    assert known.has_interval and known.quantile == pytest.approx(1.959964, rel=1e-5)
    assert known.high - known.loss > 1.96 * 0.02  # the curve's own uncertainty adds to the scatter


def test_sigma_known_is_dropped_when_the_residuals_reject_it():
    rng = np.random.default_rng(3)
    loss = 47.0 * COMPUTE**-0.0733 + 0.5 + rng.normal(0, 0.05, 7)
    fit = fit_power_law(COMPUTE, loss, sigma_known=0.001)
    assert fit.scale == "fitted" and any("too large for sigma_known" in n for n in fit.notes)


def test_interval_widens_with_extrapolation_distance():
    fit = fit_power_law(COMPUTE, 47.0 * COMPUTE**-0.0733 + 0.5 + 0.005 * np.cos(np.arange(7)))
    widths = [predict_loss(fit, c).high - predict_loss(fit, c).low for c in (NEXT, NEXT * 10, NEXT * 100)]
    assert widths[0] < widths[1] < widths[2]
