"""One torch thread vs two for the default family's members (family.defaults.threads: 1).

Times training steps (forward, backward, AdamW) of the smallest and the largest member's shape and
batch with 1 and then 2 torch threads in this process, and prints ms/step and the ratio. On idle
cores two threads help the larger member a little; on busy cores (other jobs, a test suite) two
threads wait on each other and the ratio turns around, which is why the members use one. Run it
both ways: `python benchmarks/family_threads.py`, and beside a busy job.
"""

from __future__ import annotations

import os
import time

import torch

from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig

SHAPES = {"fam-d24": (4, 24, 2, 4), "fam-d96": (4, 96, 6, 16)}  # n_layer, d_model, n_head, batch (params.yaml)
VOCAB, T, STEPS = 257, 128, 30


def ms_per_step(threads: int, n_layer: int, d_model: int, n_head: int, batch: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_layer=n_layer, d_model=d_model, n_head=n_head, d_ffn=4 * d_model, vocab_size=VOCAB, n_positions=T
    )
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, VOCAB, (batch, T))

    def step() -> None:
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    return (time.perf_counter() - start) / STEPS * 1000


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, shape in SHAPES.items():
        one, two = ms_per_step(1, *shape), ms_per_step(2, *shape)
        print(
            f"{name}: 1 thread {one:.1f} ms/step, 2 threads {two:.1f} ms/step, 2 threads / 1 thread = {two / one:.2f}"
        )


if __name__ == "__main__":
    main()
