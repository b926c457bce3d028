"""One logged model and one registered version per weights digest, on a real sqlite store."""

import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from cgpt.tracking.params import TrackingParams
from cgpt.tracking.registry import (
    EXP_NAME_TAG,
    EXP_NAMES_TAG,
    WEIGHTS_TAG,
    find_version,
    register_version,
    run_logged_models,
    settle_pending,
    start_logged_model,
    weights_digest,
)
from cgpt.tracking.runs import open_model_run, tracking_uri


@pytest.fixture
def run(tmp_path):
    t = open_model_run(tmp_path, TrackingParams(experiment="e"), "r", tmp_path / "m.json", key="k")
    t.log_params({"lr": 0.1})
    return MlflowClient(tracking_uri(tmp_path)), t.run_id


def test_a_pending_model_is_finished_not_duplicated_and_a_ready_one_reused(run):
    client, run_id = run
    model_id, ready = start_logged_model(client, run_id, "d1", {"cgpt.preset": "p"})
    assert not ready
    logged = client.get_logged_model(model_id)
    assert logged.tags[WEIGHTS_TAG] == "d1" and logged.params == {"lr": "0.1"}
    # a kill here: the rerun gets the same PENDING model back, to log into
    assert start_logged_model(client, run_id, "d1", {}) == (model_id, False)
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    assert start_logged_model(client, run_id, "d1", {}) == (model_id, True)
    other, _ = start_logged_model(client, run_id, "d2", {})  # other weights: another model
    assert other != model_id and len(run_logged_models(client, run_id)) == 2


def test_pending_models_of_other_weights_are_marked_failed(run):
    client, run_id = run
    stale, _ = start_logged_model(client, run_id, "old", {})
    current, _ = start_logged_model(client, run_id, "new", {})
    assert settle_pending(client, run_id, keep=current) == [stale]
    assert str(client.get_logged_model(stale).status).endswith("FAILED")
    assert str(client.get_logged_model(current).status).endswith("PENDING")


def test_the_same_weights_are_registered_once_with_every_experiment_named(run, monkeypatch):
    client, run_id = run
    model_id, _ = start_logged_model(client, run_id, "d1", {})
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    assert find_version(client, "m", "d1") is None  # no registered model yet: nothing, not an error
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    first = register_version(client, "m", model_id, "d1", {"cgpt.preset": "p"})
    monkeypatch.setenv("DVC_EXP_NAME", "exp-b")
    again = register_version(client, "m", model_id, "d1", {"cgpt.preset": "p"})
    assert again.version == first.version
    versions = client.search_model_versions("name = 'm'")
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags[WEIGHTS_TAG] == "d1" and tags[EXP_NAME_TAG] == "exp-a" and tags[EXP_NAMES_TAG] == "exp-a,exp-b"


def test_weights_digest_reads_the_safetensors_files(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    (tmp_path / "README.md").write_text("the card does not count")
    import hashlib

    assert weights_digest(tmp_path) == hashlib.sha256(b"abc").hexdigest()
