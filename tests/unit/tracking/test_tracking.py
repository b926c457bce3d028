"""MLflow helpers against a real sqlite store in a temp dir."""

import json

from mlflow.tracking import MlflowClient

from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import RUN_FILE, artifact_location, numeric_items, open_model_run, stage_run, tracking_uri

EXP = TrackingParams(experiment="exp")


def test_model_run_is_reopened_and_metrics_are_batched(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    marker = tmp_path / "runs" / "r" / RUN_FILE
    t = open_model_run(tmp_path, EXP, "r", marker, key="config-a")
    assert t.fresh and json.loads(marker.read_text())["run_id"] == t.run_id
    for step in range(5):
        t.log_metrics({"loss": 5.0 - step}, step=step)
    client = MlflowClient(tracking_uri(tmp_path))
    assert client.get_metric_history(t.run_id, "loss") == []  # still buffered
    t.finish()
    assert [m.value for m in client.get_metric_history(t.run_id, "loss")] == [5.0, 4.0, 3.0, 2.0, 1.0]
    again = open_model_run(tmp_path, EXP, "r", marker, key="config-a")
    assert again.run_id == t.run_id and not again.fresh
    again.log_params({"a": {"b": 1}})
    again.log_params({"a": {"b": 2}})  # params are immutable in MLflow: the first value stays, no error
    again.finish()
    run = client.get_run(t.run_id)
    assert run.data.params == {"a.b": "1"} and run.info.status == "FINISHED"
    other = open_model_run(tmp_path, EXP, "r", marker, key="config-b")  # another configuration: another run
    assert other.fresh and other.run_id != t.run_id
    assert open_model_run(tmp_path, EXP, "r", marker).run_id == other.run_id  # no key: whatever is recorded
    exp = client.get_experiment_by_name("exp")
    assert exp.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())


def test_env_uri_wins_and_stage_runs_go_to_data_experiment(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t = stage_run(tmp_path, EXP, "clean")
    t.log_metrics(numeric_items({"documents": 3, "per_source": {"a": {"chars": 10}}, "name": "x", "ok": True}))
    t.finish()
    client = MlflowClient(uri)
    run = client.get_run(t.run_id)
    assert run.data.metrics == {"documents": 3.0, "per_source.a.chars": 10.0}
    assert client.get_experiment(run.info.experiment_id).name == "exp-data"


def test_disabled_tracking_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = open_model_run(tmp_path, TrackingParams(enabled=False), "r", tmp_path / RUN_FILE)
    t.log_metrics({"loss": 1.0})
    t.finish()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / RUN_FILE).exists()


def test_run_in_an_experiment_copy_keeps_artifacts_beside_the_store_and_names_the_experiment(tmp_path, monkeypatch):
    """`dvc exp run --temp` trains in a temporary copy: with MLFLOW_TRACKING_URI naming the project's
    store, the run and its artifacts land in the project, tagged with the DVC experiment's name."""
    project, copy = tmp_path / "project", tmp_path / "project/.dvc/tmp/exps/standalone/tmp1"
    copy.mkdir(parents=True)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_EXP_NAME", "lr-1e-3")
    t = open_model_run(copy, EXP, "default", copy / "runs/default/model" / RUN_FILE)
    t.log_text("hello", "hf/README.md")
    t.finish()
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("exp").artifact_location == (project / "mlartifacts").as_uri()
    assert (project / "mlartifacts").is_dir() and not (copy / "mlartifacts").exists()
    assert client.get_run(t.run_id).data.tags["dvc.exp_name"] == "lr-1e-3"
    assert artifact_location("http://127.0.0.1:5000") is None


def test_two_projects_in_one_process_keep_their_own_stores(tmp_path, monkeypatch):
    """MLflow 3's set_tracking_uri exports MLFLOW_TRACKING_URI; the first project's store must not
    become every later project's (a flow or a test working on two projects in one process)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        run = open_model_run(root, EXP, "r", root / RUN_FILE)
        run.finish()
        assert MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(run.run_id).info.run_name == "r"
    assert tracking_uri(b).endswith(f"{b}/mlflow.db")


def test_returning_to_an_earlier_configuration_reopens_its_run(tmp_path, monkeypatch):
    """The marker names the latest configuration's run; the earlier one is found by its key."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    marker = tmp_path / "runs" / "r" / RUN_FILE
    a = open_model_run(tmp_path, EXP, "r", marker, key="config-a")
    a.finish()
    b = open_model_run(tmp_path, EXP, "r", marker, key="config-b")
    b.finish()
    back = open_model_run(tmp_path, EXP, "r", marker, key="config-a")
    assert back.run_id == a.run_id and not back.fresh
    assert json.loads(marker.read_text())["run_id"] == a.run_id
    # evaluate/export pass no key: the marker's key, so a lost marker run is found by it too
    marker.write_text(json.dumps({"run_id": "gone", "key": "config-b", "tracking_uri": tracking_uri(tmp_path)}))
    assert open_model_run(tmp_path, EXP, "r", marker).run_id == b.run_id
    other_name = open_model_run(tmp_path, EXP, "s", tmp_path / "s" / RUN_FILE, key="config-a")
    assert other_name.fresh  # another run folder with the same configuration is its own run


def test_a_run_with_the_weights_of_an_evaluated_run_shows_its_evaluation(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    evaluated = open_model_run(tmp_path, EXP, "r", tmp_path / "a.json", key="config-a")
    evaluated.record_weights("w1")
    evaluated.log_metrics({"val_xent": 2.5, "train/loss": 3.0}, step=60)
    evaluated.finish()
    same = open_model_run(tmp_path, EXP, "r", tmp_path / "b.json", key="config-b")
    same.record_weights("w1")  # DVC skips evaluate for it: the model did not change
    same.finish()
    run = MlflowClient(tracking_uri(tmp_path)).get_run(same.run_id)
    assert run.data.metrics == {"val_xent": 2.5} and run.data.tags["cgpt.evaluation_run"] == evaluated.run_id
    assert run.data.tags["cgpt.weights_sha256"] == "w1"
