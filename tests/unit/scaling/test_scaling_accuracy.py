"""Accuracy as a bounded sigmoid of loss (step 2 of the two-step method) and the family forecast."""

import json

import numpy as np
import pytest

from cgpt.core.errors import ScalingError
from cgpt.scaling import (
    CHANCE_ACCURACY,
    Member,
    SigmoidFit,
    compare_accuracies,
    fit_accuracy_sigmoid,
    forecast_member,
    predict_accuracy,
    predict_loss,
)
from cgpt.scaling.accuracy import accuracy_sigmoid

LOSS = np.linspace(2.6, 1.6, 7)


def test_recovers_known_parameters_with_fitted_floor():
    acc = accuracy_sigmoid(LOSS, 0.22, 1.0, 1.5, 3.0)
    fit = fit_accuracy_sigmoid(LOSS, acc, task="hellaswag")
    assert fit.floor_mode == "fitted" and fit.chance == 0.25
    assert fit.floor == pytest.approx(0.22, abs=1e-4)
    assert fit.l0 == pytest.approx(1.5, abs=1e-3) and fit.k == pytest.approx(3.0, rel=1e-3)
    # Bhagia et al.'s form: Acc = a / (1 + exp(-k (L - L0))) + b with a = floor - ceiling, b = ceiling.
    assert fit.a == pytest.approx(0.22 - 1.0, abs=1e-4) and fit.b == 1.0
    assert fit.a / (1 + np.exp(-fit.k * (1.7 - fit.l0))) + fit.b == pytest.approx(fit.predict(1.7))


def test_recovers_known_parameters_with_noise():
    rng = np.random.default_rng(4)
    acc = accuracy_sigmoid(LOSS, 0.5, 1.0, 1.55, 3.2) + rng.normal(0, 0.003, LOSS.size)
    fit = fit_accuracy_sigmoid(LOSS, acc, task="piqa")
    for name, truth in (("floor", 0.5), ("l0", 1.55), ("k", 3.2)):
        assert abs(getattr(fit, name) - truth) < 3 * fit.stderr[name], name


def test_few_points_hold_the_floor_at_chance():
    acc = accuracy_sigmoid(LOSS[:3], 0.5, 1.0, 1.6, 2.0)
    fit = fit_accuracy_sigmoid(LOSS[:3], acc, task="winogrande")
    assert fit.floor_mode == "chance" and fit.floor == 0.5 and any("held at chance" in n for n in fit.notes)
    assert fit.l0 == pytest.approx(1.6, abs=1e-4) and fit.k == pytest.approx(2.0, rel=1e-3)


def test_chance_levels_and_their_use():
    assert CHANCE_ACCURACY == {
        "hellaswag": 0.25,
        "piqa": 0.5,
        "winogrande": 0.5,
        "lambada_openai": 0.0,
        "arc_easy": 0.25,
        "arc_challenge": 0.25,
        "openbookqa": 0.25,
    }
    fixed = fit_accuracy_sigmoid(LOSS, accuracy_sigmoid(LOSS, 0.25, 1.0, 1.5, 3.0), task="arc_easy", floor="chance")
    assert fixed.floor_mode == "chance" and fixed.floor == 0.25
    with pytest.raises(ScalingError, match="expected auto, fit, chance or a number"):
        fit_accuracy_sigmoid(LOSS, accuracy_sigmoid(LOSS, 0.25, 1.0, 1.5, 3.0), task="arc_easy", floor="high")
    with pytest.raises(ScalingError, match="no chance level known"):
        fit_accuracy_sigmoid(LOSS, accuracy_sigmoid(LOSS, 0.25, 1.0, 1.5, 3.0), task="my_task", floor="chance")


def test_prediction_range_follows_the_loss_interval():
    fit = fit_accuracy_sigmoid(LOSS, accuracy_sigmoid(LOSS, 0.25, 1.0, 1.5, 3.0), task="hellaswag")
    members = [Member(f"m{i}", c, lo) for i, (c, lo) in enumerate(zip(np.geomspace(1e18, 1e21, 5), LOSS[:5]))]
    loss_fit = forecast_member(members, 4e21).loss_fit
    pred = predict_accuracy(fit, predict_loss(loss_fit, 4e21))
    assert pred.low < pred.accuracy < pred.high  # lower loss, higher accuracy
    assert predict_accuracy(fit, 1.7).low is None
    assert json.loads(json.dumps(SigmoidFit.from_dict(fit.to_dict()).to_dict()))["floor_mode"] == "fitted"


def test_forecast_member_two_steps_and_compare():
    compute = np.geomspace(2.6e18, 2.3e22, 7)
    loss = 47.0 * compute**-0.0733 + 0.5
    members = [
        Member(f"m{i}", c, lo, {"hellaswag": float(accuracy_sigmoid(lo, 0.25, 1.0, 1.45, 4.0))})
        for i, (c, lo) in enumerate(zip(compute, loss))
    ]
    fc = forecast_member(members[:6], compute[6], name="m6")
    assert fc.loss.loss == pytest.approx(loss[6], abs=1e-6)
    assert fc.accuracy["hellaswag"].accuracy == pytest.approx(members[6].accuracy["hellaswag"], abs=1e-4)
    cmp = compare_accuracies(fc, members[6].accuracy)
    assert cmp.mae < 1e-4 and json.dumps(fc.to_dict())
    with pytest.raises(ScalingError, match="at least 2 trained members"):
        forecast_member(members[:1], compute[1])
