"""The browser's view, checked over HTTP: scripts/ui_check.py starts ``mlflow ui`` on the e2e project's
store and a Prefect server (its own PREFECT_HOME), both on 127.0.0.1, runs the pipeline flow once
against the server, and checks what a user's browser would get: the MLflow index page, the
experiment's runs list with the run's name, the run's curves; the Prefect index page, the flow runs
and their tasks with state names, the flow run's page."""

from __future__ import annotations

import subprocess
import sys

import pytest
from e2e_project import copy_project, env
from paths import REPO

pytestmark = pytest.mark.slow


def test_the_ui_check_passes_on_a_project_that_ran(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "project")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/ui_check.py"),
            "--project",
            str(project),
            "--prefect-home",
            str(tmp_path / "prefect-home"),
            "--flow",
        ],  # fmt: skip
        env=env(),
        capture_output=True,
        text=True,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "FAIL" not in out
    assert "ok   the pipeline flow ran against the server (exit 0)" in out
    assert "ok   the runs list of 'cgpt' has a run named 'default'" in out
    for curve in ("train/loss", "val/loss", "train/lr"):
        assert f"metric '{curve}' is a curve" in out
    assert "ok   the Prefect API lists flow runs (1)" in out
    assert "has a state name (Completed)" in out
    tasks = next(line for line in out.splitlines() if line.strip().startswith("tasks: "))
    assert "dvc repro sources [Completed]" in tasks  # always changed: it ran
    assert "dvc repro train [Up to date]" in tasks  # the built project is up to date: DVC skipped it
    assert "the flow run's page" in out


def test_the_ui_check_fails_in_one_line_without_a_store(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/ui_check.py"), "--project", str(tmp_path)],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'mlflow.db'} does not exist; run the pipeline first (`dvc repro`)"
    ]
