import math

import pytest

from cgpt.presets import get_preset
from cgpt.train.schedule import batch_size_at, lr_at


def test_111m_linear_schedule_points():
    r = get_preset("cerebras-111m").recipe
    assert (r.warmup_steps, r.decay_steps, r.total_steps) == (1525, 7512, 9037)
    assert lr_at(r, 0) == 0.0
    assert lr_at(r, 1525) == pytest.approx(6.0e-4, rel=1e-12)
    assert lr_at(r, 1525 + 7512 // 2) == pytest.approx(3.3e-4, rel=1e-12)  # halfway, linear
    assert lr_at(r, 9037) == pytest.approx(6.0e-5, rel=1e-12)
    assert lr_at(r, 762) == pytest.approx(6.0e-4 * 762 / 1525)


def test_2p7b_cosine_schedule_points():
    r = get_preset("cerebras-2.7b").recipe
    assert r.decay == "cosine" and r.total_steps == 49041
    assert lr_at(r, 0) == 0.0
    assert lr_at(r, 346) == pytest.approx(2.0e-4, rel=1e-12)
    mid = 346 + 48695 / 2
    assert lr_at(r, int(mid)) == pytest.approx(2e-5 + 1.8e-4 * 0.5 * (1 + math.cos(math.pi * int(48695 / 2) / 48695)))
    assert lr_at(r, 346 + 48695 // 2) == pytest.approx(1.1e-4, rel=1e-4)
    assert lr_at(r, 49041) == pytest.approx(2.0e-5, rel=1e-12)


def test_13b_batch_switch_is_continuous():
    r = get_preset("cerebras-13b").recipe
    s = r.batch_switch
    assert s is not None and (s.at_step, s.step_reset_to, s.batch_size) == (57000, 38000, 1080)
    assert lr_at(r, s.at_step - 1) == pytest.approx(9.407e-5, rel=2e-4)
    assert lr_at(r, s.at_step) == pytest.approx(9.407e-5, rel=2e-4)
    assert batch_size_at(r, s.at_step - 1) == 720 and batch_size_at(r, s.at_step) == 1080
    assert r.optimizer_steps() == 135_223
    assert r.total_tokens() == pytest.approx(257.07e9, rel=1e-4)
    assert lr_at(r, r.optimizer_steps()) == pytest.approx(1.2e-5, rel=1e-12)


@pytest.mark.parametrize(
    "name",
    [
        "cerebras-111m",
        "cerebras-256m",
        "cerebras-590m",
        "cerebras-1.3b",
        "cerebras-2.7b",
        "cerebras-6.7b",
        "cerebras-13b",
    ],
)
def test_family_tokens_and_warmup(name):
    p = get_preset(name)
    tokens = p.recipe.total_tokens()
    assert tokens == pytest.approx(20 * p.model.num_params(), rel=1e-3)
    assert p.recipe.warmup_steps * p.recipe.tokens_per_step == pytest.approx(375e6, rel=3e-3)  # "≈375M tokens"
    assert lr_at(p.recipe, p.recipe.optimizer_steps()) == pytest.approx(p.recipe.end_lr)
