"""MFU and memory: the peak table, the CPU matmul probe, the MFU formula, the memory estimate per rank."""

from __future__ import annotations

import pytest
import torch

from cgpt.core.errors import TrainingError
from cgpt.presets import PRESETS
from cgpt.train import perf
from cgpt.train.perf import GIB, PEAKS, cpu_matmul_probe, estimate_memory, lookup_peak, mfu, peak_flops


@pytest.mark.parametrize(
    "name, match, bf16",
    [
        ("NVIDIA H100 80GB HBM3", "H100", 989.4e12),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", "H100 NVL", 835e12),
        ("NVIDIA H200", "H200", 989.4e12),
        ("NVIDIA GH200 480GB", "GH200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", "A100", 312e12),
        ("NVIDIA A100 80GB PCIe", "A100", 312e12),
        ("NVIDIA L40S", "L40S", 362.05e12),
        ("NVIDIA L4", "L4", 121e12),
        ("NVIDIA B200", "B200", 2.25e15),
        ("NVIDIA GB200", "GB200", 2.5e15),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2e12),
        ("AMD Instinct MI300X", "MI300X", 1307.4e12),
    ],
)
def test_peak_table_matches_device_names(name, match, bf16):
    row = lookup_peak(name)
    assert row is not None and row.match == match and row.bf16 == bf16


def test_unknown_devices_have_no_peak():
    assert lookup_peak("NVIDIA A10G") is None  # not the A10: no datasheet figure to trust
    assert lookup_peak("Some Future Accelerator") is None


def test_peak_table_is_consistent():
    for p in PEAKS:
        assert p.fp32 > 0 and p.source
        if p.bf16 is not None:
            assert p.bf16 >= (p.tf32 or 0) >= p.fp32 > 0, p
    assert len({p.match for p in PEAKS}) == len(PEAKS)


def test_mfu_formula():
    # 111M at seq 2048: 6N + 12 L T d FLOPs per token; 400k tokens/s on one H100 SXM
    cfg = PRESETS["cerebras-111m"].model
    fpt = cfg.flops_per_token(2048)[1]
    assert fpt == 6 * 111_050_496 + 12 * 10 * 2048 * 768
    assert mfu(fpt, 400_000, 989.4e12) == pytest.approx(fpt * 400_000 / 989.4e12)
    assert mfu(fpt, 400_000, None) is None and mfu(fpt, 1.0, 0.0) is None


def test_cpu_probe_measures_and_leaves_the_rng_alone():
    state = torch.get_rng_state()
    flops = cpu_matmul_probe(n=128, seconds=0.03)
    assert 1e7 < flops < 1e14
    assert torch.equal(state, torch.get_rng_state())


def test_peak_on_cpu_is_measured_and_can_be_overridden(monkeypatch):
    value, source = peak_flops("cpu", "fp32")
    assert value > 0 and "measured float32 matmul" in source
    monkeypatch.setenv(perf.PEAK_ENV, "123.5")
    assert peak_flops("cpu", "fp32") == (123.5e12, f"{perf.PEAK_ENV}=123.5")


def test_memory_estimate_states_per_precision_and_sharding():
    cfg = PRESETS["cerebras-1.3b"].model
    n = cfg.num_params()
    kw = dict(micro_batch=1, seq_len=2048)
    assert estimate_memory(cfg, precision="fp32", **kw).states == 16 * n  # family table: 19.6 GiB
    assert estimate_memory(cfg, precision="bf16", **kw).states == 18 * n
    sharded = estimate_memory(cfg, precision="bf16", strategy="fsdp", world_size=8, **kw)
    assert sharded.states == 18 * n / 8 and sharded.gathered > 0
    assert estimate_memory(cfg, precision="bf16", strategy="ddp", world_size=8, **kw).states == 18 * n
    full = estimate_memory(cfg, precision="bf16", **kw)
    ac = estimate_memory(cfg, precision="bf16", activation_checkpointing=True, **kw)
    assert ac.activations < full.activations / 5 and ac.logits == full.logits
    assert estimate_memory(cfg, precision="bf16", micro_batch=2, seq_len=2048).activations == pytest.approx(
        2 * full.activations
    )


def test_memory_estimate_of_known_shapes():
    """111M, micro-batch 8 x 2048, bf16 on one GPU: ~2 GiB of state, ~14 GiB for the logits (V = 50257
    dominates), ~5 GiB of activations: fits an 80 GiB GPU; 13B does not fit one, and fits 64 with FSDP +
    activation checkpointing."""
    small = estimate_memory(PRESETS["cerebras-111m"].model, micro_batch=8, seq_len=2048, precision="bf16")
    assert 1.5 * GIB < small.states < 2.5 * GIB and 12 * GIB < small.logits < 15 * GIB
    assert 3 * GIB < small.activations < 6 * GIB and small.total < 80 * GIB
    big = PRESETS["cerebras-13b"].model
    assert estimate_memory(big, micro_batch=1, seq_len=2048, precision="bf16", device_type="cuda").total > 80 * GIB
    fits = estimate_memory(
        big, micro_batch=1, seq_len=2048, precision="bf16", strategy="fsdp", world_size=64,
        activation_checkpointing=True, device_type="cuda",
    )  # fmt: skip
    assert fits.total < 80 * GIB


def test_a_preset_that_cannot_fit_stops_before_training_with_one_line(monkeypatch):
    from dataclasses import replace

    from cgpt.train import setup as run_setup
    from cgpt.train.distributed import SINGLE
    from cgpt.train.params import TrainParams

    monkeypatch.setattr(run_setup, "device_memory", lambda device, local: (40 * GIB, "NVIDIA A100-SXM4-40GB (cuda:0)"))
    setup = run_setup.RunSetup(
        PRESETS["cerebras-6.7b"].model, PRESETS["cerebras-6.7b"].recipe, TrainParams(), "x", "cerebras-6.7b"
    )
    with pytest.raises(TrainingError) as exc:
        run_setup.check_memory(replace(setup, device="cpu"), "bf16", 8, SINGLE)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("cerebras-6.7b does not fit: ~") and "40.0 GiB" in msg
    assert "strategy fsdp" in msg and "activation_checkpointing" in msg


def test_mfu_is_at_most_one_when_training_outruns_the_measured_peak(caplog):
    """A CPU peak probed on a busy machine reads low (the experiment's MFU once reached 1.47): the
    first window faster than the peak raises it to that window's rate, so no window's MFU and not
    the whole run's can pass 1, and slower windows are measured against the raised peak."""
    from cgpt.train.metering import Window, run_speed

    window = Window(flops_per_token=1e6, peak_total=1e9)  # 1 GFLOP/s "peak"
    window.add(3.0, tokens=2_000, seconds=1.0)  # 2 GFLOP/s reached
    with caplog.at_level("INFO", logger="cgpt.train"):
        _, fast, util = window.close(10, 1e-3, 1.0)
    assert util == 1.0 and fast["mfu"] == 1.0 and fast["peak_flops_per_s"] == 2e9
    assert "above the peak" in caplog.text
    window.add(3.0, tokens=1_000, seconds=1.0)  # back to 1 GFLOP/s: half of the raised peak
    _, slow, util = window.close(20, 1e-3, 1.0)
    assert util == pytest.approx(0.5) and slow["peak_flops_per_s"] == 2e9
    assert run_speed([fast, slow])["mfu"] == pytest.approx(3e9 / 4e9)
    # rows from before the rule (peak below the rate) still give a whole-run MFU of at most 1
    old = {"tokens": 1_000, "compute_seconds": 1.0, "flops_per_s": 3e9, "peak_flops_per_s": 1e9, "mfu": 3.0}
    assert run_speed([old])["mfu"] == 1.0
    assert mfu(1e6, 5_000, 1e9) == 1.0  # never above 1, whatever the caller's peak
