"""Stage train: ``data/tokens/`` -> ``runs/<run_name>/`` (checkpoints [persist], model/, metrics, plots)."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from cgpt.fsutil import write_json_atomic
from cgpt.stages.project import Project
from cgpt.tracking import RUN_FILE, open_model_run
from cgpt.train.checkpoint import model_config_to_dict, save_model_dir
from cgpt.train.loop import TrainResult, setup_from_params, train

PLOT_COLUMNS = {"train.csv": ["step", "loss", "lr", "grad_norm", "tokens_per_s"], "val.csv": ["step", "val_loss"]}


def write_plot_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """The history rows that have every column, as a CSV for ``dvc plots``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if all(c in r for c in columns))


def run(project: Project) -> TrainResult:
    params = project.params()
    run_dir = project.run_dir(params.train.run_name)
    ckpt_dir = run_dir / "checkpoints"
    setup = setup_from_params(params, project.tokens)
    tracker = open_model_run(
        project.root, params.tracking, params.train.run_name, ckpt_dir / RUN_FILE, key=setup.fingerprint_key()
    )
    recipe = {k: v for k, v in dataclasses.asdict(setup.recipe).items() if k != "batch_switch"}
    tracker.log_params(
        {
            "model": params.model.model_dump(),
            "train": params.train.model_dump(),
            "resolved.model": model_config_to_dict(setup.model_config),
            "resolved.recipe": recipe,
        }
    )
    tracker.set_tags({"cgpt.preset": params.model.preset, "cgpt.run_name": params.train.run_name})
    result = train(setup, project.tokens, run_dir, tracker=tracker)
    meta = {
        "preset": params.model.preset,
        "run_name": params.train.run_name,
        "step": result.summary.steps,
        "seq_len": setup.recipe.seq_len,
        "tokenizer_sha256": setup.tokenizer_sha256,
    }
    save_model_dir(run_dir / "model", result.model.state_dict(), setup.model_config, meta)
    if (ckpt_dir / RUN_FILE).exists():
        shutil.copy(ckpt_dir / RUN_FILE, run_dir / "model" / RUN_FILE)
    metrics = result.summary.to_json()
    write_json_atomic(run_dir / "train_metrics.json", metrics)
    for name, columns in PLOT_COLUMNS.items():
        write_plot_csv(run_dir / "plots" / name, result.history, columns)
    tracker.log_metrics({f"train.{k}": float(v) for k, v in metrics.items()}, step=result.summary.steps)
    tracker.finish()
    return result
