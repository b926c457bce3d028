"""MLflow runs that read well, against a real sqlite store in a temp dir: names that say what a run
is, the Source box filled, what ran as params, curves first and one-off numbers summarised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cgpt.eval.results import EvalResults, TaskResult
from cgpt.eval.table import downstream_rows, results_frame
from cgpt.published import TASKS
from cgpt.stages import evaluate as evaluate_stage
from cgpt.stages import train as train_stage
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import (
    CURVE_METRICS,
    PARENT_TAG,
    RUN_FILE,
    CurveLogger,
    model_run_name,
    open_keyed_run,
    open_model_run,
    provenance_tags,
    repo_url,
    source_name,
    stage_run,
    tracking_uri,
)

EXP = TrackingParams(experiment="exp")


@pytest.fixture(autouse=True)
def _own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on branch ``main`` and a remote whose URL holds a token."""
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "params.yaml").write_text("train: {}\n")
    _git(root, "add", "params.yaml")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
    _git(root, "remote", "add", "origin", "https://alice:s3cret@github.com/acme/cgpt.git")
    return root


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri(root))


def test_runs_are_named_after_the_dvc_experiment_and_members_keep_their_names(tmp_path, monkeypatch):
    assert model_run_name("default") == "default"
    workspace = open_model_run(tmp_path, EXP, "default", tmp_path / "ws" / RUN_FILE, key="a")
    workspace.finish()
    monkeypatch.setenv("DVC_EXP_NAME", "lr-3e-3")
    exp = open_model_run(tmp_path, EXP, "default", tmp_path / "exp" / RUN_FILE, key="b")
    exp.finish()
    member = open_model_run(tmp_path, EXP, "f32", tmp_path / "f32" / RUN_FILE, key="c", experiment_in_name=False)
    member.finish()
    client = _client(tmp_path)
    names = [client.get_run(t.run_id).info.run_name for t in (workspace, exp, member)]
    assert names == ["default", "default · lr-3e-3", "f32"]
    assert client.get_run(exp.run_id).data.tags["dvc.exp_name"] == "lr-3e-3"
    # a reopened run keeps the name it was created with
    again = open_model_run(tmp_path, EXP, "default", tmp_path / "ws" / RUN_FILE, key="a")
    again.finish()
    assert again.run_id == workspace.run_id and client.get_run(again.run_id).info.run_name == "default"
    assert train_stage._is_child({PARENT_TAG: "x"}) and not train_stage._is_child(None)


def test_every_run_cgpt_opens_fills_the_source_box(repo, monkeypatch):
    """MLflow's run page shows Source "—" unless ``mlflow.source.name`` is set; the commit, branch
    and remote (without its password) go with it, on model, keyed and data-stage runs alike."""
    monkeypatch.setattr("sys.argv", [str(repo / "stages" / "train.py")])
    commit = _git(repo, "rev-parse", "HEAD")
    model = open_model_run(repo, EXP, "default", repo / "runs/default" / RUN_FILE)
    keyed = open_keyed_run(repo, EXP, kind="family", key_tag="cgpt.family", key="k", run_name="family")
    data = stage_run(repo, EXP, "clean")
    client = _client(repo)
    for tracker in (model, keyed, data):
        tracker.finish()
        tags = client.get_run(tracker.run_id).data.tags
        assert tags["mlflow.source.name"] == "stages/train.py" and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.git.commit"] == commit and tags["mlflow.source.git.branch"] == "main"
        assert tags["mlflow.source.git.repoURL"] == "https://github.com/acme/cgpt.git"
        assert "s3cret" not in json.dumps(tags)


def test_provenance_without_branch_remote_or_git(repo, tmp_path):
    _git(repo, "remote", "remove", "origin")
    _git(repo, "checkout", "-q", "--detach")  # as in a CI checkout: no branch to name
    tags = provenance_tags(repo, source="flows/family.py")
    assert tags["mlflow.source.name"] == "flows/family.py" and tags["mlflow.source.git.commit"]
    assert "mlflow.source.git.branch" not in tags and "mlflow.source.git.repoURL" not in tags
    bare = tmp_path / "not-git"
    bare.mkdir()
    tags = provenance_tags(bare, source="stages/clean.py")
    assert tags == {"mlflow.source.name": "stages/clean.py", "mlflow.source.type": "LOCAL"}


def test_source_name_and_repo_url():
    root = Path("/p")
    assert source_name(root, ["/p/stages/member.py", "train", "f32"]) == "stages/member.py train f32"
    assert source_name(root, ["/venv/bin/cgpt", "train"]) == "cgpt train"
    inside = Path(sys.prefix).parent  # a project whose virtualenv lives inside it (.venv/bin/cgpt)
    assert source_name(inside, [f"{sys.prefix}/bin/cgpt", "train"]) == "cgpt train"
    assert source_name(root, ["/x/site-packages/pytest/__main__.py", "-q"]) == "pytest -q"
    assert repo_url("https://tok@gitlab.com:8443/a/b.git") == "https://gitlab.com:8443/a/b.git"
    assert repo_url("git@github.com:acme/cgpt.git") == "git@github.com:acme/cgpt.git"
    assert repo_url("") == ""


def test_curves_are_logged_under_their_sections_and_other_keys_are_not(tmp_path):
    tracker = open_model_run(tmp_path, EXP, "r", tmp_path / RUN_FILE)
    curves = CurveLogger(tracker, CURVE_METRICS)
    curves.log(10, {"loss": 3.0, "lr": 1e-3, "tokens": 512.0, "mfu": 0.4})
    curves.log(20, {"val_loss": 2.9})
    tracker.finish()
    metrics = _client(tmp_path).get_run(tracker.run_id).data.metrics
    assert metrics == {"train/loss": 3.0, "train/lr": 1e-3, "train/mfu": 0.4, "val/loss": 2.9}
    # MLflow draws prefixed sections alphabetically, then the unprefixed "Model metrics": curves first
    assert sorted({name.split("/")[0] for name in CURVE_METRICS.values()}) == ["train", "val"]


def _results() -> EvalResults:
    tasks = [
        TaskResult(
            task,
            shots,
            n_docs=20,
            acc=0.25 + 0.01 * i,
            acc_stderr=0.05,
            acc_norm=0.3 if task != "lambada_openai" else None,
            acc_norm_stderr=0.04,
            perplexity=40.0 if task == "lambada_openai" else None,
        )  # fmt: skip
        for i, task in enumerate(TASKS)
        for shots in (0, 5)
    ]
    return EvalResults("m", tasks)


def test_evaluation_logs_headline_metrics_and_the_rest_as_tables(tmp_path):
    run_dir = tmp_path / "runs/default"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval/results.md").write_text("| task |\n")
    (run_dir / "eval/results.csv").write_text("task\n")
    subsets = {"Pile-CC": {"loss": 5.1, "tokens": 600}, "Github": {"loss": 5.4, "tokens": 300}}
    up = {
        "val": {"loss": 5.2, "perplexity": 181.3, "tokens": 900, "per_subset": subsets},
        "test": {"loss": 5.3, "perplexity": 200.3, "tokens": 800},
    }
    results = _results()
    rows = downstream_rows(results)
    tracker = open_model_run(tmp_path, EXP, "default", run_dir / RUN_FILE)
    evaluate_stage.log_to_mlflow(tracker, run_dir, up, results, results_frame(results, up, "cpu-tiny"), rows, 60)
    tracker.finish()
    client = _client(tmp_path)
    metrics = client.get_run(tracker.run_id).data.metrics
    expected = {"val_xent", "test_xent", "avg.0shot.acc", "avg.5shot.acc"}
    expected |= {f"{t}.{k}shot.acc" for t in TASKS for k in (0, 5)}
    expected |= {f"{t}.{k}shot.acc_norm" for t in TASKS if t != "lambada_openai" for k in (0, 5)}
    assert set(metrics) == expected  # no stderr, count or per-subset chart
    assert not [k for k in metrics if "/" in k]  # listed after the curves
    assert metrics["avg.0shot.acc"] == pytest.approx(rows["0shot_acc"]["avg"])
    assert [m.step for m in client.get_metric_history(tracker.run_id, "val_xent")] == [60]
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id, "eval")}
    assert artifacts == {f"eval/{n}" for n in ("downstream.json", "upstream.json", "results.json", "results.md",
                                               "results.csv")}  # fmt: skip
    local = Path(client.download_artifacts(tracker.run_id, "eval", str(tmp_path / "dl")))
    downstream = json.loads((local / "downstream.json").read_text())
    assert "acc_stderr" in downstream["columns"] and len(downstream["data"]) == 14
    upstream = json.loads((local / "upstream.json").read_text())
    assert [row[:2] for row in upstream["data"]] == [["val", "all"], ["val", "Pile-CC"], ["val", "Github"],
                                                     ["test", "all"]]  # fmt: skip


def test_training_summary_headline_metrics_summary_file_and_loss_plot(tmp_path):
    from types import SimpleNamespace

    history = [{"step": s, "loss": 6.0 - s / 20, "lr": 1e-3, "grad_norm": 1.0} for s in range(10, 61, 10)]
    history += [{"step": 30, "val_loss": 5.0}, {"step": 60, "val_loss": 4.0}]
    speed = [{"step": s, "tokens_per_s": 1000.0, "mfu": 0.3} for s in range(10, 61, 10)]
    result = SimpleNamespace(history=history, speed=speed, summary=SimpleNamespace(steps=60))
    params = train_stage.StageParams.model_validate({"model": {"preset": "cpu-tiny"}})
    summary = {"steps": 60, "tokens_seen": 30720, "train_loss": 3.1, "val_loss": 4.0, "tokens_per_s": 990.0,
               "mfu": 0.31, "seconds": 12.5, "compute_seconds": 11.0, "world_size": 1}  # fmt: skip
    tracker = open_model_run(tmp_path, EXP, "default", tmp_path / RUN_FILE)
    train_stage._log_summary(tracker, params, result, summary)
    tracker.finish()
    client = _client(tmp_path)
    metrics = client.get_run(tracker.run_id).data.metrics
    assert metrics == {"tokens_seen": 30720, "train_loss": 3.1, "train_tokens_per_s": 990.0, "train_mfu": 0.31,
                       "train_seconds": 12.5}  # fmt: skip
    local = Path(client.download_artifacts(tracker.run_id, "", str(tmp_path / "dl")))
    assert json.loads((local / "train/summary.json").read_text()) == summary
    assert (local / "plots/training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resolved_train_params_say_what_ran():
    from cgpt.presets import PRESETS
    from cgpt.train.params import TrainParams, resolve_recipe
    from cgpt.train.setup import RunSetup

    train = TrainParams(max_steps=60, batch_size=8, seq_len=64)  # lr, device, precision... left open
    setup = RunSetup(PRESETS["cpu-tiny"].model, resolve_recipe("cpu-tiny", train), train, "sha", "cpu-tiny", "cpu")
    resolved = setup.resolved_train()
    assert resolved["device"] == "cpu" and resolved["precision"] == "fp32"
    assert resolved["lr"] == setup.recipe.peak_lr and resolved["max_steps"] == 60 and resolved["seq_len"] == 64
    assert resolved["micro_batch_size"] == 8 and resolved["threads"] >= 1 and resolved["end_lr_ratio"] == 0.1
    assert None not in resolved.values() and "auto" not in resolved.values()
    assert "run_name" not in resolved and "distributed" not in resolved
