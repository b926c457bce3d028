"""Training throughput of cgpt's GPT against transformers' GPT2LMHeadModel, same weights, same run.

One training step = forward + loss + backward (fp32, CPU, no optimizer). Both models hold the same
weights (the HF one is built by cgpt's exporter from cgpt's state dict), HF uses
``attn_implementation="sdpa"`` (its fair default). Repetitions are interleaved after a warm-up and
the median is reported; the ratio cgpt/HF is what to compare across machines (target >= 1.2).

    python benchmarks/model_throughput.py            # both shapes, ~2-3 minutes on 2 cores
    python benchmarks/model_throughput.py --shapes cpu-small --reps 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from cgpt.export.hf import build_hf_model
from cgpt.model.gpt import GPT
from cgpt.presets import get_preset

# name: (preset, vocab, seq, batch)
SHAPES = {
    "cpu-small": ("cpu-small", 8192, 256, 16),
    "111m": ("cerebras-111m", 50257, 128, 4),
}


def _cgpt_labels(x: torch.Tensor) -> torch.Tensor:
    """Targets x[1:T-1] as HF's internal shift scores them (the last position ignored)."""
    y = x[:, 1:].clone()
    y[:, -1] = -100
    return y


def _step_cgpt(model: GPT, x: torch.Tensor) -> float:
    _, loss = model(x[:, :-1], _cgpt_labels(x))
    loss.backward()
    return float(loss.detach())


def _step_hf(model, x: torch.Tensor) -> float:
    out = model(input_ids=x[:, :-1], labels=x[:, :-1])  # HF shifts labels inside: same T-1 targets
    out.loss.backward()
    return float(out.loss.detach())


def _time(fn, model, x) -> tuple[float, float]:
    """(wall seconds, process CPU seconds summed over threads) of one step."""
    model.zero_grad(set_to_none=True)
    t0, c0 = time.perf_counter(), time.process_time()
    fn(model, x)
    return time.perf_counter() - t0, time.process_time() - c0


def bench(name: str, reps: int, warmup: int, profile: bool = False) -> dict[str, float]:
    preset, vocab, seq, batch = SHAPES[name]
    cfg = replace(get_preset(preset).model, vocab_size=vocab)
    torch.manual_seed(0)
    ours = GPT(cfg).train()
    theirs = build_hf_model(
        {k: v.clone() for k, v in ours.state_dict().items()}, cfg, attn_implementation="sdpa"
    ).train()
    x = torch.randint(0, vocab, (batch, seq + 1))
    with torch.no_grad():  # same function: same loss (a cheap guard against benchmarking two different things)
        l1 = float(ours(x[:, :-1], _cgpt_labels(x))[1])
        l2 = float(theirs(input_ids=x[:, :-1], labels=x[:, :-1]).loss)
    assert abs(l1 - l2) < 1e-4, f"cgpt loss {l1} != HF loss {l2}: not the same function"
    for _ in range(warmup):
        _time(_step_cgpt, ours, x)
        _time(_step_hf, theirs, x)
    t_ours, t_hf = [], []
    for i in range(reps):  # interleaved, alternating who goes first
        pair = [(_step_cgpt, ours, t_ours), (_step_hf, theirs, t_hf)]
        for fn, model, acc in pair if i % 2 == 0 else pair[::-1]:
            acc.append(_time(fn, model, x))
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        for label, fn, model in (("cgpt", _step_cgpt, ours), ("HF", _step_hf, theirs)):
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                _time(fn, model, x)
            print(f"--- {name}: {label}, one step")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    tokens = batch * seq
    med = lambda ts, i: statistics.median(t[i] for t in ts)  # noqa: E731
    ours_tps, hf_tps = tokens / med(t_ours, 0), tokens / med(t_hf, 0)
    return {
        "tokens": tokens,
        "cgpt_tok_s": ours_tps,
        "hf_tok_s": hf_tps,
        "ratio": ours_tps / hf_tps,
        # CPU time is less disturbed than wall time when other processes share the cores
        "ratio_cpu_time": med(t_hf, 1) / med(t_ours, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops of one step each")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, forward+backward, median of "
        f"{args.reps}"
    )
    print(
        f"{'shape':<10} {'preset':<14} {'vocab':>6} {'seq':>4} {'batch':>5} {'cgpt tok/s':>11} {'HF tok/s':>10} "
        f"{'ratio':>6} {'ratio(cpu time)':>15}"
    )
    for name in args.shapes:
        preset, vocab, seq, batch = SHAPES[name]
        r = bench(name, args.reps, args.warmup, args.profile)
        print(
            f"{name:<10} {preset:<14} {vocab:>6} {seq:>4} {batch:>5} "
            f"{r['cgpt_tok_s']:>11.0f} {r['hf_tok_s']:>10.0f} {r['ratio']:>5.2f}x {r['ratio_cpu_time']:>14.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
