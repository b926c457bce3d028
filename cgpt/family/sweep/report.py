"""The µP sweep's report: the choice, the transfer check, and the tables, figures and markdown.

* :func:`choose`: the lowest final validation loss; ties go to the smaller lr, then init std, then
  output multiplier (a deterministic rule; smaller values are the safer side).
* :func:`write_search`: ``sweep.csv``/``.md`` (every search trial) and ``chosen.json``.
* :func:`write_transfer`: µP transfers when the curves' minima line up (:func:`transfer_summary`):
  ``transfer.csv``/``.md``, ``transfer.json`` (each width's optimum), ``transfer.png``/``.svg``.
* :func:`markdown_report`: the flow's artifact.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from cgpt.core.errors import TrainingError
from cgpt.core.fsutil import write_json_atomic
from cgpt.core.project import Project
from cgpt.family.params import FamilyParams
from cgpt.family.sweep.trials import TrialResult, json_float
from cgpt.scaling.plots import plot_mup_transfer
from cgpt.scaling.tables import write_table


def _order(r: TrialResult) -> tuple[float, float, float, float]:
    loss = r.val_loss if not r.diverged and math.isfinite(r.val_loss) else math.inf
    return (loss, r.trial.lr, r.trial.init_std, r.trial.output_mult)


def choose(results: list[TrialResult]) -> TrialResult:
    """The lowest final validation loss; ties: the smaller lr, init std, output multiplier."""
    if not results:
        raise TrainingError("the µP sweep has no trials to choose from")
    best = min(results, key=_order)
    if best.diverged or not math.isfinite(best.val_loss):
        raise TrainingError(
            f"every one of the {len(results)} µP sweep trials diverged; lower family.sweep.lr (smallest: "
            f"{min(r.trial.lr for r in results):g})"
        )
    return best


def results_table(results: list[TrialResult], best: TrialResult | None = None) -> pd.DataFrame:
    """One row per trial, best first (then the order of :func:`choose`), with its rank."""
    rows = [r.row() for r in sorted(results, key=_order)]
    df = pd.DataFrame(rows)
    df.insert(0, "rank", range(1, len(df) + 1))
    if best is not None:
        df["chosen"] = df["trial"] == best.trial.id
    return df


def chosen_values(best: TrialResult, family: FamilyParams, n_trials: int) -> dict[str, Any]:
    """``chosen.json``: the values the family's µP members take, and where they came from."""
    sweep = family.sweep
    return {
        "lr": best.trial.lr,
        "init_std": best.trial.init_std,
        "output_mult": best.trial.output_mult,
        "val_loss": best.val_loss,
        "trial": best.trial.id,
        "base_width": best.trial.base_width,
        "proxy": sweep.proxy.model_dump(),
        "search": sweep.search,
        "trials": n_trials,
        "max_steps": sweep.max_steps,
        "seed": sweep.seed,
        "rule": "lowest final validation loss; ties: smaller lr, then init_std, then output_mult",
    }


def write_search(root: Path, results: list[TrialResult], best: TrialResult, family: FamilyParams) -> dict[str, Any]:
    """``sweep.csv``/``.md`` and ``chosen.json`` in ``family/mup/``; returns the chosen values."""
    out = Project(Path(root)).sweep_dir
    write_table(results_table(results, best), out, "sweep")
    chosen = chosen_values(best, family, len(results))
    write_json_atomic(out / "chosen.json", chosen)
    return chosen


def transfer_summary(results: list[TrialResult], chosen_lr: float) -> dict[str, Any]:
    """Each width's best lr and loss, and how far (in lr-grid steps) it sits from the chosen lr:
    ``holds`` when every width's optimum is within one grid step (the µP claim, at grid resolution)."""
    lrs = sorted({r.trial.lr for r in results})
    widths: dict[str, Any] = {}
    for w in sorted({r.trial.width for r in results}):
        mine = [r for r in results if r.trial.width == w]
        best = min(mine, key=_order)
        ok = not best.diverged and math.isfinite(best.val_loss)
        steps = abs(lrs.index(best.trial.lr) - lrs.index(chosen_lr)) if chosen_lr in lrs else None
        widths[str(w)] = {
            "best_lr": best.trial.lr if ok else None,
            "best_val_loss": best.val_loss if ok else None,
            "grid_steps_from_chosen": steps if ok else None,
            "loss_at_chosen_lr": next(
                (json_float(r.val_loss) for r in mine if r.trial.lr == chosen_lr and not r.diverged), None
            ),
        }
    holds = all(v["grid_steps_from_chosen"] is not None and v["grid_steps_from_chosen"] <= 1 for v in widths.values())
    return {"chosen_lr": chosen_lr, "lr_grid": lrs, "widths": widths, "holds": holds}


def transfer_table(results: list[TrialResult]) -> pd.DataFrame:
    """One row per (width, lr), with each width's optimum marked."""
    rows = []
    for r in sorted(results, key=lambda r: (r.trial.width, r.trial.lr)):
        row = r.row()
        best = min((x for x in results if x.trial.width == r.trial.width), key=_order)
        row["best_for_width"] = r.trial.id == best.trial.id and not best.diverged
        rows.append(row)
    return pd.DataFrame(rows)


def write_transfer(
    root: Path, results: list[TrialResult], chosen_lr: float, *, stem: str = "transfer"
) -> dict[str, Any]:
    """``<stem>.csv``/``.md``, ``<stem>.json`` and ``<stem>.png``/``.svg``; returns the summary.
    (``stem="transfer_unscaled"``: the comparison without µP's width scaling.)"""
    out = Project(Path(root)).sweep_dir
    write_table(transfer_table(results), out, stem)
    summary = transfer_summary(results, chosen_lr)
    write_json_atomic(out / f"{stem}.json", summary)
    curves: dict[int, list[tuple[float, float]]] = {}
    for r in results:
        curves.setdefault(r.trial.width, []).append((r.trial.lr, r.val_loss if not r.diverged else math.nan))
    t = results[0].trial
    what = "without µP width scaling (m = 1 at every width)" if stem != "transfer" else "µP transfer"
    title = (
        f"{what}: val loss vs lr after {t.max_steps} steps "
        f"(init_std {t.init_std:g}, output_mult {t.output_mult:g}, base width {t.proxy_width})"
    )
    plot_mup_transfer(curves, out / stem, title=title)
    return summary


def markdown_report(
    chosen: dict[str, Any],
    search_md: str,
    transfer: dict[str, Any] | None = None,
    unscaled: dict[str, Any] | None = None,
) -> str:
    """The flow's artifact: the chosen values, the search table, each width's optimum (with and,
    given ``unscaled``, without µP's width scaling)."""
    lines = [
        "# µP sweep",
        "",
        f"Chosen (trial `{chosen['trial']}`, val loss {chosen['val_loss']:.4f}): "
        f"**lr {chosen['lr']:g}, init_std {chosen['init_std']:g}, output_mult {chosen['output_mult']:g}** "
        f"at base width {chosen['base_width']} ({chosen['trials']} trials, {chosen['max_steps']} steps each).",
        "",
        "## Trials (best first)",
        "",
        search_md.strip(),
    ]
    for heading, summary in (("Transfer (µP)", transfer), ("Without µP width scaling (m = 1)", unscaled)):
        if summary is None:
            continue
        lines += ["", f"## {heading}: best lr per width", "", "| width | best lr | val loss | grid steps from chosen |"]
        lines.append("|---|---|---|---|")
        for w, v in summary["widths"].items():
            loss = f"{v['best_val_loss']:.4f}" if v["best_val_loss"] is not None else "-"
            lines.append(f"| {w} | {v['best_lr']} | {loss} | {v['grid_steps_from_chosen']} |")
        verdict = "holds" if summary["holds"] else "does NOT hold"
        lines += ["", f"The optimum {verdict} at grid resolution (every width within one lr step of the chosen lr)."]
    return "\n".join(lines) + "\n"
