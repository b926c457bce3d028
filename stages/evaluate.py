"""DVC stage evaluate: cross-entropy (nats/token) and perplexity over whole val/test splits."""

import torch
from stages._common import DATA, ROOT, params, run_dir

from cgpt.data.loader import open_split
from cgpt.eval.xent import cross_entropy
from cgpt.fsutil import write_json_atomic
from cgpt.model.gpt import GPT
from cgpt.runtime import run_main
from cgpt.tracking import RUN_FILE, model_run, numeric_items
from cgpt.train.checkpoint import load_model_dir


def main() -> None:
    p = params()
    rd = run_dir(p)
    cfg, state, info = load_model_dir(rd / "model")
    model = GPT(cfg)
    model.load_state_dict(state)
    if p.train.threads:
        torch.set_num_threads(p.train.threads)
    metrics = {}
    for split in p.evaluate.splits:
        res = cross_entropy(
            model, open_split(DATA / "tokens", split), info["seq_len"],
            batch_size=p.evaluate.batch_size, max_tokens=p.evaluate.max_tokens, progress=True, desc=f"eval {split}",
        )
        metrics[split] = {"loss": res["loss"], "perplexity": res["perplexity"], "tokens": int(res["tokens"])}
        print(f"{split}: loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.2f} over {int(res['tokens'])} tokens")
    write_json_atomic(rd / "eval_metrics.json", metrics)
    tracker = model_run(ROOT, rd / "model" / RUN_FILE, p.tracking.experiment, p.train.run_name, enabled=p.tracking.enabled)
    tracker.log_metrics({f"eval.{k}": v for k, v in numeric_items(metrics).items()}, step=int(info["step"]))
    tracker.finish()


if __name__ == "__main__":
    run_main(main)
