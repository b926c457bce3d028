"""Accuracy forecasts only where they mean something: a task every smaller member guesses gets
"no forecast: members at chance" instead of a sigmoid extrapolated from noise."""

from __future__ import annotations

from cgpt.family.forecast import NO_FORECAST_AT_CHANCE, at_chance, forecast_next
from cgpt.family.params import FitParams
from cgpt.scaling.next_member import Member


def members(accuracies: list[dict[str, float]], documents: int = 200) -> list[Member]:
    out = []
    for k, acc in enumerate(accuracies):
        compute = 1e12 * 3**k
        out.append(Member(f"m{k}", compute, 40.0 * compute**-0.08 + 1.5, acc, dict.fromkeys(acc, documents)))
    return out


def test_at_chance_is_within_two_standard_errors_of_guessing():
    assert at_chance(members([{"hellaswag": 0.25}, {"hellaswag": 0.30}, {"hellaswag": 0.31}]), "hellaswag")
    assert not at_chance(members([{"hellaswag": 0.25}, {"hellaswag": 0.33}]), "hellaswag")  # 0.33 > 0.311
    assert not at_chance(members([{"hellaswag": 0.26}], documents=10_000), "hellaswag")  # 0.26 > 0.2587
    assert not at_chance(members([{"lambada_openai": 0.0}]), "lambada_openai")  # open vocabulary: no chance level
    no_counts = [Member("a", 1e12, 3.0, {"hellaswag": 0.25}), Member("b", 3e12, 2.9, {"hellaswag": 0.26})]
    assert not at_chance(no_counts, "hellaswag")  # documents unknown: cannot tell


def test_a_task_at_chance_gets_no_forecast_and_the_line_says_so():
    smaller = members(
        [{"hellaswag": 0.25, "piqa": 0.55}, {"hellaswag": 0.27, "piqa": 0.60}, {"hellaswag": 0.26, "piqa": 0.66}]
    )
    fc = forecast_next(smaller, 1e12 * 27, "next", FitParams())
    assert fc is not None
    assert set(fc.forecast.accuracy) == {"piqa"}  # hellaswag left out, piqa (above chance) forecast
    assert f"{NO_FORECAST_AT_CHANCE}: hellaswag" in fc.notes
    line = fc.accuracy_line()
    assert "predicted next accuracy" in line and "piqa" in line and "no forecast: members at chance: hellaswag" in line


def test_every_task_at_chance_leaves_the_loss_forecast_alone():
    smaller = members([{"hellaswag": 0.25, "arc_easy": 0.27}] * 3)
    fc = forecast_next(smaller, 1e12 * 27, "next", FitParams())
    assert fc.forecast.accuracy == {} and fc.forecast.loss.loss > 0
    assert fc.accuracy_line() == "next accuracy: no forecast: members at chance: hellaswag, arc_easy"
