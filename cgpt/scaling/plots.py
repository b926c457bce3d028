"""Figures, headless: loss vs compute with the fit and its prediction intervals, the accuracy sigmoids,
and the µP transfer plot (validation loss vs learning rate, one curve per width).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never
``pyplot``: no display is needed, no global backend is switched under a user's feet, and Prefect
tasks in threads cannot trip over pyplot's global figure state. Each figure is written as PNG and
SVG next to each other; the functions return the paths.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from cgpt.core.errors import ScalingError
from cgpt.scaling.accuracy import AccuracyPrediction, SigmoidFit
from cgpt.scaling.card_law import ReferenceLaw
from cgpt.scaling.power_law import PowerLawFit
from cgpt.scaling.prediction import LossPrediction

FORMATS = ("png", "svg")


def _plain_log_y(ax: Axes) -> None:
    """Losses span less than a decade: label the log axis with plain numbers (1.6, 1.8), not 1.6×10⁰."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)


#: no creation date in the files, and SVG element ids hashed with a fixed salt instead of a random
#: one: the same figure gives the same bytes (the family's ``scaling`` stage is a DVC stage)
_METADATA = {"png": {}, "svg": {"Date": None}}
_RC = {"svg.hashsalt": "cgpt"}


def _save(fig: Figure, path_stem: Path) -> list[Path]:
    FigureCanvasAgg(fig)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in FORMATS:
        p = path_stem.with_name(f"{path_stem.name}.{ext}")
        with rc_context(_RC):
            fig.savefig(p, dpi=150, bbox_inches="tight", metadata=_METADATA[ext])
        paths.append(p)
    return paths


def plot_loss_vs_compute(
    fit: PowerLawFit,
    path_stem: Path,
    *,
    predictions: Sequence[LossPrediction] = (),
    actuals: Mapping[str, tuple[float, float]] | None = None,
    references: Sequence[ReferenceLaw] = (),
    title: str = "",
    xlabel: str = "training compute (FLOPs)",
    ylabel: str = "loss (nats/token)",
) -> list[Path]:
    """Log-log loss vs compute: fitted points, the fit (extended over the predictions), reference laws,
    predictions with their intervals (error bars), and actual losses of predicted members (``actuals``:
    name -> (compute, loss))."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    xs = list(fit.compute) + [p.compute for p in predictions] + [c for c, _ in (actuals or {}).values()]
    grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 200)
    ax.plot(grid, fit.predict(grid), color="C0", lw=1.5, label=f"fit ({fit.form}, {fit.n_points} points)")
    for i, r in enumerate(references):
        ax.plot(grid, [r.predict(g) for g in grid], color=f"C{i + 3}", lw=1, ls="--", label=r.label)
    ax.scatter(fit.compute, fit.loss, color="C0", zorder=3, label="fitted points")
    for name, c, y in zip(fit.names or [""] * fit.n_points, fit.compute, fit.loss):
        ax.annotate(name, (c, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for j, p in enumerate(predictions):
        label = f"prediction ({p.level:.0%} PI)" if j == 0 else None
        if p.has_interval:
            err = [[p.loss - p.low], [p.high - p.loss]]
            ax.errorbar([p.compute], [p.loss], yerr=err, fmt="s", color="C1", capsize=4, zorder=4, label=label)
        else:
            ax.scatter([p.compute], [p.loss], marker="s", color="C1", zorder=4, label=label)
    for j, (name, (c, y)) in enumerate((actuals or {}).items()):
        ax.scatter([c], [y], marker="*", s=120, color="C2", zorder=5, label="actual" if j == 0 else None)
        ax.annotate(name, (c, y), textcoords="offset points", xytext=(6, -10), fontsize=7, color="C2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(f"{title}: {fit.equation()}" if title else fit.equation(), 80), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path_stem)


def plot_accuracy_sigmoids(
    fits: Mapping[str, SigmoidFit],
    path_stem: Path,
    *,
    predictions: Mapping[str, AccuracyPrediction] | None = None,
    actuals: Mapping[str, tuple[float, float]] | None = None,
    title: str = "",
    xlabel: str = "loss (nats/token)",
) -> list[Path]:
    """One panel per task: the members' (loss, accuracy), the sigmoid, chance, the prediction with its
    range from the loss interval, and the actual (``actuals``: task -> (loss, accuracy))."""
    if not fits:
        raise ScalingError("no accuracy fits to plot")
    n = len(fits)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    for i, (task, f) in enumerate(fits.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = list(f.loss)
        p = (predictions or {}).get(task)
        if p is not None:
            xs.append(p.loss)
        lo, hi = min(xs), max(xs)
        grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 200)
        ax.plot(grid, f.predict(grid), color="C0", lw=1.2)
        ax.scatter(f.loss, f.accuracy, color="C0", s=14, zorder=3)
        if f.chance is not None:
            ax.axhline(f.chance, color="grey", ls=":", lw=1)
        if p is not None:
            if p.low is not None and p.high is not None:
                ax.errorbar(
                    [p.loss],
                    [p.accuracy],
                    yerr=[[p.accuracy - p.low], [p.high - p.accuracy]],
                    fmt="s",
                    color="C1",
                    capsize=3,
                    zorder=4,
                )
            else:
                ax.scatter([p.loss], [p.accuracy], marker="s", color="C1", zorder=4)
        if actuals and task in actuals:
            ax.scatter([actuals[task][0]], [actuals[task][1]], marker="*", s=90, color="C2", zorder=5)
        ax.set_title(f"{task} (floor {f.floor_mode})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(textwrap.fill(title, 100), fontsize=9)
    fig.tight_layout()
    return _save(fig, path_stem)


def plot_mup_transfer(
    curves: Mapping[int | float | str, Sequence[tuple[float, float]]],
    path_stem: Path,
    *,
    title: str = "µP transfer: validation loss vs learning rate",
    ylabel: str = "validation loss (nats/token)",
) -> list[Path]:
    """Validation loss vs (base) learning rate, one curve per width, in one log-x plot, each width's
    best learning rate marked — the µP papers' transfer figure: under µP the minima line up across
    widths. ``curves``: width -> [(lr, loss), ...] in any order; non-finite losses (diverged runs)
    are left out of the line and marked at the top."""
    if not curves:
        raise ScalingError("no µP sweep curves to plot")
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    finite_all = [loss for pts in curves.values() for _, loss in pts if np.isfinite(loss)]
    if not finite_all:
        raise ScalingError("every µP sweep loss is non-finite; nothing to plot")
    top = max(finite_all)
    for i, (width, pts) in enumerate(sorted(curves.items(), key=lambda kv: float(kv[0]))):
        if not pts:
            continue
        lrs, losses = map(np.asarray, zip(*sorted(pts)))
        lrs, losses = lrs.astype(float), losses.astype(float)
        ok = np.isfinite(losses)
        color = f"C{i % 10}"
        ax.plot(lrs[ok], losses[ok], marker="o", ms=3, color=color, label=f"width {width}")
        if (~ok).any():
            ax.scatter(lrs[~ok], np.full((~ok).sum(), top), marker="x", color=color)
        if ok.any():
            best = np.argmin(np.where(ok, losses, np.inf))
            ax.scatter([lrs[best]], [losses[best]], marker="*", s=90, color=color, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path_stem)
