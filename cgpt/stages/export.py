"""Stage export: ``runs/<run_name>/model`` -> ``runs/<run_name>/hf`` (GPT2LMHeadModel), checked with transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgpt.data.tokens import open_split, read_index
from cgpt.errors import DataError
from cgpt.export.hf import EXPORT_DTYPES, export_hf
from cgpt.export.verify import max_logit_difference, sample_text
from cgpt.faults import fault_point
from cgpt.fsutil import write_json_atomic, write_text_atomic
from cgpt.model.gpt import GPT
from cgpt.stages.project import Project
from cgpt.tracking import RUN_FILE, finishing, open_model_run
from cgpt.train.checkpoint import load_model_dir


def probe_tokens(tokens_dir: Path, n: int) -> np.ndarray:
    """The first ``n`` tokens of the val split (of train when val is empty): input for the export check."""
    for split in ("val", "train"):
        stream = open_split(tokens_dir, split)
        if len(stream) >= 2:
            return stream.read(0, min(len(stream), n))
    raise DataError(f"{tokens_dir}: the val and train splits are empty; rerun the tokenize stage")


def default_prompt(tokenizer_json: Path, probe: np.ndarray, words: int = 3) -> str:
    """The first few words of ``probe`` (the start of a document of this corpus) as the sample prompt."""
    from tokenizers import Tokenizer

    text = Tokenizer.from_file(str(tokenizer_json)).decode(probe[:32].tolist())
    return " ".join(text.split()[:words]) or text[:16]


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
    fault_point("export.written")
    model = GPT(cfg)
    model.load_state_dict(state)
    probe = probe_tokens(tokens, 64)
    diff = max_logit_difference(hf_dir, model, torch.from_numpy(probe).long().unsqueeze(0))
    prompt = params.export.sample_prompt
    if prompt is None:  # the opening words of real text from this corpus, not a fixed prompt
        prompt = default_prompt(tokens / "tokenizer.json", probe)
    text = sample_text(hf_dir, prompt, params.export.sample_tokens) if params.export.sample_tokens else ""
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
