"""Prefect flow: the DVC pipeline as one task per stage, or as one DVC experiment.

Each task asks DVC to reproduce exactly one stage (``dvc repro --single-item <stage>``), so stages
that are up to date are skipped and ``dvc.lock`` stays the truth whether you ran ``dvc repro`` or
this flow. The stage's output is streamed into the Prefect log (a progress bar as its final line,
not its every update), a stage DVC skipped ends in the state ``Up to date``, downloads retry, and
the flow ends with a markdown artifact holding the run's summary (``cgpt summary``).

    python flows/pipeline.py                       # run once in this project (Prefect's ephemeral local server)
    python flows/pipeline.py -S train.lr=0.001 -S train.max_steps=400 --exp-name lr-1e-3   # one DVC experiment
    python flows/pipeline.py --serve --cron "0 3 * * *"   # the quick path: a served deployment on a schedule
    python flows/pipeline.py --clean-shards 8 --shard-runner dask --dask-address tcp://host:8786

The standard way is ``prefect.yaml`` at the project root (``prefect deploy --all``, then ``prefect
worker start --pool cgpt-process``): see docs/deployments.md. ``project`` defaults to the working
directory, which on a worker is the folder the pull step entered, so no path of one machine is
baked into a deployment.

With ``set_params`` (``-S``) the whole pipeline runs as one DVC experiment, ``dvc exp run --temp
-S key=value ...``, in a temporary copy of the project: the workspace (params.yaml, outputs,
checkpoints) is left as it is, and the experiment shows up in ``dvc exp show``. Its flow run is
named ``experiment <exp-name>``, has one task per stage as DVC reaches it (:class:`StageLog` reads
the one ``dvc exp run`` process's log stage by stage), and its artifact,
``cgpt-experiment-<exp-name>``, compares it with its baseline commit (flows/experiment_report.py).
The overrides are validated with params.yaml before DVC starts, so a typo stops the flow with
cgpt's one line.

With ``clean_shards > 1`` (``tokenize_shards > 1``) a stale clean (tokenize) stage is fanned out
as parallel Prefect tasks (flows/data_shards.py: threads, processes or a Dask cluster); the merged
``data/clean`` (``data/tokens``) is byte-identical to a single-process run, and ``dvc commit``
records it in dvc.lock as if ``dvc repro clean`` (``tokenize``) had produced it.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry calls
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed, State  # noqa: E402

from cgpt.config import dvc_overrides, load_params  # noqa: E402
from cgpt.core.errors import CgptError, ConfigError  # noqa: E402
from cgpt.core.locks import writing  # noqa: E402
from cgpt.core.project import PARAMS_FILE, Project  # noqa: E402
from cgpt.core.runtime import fail  # noqa: E402
from cgpt.stages.data_stats import output_record, publish_data_stats  # noqa: E402
from cgpt.summary import summary_markdown, summary_rows  # noqa: E402
from cgpt.tracking.runs import tracking_uri  # noqa: E402
from flows.console import ConsoleLines  # noqa: E402
from flows.data_shards import sharded_clean_flow, sharded_tokenize_flow  # noqa: E402
from flows.experiment_report import baseline_commit, exp_diff, experiment_artifact_key, report_markdown  # noqa: E402

RETRIED_STAGES = {"download": 3}


def stage_names(project: Path) -> list[str]:
    """The single model's stage names in dvc.yaml order (written in dependency order); the family's
    are in family/dvc.yaml, which flows/family.py runs."""
    return list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])


def dvc(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``dvc <args>`` in ``project`` with this interpreter's folder first on PATH, so the ``python``
    of dvc.yaml's commands is the one running the flow (a worker's flow-run process need not have
    the venv activated). Its output is bytes, read as it comes (:func:`stream`)."""
    full = {**os.environ, "TQDM_MININTERVAL": "5", "PYTHONUNBUFFERED": "1", **(env or {})}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,
    )


def stream(proc: subprocess.Popen[bytes], what: str) -> list[str]:
    """Log ``proc``'s output line by line, progress bars as their final line (and a heartbeat of a
    long one, :mod:`flows.console`), not every carriage-return update; the lines, or RuntimeError
    when it fails."""
    logger = get_run_logger()
    console, decode = ConsoleLines(), codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    lines: list[str] = []

    def log(new: list[str]) -> None:
        for line in new:
            logger.info(line)
            lines.append(line)

    assert proc.stdout is not None
    while chunk := proc.stdout.read(65536):
        log(console.feed(decode(chunk)))
    log(console.feed(decode(b"", final=True)) + console.close())
    if proc.wait() != 0:
        raise RuntimeError(f"{what} failed with exit status {proc.returncode} (see the log above)")
    return lines


def stages_run(lines: list[str]) -> list[str]:
    """The stages DVC ran, from its log: 'ran' vs 'up to date' is what the flows report per stage."""
    return [line.split("'")[1] for line in lines if line.startswith("Running stage '")]


def _missing_flag(allow_missing: bool) -> list[str]:
    """DVC's ``--allow-missing``: a stage whose only change is a missing output (a fresh clone after
    ``dvc pull`` has no ``runs/<name>/checkpoints``: they are never cached) is up to date."""
    return ["--allow-missing"] if allow_missing else []


def repro_state(lines: list[str]) -> State:
    """A ``dvc repro`` task's end state from DVC's log: ``Completed`` with the result ``"ran"`` when
    DVC ran a stage, else ``Completed`` named ``Up to date`` (result ``"up to date"``), so the runs
    list tells a skipped stage from one that ran."""
    ran = stages_run(lines)
    if ran:
        return Completed(message=f"DVC ran {', '.join(ran)}", data="ran")
    return Completed(name="Up to date", message="DVC skipped it: up to date", data="up to date")


@task(task_run_name="dvc repro {stage}")
def reproduce_stage(stage: str, project: str, force: bool = False, allow_missing: bool = False) -> State:
    """Run one DVC stage, streaming its log; its state's result is 'ran' or 'up to date'."""
    args = ["repro", "--single-item", stage] + (["--force"] if force else []) + _missing_flag(allow_missing)
    return repro_state(stream(dvc(Path(project), *args), f"dvc repro {stage}"))


#: the lines DVC starts a stage's part of its log with (dvc/stage/run.py, dvc/stage/__init__.py, dvc/stage/cache.py)
STAGE_HEADER = re.compile(
    r"^(?:Running stage '(?P<ran>[^']+)':|Stage '(?P<skipped>[^']+)' "
    r"(?:didn't change, skipping|is cached - skipping run, checking out outputs))"
)


class StageLog:
    """The console output of a running ``dvc repro``/``dvc exp run``, read stage by stage: lines
    before the first stage's header go to the flow's log, each stage's lines (its header up to the
    next header, or the end) to the task that reads them (:func:`experiment_stage`). Progress bars
    are their final state, as in :func:`stream`."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        self.proc, self.what = proc, what
        self.lines: list[str] = []  # everything read so far
        self._source = self._read()
        self._pending: str | None = None  # a stage's header, read but not yet handed to its task

    def _read(self) -> Iterator[str]:
        console, decode = ConsoleLines(), codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(65536):
            yield from console.feed(decode(chunk))
        yield from console.feed(decode(b"", final=True)) + console.close()

    def _next_line(self) -> str | None:
        if self._pending is not None:
            line, self._pending = self._pending, None
            return line
        line = next(self._source, None)
        if line is not None:
            self.lines.append(line)
        return line

    def next_stage(self, logger: Any) -> str | None:
        """Log the lines up to the next stage's header through ``logger``; that stage's name, or None
        when the output ended (then :meth:`finish`)."""
        while (line := self._next_line()) is not None:
            if m := STAGE_HEADER.match(line):
                self._pending = line
                return m.group("ran") or m.group("skipped")
            logger.info(line)
        return None

    def stage_lines(self, logger: Any) -> list[str]:
        """The current stage's lines (its header first), logged through ``logger`` as they come."""
        lines: list[str] = []
        while (line := self._next_line()) is not None:
            if lines and STAGE_HEADER.match(line):
                self._pending = line
                break
            logger.info(line)
            lines.append(line)
        return lines

    @property
    def at_end(self) -> bool:
        """True when the output has ended (after :meth:`stage_lines`: no next stage's header waits)."""
        return self._pending is None

    def finish(self) -> None:
        """Wait for the process; RuntimeError when it failed."""
        if self.proc.wait() != 0:
            raise RuntimeError(f"{self.what} failed with exit status {self.proc.returncode} (see the log above)")

    def close(self) -> None:
        """Stop the process if it still runs (the flow stopped reading: an error, a cancelled run)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@task(task_run_name="dvc exp run · {stage}", cache_policy=NO_CACHE)
def experiment_stage(stage: str, log: StageLog) -> State:
    """One stage of a running DVC experiment, as its own task: its part of the log, and the state
    ``Completed`` (ran) or ``Up to date`` (DVC skipped it); Failed when DVC failed in it."""
    lines = log.stage_lines(get_run_logger())
    if log.at_end:  # the output ended in this stage: whether DVC succeeded is this stage's outcome
        log.finish()
    return repro_state(lines)


def stage_tasks(log: StageLog) -> dict[str, str]:
    """Read a running DVC command's log as one task per stage (:func:`experiment_stage`), in the order
    DVC reaches them; ``{stage: "ran" | "up to date"}``. The first failed stage fails the flow, and the
    process is stopped if the flow stops reading early."""
    logger, outcome = get_run_logger(), {}
    try:
        while (stage := log.next_stage(logger)) is not None:
            outcome[stage] = experiment_stage(stage, log, return_state=True).result()
        log.finish()
    finally:
        log.close()
    return outcome


def experiment_args(
    set_params: list[str], exp_name: str | None, stages: list[str] | None, force: bool, allow_missing: bool
) -> list[str]:
    """``dvc exp run --temp -S ...`` for these overrides, name and stages."""
    args = ["exp", "run", "--temp"]
    for override in dvc_overrides(set_params):
        args += ["--set-param", override]
    args += (["--name", exp_name] if exp_name else []) + (["--force"] if force else []) + _missing_flag(allow_missing)
    return args + list(stages or [])


def run_experiment(
    project: str,
    set_params: list[str],
    exp_name: str | None,
    stages: list[str] | None,
    force: bool,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """``dvc exp run --temp -S ...``: the pipeline as one DVC experiment in a temporary copy of the
    project, one Prefect task per stage as DVC reaches it (:func:`experiment_stage`: its log, and
    ``Up to date`` for a stage DVC skipped); returns the experiment's name, its baseline commit
    (``HEAD``, where DVC starts it from) and the stages it ran.

    The copy holds what git tracks (plus DVC outputs of the baseline commit), so the persisted,
    uncached checkpoints of earlier runs are not there: training starts from step 0, as it should
    for changed hyperparameters. MLflow is pointed at the project's store (unless
    MLFLOW_TRACKING_URI names one), or the run would vanish with the copy.
    """
    env = {"MLFLOW_TRACKING_URI": tracking_uri(Path(project))}
    baseline = baseline_commit(Path(project))
    args = experiment_args(set_params, exp_name, stages, force, allow_missing)
    log = StageLog(dvc(Path(project), *args, env=env), "dvc exp run")
    outcome = stage_tasks(log)
    names = [line.split(":", 1)[1].strip() for line in log.lines if line.startswith("Ran experiment(s):")]
    if not names:  # DVC 3.67 exits 0 without recording the experiment in a shallow git clone
        raise RuntimeError("dvc exp run recorded no experiment (in a shallow clone, run `git fetch --unshallow` first)")
    return {"name": names[-1], "baseline": baseline, "ran": [s for s, o in outcome.items() if o == "ran"]}


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
    with writing(output_record(proj, stage).parent):  # the lock the stage itself takes (run_data_stage)
        started = time.time()
        stats = run_flow(str(proj.params_file))
        publish_data_stats(proj, load_params(proj.params_file), stage, stats, started=started)
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
def summary_table(project: str) -> str:
    """The run at a glance (``cgpt summary`` as markdown): short enough to read in the artifact."""
    return summary_markdown(summary_rows(Project.at(project)))


@task
def experiment_markdown(project: str, exp_name: str, baseline: str) -> str:
    """The experiment against its baseline commit: the metrics (experiment − baseline, better or
    worse, headline cross-entropy first) and the params that differ."""
    diff = exp_diff(Path(project), baseline, exp_name)
    return report_markdown(diff, exp_name, baseline[:7])


def check_options(set_params: list[str] | None, clean_shards: int, tokenize_shards: int) -> None:
    """One line for options that cannot go together (before any work)."""
    if set_params and (clean_shards > 1 or tokenize_shards > 1):
        raise ConfigError(
            "set_params runs the pipeline with `dvc exp run`, which runs clean and tokenize unsharded; "
            "drop clean_shards/tokenize_shards (or run the sharded pipeline first: the experiment reuses "
            "committed data stages)"
        )


def pipeline_run_name(parameters: dict[str, Any], current: str) -> str:
    """An experiment's flow run is named after it (``experiment lr-1e-3``, or after its overrides
    when DVC is to pick the name); any other run keeps Prefect's ``current`` name."""
    if not parameters.get("set_params"):
        return current
    return f"experiment {parameters.get('exp_name') or ' '.join(parameters['set_params'])}"


def _run_name() -> str:
    from prefect.runtime import flow_run

    return pipeline_run_name(flow_run.parameters, flow_run.name or "cgpt-pipeline")


@flow(name="cgpt-pipeline", flow_run_name=_run_name, log_prints=True)
def pipeline(
    project: str = ".",
    stages: list[str] | None = None,
    force: bool = False,
    allow_missing: bool = False,
    clean_shards: int = 1,
    shard_runner: str = "thread",
    dask_address: str | None = None,
    tokenize_shards: int = 1,
    set_params: list[str] | None = None,
    exp_name: str | None = None,
) -> dict[str, Any]:
    """Validate params.yaml, then reproduce each stage in dependency order; with ``set_params``
    (e.g. ``["train.lr=0.001"]``) run the pipeline as one DVC experiment named ``exp_name``.
    ``allow_missing`` skips stages whose only change is missing data (DVC's ``--allow-missing``).

    ``project`` defaults to the working directory: on a worker, the project folder prefect.yaml's
    pull step entered (``$CGPT_PROJECT``).
    """
    root = Project.at(project).root
    load_params(root / PARAMS_FILE, set_params or ())  # one clear line before any stage runs
    check_options(set_params, clean_shards, tokenize_shards)
    names = stages or stage_names(root)
    if set_params:
        exp = run_experiment(str(root), list(set_params), exp_name, names, force, allow_missing)
        outcome = {s: "ran" if s in exp["ran"] else "up to date" for s in names}
        table = experiment_markdown(str(root), exp["name"], exp["baseline"])
        title, section = f"cgpt experiment {exp['name']}", table
        key, about = experiment_artifact_key(exp["name"]), f"The experiment {exp['name']} against its baseline commit"
    else:
        exp, outcome = None, {}
        for stage in names:
            if stage == "clean" and clean_shards > 1 and not force:
                outcome[stage] = sharded_clean(root, clean_shards, shard_runner, dask_address)
                continue
            if stage == "tokenize" and tokenize_shards > 1 and not force:
                outcome[stage] = sharded_tokenize(root, tokenize_shards, shard_runner, dask_address)
                continue
            runner = reproduce_stage.with_options(retries=RETRIED_STAGES.get(stage, 0), retry_delay_seconds=10)
            outcome[stage] = runner(stage, str(root), force, allow_missing, return_state=True).result()
        table = summary_table(str(root))
        title, section = "cgpt pipeline", f"## The run\n\n{table}\n\nEvery number: `dvc metrics show`."
        key, about = "cgpt-metrics", "Stage outcomes and the run's summary"
    summary = "\n".join(f"| {s} | {o} |" for s, o in outcome.items())
    create_markdown_artifact(
        key=key, markdown=f"# {title}\n\n| stage | result |\n|---|---|\n{summary}\n\n{section}", description=about
    )
    result: dict[str, Any] = {"stages": outcome, "summary_markdown": table}
    if exp is not None:
        result["experiment"] = exp["name"]
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", help="project root (holds dvc.yaml and params.yaml; default: this directory)")
    ap.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    ap.add_argument(
        "--allow-missing",
        action="store_true",
        help="a stage whose only change is a missing output is up to date (a fresh clone after dvc pull)",
    )
    ap.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run the pipeline as a DVC experiment with this param (repeat; `dvc exp run -S` syntax)",
    )
    ap.add_argument("--exp-name", help="name of the DVC experiment (with -S; default: DVC picks one)")
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
        load_params(Project.at(args.project or ".").params_file, args.set_param)
        check_options(args.set_param, args.clean_shards, args.tokenize_shards)
    except CgptError as exc:
        fail(str(exc))
    kwargs: dict[str, Any] = {
        "force": args.force,
        "allow_missing": args.allow_missing,
        "clean_shards": args.clean_shards,
        "tokenize_shards": args.tokenize_shards,
        "shard_runner": args.shard_runner,
        "dask_address": args.dask_address,
        "set_params": args.set_param,
        "exp_name": args.exp_name,
    }
    if args.project:  # else the flow's default: the working directory of each run (nothing baked in)
        kwargs["project"] = args.project
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
