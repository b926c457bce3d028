"""A store that goes away while a run logs: nothing stops, nothing is lost, nothing is doubled."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from requests.exceptions import ConnectionError as RequestsConnectionError

from cgpt.tracking import runs
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import CurveLogger, Tracker, open_model_run, tracking_uri


class Flaky:
    """A real MLflow client on a real store whose every call fails like a dead server while ``down``."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self.down = False
        self.tracking_uri = client.tracking_uri

    def __getattr__(self, name):
        real = getattr(self._client, name)

        def call(*args, **kwargs):
            if self.down:
                raise RequestsConnectionError("Connection refused")
            return real(*args, **kwargs)

        return call


@pytest.fixture
def flaky_run(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RETRY_FIRST", 0.0)  # retry at the next flush, not 5 s later
    t = open_model_run(tmp_path, TrackingParams(experiment="e"), "r", tmp_path / "m.json", key="k")
    flaky = Flaky(MlflowClient(tracking_uri(tmp_path)))
    return Tracker(flaky, t.run_id, flush_every=3), flaky


def test_points_logged_while_the_store_is_away_are_sent_once_when_it_is_back(flaky_run, capsys):
    tracker, flaky = flaky_run
    curves = CurveLogger(tracker, ["loss"])
    for step in range(1, 31):
        flaky.down = 10 < step <= 20
        curves.log(step, {"loss": 1.0 / step})
    curves.flush()
    tracker.set_tags({"after": "outage"})
    tracker.finish()
    history = flaky._client.get_metric_history(tracker.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 31))  # complete, each step once
    run = flaky._client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["after"] == "outage"
    err = capsys.readouterr().err
    assert err.count("is unreachable") == 1 and "Traceback" not in err


def test_a_store_still_away_at_the_end_costs_one_line_not_an_exception(flaky_run, capsys):
    tracker, flaky = flaky_run
    tracker.log_metrics({"loss": 1.0}, step=1)
    flaky.down = True
    tracker.log_metrics({"loss": 0.5}, step=2)
    tracker.finish()  # no exception
    err = capsys.readouterr().err
    assert "still unreachable" in err and "Traceback" not in err


def test_curve_logger_holds_points_while_the_store_cannot_say_what_it_has(flaky_run):
    tracker, flaky = flaky_run
    CurveLogger(tracker, ["loss"]).log(1, {"loss": 2.0})
    tracker.flush()
    flaky.down = True
    curves = CurveLogger(tracker, ["loss"])  # a resume during an outage: what the run holds is unknown
    assert curves.last is None
    curves.log(1, {"loss": 2.0})  # replayed from the checkpoint: already in the store
    curves.log(2, {"loss": 1.0})
    flaky.down = False
    curves.flush()
    tracker.finish()
    assert sorted(m.step for m in flaky._client.get_metric_history(tracker.run_id, "loss")) == [1, 2]


def test_a_refused_request_is_an_error_not_an_outage(flaky_run):
    from mlflow.exceptions import MlflowException

    tracker, _ = flaky_run
    with pytest.raises(MlflowException):
        tracker._call("setting a bad tag", lambda: tracker.client.set_tag("no-such-run", "a", "b"))


@pytest.mark.slow
def test_a_real_server_killed_and_restarted_during_training_gets_the_whole_curve(tmp_path, monkeypatch, capsys):
    """A real `mlflow server` on 127.0.0.1, SIGKILLed after step 21 and restarted after step 42 of a
    real training loop: training never stops, and the run holds every logged step exactly once."""
    import importlib.util

    from mlflow_server import MlflowServer

    from cgpt.train.loop import train

    spec = importlib.util.spec_from_file_location(
        "loop_helpers", Path(__file__).parents[1] / "train" / "test_train_loop.py"
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)  # the loop tests' tiny model and token folder
    pattern, setup, write_tokens = helpers.pattern, helpers.setup, helpers.write_tokens

    monkeypatch.setattr(runs, "RETRY_FIRST", 0.0)
    server = MlflowServer(tmp_path / "server").start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    try:
        tracker = open_model_run(tmp_path, TrackingParams(experiment="e"), "r", tmp_path / "m.json", key="k")
        real_log = tracker.log_metrics

        def log_metrics(metrics, step=None):
            real_log(metrics, step)
            if step == 21 and "train/loss" in metrics:  # the loop logs every 3rd step
                tracker.flush()
                server.kill()
            if step == 42 and "train/loss" in metrics:
                server.start()

        tracker.log_metrics = log_metrics
        tokens = write_tokens(tmp_path / "tok", {"train": pattern(20_000, 0), "val": pattern(1_000, 0)})
        out = train(setup(steps=60), tokens, tmp_path / "run", tracker=tracker, progress=False)
        tracker.finish()
        client = MlflowClient(server.uri)
        steps = [m.step for m in client.get_metric_history(tracker.run_id, "train/loss")]
        assert sorted(steps) == [r["step"] for r in out.history if "loss" in r]  # complete, each step once
        assert client.get_run(tracker.run_id).info.status == "FINISHED"
        err = capsys.readouterr().err
        assert err.count("is unreachable") == 1 and "is back" in err and "Traceback" not in err
    finally:
        server.kill()


def test_the_next_stage_sends_the_curve_points_a_run_lacks(tmp_path):
    """The store was away when training ended: evaluate/export fill the run from the plot files."""
    from cgpt.tracking.runs import CURVE_METRICS, send_missing_curve

    t = open_model_run(tmp_path, TrackingParams(experiment="e"), "r", tmp_path / "m.json", key="k")
    CurveLogger(t, CURVE_METRICS).log(3, {"loss": 2.0, "lr": 0.1})
    t.flush()  # step 3 reached the store; steps 6 and 9 did not
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "train.csv").write_text("step,loss,lr,grad_norm\n3,2.0,0.1,1.0\n6,1.5,0.05,0.5\n9,1.25,0.01,0.25\n")
    (plots / "val.csv").write_text("step,val_loss\n9,1.5\n")
    assert send_missing_curve(t, plots) == 3
    send_missing_curve(t, plots)  # twice: nothing doubled
    t.finish()
    client = t.client
    loss = client.get_metric_history(t.run_id, "train/loss")
    assert [(m.step, m.value) for m in loss] == [(3, 2.0), (6, 1.5), (9, 1.25)]
    assert [m.step for m in client.get_metric_history(t.run_id, "train/grad_norm")] == [3, 6, 9]
    assert [m.step for m in client.get_metric_history(t.run_id, "val/loss")] == [9]
