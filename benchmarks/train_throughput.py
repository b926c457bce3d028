"""Training throughput and MFU of cgpt's train step: one process vs a DDP/FSDP job, in the same run.

Each configuration runs in fresh processes (spawned ranks on gloo for CPUs, NCCL for GPUs) with the
real training pieces (:func:`cgpt.train.distributed.build_model`, the recipe's AdamW,
:func:`cgpt.train.loop.train_step`, autocast, compile) on synthetic but learnable tokens (a fixed
random successor per token, 10 % noise, so the loss must fall). After ``--warmup`` steps (compile
happens there) ``--steps`` steps are timed; tokens/s counts the global batch; MFU is the recipe's
FLOPs per token (6N + 12LTd) x tokens/s over the peak of all devices (datasheet table on GPUs, a
measured matmul on CPUs: :mod:`cgpt.train.perf`). The first row is the plain single-process
baseline with the same global batch, micro-batch and total cores; ``ratio`` is each row's tokens/s
over it.

    python benchmarks/train_throughput.py                                   # cpu-small, ddp and fsdp x 2 on CPU
    python benchmarks/train_throughput.py --preset cpu-tiny --strategy ddp --nproc 2 --steps 20
    python benchmarks/train_throughput.py --preset cerebras-111m --device cuda --precision bf16 --compile \\
        --strategy ddp fsdp --nproc 8 --seq-len 2048 --batch 120 --micro-batch 15 --steps 300   # see gpu_check.sh
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from cgpt.devices import resolve_device
from cgpt.presets import get_preset
from cgpt.train.distributed import build_model, start_rank
from cgpt.train.loop import train_step
from cgpt.train.optim import build_optimizer, set_lr
from cgpt.train.perf import estimate_memory, mfu, peak_flops, size
from cgpt.train.schedule import lr_at
from cgpt.train.setup import resolve_precision


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch(step: int, batch: int, seq: int, vocab: int, successor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A global batch every rank can compute: random starts, then each token's fixed successor
    (10 % of positions replaced by noise)."""
    g = torch.Generator().manual_seed(1000 + step)
    rows = torch.empty(batch, seq + 1, dtype=torch.long)
    rows[:, 0] = torch.randint(0, vocab, (batch,), generator=g)
    for t in range(seq):
        rows[:, t + 1] = successor[rows[:, t]]
    noise = torch.rand(batch, seq + 1, generator=g) < 0.1
    rows[noise] = torch.randint(0, vocab, (int(noise.sum()),), generator=g)
    return rows[:, :-1], rows[:, 1:]


def _rank(rank: int, world: int, port: int, cfg: dict[str, Any], out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    ctx, device = start_rank(cfg["strategy"], "auto", cfg["device"], cfg["threads"] or None)
    try:
        preset = get_preset(cfg["preset"])
        positions = max(cfg["seq"], preset.model.n_positions)
        model_cfg = replace(preset.model, vocab_size=cfg["vocab"], n_positions=positions)
        recipe = replace(
            preset.recipe,
            batch_size=cfg["batch"],
            seq_len=cfg["seq"],
            warmup_steps=max(1, (cfg["warmup"] + cfg["steps"]) // 10),
            decay_steps=cfg["warmup"] + cfg["steps"],
            batch_switch=None,
        )
        precision = resolve_precision(cfg["precision"], device)
        model, train_model = build_model(
            model_cfg, 0, device, ctx, compile=cfg["compile"], activation_checkpointing=cfg["ac"]
        )
        optimizer = build_optimizer(
            model, lr=recipe.peak_lr, betas=recipe.betas, eps=recipe.eps, weight_decay=recipe.weight_decay
        )
        autocast = (
            torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        )
        successor = torch.randperm(cfg["vocab"], generator=torch.Generator().manual_seed(7))
        share = cfg["batch"] // world
        ctx.barrier()
        peak, _ = peak_flops(device, precision)
        total_peak = ctx.all_sum(torch.tensor([peak or 0.0], dtype=torch.float64, device=device)).item()
        is_cuda = torch.device(device).type == "cuda"
        if is_cuda:
            torch.cuda.reset_peak_memory_stats()
        losses = []
        start = 0.0
        for step in range(cfg["warmup"] + cfg["steps"]):
            if step == cfg["warmup"]:
                if is_cuda:
                    torch.cuda.synchronize()
                ctx.barrier()
                start = time.perf_counter()
            set_lr(optimizer, lr_at(recipe, step))
            x, y = _batch(step, cfg["batch"], cfg["seq"], cfg["vocab"], successor)
            x, y = x[rank * share : (rank + 1) * share].to(device), y[rank * share : (rank + 1) * share].to(device)
            loss, _ = train_step(
                model,
                train_model,
                optimizer,
                x,
                y,
                batch_size=cfg["batch"],
                micro_batch_size=cfg["micro"],
                grad_clip=recipe.grad_clip,
                autocast=autocast,
                ctx=ctx,
            )
            losses.append(float(ctx.all_sum(loss)))
        if is_cuda:
            torch.cuda.synchronize()
        ctx.barrier()
        seconds = time.perf_counter() - start
        tps = cfg["steps"] * cfg["batch"] * cfg["seq"] / seconds
        fpt = model_cfg.flops_per_token(cfg["seq"])[1]
        memory = (
            torch.cuda.max_memory_allocated()
            if is_cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        )
        worst = max(ctx.gather(memory))
        if ctx.is_main:
            estimate = estimate_memory(
                model_cfg,
                micro_batch=min(cfg["micro"] or share, share),
                seq_len=cfg["seq"],
                precision=precision,
                strategy=ctx.strategy,
                world_size=world,
                activation_checkpointing=cfg["ac"],
                device_type=torch.device(device).type,
            )
            result = {
                "strategy": cfg["strategy"],
                "world_size": world,
                "device": torch.cuda.get_device_name(device) if is_cuda else f"cpu x {torch.get_num_threads()} threads",
                "precision": precision,
                "tokens_per_s": tps,
                "mfu": mfu(fpt, tps, total_peak or None),
                "peak_memory_bytes": float(worst),
                "memory_estimate_bytes": estimate.total,
                "first_loss": losses[0],
                "last_loss": sum(losses[-5:]) / len(losses[-5:]),
                "seconds": seconds,
            }
            Path(out).write_text(json.dumps(result))
    finally:
        ctx.close()


def run(cfg: dict[str, Any], strategy: str, world: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as td:
        out = str(Path(td) / "result.json")
        mp.start_processes(
            _rank, args=(world, _free_port(), {**cfg, "strategy": strategy}, out), nprocs=world, start_method="spawn"
        )
        return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--strategy", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"])
    ap.add_argument("--nproc", type=int, default=2, help="ranks of the distributed runs (default 2)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: the preset's)")
    ap.add_argument("--micro-batch", type=int, default=None, help="sequences per forward on a rank (default: all)")
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's (2048 for the family)")
    ap.add_argument("--vocab", type=int, default=None, help="default: 8192 for CPU presets, 50257 for the family")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: the cores split evenly)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    preset = get_preset(args.preset)
    device = resolve_device(args.device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cfg = {
        "preset": args.preset,
        "device": device,
        "precision": args.precision,
        "compile": args.compile,
        "ac": args.activation_checkpointing,
        "batch": args.batch or preset.recipe.batch_size,
        "micro": args.micro_batch,
        "seq": args.seq_len or preset.recipe.seq_len,
        "vocab": args.vocab or (50257 if preset.family else 8192),
        "steps": args.steps,
        "warmup": args.warmup,
    }
    if cfg["batch"] % args.nproc:
        raise SystemExit(f"error: --batch {cfg['batch']} does not divide by --nproc {args.nproc}")
    print(
        f"torch {torch.__version__}; {args.preset}, vocab {cfg['vocab']}, global batch {cfg['batch']} x {cfg['seq']}, "
        f"micro-batch {cfg['micro'] or 'whole share'}, {cfg['warmup']} warm-up + {cfg['steps']} timed steps, "
        f"compile {args.compile}, activation checkpointing {args.activation_checkpointing}"
    )
    rows = []
    for strategy, world in [("none", 1)] + [(s, args.nproc) for s in args.strategy]:
        threads = args.threads or (max(1, cores // world) if device == "cpu" else 0)
        r = run({**cfg, "threads": threads}, strategy, world)
        rows.append(r)
        base = rows[0]["tokens_per_s"]
        util = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        if len(rows) == 1:
            print(
                f"{'strategy':<8} {'ranks':>5} {'device':<28} {'prec':<5} {'tokens/s':>11} {'MFU':>6} {'ratio':>6} "
                f"{'peak mem/rank':>13} {'estimate':>10} {'loss first -> last':>20}"
            )
        print(
            f"{r['strategy']:<8} {r['world_size']:>5} {r['device'][:28]:<28} {r['precision']:<5} "
            f"{r['tokens_per_s']:>11,.0f} {util:>6} {r['tokens_per_s'] / base:>5.2f}x "
            f"{size(r['peak_memory_bytes']):>13} {size(r['memory_estimate_bytes']):>10} "
            f"{r['first_loss']:>9.3f} -> {r['last_loss']:.3f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
