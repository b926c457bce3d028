"""Nothing stale, nothing lost, when `dvc` itself dies or a second writer starts: a real `dvc repro`,
a real kill -9 of `dvc` alone (CGPT_FAULT=parent:..., cgpt/faults.py), real concurrent processes.

* The stage left running after its `dvc` was killed stops itself at once (cgpt/core/orphan.py)
  with a checkpoint at that step; the next `dvc repro` resumes to exactly the bytes and the MLflow
  record of an undisturbed run (the session's ``built_project``).
* A second writer of a run folder (a `dvc repro` beside a manual `cgpt train`, or a `dvc repro` in
  another checkout whose runs/ is the same folder) fails in one line naming the holder's pid
  (cgpt/core/locks.py), and leaves the first one's work alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from e2e_project import copy_project, dvc, env, files_bytes, new_project

from cgpt.core.locks import holder
from cgpt.train.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow

# what an undisturbed run gives (as tests/e2e/test_reliability.py compares; speed.jsonl holds timings)
RESULTS = (
    "data/raw", "data/clean", "data/tokens", "runs/default/model", "runs/default/hf", "runs/default/plots/train.csv",
    "runs/default/plots/val.csv", "runs/default/train_metrics.json", "runs/default/eval_metrics.json",
    "runs/default/sample.txt", "runs/default/checkpoints/step-00000060",
)  # fmt: skip
TIMING_FILES = ("speed.jsonl", "complete.json")


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]


def test_a_stage_whose_dvc_is_killed_stops_with_a_checkpoint_and_a_rerun_resumes_to_the_same_bytes(
    built_project, tmp_path
):
    project = new_project(tmp_path / "p")
    # kill -9 of `dvc repro` alone while step 25 trains (checkpoints every 20): the stage lives on
    proc = dvc("repro", cwd=project, check=False, extra_env={"CGPT_FAULT": "parent:train.step@25"})
    # (this returned when the stage, which holds dvc's pipes too, ended: it stopped by itself)
    out = proc.stdout + proc.stderr
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert "the dvc process that started train (pid" in out and "is gone: stopping" in out, out[-3000:]
    assert error_lines(proc)[-1] == "error: stopped after step 25; checkpoint written, rerun to resume"
    ckpts = project / "runs/default/checkpoints"
    assert [c.name for c in list_checkpoints(ckpts)] == ["step-00000020", "step-00000025"]
    assert not (project / "runs/default/model").exists()
    assert holder(project / "runs/default") is None  # its lock went with it

    dvc("repro", cwd=project)
    assert files_bytes(project, *RESULTS, exclude=TIMING_FILES) == files_bytes(
        built_project, *RESULTS, exclude=TIMING_FILES
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "runs/default/mlflow_run.json").read_text())["run_id"]
    for key, steps in (("train/loss", range(10, 61, 10)), ("val/loss", (30, 60))):
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(steps), key
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name("cgpt").experiment_id])) == 1


def test_a_second_writer_of_a_run_folder_fails_in_one_line_naming_the_first(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    for ckpt in list_checkpoints(project / "runs/default/checkpoints"):  # retrain from scratch
        ckpt.rename(ckpt.with_name(f"moved-{ckpt.name}"))
    expected = files_bytes(built_project, "runs/default/model", "runs/default/plots/train.csv")

    # the first writer: a manual `cgpt train`, frozen (SIGSTOP) as soon as it holds runs/default
    first = subprocess.Popen(
        [sys.executable, "-m", "cgpt.cli", "train"], cwd=project, env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while (held := holder(project / "runs/default")) is None:
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert held["pid"] == first.pid
        # a second writer in the same checkout: `dvc repro` of the train stage
        second = dvc("repro", "-f", "--single-item", "train", cwd=project, check=False)
        # and one in another checkout whose runs/ is the same folder (a symlink, as to a shared disk)
        other = copy_project(project, tmp_path / "other")
        shutil.rmtree(other / "runs")
        (other / "runs").symlink_to(project / "runs")
        third = dvc("repro", "-f", "--single-item", "train", cwd=other, check=False)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    for proc in (second, third):
        lines = error_lines(proc)
        assert proc.returncode != 0 and len(lines) == 1, (proc.stdout + proc.stderr)[-3000:]
        assert "runs/default is being written by another cgpt process: pid " + str(first.pid) in lines[0]
        assert "Traceback" not in proc.stderr
    _, err = first.communicate()
    assert first.returncode == 0, err[-3000:]  # the first writer was not disturbed
    assert files_bytes(project, "runs/default/model", "runs/default/plots/train.csv") == expected


def test_a_failed_validation_keeps_data_sources_json(built_project, tmp_path):
    """The sources stage validates the whole params.yaml; when that fails, its outputs (declared
    `persist: true` in dvc.yaml) keep their bytes: DVC no longer deletes them before the stage runs."""
    project = copy_project(built_project, tmp_path / "p")
    before = files_bytes(project, "data/sources.json", "data/eval_sources.json")
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("train:\n", "train:\n  max_step: 60\n", 1))
    proc = dvc("repro", cwd=project, check=False)
    assert proc.returncode != 0 and "unknown key train.max_step" in error_lines(proc)[0], proc.stderr[-2000:]
    assert files_bytes(project, "data/sources.json", "data/eval_sources.json") == before
