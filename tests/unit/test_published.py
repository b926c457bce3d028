"""The card's tables as data: transcribed consistently (the average is the mean of the seven tasks)."""

import pytest

from cgpt.published import FIVE_SHOT, MUP_FIVE_SHOT, MUP_ZERO_SHOT, SIZES, TASKS, ZERO_SHOT, card_row, size_of_preset


@pytest.mark.parametrize("table", [ZERO_SHOT, FIVE_SHOT, MUP_ZERO_SHOT, MUP_FIVE_SHOT])
def test_average_is_the_mean_of_the_seven_tasks(table):
    for row in table.values():
        assert list(row.acc) == list(TASKS)
        assert sum(row.acc.values()) / 7 == pytest.approx(row.average, abs=0.0015), row


def test_lookup_by_preset():
    assert size_of_preset("cerebras-256m-mup") == ("256m", True)
    assert size_of_preset("cerebras-13b") == ("13b", False)
    assert size_of_preset("cerebras-13b-mup") is None and size_of_preset("cpu-small") is None
    assert card_row("13b").acc["hellaswag"] == 0.513 and card_row("13b", shots=5).acc["hellaswag"] == 0.514
    assert set(ZERO_SHOT) == set(SIZES)
