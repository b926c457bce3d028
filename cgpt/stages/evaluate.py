"""Stage evaluate: the model card's evaluation of ``runs/<run_name>/model``.

* Upstream: next-token cross-entropy (nats/token) over the whole val/test splits, overall and per
  ``meta.pile_set_name`` (the token index records each document's subset).
* Downstream: the card's seven tasks at each shot count of ``evaluate.num_fewshot``, scored
  exactly like lm-evaluation-harness 0.4.13 (:mod:`cgpt.eval.downstream`).

Outputs (``runs/<name>/``): ``eval_metrics.json`` (the DVC metric: ``val_xent``, ``test_xent`` and the
7-task average accuracy per shot count, ``avg_acc_0shot``, ``avg_acc_5shot``: few, distinct keys, so
``dvc exp show`` stays one narrow table), ``eval_{0,5}shot_{acc,acc_norm}.json`` (one row per shot count
and metric, a column per task: not declared DVC metrics, since their keys repeat across the four files
and ``dvc exp show`` would spell each as ``<path>:<key>``; ``dvc metrics show runs/<name>/eval_*shot*.json``
prints them as the card's table), and the folder ``eval/``: ``upstream.json``
(per split and subset), ``results.{csv,md}`` (the card's table, with the card's values beside ours
on a Cerebras-GPT shape), ``results.json`` and ``samples/`` (every document's loglikelihoods).
Timings go apart, to ``eval_timing.json``.

MLflow (the model's run): the headline numbers as metrics without a prefix (:func:`headline_metrics`:
``val_xent``, ``test_xent``, ``<task>.<k>shot.acc``/``acc_norm``, ``avg.<k>shot.acc``), so the run page
draws the training curves first and the runs table can show them as columns; every other number
(standard errors, document and token counts, perplexities, per-subset cross-entropy) in the table
artifacts ``eval/downstream.json`` and ``eval/upstream.json``, beside the card's table
(``eval/results.json``) and the ``results.md``/``results.csv`` files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, write_json_atomic, write_text_atomic
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.tokens import open_split, read_subsets
from cgpt.eval.params import EvaluateParams
from cgpt.eval.table import downstream_rows, format_table, results_frame, subset_table, table_notes
from cgpt.faults import fault_point
from cgpt.keys import safe_keys
from cgpt.model.gpt import GPT
from cgpt.model.params import ModelParams
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import RUN_FILE, finishing, open_model_run, send_missing_curve
from cgpt.tracking.store import check_tracking
from cgpt.train.checkpoint import load_model_dir
from cgpt.train.params import TrainParams
from cgpt.train.validation import cross_entropy


class StageParams(Sections):
    """What the evaluate stage reads of params.yaml: ``evaluate:`` and ``tracking:``, and of the
    model's sections the preset (``evaluate.limit: auto``, the card's columns), the run's name and
    the thread count (dvc.yaml's params list exactly these keys)."""

    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()


def upstream(project: Project, params: StageParams, model: GPT, seq_len: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in params.evaluate.splits:
        res = cross_entropy(
            model,
            open_split(project.tokens, split),
            seq_len,
            batch_size=params.evaluate.batch_size,
            max_tokens=params.evaluate.max_tokens,
            progress=True,
            desc=f"eval {split}",
            subsets=read_subsets(project.tokens, split),
        )
        out[split] = {k: res[k] for k in ("loss", "perplexity", "tokens")} | {"tokens": int(res["tokens"])}
        if "per_subset" in res:
            out[split]["per_subset"] = res["per_subset"]
        print(f"{split}: loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.2f} over "
              f"{int(res['tokens'])} tokens")  # fmt: skip
        fault_point("evaluate.split")
    return out


def available_tasks(ev: EvaluateParams) -> tuple[list[str], dict[str, str]]:
    """The tasks whose data can be had (fetched into the cache now), and why each other one cannot.

    With ``missing_tasks: error`` the first unavailable task stops the stage (one line)."""
    from cgpt.eval.downstream import prepare_data
    from cgpt.eval.taskdata import NoSourceError

    ok, missing = [], {}
    for task in ev.tasks:
        try:
            prepare_data([task], ev.num_fewshot, ev.data, ev.cache_dir, data_sources=ev.data_sources,
                         strict_fewshot=ev.strict_fewshot)  # fmt: skip
            ok.append(task)
        except DataError as exc:
            if ev.missing_tasks == "error":
                raise
            missing[task] = str(exc)  # the whole explanation goes to the results' notes, once
            why = exc.summary if isinstance(exc, NoSourceError) else exc
            print(f"warning: {task} skipped, its data is unavailable: {why}", file=sys.stderr)
    return ok, missing


def downstream(project: Project, params: StageParams, model: GPT) -> tuple[Any, dict[str, str]]:
    """The card's tasks (None when ``evaluate.tasks`` is empty or none can be had), and the skipped ones."""
    from tokenizers import Tokenizer

    from cgpt.eval.downstream import evaluate_tasks
    from cgpt.eval.models import cgpt_eval_model

    ev = params.evaluate
    tasks, missing = available_tasks(ev)
    if not tasks:
        return None, missing
    tokenizer = Tokenizer.from_file(str(project.tokens / "tokenizer.json"))
    eval_model = cgpt_eval_model(model, tokenizer, name=params.train.run_name, device="cpu")
    results = evaluate_tasks(
        eval_model,
        tasks,
        ev.num_fewshot,
        limit=ev.resolved_limit(params.model.preset),
        batch_size=ev.downstream_batch_size,
        data=ev.data,
        cache_dir=ev.cache_dir,
        data_sources=ev.data_sources,
        strict_fewshot=ev.strict_fewshot,
    )
    if missing:
        results.settings["skipped_tasks"] = missing
    return results, missing


def headline_accuracy(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{"avg_acc_0shot": ..., "avg_acc_5shot": ...}``: the 7-task average ``acc`` per shot count, for
    ``eval_metrics.json``. One key per number, none repeating another metrics file's key, so ``dvc exp
    show`` names each column by its key alone (a key present in two files becomes ``<path>:<key>``); a
    shot count with a skipped task has no average, so no key."""
    return {
        f"avg_acc_{name.removesuffix('_acc')}": row["avg"]
        for name, row in rows.items()
        if name.endswith("shot_acc") and "avg" in row
    }


def write_outputs(
    run_dir: Path, up: dict[str, Any], results: Any, df: pd.DataFrame, notes: list[str]
) -> dict[str, Any]:
    """Everything evaluate writes (atomically per file; ``eval/`` as one folder)."""
    rows = downstream_rows(results)
    headline = {f"{split}_xent": up[split]["loss"] for split in up} | headline_accuracy(rows)
    with atomic_dir(run_dir / "eval") as tmp:
        write_json_atomic(tmp / "upstream.json", safe_keys(up))
        write_text_atomic(tmp / "results.csv", df.to_csv())
        write_text_atomic(tmp / "results.md", format_table(df, notes) + "\n" + subset_table(up))
        if results is not None:
            results.save(tmp, timings=False)  # results.json, samples/
    for name, row in rows.items():
        write_json_atomic(run_dir / f"eval_{name}.json", row)
    write_json_atomic(run_dir / "eval_metrics.json", headline)
    return {"headline": headline, "rows": rows}


def headline_metrics(up: dict[str, Any], results: Any, rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """The evaluation's MLflow metrics: val/test cross-entropy (the DVC metric's names), each task's
    ``acc`` and ``acc_norm`` per shot count, and the card's average over its seven tasks (when all
    seven were scored) as ``avg.<k>shot.acc``."""
    out = {f"{split}_xent": float(res["loss"]) for split, res in up.items() if "loss" in res}
    for r in results.tasks if results is not None else []:
        for metric in ("acc", "acc_norm"):
            value = getattr(r, metric)
            if value is not None:
                out[f"{r.task}.{r.num_fewshot}shot.{metric}"] = float(value)
    for name, row in rows.items():  # "0shot_acc": {"HS": ..., "avg": ...}
        shots, metric = name.split("_", 1)
        if "avg" in row:
            out[f"avg.{shots}.{metric}"] = float(row["avg"])
    return out


def upstream_frame(up: dict[str, Any]) -> pd.DataFrame:
    """Cross-entropy per split and subset, one row each (``subset`` "all" for the whole split)."""
    records = []
    for split, res in up.items():
        subsets = {"all": res, **res.get("per_subset", {})}
        for subset, r in subsets.items():
            records.append(
                {"split": split, "subset": subset, **{k: r.get(k) for k in ("loss", "perplexity", "tokens")}}
            )
    return pd.DataFrame.from_records(records, columns=["split", "subset", "loss", "perplexity", "tokens"])


def downstream_frame(results: Any) -> pd.DataFrame:
    """Every task at every shot count: its metrics with their standard errors, documents, few-shot pool."""
    rows = [{k: v for k, v in r.summary_json().items() if k not in ("seconds",)} for r in results.tasks]
    return pd.DataFrame.from_records(rows)


def log_to_mlflow(tracker: Any, run_dir: Path, up: dict[str, Any], results: Any, df: pd.DataFrame,
                  rows: dict[str, dict[str, float]], step: int) -> None:  # fmt: skip
    """The evaluation in the model's MLflow run (see the module docstring): headline metrics, tables, files."""
    tracker.log_metrics(headline_metrics(up, results, rows), step=step)
    tracker.log_table(df.reset_index(), "eval/results.json")
    tracker.log_table(upstream_frame(up), "eval/upstream.json")
    if results is not None:
        tracker.log_table(downstream_frame(results), "eval/downstream.json")
    for name in ("results.md", "results.csv"):
        if (run_dir / "eval" / name).is_file():
            tracker.log_artifact(run_dir / "eval" / name, "eval")


def run(project: Project, params: StageParams | None = None) -> dict[str, Any]:
    """``params``: the project's params.yaml unless given (a family member's derived params). Holds
    the run folder's lock (:mod:`cgpt.core.locks`) while it works."""
    params = params or project.load(StageParams)
    with writing(project.run_dir(params.train.run_name)):
        return _run(project, params)


def _run(project: Project, params: StageParams) -> dict[str, Any]:
    check_tracking(project.root, params.tracking)
    run_dir = project.run_dir(params.train.run_name)
    cfg, state, info = load_model_dir(run_dir / "model")
    model = GPT(cfg)
    model.load_state_dict(state)
    model.eval()
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    t0 = time.perf_counter()
    up = upstream(project, params, model, int(info["seq_len"]))
    t1 = time.perf_counter()
    results, missing = downstream(project, params, model)
    t2 = time.perf_counter()
    df = results_frame(results, up, params.model.preset)
    notes = table_notes(results, missing)
    written = write_outputs(run_dir, up, results, df, notes)
    if results is not None:
        print(format_table(df, notes))
    write_json_atomic(run_dir / "eval_timing.json", {"upstream_seconds": t1 - t0, "downstream_seconds": t2 - t1})
    metrics = {
        **written["headline"],
        **{f"{name}.{k}": v for name, row in written["rows"].items() for k, v in row.items()},
    }
    tracker = open_model_run(project.root, params.tracking, params.train.run_name, run_dir / RUN_FILE)
    with finishing(tracker):
        send_missing_curve(tracker, run_dir / "plots")  # what a store away at the end of training lacks
        log_to_mlflow(tracker, run_dir, safe_keys(up), results, df, written["rows"], int(info["step"]))
    return metrics
