"""Nothing stale, nothing lost: real `dvc repro` runs, real kill -9s, real MLflow stores.

The kill test runs the tiny pipeline in a fresh project and kills it (SIGKILL, via
``CGPT_FAULT``: cgpt/faults.py) at a point of every stage, in turn; after each kill nothing may look
finished that is not, and the final `dvc repro` must give exactly what an uninterrupted run gave
(the session's ``built_project``): data bytes, weights, plots, the checkpoint history, and an MLflow
curve with one point per logged step.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sys
from pathlib import Path

import pytest
from e2e_project import (
    cgpt,
    copy_project,
    dvc,
    files_bytes,
    make_corpus,
    new_project,
    read_params,
    run,
    stages_run,
    write_params,
)

from cgpt.train.checkpoint import list_checkpoints, verify_checkpoint

pytestmark = pytest.mark.slow

# The results an interrupted and resumed pipeline must reproduce exactly (speed.jsonl holds timings).
RESULTS = (
    "data/raw", "data/clean", "data/tokens", "metrics/download.json", "metrics/clean.json", "metrics/tokenize.json",
    "runs/default/model", "runs/default/hf", "runs/default/plots/train.csv", "runs/default/plots/val.csv",
    "runs/default/train_metrics.json", "runs/default/eval_metrics.json", "runs/default/sample.txt",
    "runs/default/checkpoints/step-00000060",
)  # fmt: skip
TIMING_FILES = ("speed.jsonl", "complete.json")  # complete.json records speed.jsonl's hash

# One kill per stage (and three inside training), each in its own `dvc repro`, in this order:
KILLS = [
    "download.source@1",  # data/raw being built
    "clean.part@1",  # a part written, the manifest not yet
    "tokenize.batch@1",  # token shards half written
    "train.step@28",  # between checkpoints (20 and 40): steps 21-28 were logged to MLflow live
    "checkpoint.file@5",  # inside the step-60 checkpoint, between its files (resumed from 40)
    "checkpoint.renamed@1",  # step-60 renamed into place; model/, metrics and plots not yet written
    "evaluate.split@1",  # val scored, test not
    "export.written@1",  # the Hugging Face folder written, the check and metrics not
]


def killed(proc) -> bool:
    out = proc.stdout + proc.stderr
    # DVC reports the signal (-9) when the shell execs the command, 137 (128 + 9) when a shell that
    # stays the parent reports it (dash vs bash, how CI's /bin/sh is set up)
    return proc.returncode != 0 and ("exited with -9" in out or "exited with 137" in out)


def assert_nothing_looks_finished_that_is_not(project: Path) -> None:
    """After a kill: every checkpoint folder verifies, and every stage output either is absent or complete."""
    for ckpt in list_checkpoints(project / "runs/default/checkpoints"):
        verify_checkpoint(ckpt)  # raises DamagedCheckpoint
    for out, marker in (
        ("data/raw", "manifest.json"),
        ("data/clean", "manifest.json"),
        ("data/tokens", "index.json"),
        ("runs/default/model", "cgpt_model.json"),
        ("runs/default/hf", "config.json"),
    ):
        d = project / out
        assert not d.exists() or (d / marker).is_file(), f"{out} exists without {marker}"
    assert not (project / "runs/default/train_metrics.json").exists() or (project / "runs/default/model").is_dir()


def test_kills_at_every_stage_resume_to_the_results_of_an_uninterrupted_run(built_project, tmp_path):
    project = new_project(tmp_path / "p")
    for fault in KILLS:
        proc = dvc("repro", cwd=project, check=False, extra_env={"CGPT_FAULT": fault})
        assert killed(proc), f"{fault} was not hit:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert_nothing_looks_finished_that_is_not(project)
    dvc("repro", cwd=project)
    assert files_bytes(project, *RESULTS, exclude=TIMING_FILES) == files_bytes(
        built_project, *RESULTS, exclude=TIMING_FILES
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "runs/default/mlflow_run.json").read_text())["run_id"]
    for key, steps in (("train/loss", range(10, 61, 10)), ("train/lr", range(10, 61, 10)), ("val/loss", (30, 60))):
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(steps), key
    losses = {m.step: m.value for m in client.get_metric_history(run_id, "train/loss")}
    plotted = [line.split(",") for line in (project / "runs/default/plots/train.csv").read_text().splitlines()[1:]]
    assert {int(r[0]): float(r[1]) for r in plotted} == losses  # MLflow and the plot agree point for point
    assert client.get_run(run_id).info.status == "FINISHED"
    model_runs = client.search_runs([client.get_experiment_by_name("cgpt").experiment_id])
    assert len(model_runs) == 1  # every kill and resume continued the same MLflow run


def test_each_stage_twice_gives_the_same_bytes(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    before = files_bytes(project, *RESULTS, exclude=TIMING_FILES)
    for stage in ("download", "clean", "tokenize", "train", "evaluate", "export"):
        if stage == "train":  # retrain from scratch, not resume from the persisted checkpoints
            for ckpt in list_checkpoints(project / "runs/default/checkpoints"):
                ckpt.rename(ckpt.with_name(f"moved-{ckpt.name}"))
        dvc("repro", "-f", "--single-item", stage, cwd=project)
    after = files_bytes(project, *RESULTS, exclude=TIMING_FILES)
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] == []


def test_a_changed_local_corpus_is_noticed(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    make_corpus(project / "corpus/templates.jsonl", docs=45)  # the same first 45 documents, 15 cut
    ran = stages_run(dvc("repro", cwd=project))
    assert {"download", "clean", "tokenize", "train"} <= ran
    assert json.loads((project / "metrics/clean.json").read_text())["total"]["documents_in"] == 45


def test_changing_only_download_retries_reruns_nothing_downstream(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["download"]["retries"] = 9
    write_params(project, params)
    assert stages_run(dvc("repro", cwd=project)) == {"sources", "download"}  # data/raw: same bytes, same hash


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("train", "max_step", 60, "unknown key train.max_step"),
        ("download", "retires", 3, "unknown key download.retires"),
    ],
)
def test_a_params_mistake_keeps_every_earlier_result(built_project, tmp_path, section, key, value, expected):
    project = copy_project(built_project, tmp_path / "p")
    before = files_bytes(project, *RESULTS)
    params = read_params(project)
    params[section][key] = value
    params["train"]["max_steps"] = 70  # something must be stale for DVC to run a stage at all
    write_params(project, params)
    proc = dvc("repro", cwd=project, check=False)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert files_bytes(project, *RESULTS) == before


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    ckpts = project / "runs/default/checkpoints"
    newest = ckpts / "step-00000060" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    params = read_params(project)
    params["train"]["max_steps"] = 80
    write_params(project, params)
    proc = dvc("repro", cwd=project)
    log = proc.stdout + proc.stderr
    assert "step-00000060/model.safetensors" in log and "resuming from" in log and "step-00000040" in log, log
    assert "Traceback" not in log
    assert [p.name for p in ckpts.glob("damaged-step-00000060-*")]  # set aside, not deleted
    timing = json.loads((project / "runs/default/timing.json").read_text())
    assert timing["resumed_from_step"] == 40
    assert json.loads((project / "runs/default/model/cgpt_model.json").read_text())["step"] == 80


def test_an_empty_split_is_an_error_not_a_perfect_score(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["tokenize"]["split"]["test"] = 0.0
    write_params(project, params)
    proc = cgpt("check", cwd=project, check=False)
    assert proc.returncode == 2
    assert "evaluate.splits includes 'test', but tokenize.split.test = 0" in proc.stderr
    params["evaluate"] = {**params["evaluate"], "splits": ["val"]}
    write_params(project, params)
    dvc("repro", cwd=project)
    headline = set(json.loads((project / "runs/default/eval_metrics.json").read_text()))
    assert headline - {"avg_acc_0shot", "avg_acc_5shot"} == {"val_xent"}


def test_a_task_without_data_is_skipped_and_noted_or_stops_the_stage(built_project, tmp_path):
    """LAMBADA is on no PyPI wheel: an offline machine must still get the other six tasks, clearly marked."""
    project = copy_project(built_project, tmp_path / "p")
    shutil.rmtree(project / "evaldata" / "lambada_openai")
    before = (project / "runs/default/eval_0shot_acc.json").read_text()
    params = read_params(project)
    params["evaluate"]["missing_tasks"] = "error"
    write_params(project, params)
    proc = dvc("repro", "evaluate", cwd=project, check=False)
    errors = [line for line in (proc.stdout + proc.stderr).split("\n") if line.startswith("error: ")]
    assert len(errors) == 1 and "lambada_openai/test.jsonl" in errors[0], proc.stderr[-2000:]
    assert (project / "runs/default/eval_0shot_acc.json").read_text() == before  # nothing lost
    params["evaluate"]["missing_tasks"] = "skip"
    write_params(project, params)
    proc = dvc("repro", "evaluate", cwd=project)
    assert "warning: lambada_openai skipped" in proc.stderr
    acc = json.loads((project / "runs/default/eval_0shot_acc.json").read_text())
    assert set(acc) == {"HS", "PIQA", "WG", "ARC-e", "ARC-c", "OBQA"}  # no LAMB, so no 7-task average
    assert set(json.loads((project / "runs/default/eval_metrics.json").read_text())) == {"val_xent", "test_xent"}
    assert (
        "lambada_openai not evaluated, its data was unavailable"
        in (project / "runs/default/eval/results.md").read_text()
    )
    settings = json.loads((project / "runs/default/eval/results.json").read_text())["settings"]
    assert set(settings["skipped_tasks"]) == {"lambada_openai"}


def test_a_binary_file_given_as_txt_stops_clean_with_one_line(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    (project / "corpus/blob.txt").write_bytes(b"PK\x03\x04\x00\x00binary" * 100)
    params = read_params(project)
    params["download"]["sources"].append({"name": "blob", "kind": "local", "paths": ["corpus/blob.txt"]})
    write_params(project, params)
    proc = dvc("repro", cwd=project, check=False)
    # split on "\n" only: the error must start its own line, not follow a progress bar's "\r"
    errors = [line for line in (proc.stdout + proc.stderr).split("\n") if line.startswith("error: ")]
    assert len(errors) == 1 and "blob.txt: binary content" in errors[0], proc.stderr[-2000:]


def test_cuda_without_a_gpu_is_one_line(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["train"]["device"] = "cuda"
    write_params(project, params)
    proc = cgpt("train", cwd=project, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: train.device = 'cuda'")
    assert "Traceback" not in proc.stderr


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_earlier_checkpoints(built_project, tmp_path):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every large write fail as on a full disk."""
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["train"]["max_steps"] = 70
    params["tracking"] = {"enabled": False}
    write_params(project, params)
    before = sorted(p.name for p in list_checkpoints(project / "runs/default/checkpoints"))

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    proc = run([sys.executable, "-m", "cgpt.cli", "train"], cwd=project, check=False, preexec_fn=limit_file_size)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: ") and "cannot write a checkpoint" in last, proc.stderr
    assert "no space left" in last and "Traceback" not in proc.stderr
    assert sorted(p.name for p in list_checkpoints(project / "runs/default/checkpoints")) == before
    assert not list((project / "runs/default/checkpoints").glob("*.tmp"))


def test_a_checkpoints_path_that_cannot_be_a_folder_is_one_line(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["train"]["run_name"] = "other"
    params["tracking"] = {"enabled": False}
    write_params(project, params)
    (project / "runs/other").mkdir(parents=True)
    (project / "runs/other/checkpoints").write_text("not a folder")
    proc = cgpt("train", cwd=project, check=False)
    assert proc.returncode == 2 and "runs/other/checkpoints" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_ctrl_c_stops_at_a_step_with_a_checkpoint_and_a_killed_mlflow_run(built_project, tmp_path):
    import subprocess
    import time

    from e2e_project import env

    project = copy_project(built_project, tmp_path / "p")
    params = read_params(project)
    params["train"].update(run_name="longer", max_steps=100_000, checkpoint_interval=20, log_interval=1)
    write_params(project, params)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cgpt.cli", "train"], cwd=project, env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ckpts = project / "runs/longer/checkpoints"
    deadline = time.monotonic() + 300
    while not list_checkpoints(ckpts) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: stopped after step ") and "checkpoint written" in last
    stopped_at = int(last.split("after step ")[1].split(";")[0])
    assert list_checkpoints(ckpts)[-1].name == f"step-{stopped_at:08d}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((ckpts / "mlflow_run.json").read_text())["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == list(range(1, stopped_at + 1))
