"""Stage evaluate: the model card's evaluation of ``runs/<run_name>/model``.

* Upstream: next-token cross-entropy (nats/token) over the whole val/test splits, overall and per
  ``meta.pile_set_name`` (the token index records each document's subset).
* Downstream: the card's seven tasks at each shot count of ``evaluate.num_fewshot``, scored
  exactly like lm-evaluation-harness 0.4.13 (:mod:`cgpt.eval.downstream`).

Outputs (``runs/<name>/``): ``eval_metrics.json`` (val/test cross-entropy, a DVC metric),
``eval_{0,5}shot_{acc,acc_norm}.json`` (one row per shot count and metric, a column per task: DVC
metrics, so ``dvc metrics show`` prints the card's table), and the folder ``eval/``: ``upstream.json``
(per split and subset), ``results.{csv,md}`` (the card's table, with the card's values beside ours
on a Cerebras-GPT shape), ``results.json`` and ``samples/`` (every document's loglikelihoods).
Timings go apart, to ``eval_timing.json``.
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
from cgpt.tracking.runs import RUN_FILE, finishing, numeric_items, open_model_run, send_missing_curve
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


def write_outputs(
    run_dir: Path, up: dict[str, Any], results: Any, df: pd.DataFrame, notes: list[str]
) -> dict[str, Any]:
    """Everything evaluate writes (atomically per file; ``eval/`` as one folder)."""
    headline = {f"{split}_xent": up[split]["loss"] for split in up}
    rows = downstream_rows(results)
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
        step = int(info["step"])
        tracker.log_metrics({f"eval/{k}": v for k, v in numeric_items(safe_keys(up)).items()}, step=step)
        if results is not None:
            tracker.log_metrics({f"eval/{k}": v for k, v in results.flat_metrics("downstream").items()}, step=step)
        tracker.log_table(df.reset_index(), "eval/results.json")
    return metrics
