"""A trained member as one point of the scaling law: ``family/points/<name>.json``.

The ``member-evaluate@<name>`` stage writes it after the evaluation (size, tokens, training FLOPs,
val/test cross-entropy, downstream accuracy per shot count). The ``scaling`` stage depends on the
folder ``family/points`` as a whole: DVC cannot list a variable number of files as deps, but it
links a folder dep to the stage outputs inside it, so adding a member makes ``dvc repro scaling``
train and evaluate it first. Only the members currently in params.yaml are read, so a removed
member's leftover point file is ignored. Same inputs, same bytes (no timings here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cgpt.core.fsutil import read_json, read_json_if_valid, write_json_atomic
from cgpt.core.project import Project
from cgpt.family.members import FamilyMember


def point_path(root: Path, name: str) -> Path:
    return Project(root).family_points / f"{name}.json"


def downstream_accuracy(results: dict[str, Any], key: str = "acc") -> dict[str, dict[str, float]]:
    """``{"0": {"hellaswag": 0.27, ...}, "5": {...}}``: plain ``acc`` per task and shot count (the card's
    metric), from the evaluate stage's ``eval/results.json``; ``key="n_docs"``: the documents behind each."""
    out: dict[str, dict[str, Any]] = {}
    for row in results.get("results", []):
        if row.get(key) is not None:
            out.setdefault(str(int(row["num_fewshot"])), {})[row["task"]] = row[key]
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def write_point(root: Path, member: FamilyMember, run_dir: Path) -> Path:
    """The member's point from its evaluation outputs in ``run_dir`` (``eval_metrics.json``,
    ``eval/results.json``) and, for a member whose training diverged, the step (``train_metrics.json``)."""
    xent = read_json(
        run_dir / "eval_metrics.json", missing="no evaluation of this member; run its evaluate stage first"
    )
    results = read_json_if_valid(run_dir / "eval" / "results.json") or {}
    trained = read_json_if_valid(run_dir / "train_metrics.json") or {}
    point = {
        **member.describe(),
        "val_xent": xent.get("val_xent"),
        "test_xent": xent.get("test_xent"),
        "accuracy": downstream_accuracy(results),
        "accuracy_documents": downstream_accuracy(results, "n_docs"),
        "diverged_at_step": trained.get("diverged_at_step"),
    }
    path = point_path(root, member.name)
    write_json_atomic(path, point)
    return path


def read_point(root: Path, name: str) -> dict[str, Any]:
    return read_json(
        point_path(root, name),
        missing=f"member {name} has no point yet; run `dvc repro member-evaluate@{name}`",
        invalid=f"rerun `dvc repro -f member-evaluate@{name}`",
    )
