"""Stage train: ``data/tokens/`` -> ``runs/<run_name>/`` (checkpoints [persist], model/, metrics, plots).

Files written beside the declared outputs (not DVC outputs, since they differ between two runs of
the same configuration): ``timing.json`` (wall time, tokens/s and MFU over the whole training,
every session of a resumed run), ``plots/speed.csv`` (tokens/s per logged step) and
``mlflow_run.json`` (the MLflow run that trained ``model/``, which evaluate and export log into).

The MLflow run gets the resolved configuration as params (``train.device: cpu``, not ``auto``),
the curves as they are logged (``train/loss``, ``val/loss``...), and at the end the headline numbers
(:data:`SUMMARY_METRICS`), the whole summary as ``train/summary.json`` and the curves as
``plots/training.png``.

Distributed (``train.distributed.strategy: ddp|fsdp``): run as the stage command, this function
launches the ranks (:mod:`cgpt.train.launch`, each ``python -m cgpt.stages.train <project>
<params.json>``: :func:`rank_main`) and waits; inside a rank (``RANK`` set, by that launcher or by
torchrun/srun) it trains this rank's share. Rank 0 alone opens the MLflow run,
shows progress, and writes model/ (gathered once), metrics, plots and ``timing.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from cgpt.core.fsutil import read_json_if_valid, sha256_file, write_json_atomic
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.runtime import graceful_stop, run_main
from cgpt.data.tokenize.params import TokensSpec
from cgpt.data.tokens import read_index
from cgpt.stages.data_stats import file_digest, output_record
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.plots import training_curves_png
from cgpt.tracking.runs import (
    PARENT_TAG,
    RUN_FILE,
    Tracker,
    client_for,
    data_runs_for,
    disabled,
    finishing,
    open_model_run,
    provenance_tags,
    warn,
)
from cgpt.tracking.store import check_tracking
from cgpt.train.checkpoint import model_config_to_dict, save_model_dir
from cgpt.train.distributed import SINGLE, DistContext, in_launched_rank, start_rank
from cgpt.train.launch import LAUNCHER_ENV, die_with_launcher, launch, needs_launch
from cgpt.train.loop import TrainResult, train
from cgpt.train.metering import run_speed
from cgpt.train.params import TrainingSections
from cgpt.train.schedule import batch_sizes, tokens_seen
from cgpt.train.setup import RunSetup, resolve_precision, setup_from_params

#: what each launched rank runs (``python -m``): this module's :func:`rank_main`
RANK_MODULE = "cgpt.stages.train"


class StageParams(TrainingSections):
    """What the train stage reads of params.yaml: ``model:``, ``train:``, ``tracking:``, and the
    tokenizer's kind from ``tokenize:`` (part of the run's identity, see :func:`run_config`)."""

    tracking: TrackingParams = TrackingParams()
    tokenize: TokensSpec = TokensSpec()


PLOT_COLUMNS = {
    "train.csv": ["step", "loss", "lr", "grad_norm"],
    "val.csv": ["step", "val_loss"],
}
SPEED_COLUMNS = ["step", "tokens_per_s", "flops_per_s", "mfu"]
#: the training's one-off numbers that are MLflow metrics (no prefix: the UI lists them after the
#: curves, as columns of the runs table), by their key in the summary + timing; the rest of them go
#: to the artifact ``train/summary.json``
SUMMARY_METRICS = {
    "tokens_seen": "tokens_seen",
    "train_loss": "train_loss",
    "tokens_per_s": "train_tokens_per_s",
    "mfu": "train_mfu",
    "seconds": "train_seconds",
}


def write_plot_csv(
    path: Path, rows: list[dict[str, Any]], columns: list[str], required: list[str] | None = None
) -> None:
    """The rows that have every ``required`` column (default: all), as a CSV for ``dvc plots``
    (written atomically; a missing optional column is left empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    need = columns if required is None else required
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if all(c in r for c in need))
    tmp.replace(path)


#: ``train:`` keys that cannot change the weights: how often the loop logs, validates and
#: checkpoints, what it keeps, where and in how many pieces it computes (the same math; a run
#: resumes across any of them), and what happens if the loss stops being finite (a run that never
#: diverges trains the same either way). They are recorded on the run, but are not what the run is.
LOOP_KEYS = frozenset(
    {"run_name", "distributed", "log_interval", "eval_interval", "eval_tokens", "checkpoint_interval",
     "keep_checkpoints", "device", "threads", "compile", "activation_checkpointing", "micro_batch_size",
     "on_divergence"}
)  # fmt: skip


def run_config(params: StageParams, setup: RunSetup, data_digest: str) -> dict[str, Any]:
    """The resolved training configuration, exactly what determines the weights: the MLflow run's
    identity (:func:`config_key`). A change to any of it (a model or recipe value, the seed, the
    precision, new data) is another run; a change to a loop setting (:data:`LOOP_KEYS`) is not."""
    recipe = dataclasses.asdict(setup.recipe)
    recipe["total_steps"] = setup.recipe.optimizer_steps()
    recipe["total_tokens"] = tokens_seen(setup.recipe, recipe["total_steps"])
    tok = params.tokenize.tokenizer
    return {
        "model": {"preset": params.model.preset, **model_config_to_dict(setup.model_config)},
        "recipe": recipe,
        # the parallel layout is not part of what a run is: the same math at any world size, and a
        # run killed at 2 ranks and resumed at 1 stays one MLflow run (one point per step)
        "train": params.train.model_dump(exclude=set(LOOP_KEYS), exclude_none=True),
        "data": {
            "tokens_digest": data_digest,
            "tokenizer_sha256": setup.tokenizer_sha256,
            "tokenizer": tok.kind if tok.kind in ("train", "gpt2", "bytes") else f"pretrained:{tok.path}",
        },
    }


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(
    project: Project, params: StageParams | None = None, *, tags: dict[str, str] | None = None
) -> TrainResult | None:
    """Train (one process, or this rank's share); in the stage process of a ddp/fsdp run, launch
    the ranks instead and return None when they are done. ``params``: the project's params.yaml
    unless given (a family member's derived params); ``tags``: extra MLflow tags for the run (a
    family member's: its parent run), set by rank 0, or after a launch on the run the ranks recorded.

    The run folder's lock (:mod:`cgpt.core.locks`) is held by the process that speaks for the job:
    this one, or the launcher while its ranks train (they hold none), or rank 0 under torchrun."""
    params = params or project.load(StageParams)
    with run_lock(project, params):
        return _run(project, params, tags)


def run_lock(project: Project, params: StageParams) -> AbstractContextManager[None]:
    """The lock of ``runs/<run_name>/`` for this process: none in a rank that cgpt's launcher started
    (the launcher holds it) or in a rank other than 0 (torchrun, srun)."""
    if in_launched_rank() and (os.environ.get(LAUNCHER_ENV) or os.environ.get("RANK", "0") != "0"):
        return nullcontext()
    return writing(project.run_dir(params.train.run_name))


def _run(project: Project, params: StageParams, tags: dict[str, str] | None) -> TrainResult | None:
    if not in_launched_rank():  # the launcher (or a single process) checks; a rank reuses its verdict
        check_tracking(project.root, params.tracking)
    dp = params.train.distributed
    if needs_launch(dp):
        setup = setup_from_params(params, project.tokens)  # data and device checked before any rank starts
        with tempfile.TemporaryDirectory(prefix="cgpt-params-") as tmp:
            # the ranks train exactly these params (a family member's are derived, not params.yaml's)
            params_file = Path(tmp) / "params.json"
            params_file.write_text(params.model_dump_json())
            launch(
                RANK_MODULE,
                [str(project.root), str(params_file), project.layout],  # a member's ranks: the family's folders
                dp,
                device=setup.device,
                batches=batch_sizes(setup.recipe),
                job_name=params.train.run_name,
            )
        _tag_launched_run(project, params, tags)
        return None
    ctx, device = SINGLE, None
    if in_launched_rank():
        ctx, device = start_rank(dp.strategy, dp.backend, params.train.device, params.train.threads)
    try:
        return _train(project, params, ctx, device, tags)
    finally:
        ctx.close()


def rank_main(argv: list[str]) -> None:
    """One rank of a ddp/fsdp training, as the launcher, torchrun or srun start it (``python -m
    cgpt.stages.train <project> [<params.json> [<layout>]]``, ``RANK`` etc. set): :func:`run` in the
    project, on the launcher's params (JSON) or, without them (torchrun/srun), the project's; in the
    launcher's layout (a family member's ranks write ``family/runs/<name>``, read ``family/tokens``)."""
    die_with_launcher()
    root, params_file = argv[0], argv[1] if len(argv) > 1 else None
    family = len(argv) > 2 and argv[2] == "family"
    params = StageParams.model_validate_json(Path(params_file).read_text()) if params_file else None
    run_main(lambda: run(Project.at(root).for_family() if family else Project.at(root), params))


def _train(
    project: Project, params: StageParams, ctx: DistContext, device: str | None, tags: dict[str, str] | None = None
) -> TrainResult:
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.ERROR)  # rank 0 speaks for the job
    run_dir = project.run_dir(params.train.run_name)
    setup = setup_from_params(params, project.tokens, device)
    tracker = _open_tracker(project, params, setup, ctx, tags) if ctx.is_main else disabled()
    try:
        with finishing(tracker), graceful_stop("training") as stop_requested:
            result = train(
                setup,
                project.tokens,
                run_dir,
                tracker=tracker,
                progress=ctx.is_main,
                stop_requested=stop_requested,
                ctx=ctx,
            )
            if ctx.is_main:
                _write_results(project, params, setup, result, tracker, ctx)
    except KeyboardInterrupt:
        ctx.barrier()  # the ranks stopped at the same step: wait until rank 0 has closed the MLflow run
        raise
    ctx.barrier()  # the job ends when rank 0's outputs are written
    return result


def _open_tracker(
    project: Project, params: StageParams, setup: RunSetup, ctx: DistContext, tags: dict[str, str] | None = None
) -> Tracker:
    """Rank 0's MLflow run: the resolved configuration as params, provenance and data as tags/inputs."""
    ckpt_dir = project.run_dir(params.train.run_name) / "checkpoints"
    digest = file_digest(project.tokens / "index.json")
    config = run_config(params, setup, digest)
    tracker = open_model_run(
        project.root,
        params.tracking,
        params.train.run_name,
        ckpt_dir / RUN_FILE,
        key=config_key(config),
        experiment_in_name=not _is_child(tags),
    )
    tracker.log_params(
        {
            **config,
            # what ran (config's train is params.yaml's), loop settings included, as first recorded
            # (MLflow params never change; a later loop value is no new run)
            "train": setup.resolved_train(ctx.world_size),
            "distributed": {"strategy": ctx.strategy, "world_size": ctx.world_size},
        }
    )
    index = read_index(project.tokens)
    records = [output_record(project, stage) for stage in ("tokenize", "clean", "download")]  # this layout's tokens
    data_runs = [
        run_id
        for record in records
        if record.is_file()
        for run_id in data_runs_for(project.root, params.tracking, file_digest(record))[:1]
    ]
    tracker.set_tags(
        {
            "cgpt.preset": params.model.preset,
            "cgpt.run_name": params.train.run_name,
            "cgpt.config_key": config_key(config),
            "cgpt.data.tokens": digest,
            "cgpt.data.runs": ",".join(data_runs),
            "cgpt.strategy": ctx.strategy,  # tags follow the latest session (a resume may change them)
            "cgpt.world_size": str(ctx.world_size),
            **provenance_tags(project.root),
            **(tags or {}),
        }
    )
    tracker.log_dataset(
        project.tokens.relative_to(project.root).as_posix(),
        digest,
        project.tokens,
        {s: v["tokens"] for s, v in index["splits"].items()},
        "training",
    )
    if params.tracking.system_metrics:
        tracker.start_system_metrics(resume=not tracker.fresh)
    return tracker


def _is_child(tags: dict[str, str] | None) -> bool:
    """A run nested under a parent (a family member's): it keeps its own name, experiment or not."""
    return bool(tags and PARENT_TAG in tags)


def _tag_launched_run(project: Project, params: StageParams, tags: dict[str, str] | None) -> None:
    """The launched ranks train the launcher's params but not its tags (a family member's parent):
    set them on the run rank 0 recorded (``runs/<name>/mlflow_run.json``), and a child's name."""
    if not tags or not params.tracking.enabled:
        return
    info = read_json_if_valid(project.run_dir(params.train.run_name) / RUN_FILE)
    if isinstance(info, dict) and info.get("run_id"):
        tracker = Tracker(client_for(project.root), info["run_id"])
        tracker.set_tags(tags)  # a store away now: one line, and the tags are not set (the training stands)
        if _is_child(tags):
            tracker.set_name(params.train.run_name)
        if tracker.unsent:
            warn(f"the run's tags {sorted(tags)} were not set; rerun the stage when the store is back")


def _write_results(
    project: Project, params: StageParams, setup: RunSetup, result: TrainResult, tracker: Tracker, ctx: DistContext
) -> None:
    run_dir = project.run_dir(params.train.run_name)
    ckpt_dir = run_dir / "checkpoints"
    meta = {
        "preset": params.model.preset,
        "run_name": params.train.run_name,
        "step": result.summary.steps,
        "seq_len": setup.recipe.seq_len,
        "params": setup.model_config.num_params(),
        "tokenizer_sha256": setup.tokenizer_sha256,
        # what ran, not `auto`: the model card states it (train.precision is often `auto`)
        "precision": resolve_precision(params.train.precision, setup.device),
    }
    save_model_dir(run_dir / "model", result.state_dict(), setup.model_config, meta)
    tracker.record_weights(sha256_file(run_dir / "model" / "model.safetensors"))
    if (ckpt_dir / RUN_FILE).exists():
        shutil.copy(ckpt_dir / RUN_FILE, run_dir / RUN_FILE)
    metrics = result.summary.to_json()
    write_json_atomic(run_dir / "train_metrics.json", result.summary.metrics_file())
    for name, columns in PLOT_COLUMNS.items():
        write_plot_csv(run_dir / "plots" / name, result.history, columns)
    write_plot_csv(run_dir / "plots" / "speed.csv", result.speed, SPEED_COLUMNS, required=SPEED_COLUMNS[:3])
    timing = {
        **run_speed(result.speed),
        "resumed_from_step": result.resumed_from_step,
        "world_size": ctx.world_size,
        "strategy": ctx.strategy,
    }
    write_json_atomic(run_dir / "timing.json", timing)
    _log_summary(tracker, params, result, {**metrics, **timing})


def _log_summary(tracker: Tracker, params: StageParams, result: TrainResult, summary: dict[str, Any]) -> None:
    """The end of training in MLflow: the headline numbers as metrics, everything as
    ``train/summary.json``, and the curves as ``plots/training.png``."""
    if not tracker.enabled:
        return
    tracker.log_metrics(
        {name: float(summary[k]) for k, name in SUMMARY_METRICS.items() if isinstance(summary.get(k), (int, float))},
        step=result.summary.steps,
    )
    tracker.log_text(json.dumps(summary, indent=2, sort_keys=True), "train/summary.json")
    with tempfile.TemporaryDirectory(prefix="cgpt-plot-") as tmp:
        title = f"{params.train.run_name} ({params.model.preset}): {result.summary.steps:,} steps"
        png = training_curves_png(result.history, result.speed, Path(tmp) / "training.png", title)
        if png is not None:
            tracker.log_artifact(png, "plots")


if __name__ == "__main__":
    rank_main(sys.argv[1:])
