"""The `cgpt presets` table of the Cerebras-GPT presets: numbers computed from the presets match the spec."""

from __future__ import annotations

import pytest

from cgpt.preset_table import BYTES_BF16_MIXED, BYTES_FP32, GIB, format_preset_table, preset_rows
from cgpt.presets import PRESETS


def _row(name: str) -> dict:
    return next(r for r in preset_rows() if r["name"] == name)


def test_every_family_preset_once():
    assert [r["name"] for r in preset_rows()] == [n for n, p in PRESETS.items() if p.family]
    assert len(preset_rows()) == 12  # 7 SP + 5 muP


def test_111m():
    r = _row("cerebras-111m")
    assert r["params"] == 111_050_496
    assert r["steps"] == 9_037 and r["tokens_per_step"] == 245_760
    assert r["tokens"] == 9_037 * 245_760 == 2_220_933_120  # 2.221e9 (spec 2.2)
    assert r["warmup_tokens"] == 1525 * 245_760
    assert r["flops_6nd"] == pytest.approx(6 * 111_050_496 * 2_220_933_120)
    assert f"{r['flops_6nd']:.2e}" == "1.48e+18" and f"{r['flops_6nd_attn']:.2e}" == "1.90e+18"
    assert r["flops_6nd_attn"] - r["flops_6nd"] == pytest.approx(12 * 10 * 2048 * 768 * 2_220_933_120)
    assert r["mem_fp32_gib"] == pytest.approx(111_050_496 * 16 / GIB)
    assert r["mem_bf16_mixed_gib"] == pytest.approx(111_050_496 * 18 / GIB)
    assert _row("cerebras-111m-mup")["params"] == r["params"]


def test_13b_batch_switch():
    r = _row("cerebras-13b")
    assert r["params"] == 12_853_386_240
    assert r["steps"] == 135_223  # 57,000 at bs 720 + (116,223 - 38,000) at bs 1080
    assert r["tokens"] == (57_000 * 720 + 78_223 * 1080) * 2048
    assert round(r["tokens"] / 1e9, 2) == 257.07
    assert (r["tokens_per_step"], r["tokens_per_step_after_switch"]) == (720 * 2048, 1080 * 2048)
    assert r["tokens_per_param"] == pytest.approx(20.0, abs=1e-3)
    assert f"{r['flops_6nd']:.2e}" == "1.98e+22" and f"{r['flops_6nd_attn']:.3g}" == "2.11e+22"
    assert r["mem_fp32_gib"] == pytest.approx(191.53, abs=0.01)


@pytest.mark.parametrize(
    "name, six_nd",
    [("cerebras-256m", "7.86e+18"), ("cerebras-590m", "4.18e+19"), ("cerebras-1.3b", "2.08e+20"),
     ("cerebras-2.7b", "8.44e+20"), ("cerebras-6.7b", "5.32e+21")],
)  # fmt: skip
def test_flops_match_spec_section_5(name, six_nd):
    r = _row(name)
    assert f"{r['flops_6nd']:.2e}" == six_nd
    assert r["tokens_per_param"] == pytest.approx(20.0, abs=0.01)
    assert 370e6 < r["warmup_tokens"] < 380e6  # ~375M warm-up tokens for every model


def test_byte_accounting():
    assert BYTES_FP32 == 16 and BYTES_BF16_MIXED == 18


def test_format():
    text = format_preset_table()
    lines = text.splitlines()
    assert len(lines) == 1 + 2 + 12 + 1
    assert "12,853,386,240" in text and "135,223" in text and "1,474,560->2,211,840" in text
    assert "cerebras-2.7b-mup" in text and "32 x 2560 (32)" in text
