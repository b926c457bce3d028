"""Stage evaluate: cross-entropy (nats/token) and perplexity of ``runs/<run_name>/model`` over whole val/test splits."""

from __future__ import annotations

from typing import Any

import torch

from cgpt.config import Params
from cgpt.data.tokens import open_split
from cgpt.eval.xent import cross_entropy
from cgpt.faults import fault_point
from cgpt.fsutil import write_json_atomic
from cgpt.model.gpt import GPT
from cgpt.stages.project import Project
from cgpt.tracking import RUN_FILE, finishing, numeric_items, open_model_run
from cgpt.train.checkpoint import load_model_dir


def run(project: Project, params: Params | None = None) -> dict[str, Any]:
    """``params``: the project's params.yaml unless given (a family member's derived params)."""
    params = params or project.params()
    run_dir = project.run_dir(params.train.run_name)
    cfg, state, info = load_model_dir(run_dir / "model")
    model = GPT(cfg)
    model.load_state_dict(state)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    metrics: dict[str, Any] = {}
    for split in params.evaluate.splits:
        res = cross_entropy(
            model,
            open_split(project.tokens, split),
            info["seq_len"],
            batch_size=params.evaluate.batch_size,
            max_tokens=params.evaluate.max_tokens,
            progress=True,
            desc=f"eval {split}",
        )
        metrics[split] = {"loss": res["loss"], "perplexity": res["perplexity"], "tokens": int(res["tokens"])}
        fault_point("evaluate.split")
        print(
            f"{split}: loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.2f} over "
            f"{int(res['tokens'])} tokens"
        )
    write_json_atomic(run_dir / "eval_metrics.json", metrics)
    tracker = open_model_run(project.root, params.tracking, params.train.run_name, run_dir / RUN_FILE)
    with finishing(tracker):
        tracker.log_metrics({f"eval/{k}": v for k, v in numeric_items(metrics).items()}, step=int(info["step"]))
    return metrics
