"""When the tracking store fails, cgpt does not: real stages, a real project, real MLflow stores.

* a store that is not there (``http://127.0.0.1:9``): one line naming it, then the fall-back
  store (default) or a stop before any work (``tracking.on_unavailable: error``);
* export killed inside model logging and inside registration: no PENDING model is left, and
  there is one registered version per distinct weights;
* one configuration, one run: a loop setting changes nothing in MLflow, and returning to an earlier
  configuration finds its run and its checkpoints (nothing retrained).

(A real ``mlflow server`` killed and restarted during training: tests/unit/tracking/test_outage.py.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from e2e_project import copy_project, dvc, read_params, run, write_params
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def stage(project: Path, name: str, check: bool = False, **env: str):
    return run([sys.executable, "-m", f"stages.{name}"], cwd=project, check=check, extra_env=env)


def client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def model_runs(project: Path) -> list:
    c = client(project)
    exp = c.get_experiment_by_name("cgpt")
    return c.search_runs([exp.experiment_id], "tags.`cgpt.kind` = 'model'")


def test_an_unreachable_store_is_one_line_then_the_fallback_or_a_stop(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    data_runs_before = len(
        client(project).search_runs([client(project).get_experiment_by_name("cgpt-data").experiment_id])
    )
    proc = stage(project, "download", MLFLOW_TRACKING_URI=NOWHERE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if NOWHERE in line]
    assert len(lines) == 1 and "mlflow.db" in lines[0] and "Traceback" not in proc.stderr
    c = client(project)
    data = c.search_runs([c.get_experiment_by_name("cgpt-data").experiment_id], order_by=["start_time DESC"])
    assert len(data) == data_runs_before + 1 and data[0].data.tags["cgpt.tracking.fallback_for"] == NOWHERE

    params = read_params(project)
    params.setdefault("tracking", {})["on_unavailable"] = "error"
    write_params(project, params)
    before = (project / "runs/default/eval_metrics.json").stat().st_mtime_ns
    proc = stage(project, "evaluate", MLFLOW_TRACKING_URI=NOWHERE)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and NOWHERE in proc.stderr
    assert proc.stderr.startswith("error: MLflow tracking store") and "Traceback" not in proc.stderr
    assert (project / "runs/default/eval_metrics.json").stat().st_mtime_ns == before  # no work done
    repro = dvc("repro", cwd=project, check=False, extra_env={"MLFLOW_TRACKING_URI": NOWHERE})
    assert repro.returncode != 0 and (repro.stdout + repro.stderr).count(f"error: MLflow tracking store {NOWHERE}") == 1


def test_kills_during_export_leave_no_pending_model_and_one_version_per_weights(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["export"]["dtype"] = "bfloat16"  # other exported weights than the built project's version
    write_params(project, params)
    killed = stage(project, "export", CGPT_FAULT="export.logging")
    assert killed.returncode == -9
    c = client(project)
    run_id = json.loads((project / "runs/default/mlflow_run.json").read_text())["run_id"]
    exp_id = c.get_run(run_id).info.experiment_id
    models = lambda: c.search_logged_models(experiment_ids=[exp_id])  # noqa: E731
    assert any(str(m.status).endswith("PENDING") for m in models())  # what the kill left
    assert stage(project, "export", CGPT_FAULT="export.registering").returncode == -9  # logged, not registered
    stage(project, "export", check=True)
    stage(project, "export", check=True)  # a rerun of the same weights: nothing new
    params["export"]["dtype"] = "float32"  # back to the built project's weights: its version again
    write_params(project, params)
    stage(project, "export", check=True)
    assert not [m for m in models() if str(m.status).endswith("PENDING")]
    versions = c.search_model_versions("name = 'cgpt'")
    digests = [v.tags.get("cgpt.weights_sha256") for v in versions]
    assert len(versions) == 2 and len(set(digests)) == 2 and None not in digests
    ready = [m for m in models() if str(m.status).endswith("READY")]
    assert len(ready) == 2  # one logged model per weights: the PENDING one was finished, not replaced


def test_one_configuration_is_one_run_and_coming_back_retrains_nothing(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    marker = project / "runs/default/mlflow_run.json"
    first = json.loads(marker.read_text())["run_id"]
    assert len(model_runs(project)) == 1
    params = read_params(project)
    params["train"]["checkpoint_interval"] = 30  # a loop setting: trains nothing, opens no run
    write_params(project, params)
    dvc("repro", "train", cwd=project)
    assert [r.info.run_id for r in model_runs(project)] == [first]
    params["train"]["seed"] = 7  # another configuration: its own run, trained from step 0
    write_params(project, params)
    dvc("repro", "train", cwd=project)
    assert json.loads((project / "runs/default/timing.json").read_text())["resumed_from_step"] == 0
    assert len(model_runs(project)) == 2
    params["train"].pop("seed")  # back to the built project's configuration (the default seed)
    write_params(project, params)
    dvc("repro", "train", cwd=project)  # back: its checkpoints and its run, nothing retrained
    assert json.loads((project / "runs/default/timing.json").read_text())["resumed_from_step"] == 60
    assert json.loads(marker.read_text())["run_id"] == first and len(model_runs(project)) == 2
    assert (project / "runs/default/model/model.safetensors").read_bytes() == (
        built_project / "runs/default/model/model.safetensors"
    ).read_bytes()
