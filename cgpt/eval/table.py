"""The results table (pandas): the card's columns, our accuracies, and the card's values beside them.

Columns are the seven tasks in the card's order (:data:`cgpt.published.TASKS`), then the downstream
average (the plain mean of the seven ``acc``; only when all seven were run) and LAMBADA's
perplexity. Rows, per shot count: ``acc`` (the card's metric), its standard error, ``acc_norm``
where the task defines it, and with a card row: the card's values and ours minus the card's.
Further columns (Pile cross-entropy) can be joined on the same index.

The evaluate stage's tables are built here too (:func:`results_frame`, :func:`downstream_rows`,
:func:`subset_table`, :func:`table_notes`); the stage only writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import write_text_atomic
from cgpt.eval.models import ModelShape
from cgpt.eval.results import EvalResults
from cgpt.published import TASK_LABELS, TASKS, CardRow, card_row, size_of_preset

AVERAGE = "Downstream Average"
LAMBADA_PPL = "LAMBADA ppl"
#: the card's column abbreviations: the evaluate stage's metric files stay narrow in `dvc metrics show`
SHORT = {"hellaswag": "HS", "piqa": "PIQA", "winogrande": "WG", "lambada_openai": "LAMB", "arc_easy": "ARC-e",
         "arc_challenge": "ARC-c", "openbookqa": "OBQA"}  # fmt: skip
CARD_SHOTS = (0, 5)


def card_preset_for(shape: ModelShape | None) -> str | None:
    """The ``cerebras-*`` preset with this model's shape (n_layer, d_model, n_head, vocab), muP if the model is."""
    from cgpt.presets import PRESETS

    if shape is None:
        return None
    for name, preset in PRESETS.items():
        m = preset.model
        if not name.startswith("cerebras-") or name.endswith("-mup") != shape.mup:
            continue
        if (m.n_layer, m.d_model, m.n_head, m.vocab_size) == (
            shape.n_layer,
            shape.d_model,
            shape.n_head,
            shape.vocab_size,
        ):
            return name
    return None


def card_rows(preset: str) -> dict[int, CardRow]:
    """The card's 0- and 5-shot rows for a ``cerebras-<size>[-mup]`` preset name."""
    found = size_of_preset(preset)
    if found is None:
        raise CgptError(
            f"--compare-to {preset!r}: expected cerebras-<size> or cerebras-<size>-mup, "
            "size one of 111m, 256m, 590m, 1.3b, 2.7b, 6.7b, 13b (muP up to 2.7b)"
        )
    size, mup = found
    return {k: card_row(size, mup=mup, shots=k) for k in (0, 5)}


def results_table(results: EvalResults, card: dict[int, CardRow] | None = None, card_name: str = "") -> pd.DataFrame:
    """One row per (shots, what), one column per task (labels of the card), plus the average and LAMBADA ppl."""
    tasks = [t for t in TASKS if any(r.task == t for r in results.tasks)]
    columns = [TASK_LABELS[t] for t in tasks] + [AVERAGE, LAMBADA_PPL]
    rows: dict[str, dict[str, float]] = {}
    for k in results.shots():
        acc, err, norm = {}, {}, {}
        for t in tasks:
            r = results.get(t, k)
            if r is None:
                continue
            acc[TASK_LABELS[t]] = r.acc
            err[TASK_LABELS[t]] = r.acc_stderr if r.acc_stderr is not None else math.nan
            if r.acc_norm is not None:
                norm[TASK_LABELS[t]] = r.acc_norm
            if r.perplexity is not None:
                acc[LAMBADA_PPL] = r.perplexity
                err[LAMBADA_PPL] = r.perplexity_stderr if r.perplexity_stderr is not None else math.nan
        if all(TASK_LABELS[t] in acc for t in TASKS):
            acc[AVERAGE] = sum(acc[TASK_LABELS[t]] for t in TASKS) / len(TASKS)
        rows[f"{k}-shot acc"] = acc
        rows[f"{k}-shot acc_stderr"] = err
        if norm:
            rows[f"{k}-shot acc_norm"] = norm
        if card and k in card:
            theirs = {TASK_LABELS[t]: card[k].acc[t] for t in tasks}
            if all(TASK_LABELS[t] in acc for t in TASKS):
                theirs[AVERAGE] = card[k].average
            rows[f"{k}-shot card {card_name}".rstrip()] = theirs
            rows[f"{k}-shot ours - card"] = {c: acc[c] - v for c, v in theirs.items() if c in acc}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    df.index.name = "row"
    return df.dropna(axis=1, how="all")


def results_frame(results: EvalResults | None, up: dict[str, Any], preset: str) -> pd.DataFrame:
    """The evaluate stage's table for a run: our rows (and the card's, on a Cerebras-GPT preset), with Pile xent.

    ``up``: the upstream results per split (``{"val": {"loss": ...}, ...}``); the val/test cross-entropy
    columns are filled on the ``acc`` rows.
    """
    card = None
    try:
        card = card_rows(preset) if preset.startswith("cerebras-") else None
    except Exception:  # a preset the card has no row for
        card = None
    if results is not None:
        df = results_table(results, card, preset if card else "")
    else:
        df = pd.DataFrame(index=pd.Index([], name="row"))
    for split in ("val", "test"):
        if split in up:
            df.insert(0, f"{split} xent", float("nan"))
            for row in df.index:
                if str(row).endswith("acc"):
                    df.loc[row, f"{split} xent"] = up[split]["loss"]
    return df


def downstream_rows(results: EvalResults | None) -> dict[str, dict[str, float]]:
    """``{"0shot_acc": {"HS": ..., ..., "avg": ...}, "0shot_acc_norm": {...}, ...}`` for the card's shot counts."""
    rows: dict[str, dict[str, float]] = {}
    for k in CARD_SHOTS:
        acc: dict[str, float] = {}
        norm: dict[str, float] = {}
        for t in TASKS:
            r = results.get(t, k) if results is not None else None
            if r is None:
                continue
            acc[SHORT[t]] = r.acc
            if r.acc_norm is not None:
                norm[SHORT[t]] = r.acc_norm
        if len(acc) == len(TASKS):
            acc["avg"] = sum(acc.values()) / len(TASKS)
        rows[f"{k}shot_acc"], rows[f"{k}shot_acc_norm"] = acc, norm
    return rows


def subset_table(up: dict[str, Any]) -> str:
    """Cross-entropy per ``meta.pile_set_name`` (markdown), when the data has more than one subset."""
    subsets = sorted({name for split in up.values() for name in split.get("per_subset", {})})
    if len(subsets) < 2:
        return ""
    lines = ["", "Cross-entropy (nats/token) per subset:", "", "| subset | " + " | ".join(up) + " |",
             "|---|" + "---|" * len(up)]  # fmt: skip
    for name in subsets:
        cells = [f"{up[s]['per_subset'][name]['loss']:.4f}" if name in up[s].get("per_subset", {}) else "" for s in up]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_notes(results: EvalResults | None, missing: Mapping[str, str] | None = None) -> list[str]:
    """Footnotes the table needs: results whose few-shot pool is a fallback (not the harness's stock k-shot),
    then the tasks of ``missing`` (task -> why) left out because their data was unavailable, then (once)
    the task-data hosts that could not be reached, and how to retry them (``unreachable_sources``)."""
    from cgpt.eval.taskdata.reach import failures_note
    from cgpt.eval.tasks import get_task

    notes = []
    for r in results.tasks if results is not None else []:
        task = get_task(r.task)
        if r.fewshot_pool is None or r.fewshot_pool == task.fewshot_split:
            continue
        notes.append(
            f"{TASK_LABELS.get(r.task, r.task)} {r.num_fewshot}-shot: no {task.fewshot_split} split, so the shots "
            f"were drawn from the {task.fewshot_fallback} split, excluding the evaluated document (lm-eval's rule "
            f"for a task without a training split); not lm-eval's stock {r.num_fewshot}-shot setting"
        )
    notes += [f"{task} not evaluated, its data was unavailable: {why}" for task, why in (missing or {}).items()]
    unreachable = results.settings.get("unreachable_sources") if results is not None else None
    if unreachable:
        notes.append(failures_note(unreachable["hosts"], unreachable["cache"]))
    return notes


def _cell(row: str, column: str, value: float) -> str:
    if pd.isna(value):
        return ""
    if column == LAMBADA_PPL:
        return f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"
    return f"{value:+.3f}" if row.endswith("ours - card") else f"{value:.3f}"


def format_table(df: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """Markdown, accuracies to 3 decimals (the card's precision), differences signed; ``notes`` below it."""
    shown = pd.DataFrame(
        [[_cell(str(row), c, v) for c, v in zip(df.columns, values)] for row, values in zip(df.index, df.to_numpy())],
        index=df.index,
        columns=df.columns,
    )
    align = ("left",) + ("right",) * len(shown.columns)
    table = shown.to_markdown(disable_numparse=True, colalign=align)
    return table + "".join(f"\n\nNote: {n}" for n in notes)


def write_table(df: pd.DataFrame, out_dir: Path, notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """``results.csv`` (full precision) and ``results.md`` (as printed, with ``notes``)."""
    out_dir = Path(out_dir)
    csv, md = out_dir / "results.csv", out_dir / "results.md"
    write_text_atomic(csv, df.to_csv())
    write_text_atomic(md, format_table(df, notes) + "\n")
    return csv, md
