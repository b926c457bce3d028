"""DVC stage export: runs/<run_name>/model -> runs/<run_name>/hf (GPT2LMHeadModel folder), verified."""

import torch
from stages._common import DATA, ROOT, params, run_dir

from cgpt.data.loader import open_split, read_index
from cgpt.export.hf import export_hf
from cgpt.export.verify import max_logit_difference, sample_text
from cgpt.fsutil import write_json_atomic
from cgpt.model.gpt import GPT
from cgpt.runtime import run_main
from cgpt.tracking import RUN_FILE, model_run
from cgpt.train.checkpoint import load_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main() -> None:
    p = params()
    rd, tokens = run_dir(p), DATA / "tokens"
    cfg, state, info = load_model_dir(rd / "model")
    index = read_index(tokens)
    hf_dir = export_hf(
        state, cfg, rd / "hf", tokenizer_json=tokens / "tokenizer.json",
        eos_token_id=int(index["eos_token_id"]), dtype=DTYPES[p.export.dtype],
    )
    model = GPT(cfg)
    model.load_state_dict(state)
    val = open_split(tokens, "val")
    n = min(len(val), 64)
    sample_ids = torch.from_numpy(val.read(0, n)).long().unsqueeze(0)
    diff = max_logit_difference(hf_dir, model, sample_ids)
    text = sample_text(hf_dir, p.export.sample_prompt, p.export.sample_tokens) if p.export.sample_tokens else ""
    print(f"exported {hf_dir}: max |logit difference| vs cgpt = {diff:.2e}")
    print(f"sample: {text!r}")
    files = {f.name: f.stat().st_size for f in sorted(hf_dir.iterdir())}
    metrics = {"max_abs_logit_diff": diff, "bytes": sum(files.values()), "files": len(files)}
    write_json_atomic(rd / "export_metrics.json", metrics)
    (rd / "sample.txt").write_text(text + "\n", encoding="utf-8")
    tracker = model_run(ROOT, rd / "model" / RUN_FILE, p.tracking.experiment, p.train.run_name, enabled=p.tracking.enabled)
    tracker.log_metrics({f"export.{k}": float(v) for k, v in metrics.items()}, step=int(info["step"]))
    tracker.log_artifacts(hf_dir, "hf")
    tracker.log_text(text, "sample.txt")
    tracker.finish()


if __name__ == "__main__":
    run_main(main)
