"""The standard Prefect loop, end to end on 127.0.0.1, as docs/deployments.md tells a user to run it.

A real ``prefect server start`` (its own PREFECT_HOME), ``prefect work-pool create cgpt-process
--type process``, ``prefect deploy --all`` from a tiny cgpt project holding the repo's
prefect.yaml, ``prefect worker start`` (started elsewhere, told the project by CGPT_PROJECT), then
``prefect deployment run``: the pipeline (DVC outputs and the MLflow run must be there), an
experiment with ``set_params`` (a DVC experiment in ``dvc exp show``, an MLflow run tagged with
it, the workspace untouched) and a misspelt ``set_params`` (fails with cgpt's one line before DVC
runs). Server and worker are stopped in ``finally``, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest
from e2e_project import env as project_env
from e2e_project import new_project, read_params
from processes import free_port, stop_tree

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STARTUP_WAIT_S = 120  # the server's start-up (about 25 s on 2 busy cores)
RUN_WAIT_S = 900  # a guard against a run nobody picks up, far above a run's ~2 min: not a speed check


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], logs: list[Path], check: bool = True) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        tails = "".join(f"\n--- {log.name}:\n{_tail(log)}" for log in logs)
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}{tails}"
        )
    return proc.stdout + proc.stderr


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log: IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _wait_healthy(url: str, server: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"prefect server exited with {server.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"prefect server not healthy after {STARTUP_WAIT_S} s:\n{_tail(log)}")


def _flow_run_id(output: str) -> str:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    return match.group(1)


def _stale_stages(project: Path, env: dict[str, str]) -> set[str]:
    """``dvc status``'s stale stages, but ``sources`` (always re-checked: it fingerprints local corpus
    files) and ``scaling`` (the family's, which the single model's pipeline flow leaves to flows/family.py)."""
    return set(json.loads(_run([str(BIN / "dvc"), "status", "--json"], project, env, []))) - {"sources", "scaling"}


def _experiments(project: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``dvc exp show --json`` as {experiment name: its data}."""
    out = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], project, env, []))
    return {rev["name"]: rev["data"] for row in out for exp in row.get("experiments") or [] for rev in exp["revs"]}


def test_deploy_worker_and_runs_on_a_real_server(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    project = new_project(tmp_path / "project")
    env = {k: v for k, v in project_env().items() if not k.startswith(("PREFECT_", "CGPT_"))}
    git = ["git", "-c", "user.name=cgpt", "-c", "user.email=cgpt@localhost"]
    _run([*git, "add", "-A"], project, env, [])
    _run([*git, "commit", "-qm", "a tiny cgpt project"], project, env, [])

    api = f"http://127.0.0.1:{free_port()}/api"
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    prefect = str(BIN / "prefect")
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    logs = [worker_log, server_log]
    elsewhere = tmp_path / "elsewhere"  # the worker's own folder: it finds the project by CGPT_PROJECT
    elsewhere.mkdir()
    procs: list[subprocess.Popen[str]] = []
    with open(server_log, "w") as slog, open(worker_log, "w") as wlog:
        try:
            port = api.split(":")[2].split("/")[0]
            procs.append(
                _start([prefect, "server", "start", "--host", "127.0.0.1", "--port", port], tmp_path, env, slog)
            )
            _wait_healthy(api, procs[0], server_log)
            _run([prefect, "work-pool", "create", "cgpt-process", "--type", "process"], project, env, logs)
            deployed = _run([prefect, "--no-prompt", "deploy", "--all"], project, env, logs)
            assert "cgpt-pipeline/daily" in deployed and "cgpt-pipeline/experiment" in deployed, deployed
            spec = json.loads(
                _run([prefect, "deployment", "inspect", "cgpt-pipeline/daily", "--output", "json"], project, env, logs)
            )
            assert str(tmp_path) not in json.dumps(spec), "a path of this machine was baked into the deployment"
            assert [s["active"] for s in spec["schedules"]] == [False]

            procs.append(
                _start(
                    [prefect, "worker", "start", "--pool", "cgpt-process", "--limit", "1"],
                    elsewhere,
                    {**env, "CGPT_PROJECT": str(project)},
                    wlog,
                )
            )
            watch = ["--watch", "--watch-timeout", str(RUN_WAIT_S)]

            # 1. the pipeline, stage by stage, in the project
            _run([prefect, "deployment", "run", "cgpt-pipeline/daily", *watch], project, env, logs)
            assert _stale_stages(project, env) == set()
            assert (project / "runs/default/model/model.safetensors").is_file()
            assert (project / "runs/default/hf/config.json").is_file()
            client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
            run_id = json.loads((project / "runs/default/mlflow_run.json").read_text())["run_id"]
            mlrun = client.get_run(run_id)
            assert mlrun.info.status == "FINISHED" and "val_xent" in mlrun.data.metrics

            # 2. one experiment: commit the pipeline's results first, so the experiment reuses its data stages
            _run([*git, "add", "-A"], project, env, logs)
            _run([*git, "commit", "-qm", "pipeline results"], project, env, logs)
            params_before = read_params(project)
            out = _run(
                [
                    prefect,
                    "deployment",
                    "run",
                    "cgpt-pipeline/experiment",
                    "-p",
                    'set_params=["train.lr=1e-3", "train.max_steps=20"]',
                    "-p",
                    'exp_name="lr-1e-3"',
                    *watch,
                ],
                project,
                env,
                logs,
            )
            exp = _experiments(project, env)["lr-1e-3"]
            assert exp["params"]["params.yaml"]["data"]["train"]["lr"] == 0.001
            assert exp["metrics"]["runs/default/train_metrics.json"]["data"]["steps"] == 20
            assert read_params(project) == params_before  # the workspace is left alone
            assert _stale_stages(project, env) == set()
            tagged = client.search_runs(
                [client.get_experiment_by_name("cgpt").experiment_id], "tags.`dvc.exp_name` = 'lr-1e-3'"
            )
            assert [(r.info.run_name, r.info.status, r.data.params["train.lr"]) for r in tagged] == [
                ("default · lr-1e-3", "FINISHED", "0.001")  # named after the experiment too
            ]
            logs_of_run = _run([prefect, "flow-run", "logs", _flow_run_id(out)], project, env, logs)
            assert "Stage 'download' didn't change, skipping" in logs_of_run, logs_of_run[-4000:]

            # 3. a misspelt key stops the run with cgpt's one line, before DVC runs anything
            out = _run(
                [
                    prefect,
                    "deployment",
                    "run",
                    "cgpt-pipeline/experiment",
                    "-p",
                    'set_params=["train.lrr=1e-3"]',
                    *watch,
                ],
                project,
                env,
                logs,
                check=False,
            )
            assert "Flow run finished in state 'Failed'" in out, out
            logs_of_run = _run([prefect, "flow-run", "logs", _flow_run_id(out)], project, env, logs)
            assert "with set_params: unknown key train.lrr (value 0.001)" in logs_of_run, logs_of_run[-4000:]
            assert "Running stage" not in logs_of_run and set(_experiments(project, env)) == {"lr-1e-3"}
        finally:
            for proc in reversed(procs):
                stop_tree(proc)
    assert all(proc.returncode is not None for proc in procs)
    assert os.listdir(elsewhere) == []  # the worker ran nothing in its own folder
