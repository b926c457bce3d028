"""DVC as a team uses it, on a real project: experiments that line up with MLflow runs, and a remote.

Two `dvc exp run -S train.lr=...` experiments must be two MLflow runs, each with its own resolved
params and its experiment's name; results committed and pushed to a directory remote must come back
byte for byte in a fresh clone with `dvc pull`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from e2e_project import copy_project, dvc, files_bytes, run, stages_run

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=cgpt", "-c", "user.email=cgpt@localhost"]


def commit_all(project: Path, message: str) -> None:
    run(["git", "add", "-A"], cwd=project)
    run([*GIT, "commit", "-q", "-m", message], cwd=project)


def test_two_experiments_are_two_mlflow_runs_with_their_own_params(built_project, tmp_path):
    from mlflow.tracking import MlflowClient

    project = copy_project(built_project, tmp_path / "p")
    commit_all(project, "baseline")
    for name, lr in (("lr-low", "0.001"), ("lr-high", "0.005")):
        dvc("exp", "run", "-S", f"train.lr={lr}", "-n", name, cwd=project)
    shown = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    names = {exp["name"]: exp for rev in shown for exp in (rev.get("experiments") or [])}
    assert {"lr-low", "lr-high"} <= set(names), names.keys()

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cgpt").experiment_id])
    by_exp = {r.data.tags.get("dvc.exp_name"): r for r in runs}
    assert {"lr-low", "lr-high"} <= set(by_exp)
    assert len(runs) == 3  # the baseline's run and one per experiment
    # told apart in the runs list: the workspace's run by its name, each experiment's with the experiment's
    assert sorted(r.info.run_name for r in runs) == ["default", "default · lr-high", "default · lr-low"]
    for name, lr in (("lr-low", "0.001"), ("lr-high", "0.005")):
        r = by_exp[name]
        assert r.data.params["train.lr"] == lr and r.data.params["recipe.peak_lr"] == lr
        assert r.data.tags["mlflow.source.git.commit"] and r.info.status == "FINISHED"
        assert r.data.tags["mlflow.source.name"] == "stages/train.py"  # the run page's Source box
        # a new learning rate trained from scratch (the baseline's checkpoints were set aside)
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]
        assert steps == list(range(10, 61, 10))
    low, high = (
        client.get_metric_history(by_exp[n].info.run_id, "train/loss")[-1].value for n in ("lr-low", "lr-high")
    )
    assert low != high


def test_results_pushed_to_a_directory_remote_come_back_in_a_fresh_clone(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=project)
    commit_all(project, "results")
    dvc("push", cwd=project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=tmp_path)
    dvc("pull", cwd=clone)
    outputs = ("data/raw", "data/clean", "data/tokens", "runs/default/model", "runs/default/hf")
    assert files_bytes(clone, *outputs) == files_bytes(project, *outputs)
    # the pulled results are up to date (checkpoints are not cached: --allow-missing lets train stand); only
    # the always-checked fingerprint of the local corpus runs
    assert stages_run(dvc("repro", "--allow-missing", cwd=clone)) == {"sources"}
    assert run([sys.executable, "-m", "dvc", "metrics", "diff", "HEAD"], cwd=clone).returncode == 0
