"""flows/family.py end to end: a 3-member tiny family under Prefect's test harness, in a real DVC
project (tests/e2e_project.py's tiny corpus) with a real MLflow store (the project's sqlite file).

The largest member trains with a learning rate far too high (5.0 against the preset's 3e-3): the
flow must forecast it from the two smaller members *before* it trains, then flag it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from e2e_project import TINY_PARAMS, new_project

pytestmark = pytest.mark.slow

FAMILY: dict[str, Any] = {
    "tokenizer": None,  # the members tokenize like the single model (family/tokens: the same BPE again)
    "tokens_per_param": 1,  # a few dozen steps each: the flow is under test, not the law
    "fit": {"metric": "val", "sigma_known": 0.05},  # intervals from 2 members on
    "defaults": {
        "preset": "cpu-tiny",
        "n_positions": 64,
        "seq_len": 32,
        "batch_size": 8,
        "eval_interval": 50,
        "checkpoint_interval": 50,
    },
    "evaluate": {"tasks": []},  # cross-entropy only (the fixture's task documents need 512 tokens)
    "mup": {},  # dvc.yaml's member stages read family.mup (no muP member here): the key must exist
    "members": {
        "f32": {"n_layer": 2, "d_model": 32, "n_head": 2, "lr": 5.0},  # broken on purpose; listed first
        "f8": {"n_layer": 1, "d_model": 8, "n_head": 2},
        "f16": {"n_layer": 1, "d_model": 16, "n_head": 2},
    },
}


@pytest.fixture
def family_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store: <root>/mlflow.db
    monkeypatch.delenv("CGPT_FAULT", raising=False)
    params = copy.deepcopy(TINY_PARAMS)
    params["family"] = FAMILY
    return new_project(tmp_path / "family", params)


def _client(root: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{(root / 'mlflow.db').resolve()}")


def _member_run_id(root: Path, name: str) -> str:
    return json.loads((root / "family" / "runs" / name / "mlflow_run.json").read_text())["run_id"]


def test_family_flow_forecasts_before_training_and_flags_the_broken_member(family_project, harness):
    from flows.family import family

    root = family_project
    state = family(project=str(root), through="evaluate", return_state=True)
    assert state.name == "Flagged", state
    result = state.result()
    assert [m["name"] for m in result["members"]] == ["f8", "f16", "f32"]  # smallest first
    assert "f32" in result["flagged"], result

    client = _client(root)
    exp = client.get_experiment_by_name("cgpt")  # tracking.experiment's default
    [parent] = client.search_runs([exp.experiment_id], "tags.`cgpt.kind` = 'family'")
    pid = parent.info.run_id

    # the parent's children are the members' own model runs
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{pid}'")
    assert {r.data.tags["cgpt.family.member"]: r.info.run_id for r in children} == {
        n: _member_run_id(root, n) for n in ("f8", "f16", "f32")
    }

    # the forecast of f32 (from f8 and f16) was on the parent before f32's run started
    [fc] = client.get_metric_history(pid, "forecast/f32/val_xent")
    f32_run = client.get_run(_member_run_id(root, "f32"))
    assert fc.timestamp <= f32_run.info.start_time, (fc.timestamp, f32_run.info.start_time)
    assert client.get_metric_history(pid, "forecast/f8/val_xent") == []  # no law from 0 members
    artifacts = {a.path for a in client.list_artifacts(pid, "forecasts")}
    assert "forecasts/f32.json" in artifacts

    # graded after it trained: f32 is outside its interval, tagged on its run and on the parent
    f32 = next(m for m in result["members"] if m["name"] == "f32")
    assert f32["flags"] and f32_run.data.tags["cgpt.family.flag"] != "none"
    assert f32_run.data.metrics["family.actual"] == pytest.approx(f32["loss"])
    assert "family.forecast" in f32_run.data.metrics  # the compare view lines members up by these names
    parent = client.get_run(pid)
    assert "f32" in parent.data.tags["cgpt.family.flagged"].split(",")
    assert parent.data.tags["cgpt.family.flag"] not in ("", "none")

    # dvc repro scaling ran: the fit, the table and the plot
    out = root / "family" / "scaling"
    fit = json.loads((out / "fit.json").read_text())
    assert fit["members"] == ["f8", "f16", "f32"] and fit["fit"]["form"] == "power"  # 3 points: the pure power law
    assert (out / "table.csv").is_file() and (out / "table.md").is_file()
    assert (out / "loss_vs_compute.png").stat().st_size > 1000
    assert {a.path for a in client.list_artifacts(pid, "scaling")} >= {"scaling/fit.json", "scaling/table.csv"}

    # resumable: a second run trains nothing (DVC skips every member) and makes the same forecasts
    again = family(project=str(root), through="evaluate")
    assert again["members"] == result["members"]
    assert len(client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{pid}'")) == 3
    assert len(client.get_metric_history(pid, "forecast/f32/val_xent")) == 1  # recorded once
