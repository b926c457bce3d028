"""End to end: the real pipeline with `dvc repro` in a temporary project.

The tiny pipeline (generated corpus, ``cpu-tiny`` model, 60 steps) is built once per session;
every test works on its own copy, so the tests pass in any order.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch
from e2e_project import cgpt, copy_project, dvc, metrics, read_params, run, stages_run, write_params
from paths import EVAL_FIXTURES

from cgpt.tracking.runs import CURVE_METRICS
from flows.pipeline import pipeline as pipeline_flow

pytestmark = pytest.mark.slow

STAGES = ["sources", "download", "clean", "tokenize", "train", "evaluate", "export"]


@pytest.fixture
def project(built_project: Path, tmp_path: Path) -> Path:
    return copy_project(built_project, tmp_path / "project")


def test_repro_writes_finite_metrics_and_learns(project):
    m = metrics(project)
    ev = m["runs/default/eval_metrics.json"]
    up = json.loads((project / "runs/default/eval/upstream.json").read_text())
    vocab = json.loads((project / "data/tokens/index.json").read_text())["vocab_size"]
    for split in ("val", "test"):
        assert math.isfinite(up[split]["loss"]) and up[split]["tokens"] > 0
        assert ev[f"{split}_xent"] == up[split]["loss"]
        assert up[split]["per_subset"]["Templates"]["tokens"] == up[split]["tokens"]  # the corpus' one subset
    assert ev["val_xent"] < 0.5 * math.log(vocab), ev
    tm = m["runs/default/train_metrics.json"]
    assert tm["steps"] == 60 and tm["tokens_seen"] == 60 * 8 * 64
    read = lambda path: json.loads((project / path).read_text())  # noqa: E731
    assert read("runs/default/timing.json")["tokens_per_s"] > 0
    assert read("metrics/clean.json")["total"]["documents_out"] == 60
    assert read("metrics/clean.json")["per_source"]["Templates"]["documents_in"] == 60
    # `dvc metrics show` holds the headline results only (training, cross-entropy, the 7-task averages),
    # under keys no two files share, so it and `dvc exp show` are narrow (issue 18)
    assert set(m) == {"runs/default/train_metrics.json", "runs/default/eval_metrics.json"}
    assert set(ev) == {"val_xent", "test_xent", "avg_acc_0shot", "avg_acc_5shot"}
    assert set(tm) == {"steps", "tokens_seen", "train_loss"}
    proc = dvc("metrics", "show", cwd=project, extra_env={"COLUMNS": "200"})
    assert "failed to load" not in proc.stdout + proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 200, proc.stdout  # was 1,582 with every statistic


def test_downstream_tasks_score_every_document(project):
    """The card's seven tasks at 0 and 5 shots on the fixture documents: one row per shot count and metric
    (`dvc metrics show runs/default/eval_*shot*.json`: the card's table), the averages in the headline
    metric, every document's scores kept, the card's table in markdown."""
    card_files = [f"runs/default/eval_{k}shot_{metric}.json" for k in (0, 5) for metric in ("acc", "acc_norm")]
    m = metrics(project, *card_files)
    assert set(m) == set(card_files)
    headline = json.loads((project / "runs/default/eval_metrics.json").read_text())
    fixture = EVAL_FIXTURES
    for shots in (0, 5):
        acc = m[f"runs/default/eval_{shots}shot_acc.json"]
        assert set(acc) == {"HS", "PIQA", "WG", "LAMB", "ARC-e", "ARC-c", "OBQA", "avg"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
        assert acc["avg"] == pytest.approx(sum(v for k, v in acc.items() if k != "avg") / 7)
        assert headline[f"avg_acc_{shots}shot"] == acc["avg"]
        assert set(m[f"runs/default/eval_{shots}shot_acc_norm.json"]) == {"HS", "PIQA", "ARC-e", "ARC-c", "OBQA"}
    samples = project / "runs/default/eval/samples"
    for task, split in [("hellaswag", "validation"), ("lambada_openai", "test"), ("arc_easy", "test")]:
        docs = len((fixture / task / f"{split}.jsonl").read_text().splitlines())
        assert len((samples / f"{task}_5shot.jsonl").read_text().splitlines()) == docs
    results = json.loads((project / "runs/default/eval/results.json").read_text())
    assert {(r["task"], r["num_fewshot"]) for r in results["results"]} == {
        (t, k) for t in ("hellaswag", "piqa", "winogrande", "lambada_openai", "arc_easy", "arc_challenge",
                         "openbookqa") for k in (0, 5)}  # fmt: skip
    assert all("seconds" not in r for r in results["results"])  # the same model gives the same bytes
    table = (project / "runs/default/eval/results.md").read_text()
    assert "0-shot" in table or "0shot" in table
    card = (project / "runs/default/hf/README.md").read_text()
    assert "| **average** | 0 |" in card and "lambada_openai" in card


def test_export_matches_native_model(project):
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


def test_mlflow_run_holds_curves_metrics_and_export(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "runs/default/mlflow_run.json").read_text())["run_id"]
    mlrun = client.get_run(run_id)
    assert mlrun.info.run_name == "default"  # the workspace's run (an experiment's: "default · <exp>")
    curves = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mfu", "val/loss"}
    summary = {"val_xent", "test_xent", "max_abs_logit_diff", "tokens_seen", "train_loss", "train_mfu"}
    summary |= {"hellaswag.0shot.acc_norm", "lambada_openai.5shot.acc", "avg.0shot.acc", "avg.5shot.acc"}
    metrics = mlrun.data.metrics
    assert curves | summary <= set(metrics)
    # curves first: MLflow draws prefixed sections (train, val) before the unprefixed one-off numbers,
    # and no stderr, count or perplexity makes a chart of its own (they are in the tables)
    assert {k for k in metrics if "/" in k and not k.startswith("system/")} <= set(CURVE_METRICS.values())
    assert not [k for k in metrics if "stderr" in k or "n_docs" in k or "perplexity" in k]
    logged_steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert logged_steps == list(range(10, 61, 10))  # one point per logged step (train.log_interval: 10)
    assert all(0 < m.value <= 1 for m in client.get_metric_history(run_id, "train/mfu")) and metrics["train_mfu"] <= 1
    # resolved values, never an unset override or "auto": what ran
    params = mlrun.data.params
    assert params["recipe.total_steps"] == "60" and "None" not in params.values() and "auto" not in params.values()
    assert params["model.vocab_size"] == str(json.loads((project / "data/tokens/index.json").read_text())[
        "vocab_size"])  # fmt: skip
    assert params["train.device"] == "cpu" and params["train.precision"] == "fp32"
    assert params["train.lr"] == params["recipe.peak_lr"] and params["train.max_steps"] == "60"
    artifacts = {a.path for folder in ("", "eval", "plots", "train", "export")
                 for a in client.list_artifacts(run_id, folder) if not a.is_dir}  # fmt: skip
    tables = {"eval/downstream.json", "eval/upstream.json", "eval/results.json", "eval/results.md"}
    assert {"plots/training.png", "train/summary.json", "export/export_metrics.json", "sample.txt"} | tables <= (
        artifacts
    )
    tags = mlrun.data.tags
    # the run page's Source box: the stage's command (the project's git repo has no commit yet: no commit tag;
    # test_dvc_team checks the commit of a committed project)
    assert tags["mlflow.source.name"] == "stages/train.py" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["cgpt.preset"] == "cpu-tiny" and len(tags["cgpt.data.tokens"]) == 16
    data_runs = client.search_runs([client.get_experiment_by_name("cgpt-data").experiment_id])
    assert {r.info.run_name for r in data_runs} == {"download", "clean", "tokenize"}
    assert set(tags["cgpt.data.runs"].split(",")) == {r.info.run_id for r in data_runs}  # linked to its data
    assert [d.dataset.digest for d in mlrun.inputs.dataset_inputs] == [tags["cgpt.data.tokens"]]
    exp = client.get_experiment(mlrun.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs, not traces


def test_the_export_is_a_registered_mlflow_model_that_loads_and_generates(project):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    version = max(client.search_model_versions("name='cgpt'"), key=lambda v: int(v.version))
    assert version.tags["cgpt.preset"] == "cpu-tiny"
    mlflow.set_tracking_uri(uri)
    generator = mlflow.transformers.load_model(f"models:/cgpt/{version.version}")
    text = generator("The king", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("The king") and len(text) > len("The king")
    model = client.get_logged_model(version.source.removeprefix("models:/"))  # the version's source: the logged model
    assert {m.key for m in model.metrics} >= {"val_xent", "avg.0shot.acc", "max_abs_logit_diff"}
    card = (project / "runs/default/hf/README.md").read_text()
    assert card.startswith("---\nlanguage:") and "## Training data and procedure" in card
    assert "60 optimizer steps of 8 sequences x 64 tokens" in card and "| val |" in card
    assert "\n# cgpt/default: a " in card and "preset cpu-tiny)" in card and "https://github.com/)" not in card
    assert "| training precision | fp32 |" in card and "`<\\|endoftext\\|>`" in card
    # the registration policy: the first version is the champion, with its score as a tag
    assert str(client.get_model_version_by_alias("cgpt", "champion").version) == str(version.version)
    assert float(version.tags["cgpt.val_xent"]) > 0
    # the export's licence, in the folder and (not MLflow's boilerplate) in the logged model
    licence = (project / "runs/default/hf/LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence
    logged = Path(mlflow.artifacts.download_artifacts(f"models:/cgpt/{version.version}"))
    assert (logged / "LICENSE.txt").read_text() == licence


def test_summary_reports_the_run(project):
    out = cgpt("summary", cwd=project).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "60 of 60 documents kept" in rows["data"] and "60 steps" in rows["training"]
    assert "val " in rows["loss"] and "test " in rows["loss"] and "resumed" not in rows["training"]
    assert rows["sample"].split(maxsplit=1)[1].startswith("'The king")


def test_stage_commands_work_from_another_directory(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cgpt("evaluate", "--project", str(project), cwd=elsewhere)
    assert "val: loss" in proc.stdout
    assert not (elsewhere / "runs").exists() and not (elsewhere / "mlflow.db").exists()


def test_second_repro_is_up_to_date(project):
    assert stages_run(dvc("repro", cwd=project)) == {"sources"}  # it only fingerprints the local corpus


def test_changing_max_steps_reruns_only_train_evaluate_export(project):
    params = read_params(project)
    params["train"]["max_steps"] = 80
    write_params(project, params)
    assert stages_run(dvc("repro", cwd=project)) == {"sources", "train", "evaluate", "export"}
    state = json.loads((project / "runs/default/model/cgpt_model.json").read_text())
    assert state["step"] == 80
    timing = json.loads((project / "runs/default/timing.json").read_text())
    assert timing["resumed_from_step"] == 60  # resumed from the persisted checkpoint, not from scratch


def test_changing_code_a_stage_imports_reruns_it(project):
    """A code change in the import closure of train (and nothing else) re-runs train and what follows."""
    optim = project / "cgpt/train/optim.py"
    optim.write_text(optim.read_text() + "\n# an edit\n")
    status = json.loads(dvc("status", "--json", cwd=project).stdout)
    assert set(status) - {"sources"} == {"train"}, status  # sources is always re-checked


def test_prefect_flow_runs_one_task_per_stage(project, harness):
    result = pipeline_flow(project=str(project))
    assert list(result["stages"]) == STAGES
    assert result["stages"].pop("sources") == "ran"  # the fingerprint of the local corpus is always taken
    assert set(result["stages"].values()) == {"up to date"}, result["stages"]
    assert "| model |" in result["summary_markdown"] and "| loss |" in result["summary_markdown"]


def test_prefect_experiment_has_a_task_per_stage_and_a_named_mlflow_run(project, harness):
    """The experiment deployment's flow: one DVC experiment, one Prefect task per stage as DVC reaches
    it (the data stages Up to date, train on Completed), and an MLflow run named after the experiment."""
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    git = ["git", "-c", "user.name=cgpt", "-c", "user.email=cgpt@localhost"]
    run(["git", "add", "-A"], cwd=project)
    run([*git, "commit", "-q", "-m", "baseline"], cwd=project)
    state = pipeline_flow(project=str(project), set_params=["train.lr=0.002"], exp_name="lr-2e-3", return_state=True)
    result = state.result()
    assert result["experiment"] == "lr-2e-3" and result["stages"]["train"] == "ran"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        for _ in range(600):  # Prefect 3 records task runs from events, a moment after the flow returns
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id]))
            )
            if len(tasks) >= len(STAGES) and all(t.state is not None and t.state.is_final() for t in tasks):
                break
            time.sleep(0.1)
    assert flow_run.name == "experiment lr-2e-3"
    states = {t.name: t.state.name for t in tasks}
    assert {f"dvc exp run · {s}" for s in STAGES} <= set(states), states
    assert states["dvc exp run · download"] == "Up to date" and states["dvc exp run · tokenize"] == "Up to date"
    assert {states[f"dvc exp run · {s}"] for s in ("train", "evaluate", "export")} == {"Completed"}
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    [exp_run] = mlflow.search_runs(
        [mlflow.get_experiment_by_name("cgpt").experiment_id], "tags.`dvc.exp_name` = 'lr-2e-3'"
    )
    assert exp_run.info.run_name == "default · lr-2e-3" and exp_run.data.params["train.lr"] == "0.002"
    tags = exp_run.data.tags
    assert tags["mlflow.source.name"] == "stages/train.py" and len(tags["mlflow.source.git.commit"]) == 40
    assert tags["mlflow.source.git.commit"] == tags["dvc.baseline_rev"]  # DVC runs it on its baseline commit
    assert "val_xent" in exp_run.data.metrics


def test_prefect_flow_fans_stale_data_stages_out_over_shards(project, harness):
    """Real DVC: shard clean and tokenize, merge, `dvc commit`; identical bytes keep train up to date."""
    params = read_params(project)
    params["clean"]["part_docs"] = 10  # 6 parts: shards have work; the output bytes do not change
    params["tokenize"]["batch_docs"] = 7
    write_params(project, params)
    tokens_before = {p.name: p.read_bytes() for p in (project / "data/tokens").iterdir()}
    result = pipeline_flow(project=str(project), clean_shards=2, tokenize_shards=2, shard_runner="thread")
    stages = result["stages"]
    assert stages["clean"] == "ran in 2 shards" and stages["tokenize"] == "ran in 2 shards", stages
    # part_docs regroups the clean parts, so data/clean changes; tokens must not
    assert {stages[s] for s in ("train", "evaluate", "export")} == {"up to date"}, stages
    assert {p.name: p.read_bytes() for p in (project / "data/tokens").iterdir()} == tokens_before
    assert stages_run(dvc("repro", cwd=project)) == {"sources"}  # dvc.lock records the sharded results


def test_bad_params_stop_before_any_stage_with_one_line(project):
    params = read_params(project)
    params["model"]["n_head"] = 3
    write_params(project, params)
    lock = (project / "dvc.lock").read_text()
    proc = dvc("repro", cwd=project, check=False)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "params.yaml: model.n_head = 3: must divide model.d_model = 64" in errors[0], (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert (project / "dvc.lock").read_text() == lock  # nothing recorded as done
    checked = run([sys.executable, "-m", "cgpt.cli", "check"], cwd=project, check=False)
    assert checked.returncode == 2 and checked.stderr.strip().count("\n") == 0


def test_plots_render_offline_with_loss_and_val_loss_on_one_chart(project):
    dvc("plots", "show", cwd=project)
    page = (project / "dvc_plots/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vega-embed" in page  # the libraries are inlined, not fetched
    for title in ("Training and validation loss", "Learning rate", "Gradient norm", "Training speed"):
        assert title in page
    loss = page[page.index("Training and validation loss") :]
    assert "val_loss" in loss[:20_000] and "train.csv" in loss[:20_000]  # both curves in the loss chart


def test_dvc_views_fit_a_200_column_terminal(project):
    """Issue 18: with two experiments, `dvc exp show` with the README's flags is one table within 200
    columns whose metric columns are named by their keys alone; `dvc plots show` labels every axis."""
    run(["git", "add", "-A"], cwd=project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], cwd=project)
    for lr, name in (("0.001", "lr-1e-3"), ("0.006", "lr-6e-3")):
        dvc("exp", "run", "-S", f"train.lr={lr}", "-n", name, cwd=project)
    flags = ["--only-changed", "--drop", "Created|.*/", "--no-pager"]
    table = dvc("exp", "show", *flags, cwd=project, extra_env={"COLUMNS": "200"}).stdout
    assert max(len(line) for line in table.splitlines()) <= 200, table
    header = dvc("exp", "show", *flags, "--md", cwd=project).stdout.splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert {"train.lr", "val_xent", "train_loss"} <= set(columns), columns
    assert not [c for c in columns if ":" in c or "/" in c], columns  # no <path>:<key>, no dependency hashes
    assert "lr-6e-3" in table and "lr-1e-3" in table and "…" not in table
    status = dvc("status", cwd=project).stdout.splitlines()
    assert status == ["sources:", "\talways changed"], status  # nothing else to say on a project that ran
    dvc("plots", "show", cwd=project)
    html = (project / "dvc_plots/index.html").read_text()
    for title in ("loss (nats/token)", "learning rate", "tokens/s", "step"):
        assert f'"title": "{title}"' in html or f'"title":"{title}"' in html, title
    assert '"title": "y"' not in html and '"title":"y"' not in html
