"""DVC stage train: data/tokens/ -> runs/<run_name>/ (checkpoints [persist], model/, metrics, plots)."""

import csv
import shutil

from stages._common import DATA, ROOT, params, run_dir

from cgpt.fsutil import write_json_atomic
from cgpt.runtime import run_main
from cgpt.tracking import RUN_FILE, model_run
from cgpt.train.checkpoint import model_config_to_dict, save_model_dir
from cgpt.train.loop import set_aside_incompatible, setup_from_params, train


def _write_csv(path, rows, columns) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if all(c in r for c in columns))


def main() -> None:
    p = params()
    rd, tokens = run_dir(p), DATA / "tokens"
    setup = setup_from_params(p, tokens)
    ckpt_dir = rd / "checkpoints"
    set_aside_incompatible(ckpt_dir, setup)
    tracker = model_run(ROOT, ckpt_dir / RUN_FILE, p.tracking.experiment, p.train.run_name, enabled=p.tracking.enabled)
    tracker.log_params(
        {
            "model": p.model.model_dump(),
            "train": p.train.model_dump(),
            "resolved.model": model_config_to_dict(setup.model_config),
            "resolved.recipe": {k: v for k, v in vars(setup.recipe).items() if k != "batch_switch"},
        }
    )
    tracker.set_tags({"cgpt.preset": p.model.preset, "cgpt.run_name": p.train.run_name})
    result = train(setup, tokens, rd, tracker=tracker)
    meta = {
        "preset": p.model.preset,
        "run_name": p.train.run_name,
        "step": result["metrics"]["steps"],
        "seq_len": setup.recipe.seq_len,
        "tokenizer_sha256": setup.tokenizer_sha256,
    }
    save_model_dir(rd / "model", result["model"].state_dict(), setup.model_config, meta)
    if (ckpt_dir / RUN_FILE).exists():
        shutil.copy(ckpt_dir / RUN_FILE, rd / "model" / RUN_FILE)
    metrics = {k: v for k, v in result["metrics"].items()}
    write_json_atomic(rd / "train_metrics.json", metrics)
    _write_csv(rd / "plots" / "train.csv", result["history"], ["step", "loss", "lr", "grad_norm", "tokens_per_s"])
    _write_csv(rd / "plots" / "val.csv", result["history"], ["step", "val_loss"])
    tracker.log_metrics({f"train.{k}": float(v) for k, v in metrics.items()}, step=metrics["steps"])
    tracker.finish()


if __name__ == "__main__":
    run_main(main)
