"""Prefect flow: the DVC pipeline as one task per stage.

Each task asks DVC to reproduce exactly one stage (``dvc repro --single-item <stage>``), so stages
that are up to date are skipped and ``dvc.lock`` stays the truth whether you ran ``dvc repro`` or
this flow. The stage's output is streamed into the Prefect log, downloads retry, and the flow ends
with a markdown artifact holding ``dvc metrics show --md``.

    python flows/pipeline.py                       # run once (Prefect's ephemeral local server)
    python flows/pipeline.py --serve --cron "0 3 * * *"   # a served deployment on a schedule
    python flows/pipeline.py --clean-shards 8 --shard-runner dask --dask-address tcp://host:8786

With ``clean_shards > 1`` (``tokenize_shards > 1``) a stale clean (tokenize) stage is fanned out
as parallel Prefect tasks (flows/data_shards.py: threads, processes or a Dask cluster); the merged
``data/clean`` (``data/tokens``) is byte-identical to a single-process run, and ``dvc commit``
records it in dvc.lock as if ``dvc repro clean`` (``tokenize``) had produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry calls
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from cgpt.config import load_params  # noqa: E402
from cgpt.errors import CgptError  # noqa: E402
from cgpt.runtime import fail  # noqa: E402
from cgpt.stages.data_stats import publish_data_stats  # noqa: E402
from cgpt.stages.project import Project  # noqa: E402
from flows.data_shards import sharded_clean_flow, sharded_tokenize_flow  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
RETRIED_STAGES = {"download": 3}


def stage_names(project: Path) -> list[str]:
    """Stage names in dvc.yaml order (written in dependency order)."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    return list(spec["stages"])


def _dvc(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TQDM_MININTERVAL": "5", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


@task(task_run_name="dvc repro {stage}")
def reproduce_stage(stage: str, project: str, force: bool = False) -> str:
    """Run one DVC stage, streaming its log; returns 'ran' or 'up to date'."""
    logger = get_run_logger()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    proc = _dvc(Path(project), *args)
    ran = False
    assert proc.stdout is not None
    for raw in proc.stdout:
        for line in re.split(r"[\r\n]+", raw):
            if line.strip():
                logger.info(line.rstrip())
                ran = ran or line.startswith("Running stage")
    if proc.wait() != 0:
        raise RuntimeError(f"dvc repro {stage} failed with exit status {proc.returncode} (see the log above)")
    return "ran" if ran else "up to date"


def stage_is_stale(project: Path, stage: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "status", stage, "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(json.loads(out.stdout or "{}"))


@task(task_run_name="dvc commit {stage}")
def commit_stage(stage: str, project: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dvc", "commit", "--force", stage], cwd=project, check=True, capture_output=True
    )


def _sharded_stage(project: Path, stage: str, n_shards: int, run_flow) -> str:
    """Run ``run_flow(params_path)`` (a sharded subflow) for a stale ``stage``, publish its stats,
    record it in dvc.lock as if ``dvc repro <stage>`` had produced it."""
    if not stage_is_stale(project, stage):
        return "up to date"
    proj = Project.at(project)
    started = time.time()
    stats = run_flow(str(proj.params_file))
    publish_data_stats(proj, proj.params(), stage, stats, started=started)
    commit_stage(stage, str(project))
    return f"ran in {n_shards} shards"


def sharded_clean(project: Path, n_shards: int, runner: str, dask_address: str | None) -> str:
    """Fan the clean stage out over shards (a subflow), publish its stats, record it in dvc.lock."""
    return _sharded_stage(
        project,
        "clean",
        n_shards,
        lambda params: sharded_clean_flow(
            params, n_shards, runner, dask_address, str(project / "data/raw"), str(project / "data/clean")
        ),
    )


def sharded_tokenize(project: Path, n_shards: int, runner: str, dask_address: str | None) -> str:
    """Fan the tokenize stage out over shards (shared tokenizer, shards, merge), like sharded_clean."""
    return _sharded_stage(
        project,
        "tokenize",
        n_shards,
        lambda params: sharded_tokenize_flow(
            params, n_shards, runner, dask_address, str(project / "data/clean"), str(project / "data/tokens")
        ),
    )


@task
def metrics_markdown(project: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--md"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@flow(name="cgpt-pipeline", log_prints=True)
def pipeline(
    project: str = str(PROJECT),
    stages: list[str] | None = None,
    force: bool = False,
    clean_shards: int = 1,
    shard_runner: str = "thread",
    dask_address: str | None = None,
    tokenize_shards: int = 1,
) -> dict[str, Any]:
    """Validate params.yaml, then reproduce each stage in dependency order."""
    load_params(Path(project) / "params.yaml")  # one clear line before any stage runs
    outcome: dict[str, str] = {}
    for stage in stages or stage_names(Path(project)):
        if stage == "clean" and clean_shards > 1 and not force:
            outcome[stage] = sharded_clean(Path(project), clean_shards, shard_runner, dask_address)
            continue
        if stage == "tokenize" and tokenize_shards > 1 and not force:
            outcome[stage] = sharded_tokenize(Path(project), tokenize_shards, shard_runner, dask_address)
            continue
        runner = reproduce_stage.with_options(retries=RETRIED_STAGES.get(stage, 0), retry_delay_seconds=10)
        outcome[stage] = runner(stage, project, force)
    table = metrics_markdown(project)
    summary = "\n".join(f"| {s} | {o} |" for s, o in outcome.items())
    create_markdown_artifact(
        key="cgpt-metrics",
        markdown=f"# cgpt pipeline\n\n| stage | result |\n|---|---|\n{summary}\n\n## Metrics\n\n{table}",
        description="Stage outcomes and `dvc metrics show`",
    )
    return {"stages": outcome, "metrics_markdown": table}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=str(PROJECT), help="project root (holds dvc.yaml and params.yaml)")
    ap.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    ap.add_argument("--serve", action="store_true", help="serve a deployment on a schedule instead of running once")
    ap.add_argument("--cron", default="0 3 * * *", help="schedule for --serve (default: daily at 03:00)")
    ap.add_argument("--name", default="cgpt-scheduled", help="deployment name for --serve")
    ap.add_argument("--clean-shards", type=int, default=1, help="fan the clean stage out over this many shards")
    ap.add_argument("--tokenize-shards", type=int, default=1, help="fan the tokenize stage out over this many shards")
    ap.add_argument("--shard-runner", choices=["thread", "process", "dask"], default="thread")
    ap.add_argument(
        "--dask-address", help="a running Dask scheduler (default with --shard-runner dask: a local cluster)"
    )
    args = ap.parse_args(argv)
    try:
        load_params(Path(args.project) / "params.yaml")
    except CgptError as exc:
        fail(str(exc))
    kwargs = {
        "project": args.project,
        "force": args.force,
        "clean_shards": args.clean_shards,
        "tokenize_shards": args.tokenize_shards,
        "shard_runner": args.shard_runner,
        "dask_address": args.dask_address,
    }
    if args.serve:
        if not os.environ.get("PREFECT_API_URL"):
            print(
                "warning: schedules need a Prefect server: run `prefect server start` and "
                "`export PREFECT_API_URL=http://127.0.0.1:4200/api`, then serve again",
                file=sys.stderr,
            )
        pipeline.serve(name=args.name, cron=args.cron, parameters=kwargs)
    else:
        pipeline(**kwargs)


if __name__ == "__main__":
    main()
