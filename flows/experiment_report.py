"""The report of one DVC experiment against its baseline: ``dvc exp diff <baseline> <exp> --json`` as
markdown, the change signed experiment − baseline, each metric marked better or worse.

``dvc exp diff <exp>`` alone compares the experiment (old) with the *workspace* (new): its change is
workspace − experiment, the opposite sign of what a reader of an experiment's report expects, and the
workspace need not be the experiment's baseline. The flow therefore records the baseline commit
(``HEAD`` when ``dvc exp run --temp`` starts) and diffs ``<baseline> <exp>``: old = baseline,
new = experiment.

Which way is better: lower for losses, cross-entropy and perplexity; higher for accuracies (the
``eval_<k>shot_acc*.json`` files, a column per task); no verdict for counts such as ``steps``.
Rows come headline first: validation cross-entropy, test cross-entropy, other losses, then the
accuracies, then the rest.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

LOWER_IS_BETTER = re.compile(r"xent|loss|perplexity|ppl", re.IGNORECASE)
HIGHER_IS_BETTER = re.compile(r"acc", re.IGNORECASE)


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def experiment_artifact_key(exp_name: str) -> str:
    """One artifact key per experiment, named after it: ``cgpt-experiment-<name>``."""
    return artifact_key(f"cgpt-experiment-{exp_name}")


def better_when(path: str, metric: str) -> str | None:
    """``"lower"``, ``"higher"`` or None (no verdict) for ``metric`` of the metrics file ``path``."""
    if LOWER_IS_BETTER.search(metric):
        return "lower"
    if HIGHER_IS_BETTER.search(metric) or HIGHER_IS_BETTER.search(PurePosixPath(path).stem):
        return "higher"
    return None


def verdict(old: Any, new: Any, direction: str | None) -> str:
    """better / worse / same for a number that exists on both sides; '' without a direction."""
    if old is None and new is not None:
        return "new"  # the baseline has no such metric
    if new is None:
        return "missing"  # the experiment has none
    if not _is_number(old) or not _is_number(new):
        return ""
    if new == old:
        return "same"
    if direction is None:
        return ""
    return "better" if (new < old) == (direction == "lower") else "worse"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rank(metric: str, direction: str | None) -> int:
    if metric == "val_xent":
        return 0
    if "xent" in metric:
        return 1
    return {"lower": 2, "higher": 3}.get(direction or "", 4)


def metric_rows(diff: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics of ``dvc exp diff --json`` (``{"metrics": {path: {metric: {"old", "new", "diff"}}}}``)
    as rows, headline first; within a rank by file, a file's average first, then by name (DVC's JSON
    order varies from run to run)."""
    rows = []
    for path, metrics in (diff.get("metrics") or {}).items():
        for metric, v in metrics.items():
            old, new = v.get("old"), v.get("new")
            direction = better_when(path, metric)
            change = new - old if _is_number(old) and _is_number(new) else None
            rows.append(
                {
                    "path": path,
                    "metric": metric,
                    "baseline": old,
                    "experiment": new,
                    "change": change,
                    "better": direction,
                    "verdict": verdict(old, new, direction),
                }
            )
    return sorted(rows, key=lambda r: (_rank(r["metric"], r["better"]), r["path"], r["metric"] != "avg", r["metric"]))


def _num(v: Any, signed: bool = False) -> str:
    if v is None:
        return "–"
    if not _is_number(v):
        return str(v)
    if isinstance(v, int):
        return f"{v:+d}" if signed else str(v)
    text = f"{v:+.5f}" if signed else f"{v:.5f}"  # DVC's default precision
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("+0", "-0") else text


def report_markdown(diff: dict[str, Any], exp_name: str, baseline: str) -> str:
    """The experiment against ``baseline`` (a label: the commit it started from): metrics, then params."""
    rows = metric_rows(diff)
    lines = [f"## {exp_name} against its baseline {baseline}", ""]
    if rows:
        lines += [
            f"Change = {exp_name} − baseline. Lower is better for losses and cross-entropy, higher for accuracies.",
            "",
            f"| metric | file | baseline | {exp_name} | change | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            verdict_cell = f"**{r['verdict']}**" if r["verdict"] == "worse" else r["verdict"]
            lines.append(
                f"| {r['metric']} | {PurePosixPath(r['path']).name} | {_num(r['baseline'])} | "
                f"{_num(r['experiment'])} | {_num(r['change'], signed=True)} | {verdict_cell} |"
            )
    else:
        lines.append("No metric differs from the baseline (or the baseline commit holds no metrics).")
    params = [(path, key, v) for path, keys in (diff.get("params") or {}).items() for key, v in keys.items()]
    if params:
        lines += ["", f"| param | baseline | {exp_name} |", "|---|---|---|"]
        lines += [f"| {key} | {_num(v.get('old'))} | {_num(v.get('new'))} |" for _, key, v in params]
    return "\n".join(lines) + "\n"


def exp_diff(project: Path, baseline: str, exp_name: str) -> dict[str, Any]:
    """``dvc exp diff <baseline> <exp_name> --json``: old = the baseline, new = the experiment."""
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "diff", baseline, exp_name, "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout or "{}")


def baseline_commit(project: Path) -> str:
    """The commit ``dvc exp run`` starts an experiment from (``HEAD``), as a full sha."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True)
    return out.stdout.strip()
