"""Stage export: ``runs/<run_name>/model`` -> ``runs/<run_name>/hf`` (GPT2LMHeadModel), checked with transformers."""

from __future__ import annotations

from typing import Any

import torch

from cgpt.data.tokens import open_split, read_index
from cgpt.export.hf import EXPORT_DTYPES, export_hf
from cgpt.export.verify import max_logit_difference, sample_text
from cgpt.fsutil import write_json_atomic, write_text_atomic
from cgpt.model.gpt import GPT
from cgpt.stages.project import Project
from cgpt.tracking import RUN_FILE, finishing, open_model_run
from cgpt.train.checkpoint import load_model_dir


def run(project: Project) -> dict[str, Any]:
    params = project.params()
    run_dir, tokens = project.run_dir(params.train.run_name), project.tokens
    cfg, state, info = load_model_dir(run_dir / "model")
    index = read_index(tokens)
    hf_dir = export_hf(
        state,
        cfg,
        run_dir / "hf",
        tokenizer_json=tokens / "tokenizer.json",
        eos_token_id=int(index["eos_token_id"]),
        dtype=EXPORT_DTYPES[params.export.dtype],
    )
    model = GPT(cfg)
    model.load_state_dict(state)
    val = open_split(tokens, "val")
    n = min(len(val), 64)
    sample_ids = torch.from_numpy(val.read(0, n)).long().unsqueeze(0)
    diff = max_logit_difference(hf_dir, model, sample_ids)
    text = (
        sample_text(hf_dir, params.export.sample_prompt, params.export.sample_tokens)
        if params.export.sample_tokens
        else ""
    )
    print(f"exported {hf_dir}: max |logit difference| vs cgpt = {diff:.2e}")
    print(f"sample: {text!r}")
    files = {f.name: f.stat().st_size for f in sorted(hf_dir.iterdir())}
    metrics = {"max_abs_logit_diff": diff, "bytes": sum(files.values()), "files": len(files)}
    write_json_atomic(run_dir / "export_metrics.json", metrics)
    write_text_atomic(run_dir / "sample.txt", text + "\n")
    tracker = open_model_run(project.root, params.tracking, params.train.run_name, run_dir / RUN_FILE)
    with finishing(tracker):
        tracker.log_metrics({f"export.{k}": float(v) for k, v in metrics.items()}, step=int(info["step"]))
        tracker.log_artifacts(hf_dir, "hf")
        tracker.log_text(text, "sample.txt")
    return metrics
