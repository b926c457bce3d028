"""The registration policy on a real sqlite MLflow store: @champion moves only by a better score on the same
data or by `cgpt promote`; @latest-exp follows DVC experiments; `models:/cgpt/latest` stays MLflow's newest."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cgpt.cli import main
from cgpt.core.errors import CgptError
from cgpt.tracking.aliases import CHAMPION, LATEST_EXP, SCORE_TAG, apply_registration_policy, promote


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("cgpt")
    return client


def _register(client: MlflowClient, tmp_path: Path, score: float | None, data: str = "d1", exp: str | None = None):
    """Register a version as the export stage does: inside `dvc exp run` (DVC_EXP_NAME set) when ``exp``."""
    tags = {"cgpt.data.tokens": data, **({"dvc.exp_name": exp} if exp else {})}
    version = str(client.create_model_version("cgpt", str(tmp_path), tags=tags).version)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DVC_EXP_NAME", raising=False)
        if exp:
            mp.setenv("DVC_EXP_NAME", exp)
        return version, apply_registration_policy(client, "cgpt", version, score=score)


def test_a_plain_repro_of_an_experiments_weights_leaves_latest_exp_alone(client, tmp_path):
    v1, _ = _register(client, tmp_path, 5.3, exp="exp-a")
    v2, _ = _register(client, tmp_path, 5.4, exp="exp-b")
    assert str(client.get_model_version_by_alias("cgpt", LATEST_EXP).version) == v2
    # a `dvc repro` (no experiment) that re-exports exp-a's weights meets version v1 again
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DVC_EXP_NAME", raising=False)
        moves = apply_registration_policy(client, "cgpt", v1, score=5.3)
    assert str(client.get_model_version_by_alias("cgpt", LATEST_EXP).version) == v2
    assert [m.alias for m in moves] == [CHAMPION]


def test_a_store_error_is_not_taken_for_no_champion(client, tmp_path):
    from mlflow.exceptions import MlflowException

    v1, _ = _register(client, tmp_path, 5.3)

    class Failing:
        def __getattr__(self, name):
            return getattr(client, name)

        def get_model_version_by_alias(self, *a):
            raise MlflowException("the store answered 503", error_code="TEMPORARILY_UNAVAILABLE")

    with pytest.raises(MlflowException, match="503"):
        apply_registration_policy(Failing(), "cgpt", v1, score=5.0)
    assert _champion(client) == v1


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("cgpt", CHAMPION).version)


def test_champion_moves_only_for_a_better_score_on_the_same_data(client, tmp_path):
    v1, moves = _register(client, tmp_path, 5.27)
    assert _champion(client) == v1 and moves[-1].moved and "first version" in str(moves[-1])
    assert client.get_model_version("cgpt", v1).tags[SCORE_TAG] == "5.270000"
    v2, moves = _register(client, tmp_path, 5.374, exp="lr-3e-3")  # a worse experiment
    assert _champion(client) == v1 and not moves[-1].moved and "not better" in moves[-1].reason
    assert str(client.get_model_version_by_alias("cgpt", LATEST_EXP).version) == v2
    assert str(moves[0]) == f"@latest-exp -> version {v2}: registered by DVC experiment lr-3e-3"
    # MLflow's `latest` is the newest version, the worse one: users load @champion
    assert max(int(v.version) for v in client.search_model_versions("name='cgpt'")) == int(v2)
    v3, moves = _register(client, tmp_path, 5.1, data="d2")  # better, but on other data: not comparable
    assert _champion(client) == v1 and "other token data" in moves[-1].reason
    v4, moves = _register(client, tmp_path, None)  # no evaluation: no claim
    assert _champion(client) == v1 and "no validation cross-entropy" in moves[-1].reason
    v5, moves = _register(client, tmp_path, 5.2)
    assert _champion(client) == v5 and "5.2000 < the champion's 5.2700" in moves[-1].reason
    assert str(client.get_model_version_by_alias("cgpt", LATEST_EXP).version) == v2  # not an experiment


def test_promote_is_the_explicit_move(client, tmp_path):
    v1, _ = _register(client, tmp_path, 5.0)
    v2, _ = _register(client, tmp_path, 6.0)
    assert _champion(client) == v1
    move = promote(client, "cgpt", v2)
    assert _champion(client) == v2 and str(move) == f"@champion -> version {v2}: promoted explicitly (was version {v1})"
    with pytest.raises(CgptError, match="registered model 'cgpt' has no version '9'"):
        promote(client, "cgpt", "9")


def test_cgpt_promote_command(tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("tracking:\n  registered_model: cgpt\n")
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    client.create_registered_model("cgpt")
    for _ in range(2):
        client.create_model_version("cgpt", str(tmp_path))
    main(["promote", "2", "--project", str(project)])
    assert (
        "cgpt @champion -> version 2: promoted explicitly; load it as models:/cgpt@champion" in capsys.readouterr().out
    )
    assert _champion(client) == "2"
    with pytest.raises(SystemExit):
        main(["promote", "7", "--project", str(project)])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("registered model 'cgpt' has no version '7' (see the MLflow UI's Models tab)")
    )


def test_cgpt_promote_never_promotes_in_the_fallback_store(tmp_path, capsys, monkeypatch):
    # the server users load @champion from is down: one line naming it, nothing written locally
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("tracking:\n  registered_model: cgpt\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(SystemExit):
        main(["promote", "2", "--project", str(project)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "http://127.0.0.1:9" in err[0], err
    assert not (project / "mlflow.db").exists()
