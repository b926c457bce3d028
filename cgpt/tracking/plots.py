"""The training curves as one PNG for a run's artifacts: what a user sees first when the run is
shared as files (a download of its artifacts, a report), where MLflow's live charts are not.

Three panels over the optimizer step: the training loss with the periodic validation loss on the
same axes (so overfitting shows), the learning rate, and the speed (tokens/s; MFU on a second axis
when it was measured). Built with :class:`matplotlib.figure.Figure` and the Agg canvas directly,
never ``pyplot`` (no display, no global backend switched), like :mod:`cgpt.scaling.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) is not None and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


def training_curves_png(
    history: Sequence[dict[str, Any]], speed: Sequence[dict[str, Any]], path: Path, title: str
) -> Path | None:
    """Write the curves of ``history`` (rows with ``loss``, ``lr``; ``val_loss``) and ``speed`` (rows
    with ``tokens_per_s``, ``mfu``) to ``path`` (PNG). None, and nothing written, when there is no
    training loss to draw (a run resumed past its last step with an empty history)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, loss = _series(history, "loss")
    if not steps:
        return None
    val_steps, val = _series(history, "val_loss")
    lr_steps, lr = _series(history, "lr")
    tps_steps, tps = _series(speed, "tokens_per_s")
    mfu_steps, mfu = _series(speed, "mfu")

    fig = Figure(figsize=(7.5, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_lr, ax_speed = fig.subplots(3, 1, sharex=True, height_ratios=(3, 1.3, 1.3))
    fig.suptitle(title)
    ax_loss.plot(steps, loss, label="train loss", color="tab:blue", linewidth=1.2)
    if val:
        ax_loss.plot(val_steps, val, "o-", label="val loss", color="tab:orange", markersize=3)
    ax_loss.set_ylabel("cross-entropy (nats/token)")
    ax_loss.legend(loc="upper right")
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(lr_steps, lr, color="tab:green", linewidth=1.2)
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_lr.grid(alpha=0.3)
    ax_speed.plot(tps_steps, tps, color="tab:purple", linewidth=1.2)
    ax_speed.set_ylabel("tokens/s")
    ax_speed.set_xlabel("optimizer step")
    ax_speed.grid(alpha=0.3)
    if mfu:
        ax_mfu = ax_speed.twinx()
        ax_mfu.plot(mfu_steps, [100 * m for m in mfu], color="tab:gray", linewidth=0.8, linestyle="--")
        ax_mfu.set_ylabel("MFU (%, dashed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path
