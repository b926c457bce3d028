"""The Cerebras-GPT presets as a table (``cgpt presets``): size, data, steps, compute and memory.

Not the project's model family (:mod:`cgpt.family`): the rows are the Cerebras-GPT presets of
:mod:`cgpt.presets` (SP and µP), as the spec lists them.

Every number is computed from :mod:`cgpt.presets` (spec sections 1.1 and 2.2), none is typed in:

* ``params``: exact trainable parameters, tied head counted once;
* ``tokens``: what the recipe trains on (13B: 57,000 steps at batch 720 + 78,223 at 1080);
* ``steps``: optimizer steps actually taken; ``tokens/step``: batch x 2048 (13B: before -> after);
* ``warm-up tokens``: warm-up steps x tokens per step (13B: the first warm-up, at batch 720);
* FLOPs: 6·N·D, and 6·N·D + 12·L·T·d·D with T = 2048 (the attention-score term);
* memory for weights + gradients + AdamW state, activations excluded, in GiB (2**30 bytes):
  - ``fp32``: 4 (weights) + 4 (grads) + 4 + 4 (Adam m, v) = 16 bytes/param;
  - ``bf16 mixed``: the Cerebras setup (spec 2.1: bf16 compute, fp32 weights and optimizer
    state), as ``torch.autocast`` runs it: fp32 weights 4 + fp32 grads 4 (autocast keeps
    parameter gradients in the parameter dtype) + Adam m, v 8 + the bf16 weight copies autocast
    caches during a forward/backward 2 = 18 bytes/param. Mixed precision saves activation memory
    and time, not state memory.
"""

from __future__ import annotations

from typing import Any

from cgpt.formatting import human_count
from cgpt.presets import PRESETS, Preset

BYTES_FP32 = 4 + 4 + 4 + 4
BYTES_BF16_MIXED = 4 + 4 + 4 + 4 + 2
GIB = 2**30


def _row(p: Preset) -> dict[str, Any]:
    m, r = p.model, p.recipe
    n = m.num_params()
    tokens = r.total_tokens()
    six_n, six_n_attn = m.flops_per_token(r.seq_len)
    sw = r.batch_switch
    return {
        "name": p.name,
        "parameterization": m.parameterization,
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "n_head": m.n_head,
        "d_head": m.d_head,
        "params": n,
        "tokens": tokens,
        "tokens_per_param": tokens / n,
        "steps": r.optimizer_steps(),
        "batch_size": r.batch_size,
        "tokens_per_step": r.tokens_per_step,
        "tokens_per_step_after_switch": sw.batch_size * r.seq_len if sw else None,
        "warmup_steps": r.warmup_steps,
        "warmup_tokens": r.warmup_steps * r.tokens_per_step,
        "peak_lr": r.peak_lr,
        "decay": r.decay,
        "flops_6nd": six_n * tokens,
        "flops_6nd_attn": six_n_attn * tokens,
        "mem_fp32_gib": n * BYTES_FP32 / GIB,
        "mem_bf16_mixed_gib": n * BYTES_BF16_MIXED / GIB,
    }


def preset_rows() -> list[dict[str, Any]]:
    """One dict per Cerebras-GPT preset (``Preset.family``; SP then muP, in PRESETS order)."""
    return [_row(p) for p in PRESETS.values() if p.family]


def format_preset_table() -> str:
    head = (
        "preset", "param", "L x d (heads)", "params", "tokens", "tok/param", "steps", "tokens/step",
        "warm-up tok", "peak LR", "6ND", "6ND+attn", "fp32 GiB", "bf16mix GiB",
    )  # fmt: skip
    rows = []
    for r in preset_rows():
        tps = f"{r['tokens_per_step']:,}"
        if r["tokens_per_step_after_switch"]:
            tps += f"->{r['tokens_per_step_after_switch']:,}"
        rows.append(
            (
                r["name"], r["parameterization"].upper(), f"{r['n_layer']} x {r['d_model']} ({r['n_head']})",
                f"{r['params']:,}", human_count(r["tokens"]), f"{r['tokens_per_param']:.2f}", f"{r['steps']:,}", tps,
                human_count(r["warmup_tokens"]), f"{r['peak_lr']:.1e}", f"{r['flops_6nd']:.2e}",
                f"{r['flops_6nd_attn']:.2e}", f"{r['mem_fp32_gib']:.1f}", f"{r['mem_bf16_mixed_gib']:.1f}",
            )
        )  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    left = {0, 1, 2}

    def line(cells) -> str:
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    out = ["Cerebras-GPT family (seq 2048; FLOPs for the whole run; memory = weights + grads + AdamW, no activations)"]
    out += [line(head), line("-" * w for w in widths), *(line(r) for r in rows)]
    out.append(
        f"fp32: {BYTES_FP32} B/param (4 weights + 4 grads + 8 Adam m,v); bf16 mixed (Cerebras: bf16 compute, fp32 "
        f"weights/optimizer): {BYTES_BF16_MIXED} B/param (+2 autocast bf16 weight copies). 13B: batch 720 then 1080."
    )
    return "\n".join(out)
