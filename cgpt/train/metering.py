"""What the training loop measures: the curve and speed rows of each logged window of steps
(loss, tokens/s, FLOP/s, MFU against the job's peak), and the speed over a whole training.

MFU is at most 1 by construction: the peak is never below a rate the training itself reached. A CPU
peak is measured (:func:`cgpt.train.perf.cpu_matmul_probe`), and a probe on a machine busy with other
work reads low; when a window of steps then runs faster than that "peak", the peak is raised to the
window's rate for the rest of the session (:meth:`Window.close`, said once in the log), and the
whole-run MFU (:func:`run_speed`) takes each window against the larger of its peak and its rate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from cgpt.train.distributed import DistContext
from cgpt.train.perf import mfu, peak_flops

log = logging.getLogger("cgpt.train")

SPEED_KEYS = ("tokens_per_s", "flops_per_s", "mfu", "peak_flops_per_s", "tokens", "compute_seconds", "seconds")


def peak_total(device: str, precision: str, ctx: DistContext) -> float | None:
    """The peak FLOP/s of all ranks together (None when a rank's is unknown: no MFU then)."""
    ctx.barrier()  # CPU ranks probe their cores at the same time, as they will train
    peak, source = peak_flops(device, precision)
    both = ctx.all_sum(torch.tensor([peak or 0.0, 1.0 if peak is None else 0.0], dtype=torch.float64, device=device))
    if ctx.is_main:
        if peak is None:
            log.info("MFU not logged: %s", source)
        else:
            log.info("peak %.3g TFLOP/s per rank (%s); MFU against %d rank(s)", peak / 1e12, source, ctx.world_size)
    return None if both[1] > 0 else float(both[0])


@dataclass
class Window:
    """The steps since the last logged one: their summed loss, the global batch's tokens and the
    compute time (the job's tokens/s), and the wall time since the window started."""

    flops_per_token: float
    peak_total: float | None
    loss: float = 0.0
    tokens: int = 0
    steps: int = 0
    compute_seconds: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    peak_raised: bool = False  # the peak was raised to a rate training reached (said once in the log)

    def add(self, loss: float, tokens: int, seconds: float) -> None:
        """One step: its loss, the tokens of its global batch, its compute time."""
        self.loss += loss
        self.tokens += tokens
        self.steps += 1
        self.compute_seconds += seconds

    def close(self, step: int, lr: float, grad_norm: float) -> tuple[dict[str, Any], dict[str, Any], float | None]:
        """The curve row, the speed row and the MFU (None when the peak is unknown) of the window
        ending at ``step``; the next window starts now."""
        loss = self.loss / self.steps
        tps = self.tokens / max(self.compute_seconds, 1e-9)
        row = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
        achieved = tps * self.flops_per_token
        if self.peak_total is not None and achieved > self.peak_total:
            (log.debug if self.peak_raised else log.info)(
                "training reached %.3g TFLOP/s, above the peak of %.3g measured at the start (a busy machine "
                "reads low): that rate is the peak from now on, so MFU stays at most 1",
                achieved / 1e12,
                self.peak_total / 1e12,
            )
            self.peak_total, self.peak_raised = achieved, True
        now = time.perf_counter()
        pace = {
            "step": step,
            "tokens_per_s": tps,
            "flops_per_s": achieved,
            "tokens": self.tokens,
            "compute_seconds": self.compute_seconds,
            "seconds": now - self.start,
        }
        util = mfu(self.flops_per_token, tps, self.peak_total)
        if util is not None:
            pace.update(mfu=util, peak_flops_per_s=self.peak_total)
        self.loss, self.tokens, self.steps, self.compute_seconds, self.start = 0.0, 0, 0, 0.0, now
        return row, pace, util


def merge_rows(*row_lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several lists merged per step, in step order (curve + val + speed rows -> one per step)."""
    by_step: dict[int, dict[str, Any]] = {}
    for rows in row_lists:
        for r in rows:
            by_step.setdefault(r["step"], {"step": r["step"]}).update(r)
    return [by_step[k] for k in sorted(by_step)]


def run_speed(speed: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens/s and wall time over the whole training (every session of a resumed run), from the speed
    rows; MFU over the sessions that knew their peak (FLOPs done / peak FLOPs available)."""
    tokens = sum(r.get("tokens", 0) for r in speed)
    compute = sum(r.get("compute_seconds", 0.0) for r in speed)
    out = {
        "tokens_per_s": tokens / compute if compute else 0.0,
        "compute_seconds": compute,
        "seconds": sum(r.get("seconds", 0.0) for r in speed),
    }
    measured = [r for r in speed if r.get("peak_flops_per_s") and r.get("compute_seconds")]
    # a window's peak is never below its own rate (rows of an older cgpt may say otherwise): MFU <= 1
    available = sum(max(r["peak_flops_per_s"], r["flops_per_s"]) * r["compute_seconds"] for r in measured)
    if available:
        out["mfu"] = sum(r["flops_per_s"] * r["compute_seconds"] for r in measured) / available
    return out
