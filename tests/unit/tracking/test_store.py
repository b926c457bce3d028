"""The store probe and the fall-back decision (cgpt/tracking/store.py): real sockets, real folders."""

import os

import pytest

from cgpt.tracking import store
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import open_model_run, provenance_tags, tracking_uri
from cgpt.tracking.store import TrackingUnavailable, check_tracking, probe, resolve_store


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    for name in store.HTTP_DEFAULTS:  # set by the code under test: put back after each test
        monkeypatch.delenv(name, raising=False)
    store.forget()
    yield
    store.forget()


def test_nothing_listening_is_said_in_a_few_words():
    reason = probe("http://127.0.0.1:9")
    assert reason and "refused" in reason


def test_sqlite_and_file_stores_are_probed_by_their_folder(tmp_path):
    assert probe(f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}") is None  # made on first use
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: every folder is writable")
        assert "not writable" in probe(f"sqlite:///{locked / 'mlflow.db'}")
        assert "not writable" in probe(f"file://{locked / 'mlruns'}")
    finally:
        locked.chmod(0o700)


def test_unreachable_store_falls_back_to_the_project_store_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    choice = resolve_store(tmp_path)
    assert (
        choice.uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}" and choice.unreachable == "http://127.0.0.1:9"
    )
    resolve_store(tmp_path)  # the verdict holds: no second probe, no second line
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0] and choice.uri in lines[0]
    assert tracking_uri(tmp_path) == choice.uri
    assert provenance_tags(tmp_path)[store.FALLBACK_TAG] == "http://127.0.0.1:9"
    run = open_model_run(tmp_path, TrackingParams(experiment="e"), "r", tmp_path / "m.json", key="k")
    assert run.client.get_run(run.run_id).data.tags[store.FALLBACK_TAG] == "http://127.0.0.1:9"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == store.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_on_unavailable_error_stops_with_one_line_naming_the_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(TrackingUnavailable, match=r"http://127\.0\.0\.1:9 is unreachable") as err:
        check_tracking(tmp_path, TrackingParams(on_unavailable="error"))
    assert "\n" not in str(err.value)
    check_tracking(tmp_path, TrackingParams(enabled=False))  # tracking off: nothing is probed


def test_user_http_settings_win(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    resolve_store(tmp_path)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
