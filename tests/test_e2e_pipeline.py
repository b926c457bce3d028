"""End to end: the real pipeline with `dvc repro` in a temporary copy of the project.

A tiny generated corpus and the ``cpu-tiny`` model keep it to about a minute. One project copy is
shared by the tests in this module, which run in order: repro, assert outputs, re-repro (up to
date), change train.max_steps (only train/evaluate/export re-run), then the Prefect flow.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_flow_module


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")

SUBJECTS = ["the king", "the queen", "a fool", "my lord", "the duke", "sweet lady", "the ghost", "our army"]
VERBS = ["speaks of", "dreams of", "fights for", "weeps for", "laughs at", "waits for", "sings to"]
OBJECTS = ["the crown", "his love", "the storm", "her father", "the night", "old rome", "the sea", "fair verona"]


def make_corpus(path: Path, docs: int = 60, seed: int = 0) -> None:
    """Template English: learnable in a few dozen steps, so the loss must fall far below ln(V)."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for d in range(docs):
            lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(rng.randint(40, 80))]
            fh.write(json.dumps({"text": " ".join(lines).capitalize(), "meta": {"pile_set_name": "Templates", "id": d}}) + "\n")


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check)


TINY_PARAMS = {
    "download": {"sources": [{"name": "templates", "kind": "local", "paths": ["corpus/templates.jsonl"]}]},
    "clean": {"workers": 1},
    "tokenize": {"tokenizer": {"vocab_size": 512}, "split": {"val": 0.1, "test": 0.1, "chunk_chars": 1000}, "workers": 1},
    "model": {"preset": "cpu-tiny"},
    "train": {"run_name": "default", "max_steps": 60, "eval_interval": 30, "checkpoint_interval": 20, "log_interval": 10, "eval_tokens": 4096},
    "evaluate": {"batch_size": 8},
    "export": {"sample_prompt": "The king", "sample_tokens": 12},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("cgpt", "stages", "flows", ".dvc", "dvc.yaml", ".dvcignore", ".gitignore", "pyproject.toml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy(src, root / name)
    shutil.rmtree(root / ".dvc" / "cache", ignore_errors=True)
    shutil.rmtree(root / ".dvc" / "tmp", ignore_errors=True)
    (root / "corpus").mkdir()
    make_corpus(root / "corpus" / "templates.jsonl")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS, sort_keys=False))
    run(["git", "init", "-q"], cwd=root)
    return root


@pytest.fixture(scope="module")
def first_repro(project: Path) -> subprocess.CompletedProcess[str]:
    return dvc("repro", cwd=project)


def metrics(project: Path) -> dict:
    out = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)
    merged: dict = {}
    for files in out.values():
        for path, content in files["data"].items():
            merged[path] = content["data"]
    return merged


def test_repro_writes_finite_metrics_and_learns(project, first_repro):
    m = metrics(project)
    ev = m["runs/default/eval_metrics.json"]
    vocab = json.loads((project / "data/tokens/index.json").read_text())["vocab_size"]
    for split in ("val", "test"):
        assert math.isfinite(ev[split]["loss"]) and ev[split]["tokens"] > 0
    assert ev["val"]["loss"] < 0.5 * math.log(vocab), ev
    tm = m["runs/default/train_metrics.json"]
    assert tm["steps"] == 60 and tm["tokens_per_s"] > 0
    assert m["metrics/clean.json"]["total"]["documents_out"] == 60
    assert m["metrics/clean.json"]["per_source"]["Templates"]["documents_in"] == 60


def test_export_matches_native_model(project, first_repro):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cgpt.model.gpt import GPT
    from cgpt.train.checkpoint import load_model_dir

    cfg, state, _ = load_model_dir(project / "runs/default/model")
    native = GPT(cfg).eval()
    native.load_state_dict(state)
    hf_dir = project / "runs/default/hf"
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = tok("The king speaks of the crown. A fool laughs at sweet lady", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (hf(ids).logits - native(ids)).abs().max().item()
    assert diff <= 1e-4
    assert (project / "runs/default/sample.txt").read_text().startswith("The king")


def test_mlflow_run_holds_curves_metrics_and_export(project, first_repro):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "runs/default/model/mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "eval.val.loss", "eval.test.loss", "export.max_abs_logit_diff"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run_id, "loss")) == 6
    artifacts = {a.path for a in client.list_artifacts(run_id, "hf")}
    assert {"hf/config.json", "hf/model.safetensors"} <= artifacts
    data_runs = client.search_runs([client.get_experiment_by_name("cgpt-data").experiment_id])
    assert {r.info.run_name for r in data_runs} == {"download", "clean", "tokenize"}


def test_summary_reports_the_run(project, first_repro):
    out = run([sys.executable, "-m", "cgpt.cli", "summary"], cwd=project).stdout
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["clean", "tokenize", "train", "evaluate", "evaluate", "export", "sample"]
    assert "60 documents in" in lines[0] and lines[3].startswith("evaluate  val:")


def test_second_repro_is_up_to_date(project, first_repro):
    out = dvc("repro", cwd=project).stdout
    assert "Running stage" not in out, out


def test_changing_max_steps_reruns_only_train_evaluate_export(project, first_repro):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["max_steps"] = 80
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc("repro", cwd=project).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train", "evaluate", "export"}, out
    state = json.loads((project / "runs/default/model/cgpt_model.json").read_text())
    assert state["step"] == 80
    tm = json.loads((project / "runs/default/train_metrics.json").read_text())
    assert tm["resumed_from_step"] == 60  # resumed from the persisted checkpoint, not from scratch


def test_prefect_flow_runs_one_task_per_stage(project, first_repro, harness):
    result = load_flow_module("pipeline").pipeline(project=str(project))
    assert list(result["stages"]) == ["download", "clean", "tokenize", "train", "evaluate", "export"]
    assert set(result["stages"].values()) == {"up to date"}, result["stages"]
    assert "eval_metrics.json" in result["metrics_markdown"]


def test_prefect_flow_fans_stale_data_stages_out_over_shards(project, first_repro, harness):
    """Real DVC: shard clean and tokenize, merge, `dvc commit`; identical bytes keep train up to date."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["clean"]["part_docs"] = 10  # 6 parts: shards have work; the output bytes do not change
    params["tokenize"]["batch_docs"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tokens_before = {p.name: p.read_bytes() for p in (project / "data/tokens").iterdir()}
    pipeline = load_flow_module("pipeline").pipeline
    result = pipeline(project=str(project), clean_shards=2, tokenize_shards=2, shard_runner="thread")
    stages = result["stages"]
    assert stages["clean"] == "ran in 2 shards" and stages["tokenize"] == "ran in 2 shards", stages
    # part_docs regroups the clean parts, so data/clean changes; tokens must not
    assert {stages[s] for s in ("train", "evaluate", "export")} == {"up to date"}, stages
    assert {p.name: p.read_bytes() for p in (project / "data/tokens").iterdir()} == tokens_before
    assert "Running stage" not in dvc("repro", cwd=project).stdout  # dvc.lock records the sharded results


def test_bad_params_stop_before_any_stage_with_one_line(project, first_repro):
    good = (project / "params.yaml").read_text()
    try:
        params = yaml.safe_load(good)
        params["model"]["n_head"] = 3
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        lock = (project / "dvc.lock").read_text()
        proc = dvc("repro", cwd=project, check=False)
        assert proc.returncode != 0
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "params.yaml: model.n_head = 3: must divide model.d_model = 64" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert (project / "dvc.lock").read_text() == lock  # nothing recorded as done
        checked = run([sys.executable, "-m", "cgpt.cli", "check"], cwd=project, check=False)
        assert checked.returncode == 2 and checked.stderr.strip().count("\n") == 0
    finally:
        (project / "params.yaml").write_text(good)
        dvc("checkout", cwd=project)  # DVC removed the failed stage's outputs before running it
