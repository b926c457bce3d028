"""The experiment deployment's report: experiment − baseline, better or worse, headline first, one
artifact key per experiment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from flows.experiment_report import (
    artifact_key,
    baseline_commit,
    better_when,
    exp_diff,
    experiment_artifact_key,
    metric_rows,
    report_markdown,
)

#: ``dvc exp diff HEAD lr-1e-3 --json`` from DVC 3.67.1, verbatim (a tiny repo shaped like the project:
#: its stage writes train_metrics.json, eval_metrics.json and eval_0shot_acc.json). The experiment is
#: worse: val_xent 5.374 against the baseline's 5.270. ``dvc exp diff lr-1e-3`` printed -0.104.
DVC_EXP_DIFF_JSON = """
{"metrics": {"runs/default/eval_0shot_acc.json": {"WG": {"old": 0.49, "new": 0.505, "diff": 0.015000000000000013},
"PIQA": {"old": 0.56, "new": 0.545, "diff": -0.015000000000000013}}, "runs/default/eval_metrics.json": {"val_xent":
{"old": 5.27, "new": 5.374, "diff": 0.10400000000000009}, "test_xent": {"old": 5.2811, "new": 5.3902, "diff":
0.10909999999999975}}, "runs/default/train_metrics.json": {"steps": {"old": 200, "new": 400, "diff": 200},
"tokens_seen": {"old": 819200, "new": 1638400, "diff": 819200}, "train_loss": {"old": 5.1203, "new": 5.2417, "diff":
0.12139999999999951}}}, "params": {"params.yaml": {"train.max_steps": {"old": 200, "new": 400, "diff": 200},
"train.lr": {"old": 0.0006, "new": 0.001, "diff": 0.0004000000000000001}}}}
"""


def _row(md: str, metric: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {metric} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_worse_experiment_shows_a_positive_change_marked_worse():
    md = report_markdown(json.loads(DVC_EXP_DIFF_JSON), "lr-1e-3", "5a78c59")
    assert "lr-1e-3 against its baseline 5a78c59" in md
    assert _row(md, "val_xent") == ["val_xent", "eval_metrics.json", "5.27", "5.374", "+0.104", "**worse**"]
    assert _row(md, "test_xent")[4:] == ["+0.1091", "**worse**"]
    assert _row(md, "train_loss")[4:] == ["+0.1214", "**worse**"]
    assert _row(md, "PIQA")[4:] == ["-0.015", "**worse**"]  # an accuracy down
    assert _row(md, "WG")[4:] == ["+0.015", "better"]  # an accuracy up
    assert _row(md, "steps")[4:] == ["+200", ""]  # a count: no verdict
    assert _row(md, "train.lr") == ["train.lr", "0.0006", "0.001"]
    assert _row(md, "train.max_steps") == ["train.max_steps", "200", "400"]


def test_the_headline_cross_entropy_comes_first():
    order = [r["metric"] for r in metric_rows(json.loads(DVC_EXP_DIFF_JSON))]
    assert order == ["val_xent", "test_xent", "train_loss", "PIQA", "WG", "steps", "tokens_seen"]


@pytest.mark.parametrize(
    ("path", "metric", "direction"),
    [
        ("runs/default/eval_metrics.json", "val_xent", "lower"),
        ("runs/default/train_metrics.json", "train_loss", "lower"),
        ("eval/upstream.json", "val.perplexity", "lower"),
        ("runs/default/eval_5shot_acc_norm.json", "HS", "higher"),
        ("runs/default/eval_0shot_acc.json", "avg", "higher"),
        ("runs/default/train_metrics.json", "tokens_seen", None),
    ],
)
def test_which_way_is_better(path, metric, direction):
    assert better_when(path, metric) == direction


def test_a_metric_on_one_side_only():
    diff = {"metrics": {"m.json": {"val_xent": {"old": None, "new": 5.0}, "test_xent": {"old": 5.3, "new": None}}}}
    md = report_markdown(diff, "e", "abc1234")
    assert _row(md, "val_xent")[2:] == ["–", "5", "–", "new"]
    assert _row(md, "test_xent")[2:] == ["5.3", "–", "–", "missing"]


def test_nothing_differs():
    md = report_markdown({"metrics": {}, "params": {}}, "e", "abc1234")
    assert "No metric differs" in md


@pytest.mark.parametrize(
    ("name", "key"),
    [("lr-1e-3", "cgpt-experiment-lr-1e-3"), ("LR_0.001", "cgpt-experiment-lr-0-001"), ("fiery-dace", None)],
)
def test_one_artifact_key_per_experiment(name, key):
    got = experiment_artifact_key(name)
    assert got == (key or f"cgpt-experiment-{name}")
    assert artifact_key(got) == got and got.replace("-", "").isalnum() and got == got.lower()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_real_dvc_experiment_against_its_baseline(tmp_path, monkeypatch):
    """A real ``dvc exp run --temp`` in a tiny repo: the report diffs baseline → experiment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(k, raising=False)

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.0006\n")
    (tmp_path / "t.py").write_text(
        textwrap.dedent(
            """
            import json, yaml
            lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
            json.dump({"val_xent": 5.27 if lr == 0.0006 else 5.374}, open("eval_metrics.json", "w"))
            json.dump({"HS": 0.25 if lr == 0.0006 else 0.26}, open("eval_0shot_acc.json", "w"))
            """
        )
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  t:\n    cmd: python t.py\n    params: [train.lr]\n    metrics:\n"
        "      - eval_metrics.json: {cache: false}\n      - eval_0shot_acc.json: {cache: false}\n"
    )
    run("git", "init", "-q")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    dvc = [sys.executable, "-m", "dvc"]
    run(*dvc, "init", "-q")
    run(*dvc, "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    base = baseline_commit(tmp_path)
    run(*dvc, "exp", "run", "--temp", "-S", "train.lr=0.001", "-n", "lr-1e-3")
    assert json.loads((tmp_path / "eval_metrics.json").read_text())["val_xent"] == 5.27  # workspace untouched

    md = report_markdown(exp_diff(tmp_path, base, "lr-1e-3"), "lr-1e-3", base[:7])
    assert _row(md, "val_xent") == ["val_xent", "eval_metrics.json", "5.27", "5.374", "+0.104", "**worse**"]
    assert _row(md, "HS")[4:] == ["+0.01", "better"]
    assert _row(md, "train.lr") == ["train.lr", "0.0006", "0.001"]
